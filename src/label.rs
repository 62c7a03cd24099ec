//! The backup_label file format, as plain Rust with no server in sight.
//!
//! The server writes the label for us (it knows the checkpoint and the WAL
//! file names); this module turns that text into an exclusive backup's label
//! and, at stop time, decides whether what lies on disk is a label we wrote
//! and can safely hand back to the server. It is deliberately strict: the
//! stop path trusts these fields to end the server's backup mode, so a label
//! that was truncated or edited by hand is rejected with a precise reason
//! instead of being guessed at.
//!
//! The file is treated as bytes, not UTF-8: the LABEL line carries the
//! user's text in the database encoding.

use std::fmt;

/// What `BACKUP METHOD:` says in a label written by `pg_start_backup`.
/// PostgreSQL up to 14 wrote the same for its exclusive backups.
pub const EXCLUSIVE_METHOD: &str = "pg_start_backup";
/// What the server writes: it assumes the caller streams the label itself.
const SERVER_METHOD: &str = "streamed";

/// The BACKUP METHOD a label says, which decides how a restored copy is
/// recovered: the server requires the end-of-backup record before it
/// declares a copy consistent only for `streamed` (as for pg_basebackup);
/// for `pg_start_backup` it does so as soon as it has replayed up to the
/// start. A `streamed` label consumed by the live primary's own crash
/// recovery, however, stops it from starting, which is why only preload
/// mode (whose postmaster keeps it away from the startup process) writes
/// it by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// "pg_start_backup"
    Exclusive,
    /// "streamed"
    Streamed,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Exclusive => EXCLUSIVE_METHOD,
            Method::Streamed => SERVER_METHOD,
        }
    }
}

/// The longest label whose LABEL line the server's startup code reads back
/// whole (it scans at most MAXPGPATH - 1 bytes).
pub const MAX_LABEL_BYTES: usize = 1023;

/// A label file is a few hundred bytes; anything far larger is not ours.
pub const MAX_FILE_BYTES: usize = 8192;

pub type Lsn = u64;

/// The fields of an exclusive backup's backup_label, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupLabel {
    pub start_lsn: Lsn,
    pub start_wal_file: String,
    pub checkpoint_lsn: Lsn,
    pub start_time: StartTime,
    pub label: Vec<u8>,
    pub start_timeline: u32,
    /// The exact start, in Unix seconds, from the `START EPOCH:` line that
    /// pg_start_backup adds after the server's lines. START TIME alone
    /// cannot say it: its zone abbreviation means whatever log_timezone
    /// says when it is read, which may have changed since. `None` for a
    /// label written before the line existed.
    pub start_epoch: Option<i64>,
    pub method: Method,
}

/// The key of the line pg_start_backup appends to the server's label. The
/// server reads a label's lines by key and ignores what follows its own,
/// and no other key starts with it.
pub const START_EPOCH_KEY: &str = "START EPOCH";

/// `START TIME:` as the server formats it: local time in the server's
/// log_timezone followed by that zone's abbreviation ("%Y-%m-%d %H:%M:%S %Z"),
/// which is whatever the zone's rules call it, up to the server's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub zone: String,
}

impl fmt::Display for StartTime {
    /// As the label's START TIME line says it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.zone
        )
    }
}

/// Why a file is not a valid exclusive backup label. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "Line {}: {}", self.line, self.reason)
        }
    }
}

/// Why a label the user passed to pg_start_backup cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLabelText {
    TooLong { bytes: usize },
    HasLineBreak,
}

/// Checks the user's label before anything else happens: a line break would
/// split the LABEL line and corrupt the file for every reader.
pub fn check_label_text(label: &[u8]) -> Result<(), BadLabelText> {
    if label.len() > MAX_LABEL_BYTES {
        return Err(BadLabelText::TooLong { bytes: label.len() });
    }
    if label.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Err(BadLabelText::HasLineBreak);
    }
    Ok(())
}

