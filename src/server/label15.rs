//! What only PostgreSQL 15's backup API needs of a label: the server's
//! START TIME, and the label without this extension's last line. Pure
//! Rust: the unit tests build it too (see lib.rs).

use crate::label::{self, StartTime};

/// The START TIME of a label the server built (any backup method).
pub fn server_start_time(text: &[u8]) -> Option<StartTime> {
    text.split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"START TIME: "))
        .and_then(|v| label::parse_start_time(v).ok())
}

/// The label as the server wrote it and reads it back: our own trailing
/// line left out (for PostgreSQL 15's stop, which copies the text into the
/// backup history file).
pub fn server_lines(content: &[u8]) -> &[u8] {
    let key = format!("\n{}: ", label::START_EPOCH_KEY);
    match content.windows(key.len()).position(|w| w == key.as_bytes()) {
        Some(at) => &content[..at + 1],
        None => content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::{exclusive_label_from_server, Method};

    const SERVER_TEXT: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
CHECKPOINT LOCATION: 0/2000060\n\
BACKUP METHOD: streamed\n\
BACKUP FROM: primary\n\
START TIME: 2026-11-25 03:05:06 UTC\n\
LABEL: nightly snapshot\n\
START TIMELINE: 1\n";

    #[test]
    fn the_server_reads_back_exactly_what_it_wrote() {
        for method in [Method::Exclusive, Method::Streamed] {
            let (text, _) = exclusive_label_from_server(SERVER_TEXT.as_bytes(), 1_795_575_906, method).unwrap();
            let server = SERVER_TEXT.replace("streamed", method.name());
            assert_eq!(server_lines(&text), server.as_bytes());
        }
        // A label without the last line (version 1.0's) is the server's.
        let text = SERVER_TEXT.replace("streamed", "pg_start_backup");
        assert_eq!(server_lines(text.as_bytes()), text.as_bytes());
    }

    #[test]
    fn the_start_time_is_read_from_the_servers_text() {
        let t = server_start_time(SERVER_TEXT.as_bytes()).unwrap();
        assert_eq!(t.to_string(), "2026-11-25 03:05:06 UTC");
        assert_eq!(server_start_time(b"LABEL: x\n"), None);
    }
}
