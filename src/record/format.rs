//! The record's text format: a header line naming its version, one
//! `key: value` line per field (values escaped so that none can break a
//! line), then the label, byte for byte. Versions 1 and 2 are still read.

use super::{Ended, How, Outcome, Record, Session, UnixMicros, Voider};
use crate::files::FileId;
use crate::label::{self, Lsn};
use crate::place::Place;

/// Version 2 added the session that started the backup, the stop, and the
/// history; version 3 the identity of pg_control. Versions 1 and 2 are
/// still read.
const HEADER: &[u8] = b"pg_exclusive_backup state 3\n";
const OLDER_HEADERS: [&[u8]; 2] = [b"pg_exclusive_backup state 2\n", b"pg_exclusive_backup state 1\n"];
const LABEL_FOLLOWS: &[u8] = b"label file follows:\n";

/// A file identity as the record writes it.
fn id_text(id: FileId) -> String {
    let birth = match id.birth {
        Some((s, ns)) => format!("{s}.{ns:09}"),
        None => "unknown".to_string(),
    };
    format!("device {} inode {} born {birth}", id.dev, id.ino)
}

/// A file identity as [`id_text`] writes it.
fn id_from_text(text: &str) -> Option<FileId> {
    match text.split(' ').collect::<Vec<_>>().as_slice() {
        ["device", dev, "inode", ino, "born", born] => Some(FileId {
            dev: dev.parse().ok()?,
            ino: ino.parse().ok()?,
            birth: parse_birth(born)?,
        }),
        _ => None,
    }
}