/// Turns the label text the server built in do_pg_backup_start into the one
/// we write: same lines, with the BACKUP METHOD asked for, and followed
/// by the exact start time the worker got from the server (which also
/// marks the label as ours). The result is parsed before it is returned,
/// so a format change in a future server is caught here and not at
/// restore time.
pub fn exclusive_label_from_server(
    server_text: &[u8],
    start_epoch: i64,
    method: Method,
) -> Result<(Vec<u8>, BackupLabel), LabelError> {
    let from = format!("\nBACKUP METHOD: {SERVER_METHOD}\n");
    let to = format!("\nBACKUP METHOD: {}\n", method.name());
    let at = find(server_text, from.as_bytes()).ok_or_else(|| LabelError {
        line: 0,
        reason: format!("the server's label has no \"BACKUP METHOD: {SERVER_METHOD}\" line"),
    })?;
    let mut out = Vec::with_capacity(server_text.len() + to.len() + 40);
    out.extend_from_slice(&server_text[..at]);
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(&server_text[at + from.len()..]);
    out.extend_from_slice(format!("{START_EPOCH_KEY}: {start_epoch}\n").as_bytes());
    let parsed = parse(&out)?;
    Ok((out, parsed))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a backup_label holds, as far as the postmaster must tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A label pg_start_backup wrote (this extension's, or PostgreSQL 14's).
    Ours(BackupLabel),
    /// A whole label of another writer's: pg_basebackup, pg_backup_stop(),
    /// pg_rewind.
    Other,
    /// Neither (empty, truncated, edited, not a label at all): why it is
    /// not ours.
    Damaged(LabelError),
}

/// Sorts `content` into a [`Kind`]. Another writer's label is told by the
/// lines every server and pg_rewind write, in their order, and a final
/// newline, without the START EPOCH line only pg_start_backup writes;
/// anything else that is not ours is damaged.
pub fn kind(content: &[u8]) -> Kind {
    let err = match parse(content) {
        Ok(l) => return Kind::Ours(l),
        Err(e) => e,
    };
    let whole = content.len() <= MAX_FILE_BYTES && content.last() == Some(&b'\n') && {
        let lines: Vec<&[u8]> = content[..content.len() - 1].split(|&b| b == b'\n').collect();
        let has = |key: &[u8]| lines.iter().any(|l| l.starts_with(key));
        lines.len() >= 5
            && lines[0].starts_with(b"START WAL LOCATION: ")
            && lines[1].starts_with(b"CHECKPOINT LOCATION: ")
            && has(b"BACKUP METHOD: ")
            && has(b"START TIME: ")
            // Only pg_start_backup writes that line: with it, a label of
            // ours, damaged.
            && !has(format!("{START_EPOCH_KEY}: ").as_bytes())
    };
    if whole {
        Kind::Other
    } else {
        Kind::Damaged(err)
    }
}

/// Label text for a message where no database says its encoding (the
/// postmaster, a record's history): ASCII as it is, every other byte and
/// the backslash as `\xNN`, so that it reaches the reader intact.
pub fn escape_non_ascii(raw: &[u8]) -> String {
    raw.iter()
        .map(|&b| {
            if b.is_ascii() && b != b'\\' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02X}")
            }
        })
        .collect()
}