impl Record {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        let mut line = |key: &str, value: &str| {
            out.extend_from_slice(format!("{key}: {value}\n").as_bytes());
        };
        line("label file", &id_text(self.label_file));
        if let Some(id) = self.control_file {
            line("control file", &id_text(id));
        }
        match &self.outcome {
            Outcome::Running => line("outcome", "running"),
            Outcome::EndedByRestart { at } => line("outcome", &format!("ended by a server restart at {}", time(*at))),
            Outcome::Stopped { at, stop_lsn, by } => {
                line("outcome", &format!("stopped at {}", time(*at)));
                if let Some(lsn) = stop_lsn {
                    line("stop lsn", &label::format_lsn(*lsn));
                }
                line("stopped by", &escape(by.as_bytes()));
            }
            Outcome::Cloned { at } => line("outcome", &format!("cloned at {}", time(*at))),
            Outcome::Voided { at, by } => {
                line("outcome", &format!("voided at {}", time(*at)));
                match by {
                    Voider::Limit { seconds } => line("voided by", &format!("limit {seconds}")),
                    Voider::Role(role) => line("voided by", &format!("role {}", escape(role.as_bytes()))),
                }
            }
        }
        if let Some(s) = &self.session {
            line("started by", &escape(s.started_by.as_bytes()));
            if let Some(from) = &s.started_from {
                line("started from", &escape(from.as_bytes()));
            }
            line("application name", &escape(s.application_name.as_bytes()));
            line("start pid", &s.pid.to_string());
            line("database", &escape(s.database.as_bytes()));
            line("fast", if s.fast { "on" } else { "off" });
        }
        if let Some(p) = &self.previous {
            line("previous", p.how.name());
            line("previous label", &escape(&p.label));
            if let Some(lsn) = p.stop_lsn {
                line("previous stop lsn", &label::format_lsn(lsn));
            }
            if let Some(t) = p.end_time {
                line("previous end time", &time(t));
            }
            if let Some(by) = &p.stopped_by {
                line("previous stopped by", &escape(by.as_bytes()));
            }
        }
        if let Some(t) = self.last_completed {
            line("last completed", &time(t));
        }
        if let Some(p) = &self.place {
            line("data directory", &escape(p.data_directory.as_bytes()));
            line("host", &escape(p.host.as_bytes()));
            line("boot id", &escape(p.boot_id.as_bytes()));
            if !p.archiving.is_empty() {
                line("archiving", &escape(p.archiving.as_bytes()));
            }
        }
        out.extend_from_slice(LABEL_FOLLOWS);
        out.extend_from_slice(&self.label);
        out
    }

    pub fn parse(content: &[u8]) -> Result<Record, String> {
        let mut rest = std::iter::once(HEADER)
            .chain(OLDER_HEADERS)
            .find_map(|h| content.strip_prefix(h))
            .ok_or_else(|| "it does not start with the expected header".to_string())?;
        let mut fields: Vec<(&str, &str)> = Vec::new();
        loop {
            if let Some(label) = rest.strip_prefix(LABEL_FOLLOWS) {
                rest = label;
                break;
            }
            let (line, after) = split_line(rest).ok_or("it is truncated")?;
            rest = after;
            let line = std::str::from_utf8(line).map_err(|_| "a line is not text")?;
            let (key, value) = line.split_once(": ").ok_or("a line is not understood")?;
            if !KEYS.contains(&key) {
                return Err(format!("unknown line \"{key}\""));
            }
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(format!("line \"{key}\" appears twice"));
            }
            fields.push((key, value));
        }
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let need = |key: &str| get(key).ok_or(format!("line \"{key}\" is missing"));
        let text = |key: &str| -> Result<Option<String>, String> {
            get(key)
                .map(|v| {
                    unescape(v)
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or(format!("bad value in line \"{key}\""))
                })
                .transpose()
        };
        let lsn = |key: &str| -> Result<Option<Lsn>, String> {
            get(key)
                .map(|v| label::parse_lsn(v.as_bytes()).map_err(|_| format!("bad LSN in line \"{key}\"")))
                .transpose()
        };
        let when = |key: &str| -> Result<Option<UnixMicros>, String> {
            get(key)
                .map(|v| parse_time(v).ok_or(format!("bad time in line \"{key}\"")))
                .transpose()
        };

        let label_file = id_from_text(need("label file")?).ok_or("its label file line is not understood")?;
        let control_file = get("control file")
            .map(|v| id_from_text(v).ok_or("its control file line is not understood"))
            .transpose()?;
        let outcome = need("outcome")?;
        let outcome = if outcome == "running" {
            Outcome::Running
        } else if let Some(at) = outcome.strip_prefix("ended by a server restart at ") {
            Outcome::EndedByRestart {
                at: parse_time(at).ok_or("bad restart time")?,
            }
        } else if let Some(at) = outcome.strip_prefix("stopped at ") {
            Outcome::Stopped {
                at: parse_time(at).ok_or("bad stop time")?,
                stop_lsn: lsn("stop lsn")?,
                by: text("stopped by")?.ok_or("line \"stopped by\" is missing")?,
            }
        } else if let Some(at) = outcome.strip_prefix("voided at ") {
            let by = need("voided by")?;
            Outcome::Voided {
                at: parse_time(at).ok_or("bad void time")?,
                by: if let Some(seconds) = by.strip_prefix("limit ") {
                    Voider::Limit {
                        seconds: seconds.parse().map_err(|_| "bad limit in line \"voided by\"")?,
                    }
                } else if let Some(role) = by.strip_prefix("role ") {
                    Voider::Role(
                        unescape(role)
                            .and_then(|b| String::from_utf8(b).ok())
                            .ok_or("bad role in line \"voided by\"")?,
                    )
                } else {
                    return Err("bad value in line \"voided by\"".into());
                },
            }
        } else if let Some(at) = outcome.strip_prefix("cloned at ") {
            Outcome::Cloned {
                at: parse_time(at).ok_or("bad clone time")?,
            }
        } else {
            return Err("its outcome line is not understood".into());
        };
        let session = match text("started by")? {
            None => None,
            Some(started_by) => Some(Session {
                started_by,
                started_from: text("started from")?,
                application_name: text("application name")?.unwrap_or_default(),
                pid: need("start pid")?.parse().map_err(|_| "bad start pid")?,
                database: text("database")?.ok_or("line \"database\" is missing")?,
                fast: match need("fast")? {
                    "on" => true,
                    "off" => false,
                    _ => return Err("bad value in line \"fast\"".into()),
                },
            }),
        };
        let previous = match get("previous") {
            None => None,
            Some(how) => Some(Ended {
                how: How::from_name(how).ok_or("bad value in line \"previous\"")?,
                label: get("previous label")
                    .and_then(unescape)
                    .ok_or("bad or missing line \"previous label\"")?,
                stop_lsn: lsn("previous stop lsn")?,
                end_time: when("previous end time")?,
                stopped_by: text("previous stopped by")?,
            }),
        };
        let record = Record {
            label_file,
            control_file,
            outcome,
            session,
            previous,
            last_completed: when("last completed")?,
            label: rest.to_vec(),
            place: match text("data directory")? {
                None => None,
                Some(data_directory) => Some(Place {
                    data_directory,
                    host: text("host")?.ok_or("line \"host\" is missing")?,
                    boot_id: text("boot id")?.ok_or("line \"boot id\" is missing")?,
                    archiving: text("archiving")?.unwrap_or_default(),
                }),
            },
        };
        // Only this extension writes the record: a line out of place or out
        // of context means it is not what was written.
        if content.starts_with(HEADER) && record.to_bytes() != content {
            return Err("its lines are not in the order and combination written".into());
        }
        Ok(record)
    }
}