/// Parses a backup_label written by pg_start_backup. Every line must be
/// present, in the server's order, and nothing else may follow.
pub fn parse(content: &[u8]) -> Result<BackupLabel, LabelError> {
    if content.is_empty() {
        return Err(LabelError {
            line: 0,
            reason: "The file is empty.".into(),
        });
    }
    if content.len() > MAX_FILE_BYTES {
        return Err(LabelError {
            line: 0,
            reason: format!("The file is {} bytes long, more than a label can be.", content.len()),
        });
    }
    if content.last() != Some(&b'\n') {
        return Err(LabelError {
            line: 0,
            reason: "The file does not end with a newline; it may be truncated.".into(),
        });
    }
    let mut lines = content[..content.len() - 1]
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    let mut next = |key: &str| -> Result<(usize, &[u8]), LabelError> {
        let prefix = format!("{key}: ");
        match lines.next() {
            Some((n, l)) if l.starts_with(prefix.as_bytes()) => Ok((n, &l[prefix.len()..])),
            Some((n, _)) => Err(LabelError {
                line: n,
                reason: format!("expected \"{key}:\"."),
            }),
            None => Err(LabelError {
                line: 0,
                reason: format!("The \"{key}:\" line is missing."),
            }),
        }
    };

    let (n, v) = next("START WAL LOCATION")?;
    let (start_lsn, start_wal_file) = parse_start_location(v).map_err(|reason| LabelError { line: n, reason })?;
    let (n, v) = next("CHECKPOINT LOCATION")?;
    let checkpoint_lsn = parse_lsn(v).map_err(|reason| LabelError { line: n, reason })?;
    if checkpoint_lsn < start_lsn {
        return Err(LabelError {
            line: n,
            reason: "The checkpoint lies before the start WAL location.".into(),
        });
    }
    let (method_line, v) = next("BACKUP METHOD")?;
    let method = if v == EXCLUSIVE_METHOD.as_bytes() {
        Method::Exclusive
    } else if v == SERVER_METHOD.as_bytes() {
        // Only with the START EPOCH line (checked below): without it, a
        // pg_basebackup copy's label.
        Method::Streamed
    } else {
        return Err(LabelError {
            line: method_line,
            reason: format!(
                "The backup method is \"{}\", not \"{EXCLUSIVE_METHOD}\": pg_start_backup did not write this file.",
                String::from_utf8_lossy(v)
            ),
        });
    };
    let (n, v) = next("BACKUP FROM")?;
    if v != b"primary" {
        return Err(LabelError {
            line: n,
            reason: "An exclusive backup is always taken from a primary.".into(),
        });
    }
    let (n, v) = next("START TIME")?;
    let start_time = parse_start_time(v).map_err(|reason| LabelError { line: n, reason })?;
    let (n, v) = next("LABEL")?;
    if let Err(e) = check_label_text(v) {
        let reason = match e {
            BadLabelText::TooLong { bytes } => {
                format!("The label is {bytes} bytes long (max {MAX_LABEL_BYTES}).")
            }
            BadLabelText::HasLineBreak => "The label contains a carriage return.".into(),
        };
        return Err(LabelError { line: n, reason });
    }
    let label = v.to_vec();
    let (n, v) = next("START TIMELINE")?;
    let start_timeline = parse_decimal_u32(v).filter(|&t| t > 0).ok_or_else(|| LabelError {
        line: n,
        reason: "The start timeline is not a positive number.".into(),
    })?;
    let file_timeline = u32::from_str_radix(&start_wal_file[..8], 16).unwrap_or(0);
    if file_timeline != start_timeline {
        return Err(LabelError {
            line: n,
            reason: format!("The start timeline {start_timeline} does not match WAL file {start_wal_file}."),
        });
    }
    let start_epoch = match lines.next() {
        None => None,
        Some((n, l)) => {
            let prefix = format!("{START_EPOCH_KEY}: ");
            let v = l.strip_prefix(prefix.as_bytes()).ok_or_else(|| LabelError {
                line: n,
                reason: format!("unexpected line after \"START TIMELINE:\"; only \"{START_EPOCH_KEY}:\" may follow."),
            })?;
            let epoch = std::str::from_utf8(v)
                .ok()
                .filter(|t| !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| LabelError {
                    line: n,
                    reason: format!(
                        "\"{}\" is not a start time in Unix seconds.",
                        String::from_utf8_lossy(v)
                    ),
                })?;
            Some(epoch)
        }
    };
    if let Some((n, _)) = lines.next() {
        return Err(LabelError {
            line: n,
            reason: format!("unexpected line after \"{START_EPOCH_KEY}:\"."),
        });
    }
    if method == Method::Streamed && start_epoch.is_none() {
        return Err(LabelError {
            line: method_line,
            reason: format!(
                "The backup method is \"{SERVER_METHOD}\" and the \"{START_EPOCH_KEY}:\" line is missing: \
                 pg_start_backup did not write this file."
            ),
        });
    }
    Ok(BackupLabel {
        start_lsn,
        start_wal_file,
        checkpoint_lsn,
        start_time,
        label,
        start_timeline,
        start_epoch,
        method,
    })
}

/// "0/2000028 (file 000000010000000000000002)"
fn parse_start_location(v: &[u8]) -> Result<(Lsn, String), String> {
    let text = std::str::from_utf8(v).map_err(|_| "The start WAL location is not ASCII.".to_string())?;
    let (lsn, rest) = text
        .split_once(" (file ")
        .ok_or("expected \"<LSN> (file <WAL file>)\".")?;
    let file = rest.strip_suffix(')').ok_or("expected \"<LSN> (file <WAL file>)\".")?;
    if file.len() != 24 || !file.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
        return Err(format!("\"{file}\" is not a WAL file name."));
    }
    Ok((parse_lsn(lsn.as_bytes())?, file.to_string()))
}

/// The label a void hands to the server's stop in place of `label` (whose
/// text is `text`): its start one byte on, and its LABEL marked, so that
/// the end-of-backup record the stop writes names no backup's start and
/// completes no copy, and its history file says what it was. `None` when
/// `text` has no START WAL LOCATION or LABEL line to rewrite.
pub fn voiding(label: &BackupLabel, text: &[u8]) -> Option<(BackupLabel, Vec<u8>)> {
    let start_lsn = label.start_lsn + 1;
    let mut name = b"voided: ".to_vec();
    name.extend_from_slice(&label.label);
    name.truncate(MAX_LABEL_BYTES);
    let mut out = Vec::with_capacity(text.len() + 16);
    let (mut saw_start, mut saw_label) = (false, false);
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"START WAL LOCATION: ") {
            out.extend_from_slice(
                format!(
                    "START WAL LOCATION: {} (file {})\n",
                    format_lsn(start_lsn),
                    label.start_wal_file
                )
                .as_bytes(),
            );
            saw_start = true;
        } else if line.starts_with(b"LABEL: ") {
            out.extend_from_slice(b"LABEL: ");
            out.extend_from_slice(&name);
            out.push(b'\n');
            saw_label = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    (saw_start && saw_label).then(|| {
        (
            BackupLabel {
                start_lsn,
                label: name,
                ..label.clone()
            },
            out,
        )
    })
}

/// "%X/%X" as the server prints an LSN.
pub fn parse_lsn(v: &[u8]) -> Result<Lsn, String> {
    let bad = || format!("\"{}\" is not a WAL location.", String::from_utf8_lossy(v));
    let text = std::str::from_utf8(v).map_err(|_| bad())?;
    let (hi, lo) = text.split_once('/').ok_or_else(bad)?;
    let half = |h: &str| {
        if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            None
        } else {
            u32::from_str_radix(h, 16).ok()
        }
    };
    match (half(hi), half(lo)) {
        (Some(hi), Some(lo)) => Ok((u64::from(hi) << 32) | u64::from(lo)),
        _ => Err(bad()),
    }
}

/// Formats an LSN the way the server does ("%X/%X").
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