const KEYS: &[&str] = &[
    "label file",
    "control file",
    "outcome",
    "stop lsn",
    "stopped by",
    "voided by",
    "started by",
    "started from",
    "application name",
    "start pid",
    "database",
    "fast",
    "previous",
    "previous label",
    "previous stop lsn",
    "previous end time",
    "previous stopped by",
    "last completed",
    "data directory",
    "host",
    "boot id",
    "archiving",
];

/// One line per value: backslash, newline and carriage return escaped.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(all) => (all, 0),
            Err(e) => (
                std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
                e.error_len().unwrap_or(rest.len() - e.valid_up_to()),
            ),
        };
        for c in valid.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        let bad = &rest[valid.len()..valid.len() + invalid];
        for b in bad {
            out.push_str(&format!("\\x{b:02x}"));
        }
        rest = &rest[valid.len() + invalid..];
    }
    out
}

fn unescape(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next()? {
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Seconds and microseconds: "1795575906.123456".
fn time(t: UnixMicros) -> String {
    format!("{}.{:06}", t.div_euclid(1_000_000), t.rem_euclid(1_000_000))
}

/// A time as [`time`] writes it, or whole seconds (version 1 records).
fn parse_time(t: &str) -> Option<UnixMicros> {
    let (s, us) = match t.split_once('.') {
        Some((s, us)) if us.len() == 6 && us.bytes().all(|b| b.is_ascii_digit()) => (s, us.parse::<i64>().ok()?),
        Some(_) => return None,
        None => (t, 0),
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()?.checked_mul(1_000_000)?.checked_add(us)
}

fn split_line(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = s.iter().position(|&b| b == b'\n')?;
    Some((&s[..at], &s[at + 1..]))
}

/// "unknown" is `Some(None)`; garbage is `None`.
fn parse_birth(t: &str) -> Option<Option<(i64, u32)>> {
    if t == "unknown" {
        return Some(None);
    }
    let (s, ns) = t.split_once('.')?;
    if ns.len() != 9 {
        return None;
    }
    Some(Some((s.parse().ok()?, ns.parse().ok().filter(|&n| n < 1_000_000_000)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
CHECKPOINT LOCATION: 0/2000060\n\
BACKUP METHOD: streamed\n\
BACKUP FROM: primary\n\
START TIME: 2026-11-25 03:05:06 UTC\n\
LABEL: nightly\n\
START TIMELINE: 1\n\
START EPOCH: 1795575906\n";

    const LIVE: FileId = FileId {
        dev: 2049,
        ino: 131_075,
        birth: Some((1_795_575_906, 123_456_789)),
    };

    const CONTROL: FileId = FileId {
        dev: 2049,
        ino: 131_090,
        birth: Some((1_795_000_000, 5)),
    };

    fn running(id: FileId) -> Record {
        Record {
            label_file: id,
            control_file: Some(CONTROL),
            outcome: Outcome::Running,
            session: None,
            previous: None,
            last_completed: None,
            label: LABEL.as_bytes().to_vec(),
            place: None,
        }
    }

    fn session() -> Session {
        Session {
            started_by: "back\\up\nrole".into(),
            started_from: Some("192.0.2.7".into()),
            application_name: "snapshot.sh".into(),
            pid: 4242,
            database: "postgres".into(),
            fast: true,
        }
    }

    #[test]
    fn record_round_trip() {
        let stopped = Outcome::Stopped {
            at: 1_795_576_000_123_456,
            stop_lsn: Some(0x2_0000_0138),
            by: "ops \u{e9}\r".into(),
        };
        let stopping = Outcome::Stopped {
            at: 1,
            stop_lsn: None,
            by: String::new(),
        };
        let previous = Ended {
            label: b"weekly \\ \xff".to_vec(),
            how: How::Abandoned,
            stop_lsn: None,
            end_time: Some(7),
            stopped_by: None,
        };
        for outcome in [
            Outcome::Running,
            Outcome::EndedByRestart {
                at: 1_795_576_000_000_000,
            },
            stopped,
            stopping,
            Outcome::Voided {
                at: 3,
                by: Voider::Limit { seconds: 7200 },
            },
            Outcome::Voided {
                at: 4,
                by: Voider::Role("ops \\ \u{e9}".into()),
            },
            Outcome::Cloned { at: 5 },
        ] {
            for (birth, control_file) in [(LIVE.birth, Some(CONTROL)), (None, None), (Some((5, 0)), None)] {
                for (session, previous, last, place) in [
                    (None, None, None, None),
                    (
                        Some(session()),
                        Some(previous.clone()),
                        Some(1_795_000_000_000_001),
                        Some(Place {
                            data_directory: "/srv/pg \\ data\n".into(),
                            host: "db1".into(),
                            boot_id: "6a1f".into(),
                            archiving: "archive_command 'cp %p /a/%f' (archive_mode = on)".into(),
                        }),
                    ),
                    (
                        Some(Session {
                            started_from: None,
                            application_name: String::new(),
                            ..session()
                        }),
                        None,
                        None,
                        None,
                    ),
                ] {
                    let r = Record {
                        label_file: FileId { birth, ..LIVE },
                        control_file,
                        outcome: outcome.clone(),
                        session,
                        previous,
                        last_completed: last,
                        label: b"any\xffbytes\n\nat all".to_vec(),
                        place,
                    };
                    assert_eq!(Record::parse(&r.to_bytes()), Ok(r));
                }
            }
        }
    }

    #[test]
    fn version_1_records_are_read() {
        let v1 = format!(
            "pg_exclusive_backup state 1\nlabel file: device 2049 inode 131075 born 1795575906.123456789\n\
             outcome: ended by a server restart at 1795576000\nlabel file follows:\n{LABEL}"
        );
        let r = Record::parse(v1.as_bytes()).unwrap();
        assert_eq!(r.label_file, LIVE);
        assert_eq!(
            r.outcome,
            Outcome::EndedByRestart {
                at: 1_795_576_000_000_000
            }
        );
        assert_eq!((&r.session, &r.previous, r.last_completed), (&None, &None, None));
        assert_eq!(r.control_file, None);
        assert_eq!(r.label, LABEL.as_bytes());
        let v2 = v1.replace("state 1", "state 2").replace(
            "outcome: ended by a server restart at 1795576000",
            "outcome: ended by a server restart at 1795576000.000000",
        );
        assert_eq!(Record::parse(v2.as_bytes()), Ok(r));
    }

    #[test]
    fn values_cannot_break_lines() {
        for raw in [&b"a\nlabel file follows:\nb"[..], b"\\n", b"\r\n", b"\xff\xfe", b""] {
            let e = escape(raw);
            assert!(!e.contains('\n') && !e.contains('\r'), "{e}");
            assert_eq!(unescape(&e).as_deref(), Some(raw));
        }
        assert_eq!(unescape("\\q"), None);
        assert_eq!(unescape("\\x4"), None);
        assert_eq!(unescape("tail\\"), None);
    }

    #[test]
    fn bad_records_are_refused() {
        let good = running(LIVE).to_bytes();
        for cut in [0, 10, 30, 60, 90] {
            assert!(Record::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let text = String::from_utf8(good).unwrap();
        for (from, to) in [
            ("inode 131075", "inode x"),
            (".123456789", ".12345"),
            ("outcome: running", "outcome: maybe"),
            ("state 3", "state 4"),
            ("control file: device 2049", "control file: device x"),
            ("outcome: running", "outcome: running\noutcome: running"),
            ("outcome: running", "outcome: stopped at 5"),
            ("outcome: running", "outcome: running\nwhatever: 1"),
            ("outcome: running", "outcome: running\nstart pid: 12"),
        ] {
            assert!(Record::parse(text.replace(from, to).as_bytes()).is_err(), "{to}");
        }
    }
}