fn parse_decimal_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// "2026-11-25 03:05:06 UTC"
pub fn parse_start_time(v: &[u8]) -> Result<StartTime, String> {
    let bad = || format!("\"{}\" is not a start time.", String::from_utf8_lossy(v));
    let text = std::str::from_utf8(v).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ' ');
    let (date, time, zone) = match (parts.next(), parts.next(), parts.next()) {
        (Some(d), Some(t), Some(z)) => (d, t, z),
        _ => return Err(bad()),
    };
    let field = |s: &str, width: usize| {
        if s.len() == width && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u32>().ok()
        } else {
            None
        }
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return Err(bad());
    }
    let (Some(year), Some(month), Some(day)) = (field(d[0], 4), field(d[1], 2), field(d[2], 2)) else {
        return Err(bad());
    };
    let (Some(hour), Some(minute), Some(second)) = (field(t[0], 2), field(t[1], 2), field(t[2], 2)) else {
        return Err(bad());
    };
    // The server formats into a 128-byte buffer; what it wrote is valid.
    let valid_zone = !zone.is_empty() && zone.len() <= 128 && zone.bytes().all(|b| b.is_ascii_graphic());
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year as i32, month)
        || hour > 23
        || minute > 59
        || second > 60
        || !valid_zone
    {
        return Err(bad());
    }
    Ok(StartTime {
        year: year as i32,
        month,
        day,
        hour,
        minute,
        second,
        zone: zone.to_string(),
    })
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl StartTime {
    /// Seconds since the Unix epoch of this wall-clock time read as UTC;
    /// the caller adds the zone's offset, which only the server knows.
    pub fn local_seconds(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second)
    }
}

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
pub const POSTGRES_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

/// A TimestampTz from Unix seconds.
pub fn timestamptz_from_unix(seconds: i64) -> i64 {
    (seconds - POSTGRES_EPOCH_UNIX_SECONDS) * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_TEXT: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
CHECKPOINT LOCATION: 0/2000060\n\
BACKUP METHOD: streamed\n\
BACKUP FROM: primary\n\
START TIME: 2026-11-25 03:05:06 UTC\n\
LABEL: nightly snapshot\n\
START TIMELINE: 1\n";

    /// 2026-11-25 03:05:06 UTC.
    const EPOCH: i64 = 1_795_575_906;

    fn ours() -> Vec<u8> {
        format!(
            "{}START EPOCH: {EPOCH}\n",
            SERVER_TEXT.replace("streamed", "pg_start_backup")
        )
        .into_bytes()
    }

    fn err_of(content: &str) -> LabelError {
        parse(content.as_bytes()).expect_err("should be rejected")
    }

    #[test]
    fn converts_server_text_and_keeps_every_other_byte() {
        let (text, label) = exclusive_label_from_server(SERVER_TEXT.as_bytes(), EPOCH, Method::Exclusive).unwrap();
        assert_eq!(text, ours());
        assert_eq!(label.start_lsn, 0x2000028);
        assert_eq!(label.checkpoint_lsn, 0x2000060);
        assert_eq!(label.start_wal_file, "000000010000000000000002");
        assert_eq!(label.label, b"nightly snapshot");
        assert_eq!(label.start_timeline, 1);
        assert_eq!(label.start_time.zone, "UTC");
        assert_eq!((label.start_time.hour, label.start_time.second), (3, 6));
        assert_eq!(label.start_epoch, Some(EPOCH));
        assert_eq!(label.start_time.local_seconds(), EPOCH);
        assert_eq!(label.start_time.to_string(), "2026-11-25 03:05:06 UTC");
    }

    #[test]
    fn labels_are_sorted_into_ours_another_writers_and_damaged() {
        assert!(matches!(kind(&ours()), Kind::Ours(_)));
        // pg_basebackup's and pg_backup_stop()'s, PostgreSQL 17's
        // incremental one, pg_rewind's (five lines).
        assert_eq!(kind(SERVER_TEXT.as_bytes()), Kind::Other);
        let incremental = format!("{SERVER_TEXT}INCREMENTAL FROM LSN: 0/1000028\nINCREMENTAL FROM TLI: 1\n");
        assert_eq!(kind(incremental.as_bytes()), Kind::Other);
        let rewind: String = SERVER_TEXT.lines().take(5).map(|l| format!("{l}\n")).collect();
        assert_eq!(kind(rewind.replace("streamed", "pg_rewind").as_bytes()), Kind::Other);
        let o = ours();
        for damaged in [&b""[..], &o[..o.len() / 2], &o[..o.len() - 1], b"garbage\n"] {
            assert!(
                matches!(kind(damaged), Kind::Damaged(_)),
                "{}",
                String::from_utf8_lossy(damaged)
            );
        }
        let mut padded = o.clone();
        padded.resize(MAX_FILE_BYTES + 1, b'\n');
        assert!(matches!(kind(&padded), Kind::Damaged(_)));
        // Ours with a line appended or a byte changed: damaged, not another
        // writer's.
        let mut appended = o.clone();
        appended.push(b'\n');
        assert!(matches!(kind(&appended), Kind::Damaged(_)));
        let changed = String::from_utf8(o.clone())
            .unwrap()
            .replace("pg_start_backup", "pg_start_backuP");
        assert!(matches!(kind(changed.as_bytes()), Kind::Damaged(_)));
    }

    #[test]
    fn a_void_names_no_backups_start() {
        let label = parse(&ours()).unwrap();
        let (v, text) = voiding(&label, &ours()).unwrap();
        assert_eq!(v.start_lsn, label.start_lsn + 1);
        assert_eq!(v.label, b"voided: nightly snapshot");
        let again = parse(&text).unwrap();
        assert_eq!((again.start_lsn, again.label.clone()), (v.start_lsn, v.label.clone()));
        assert_eq!(again.start_wal_file, label.start_wal_file);
        assert_eq!(voiding(&label, b"nothing\n"), None);
    }

    #[test]
    fn label_without_start_epoch_is_still_read() {
        let text = SERVER_TEXT.replace("streamed", "pg_start_backup");
        let label = parse(text.as_bytes()).unwrap();
        assert_eq!(label.start_epoch, None);
    }

    #[test]
    fn any_zone_abbreviation_the_server_writes_is_read() {
        let long = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for zone in [long, "-03", "+0530", "<+03>"] {
            let server = SERVER_TEXT.replace(" UTC\n", &format!(" {zone}\n"));
            let (_, label) = exclusive_label_from_server(server.as_bytes(), EPOCH, Method::Exclusive).unwrap();
            assert_eq!(label.start_time.zone, zone);
        }
        let too_long = SERVER_TEXT.replace(" UTC\n", &format!(" {}\n", "Z".repeat(129)));
        assert!(exclusive_label_from_server(too_long.as_bytes(), EPOCH, Method::Exclusive).is_err());
    }

    #[test]
    fn server_text_without_method_line_is_refused() {
        let text = SERVER_TEXT.replace("BACKUP METHOD: streamed\n", "");
        assert!(exclusive_label_from_server(text.as_bytes(), EPOCH, Method::Exclusive).is_err());
    }

    #[test]
    fn label_keeps_spaces_quotes_and_multibyte_text() {
        let label = "it's a \"test\"  with  spaces — ümlaut 日本語 ";
        let text = String::from_utf8(ours()).unwrap().replace("nightly snapshot", label);
        assert_eq!(parse(text.as_bytes()).unwrap().label, label.as_bytes());
    }

    #[test]
    fn empty_label_is_allowed() {
        let text = String::from_utf8(ours())
            .unwrap()
            .replace("LABEL: nightly snapshot", "LABEL: ");
        assert_eq!(parse(text.as_bytes()).unwrap().label, b"");
    }

    #[test]
    fn non_utf8_label_bytes_are_kept() {
        let mut text = ours();
        let at = find(&text, b"nightly").unwrap();
        text[at] = 0xE9; // LATIN1 e-acute
        assert_eq!(parse(&text).unwrap().label[0], 0xE9);
    }

    #[test]
    fn every_missing_line_is_named() {
        for key in [
            "START WAL LOCATION",
            "CHECKPOINT LOCATION",
            "BACKUP METHOD",
            "BACKUP FROM",
            "START TIME",
            "LABEL",
            "START TIMELINE",
        ] {
            let text: String = String::from_utf8(ours())
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with(&format!("{key}:")))
                .map(|l| format!("{l}\n"))
                .collect();
            let e = err_of(&text);
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn truncated_file_is_rejected() {
        let text = String::from_utf8(ours()).unwrap();
        // Without its last line the label reads as one written before
        // START EPOCH existed: complete in itself, with START TIME read in
        // the current log_timezone. Every other cut is refused.
        let server_only = text.find("START EPOCH").unwrap();
        for cut in 1..text.len() {
            if cut == server_only {
                assert_eq!(parse(&text.as_bytes()[..cut]).unwrap().start_epoch, None);
            } else {
                assert!(parse(&text.as_bytes()[..cut]).is_err(), "cut at {cut} accepted");
            }
        }
        assert!(err_of("").to_string().contains("empty"));
        assert!(err_of(&text[..text.len() - 1]).to_string().contains("newline"));
    }

    #[test]
    fn streamed_label_is_not_ours() {
        let e = err_of(SERVER_TEXT);
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("streamed"));
    }

    #[test]
    fn streamed_label_with_start_epoch_is_ours() {
        let (text, label) = exclusive_label_from_server(SERVER_TEXT.as_bytes(), EPOCH, Method::Streamed).unwrap();
        assert_eq!(text, format!("{SERVER_TEXT}START EPOCH: {EPOCH}\n").into_bytes());
        assert_eq!(label.method, Method::Streamed);
        assert_eq!(parse(&ours()).unwrap().method, Method::Exclusive);
    }

    #[test]
    fn standby_label_is_refused() {
        let text = String::from_utf8(ours())
            .unwrap()
            .replace("FROM: primary", "FROM: standby");
        assert_eq!(err_of(&text).line, 4);
    }

    #[test]
    fn extra_and_reordered_lines_are_refused() {
        let text = String::from_utf8(ours()).unwrap();
        assert_eq!(err_of(&format!("{text}EXTRA: 1\n")).line, 9);
        assert_eq!(err_of(&format!("{text}\n")).line, 9);
        let server_only = SERVER_TEXT.replace("streamed", "pg_start_backup");
        assert_eq!(err_of(&format!("{server_only}EXTRA: 1\n")).line, 8);
        for bad in ["", "-1", "12x", "1234567890123"] {
            assert_eq!(err_of(&format!("{server_only}START EPOCH: {bad}\n")).line, 8, "{bad:?}");
        }
        let swapped = text
            .replace("BACKUP FROM: primary\nSTART TIME", "START TIME")
            .replace("LABEL:", "BACKUP FROM: primary\nLABEL:");
        assert!(parse(swapped.as_bytes()).is_err());
    }

    #[test]
    fn bad_locations_are_refused() {
        let text = String::from_utf8(ours()).unwrap();
        for (from, to) in [
            ("0/2000028 (file", "0/20000G8 (file"),
            ("0/2000028 (file", "02000028 (file"),
            ("0/2000028 (file", "123456789/0 (file"),
            ("(file 000000010000000000000002)", "(file 00000001000000000000002)"),
            ("(file 000000010000000000000002)", "(file 00000001000000000000000g)"),
            ("(file 000000010000000000000002)", "(file 000000010000000000000002"),
            ("CHECKPOINT LOCATION: 0/2000060", "CHECKPOINT LOCATION: 0/2000000"),
            ("CHECKPOINT LOCATION: 0/2000060", "CHECKPOINT LOCATION: /"),
            ("START TIMELINE: 1", "START TIMELINE: 2"),
            ("START TIMELINE: 1", "START TIMELINE: 0"),
            ("START TIMELINE: 1", "START TIMELINE: -1"),
            ("START TIMELINE: 1", "START TIMELINE: 99999999999"),
        ] {
            let bad = text.replace(from, to);
            assert_ne!(bad, text);
            assert!(parse(bad.as_bytes()).is_err(), "accepted {to}");
        }
    }

    #[test]
    fn bad_start_times_are_refused() {
        let text = String::from_utf8(ours()).unwrap();
        for t in [
            "2026-11-25 03:05:06",
            "2026-11-25 03:05:06 ",
            "2026-13-25 03:05:06 UTC",
            "2026-02-29 03:05:06 UTC",
            "2026-11-25 24:05:06 UTC",
            "2026-11-25 3:05:06 UTC",
            "26-11-25 03:05:06 UTC",
            "2026-11-25T03:05:06 UTC",
            "2026-11-25 03:05:06 U C",
            "",
        ] {
            let bad = text.replace("2026-11-25 03:05:06 UTC", t);
            assert!(parse(bad.as_bytes()).is_err(), "accepted {t:?}");
        }
        for t in [
            "2024-02-29 23:59:60 CEST",
            "2026-11-25 03:05:06 +0530",
            "2026-11-25 03:05:06 -03",
        ] {
            let good = text.replace("2026-11-25 03:05:06 UTC", t);
            assert!(parse(good.as_bytes()).is_ok(), "refused {t:?}");
        }
    }

    #[test]
    fn huge_file_is_refused() {
        let text = String::from_utf8(ours())
            .unwrap()
            .replace("nightly", &"x".repeat(MAX_FILE_BYTES));
        assert!(err_of(&text).reason.contains("bytes long"));
    }

    #[test]
    fn label_text_checks() {
        assert_eq!(check_label_text(b"ok label"), Ok(()));
        assert_eq!(check_label_text(&[b'a'; MAX_LABEL_BYTES]), Ok(()));
        assert_eq!(
            check_label_text(&[b'a'; MAX_LABEL_BYTES + 1]),
            Err(BadLabelText::TooLong { bytes: 1024 })
        );
        assert_eq!(check_label_text(b"two\nlines"), Err(BadLabelText::HasLineBreak));
        assert_eq!(check_label_text(b"cr\r"), Err(BadLabelText::HasLineBreak));
        // Multibyte text is counted in bytes, as the server counts it.
        assert_eq!(
            check_label_text("é".repeat(512).as_bytes()),
            Err(BadLabelText::TooLong { bytes: 1024 })
        );
    }

    #[test]
    fn lsn_round_trip() {
        for lsn in [0u64, 1, 0x2000028, 0xFFFF_FFFF, 0x1_0000_0000, u64::MAX] {
            assert_eq!(parse_lsn(format_lsn(lsn).as_bytes()), Ok(lsn));
        }
        assert!(parse_lsn(b"0/").is_err());
        assert!(parse_lsn(b"/0").is_err());
        assert!(parse_lsn(b"0/+1").is_err());
    }

    /// PostgreSQL 19 prints the low half with eight digits ("%X/%08X").
    #[test]
    fn zero_padded_lsns_of_19_are_read() {
        assert_eq!(parse_lsn(b"0/0A000028"), Ok(0x0A00_0028));
        assert_eq!(parse_lsn(b"1/00000000"), Ok(0x1_0000_0000));
        assert!(parse_lsn(b"0/000000028").is_err());
        let text = SERVER_TEXT
            .replace("0/2000028", "0/02000028")
            .replace("0/2000060", "0/02000060");
        let (ours, parsed) = exclusive_label_from_server(text.as_bytes(), EPOCH, Method::Exclusive).unwrap();
        assert_eq!(parsed.start_lsn, 0x0200_0028);
        assert_eq!(parsed.checkpoint_lsn, 0x0200_0060);
        assert_eq!(parse(&ours), Ok(parsed));
    }

    #[test]
    fn local_seconds_match_known_instants() {
        let t = |y, mo, d, h, mi, s| StartTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            zone: "UTC".into(),
        };
        assert_eq!(t(1970, 1, 1, 0, 0, 0).local_seconds(), 0);
        assert_eq!(t(2000, 1, 1, 0, 0, 0).local_seconds(), POSTGRES_EPOCH_UNIX_SECONDS);
        assert_eq!(t(2024, 2, 29, 12, 0, 0).local_seconds(), 1_709_208_000);
        assert_eq!(t(2026, 11, 25, 3, 5, 6).local_seconds(), 1_795_575_906);
        assert_eq!(timestamptz_from_unix(POSTGRES_EPOCH_UNIX_SECONDS), 0);
    }
}
