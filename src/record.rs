//! What pg_start_backup records about the label it publishes, and how the
//! record moves on as the backup ends: pure Rust, no server. What became of
//! a backup a record names, and the postmaster's verdict on a backup_label
//! it finds, are in verdict.rs.
//!
//! A file-level copy of the data directory holds the same backup_label and
//! the same pg_control as the primary it was taken from, so their contents
//! cannot tell the live primary from a restored copy. What a copy cannot
//! carry is the label file's own identity: its inode number together with
//! its birth time. pg_start_backup writes that identity, and the label's
//! exact content, into `pg_exclusive_backup.state` before it links the
//! label into place. The record itself travels with a copy, but it names
//! the primary's file, never the copy's. It also names the primary's
//! `global/pg_control`, which the server and its tools only ever rewrite in
//! place: a label that is a new file beside the primary's own pg_control
//! was put back into the primary's own data directory, not restored.
//!
//! The device number is recorded but not compared: it can change across a
//! reboot (device-mapper, NVMe enumeration). A block-level image of the
//! data directory (a snapshot, rolled back or cloned) keeps inode numbers
//! and birth times, so it is taken for the primary after a crash. That is
//! right for one atomic snapshot of the one file system everything lives
//! on: crash recovery is what such a crash image needs. It is wrong for
//! snapshots of several file systems taken one after another, which only
//! recovery from backup_label makes consistent; so where the data
//! directory spans file systems, the first start refuses to decide.

use crate::files::FileId;
use crate::label::{self, Lsn};

/// The record's name, beside backup_label.
pub const STATE_FILE: &str = "pg_exclusive_backup.state";

/// Version 2 added the session that started the backup, the stop, and the
/// history; version 3 the identity of pg_control. Versions 1 and 2 are
/// still read.
const HEADER: &[u8] = b"pg_exclusive_backup state 3\n";
const OLDER_HEADERS: [&[u8]; 2] = [b"pg_exclusive_backup state 2\n", b"pg_exclusive_backup state 1\n"];
const LABEL_FOLLOWS: &[u8] = b"label file follows:\n";

/// Bigger than any record: a label is at most 8 kB.
pub const MAX_STATE_BYTES: usize = 16 * 1024;

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

/// Microseconds since the Unix epoch.
pub type UnixMicros = i64;

/// How the backup the record describes ended, as far as this extension
/// knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Published by pg_start_backup; nothing has ended it that wrote here.
    Running,
    /// The postmaster found its label at a start or a restart, or at its
    /// exit, and renamed it.
    EndedByRestart { at: UnixMicros },
    /// pg_stop_backup ended it: took its label away at `at`, and then had
    /// the server end the backup at `stop_lsn` (`None` until it has).
    Stopped {
        at: UnixMicros,
        stop_lsn: Option<Lsn>,
        by: String,
    },
}

/// Who started the backup, from where: what the caller's session knew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's login role (session_user).
    pub started_by: String,
    /// The client's address, "local" over a Unix socket, `None` for a
    /// process without a client connection.
    pub started_from: Option<String>,
    pub application_name: String,
    pub pid: i32,
    pub database: String,
    pub fast: bool,
}

/// How an ended backup ended, in the words of the status view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Stopped,
    InterruptedByRestart,
    /// Its label went away without pg_stop_backup and without a restart
    /// this extension saw (removed by hand, say).
    Abandoned,
}

impl How {
    pub fn name(self) -> &'static str {
        match self {
            How::Stopped => "stopped",
            How::InterruptedByRestart => "interrupted by a server restart",
            How::Abandoned => "abandoned",
        }
    }

    fn from_name(name: &str) -> Option<How> {
        [How::Stopped, How::InterruptedByRestart, How::Abandoned]
            .into_iter()
            .find(|h| h.name() == name)
    }
}

/// The last backup that ended, as far as the status view tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Its LABEL text.
    pub label: Vec<u8>,
    pub how: How,
    pub stop_lsn: Option<Lsn>,
    pub end_time: Option<UnixMicros>,
    pub stopped_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub label_file: FileId,
    /// global/pg_control's identity when the backup started; `None` in
    /// records of versions 1 and 2.
    pub control_file: Option<FileId>,
    pub outcome: Outcome,
    /// `None` in a version 1 record, and in one the postmaster wrote
    /// without a record to take it from.
    pub session: Option<Session>,
    /// The backup that ended before this one started.
    pub previous: Option<Ended>,
    /// When the last backup that pg_stop_backup ended was stopped,
    /// whichever backup that was.
    pub last_completed: Option<UnixMicros>,
    /// backup_label's content, byte for byte, as published.
    pub label: Vec<u8>,
}

/// What became of the backup a record says is running, as the server sees
/// it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It is the backup running now.
    Current,
    /// The record came with a copy of the data directory (a standby, a
    /// restored backup): the backup it names ran on another server.
    Copy,
    /// A restart of this server renamed its label to backup_label.old, at
    /// about `at` when known.
    RenamedByRestart { at: Option<UnixMicros> },
    /// Its label is gone, and nothing says why.
    Vanished,
}

impl Record {
    /// The last backup that ended and the last stop, given what became of
    /// a backup this record says is running.
    pub fn history(&self, fate: Fate) -> (Option<Ended>, Option<UnixMicros>) {
        let label = label::parse(&self.label).map(|l| l.label).unwrap_or_default();
        let ended = |how, stop_lsn, end_time, stopped_by| {
            Some(Ended {
                label: label.clone(),
                how,
                stop_lsn,
                end_time,
                stopped_by,
            })
        };
        match (&self.outcome, fate) {
            // Completed only once the server has ended it: until the stop
            // LSN is recorded the stop may not have got that far.
            (Outcome::Stopped { at, stop_lsn, by }, _) => (
                ended(How::Stopped, *stop_lsn, Some(*at), Some(by.clone())),
                stop_lsn.map(|_| *at).or(self.last_completed),
            ),
            (Outcome::EndedByRestart { at }, _) => (
                ended(How::InterruptedByRestart, None, Some(*at), None),
                self.last_completed,
            ),
            (Outcome::Running, Fate::Current | Fate::Copy) => (self.previous.clone(), self.last_completed),
            (Outcome::Running, Fate::RenamedByRestart { at }) => {
                (ended(How::InterruptedByRestart, None, at, None), self.last_completed)
            }
            (Outcome::Running, Fate::Vanished) => (ended(How::Abandoned, None, None, None), self.last_completed),
        }
    }

    /// The record of a backup that just started: its label file (before it
    /// is linked into place: a link keeps the identity), pg_control,
    /// whoever started it, and the label. Its history is filled in when it
    /// is published.
    pub fn running(label_file: FileId, control_file: FileId, session: Session, label: Vec<u8>) -> Record {
        Record {
            label_file,
            control_file: Some(control_file),
            outcome: Outcome::Running,
            session: Some(session),
            previous: None,
            last_completed: None,
            label,
        }
    }

    /// The record once `by` has taken away, at `at`, the label `label`
    /// (whose file has identity `label_file` now): `old`, when it describes
    /// that running backup; otherwise (a label without its record, written
    /// by version 1.0) what the label says, with the history `old` had.
    pub fn stopped(
        old: Option<Record>,
        label: &[u8],
        label_file: FileId,
        control_file: Option<FileId>,
        by: &str,
        at: UnixMicros,
    ) -> Record {
        let outcome = Outcome::Stopped {
            at,
            stop_lsn: None,
            by: by.to_string(),
        };
        match old {
            Some(r) if r.outcome == Outcome::Running && r.label == label => Record { outcome, ..r },
            other => Record {
                label_file,
                control_file,
                outcome,
                session: None,
                previous: None,
                last_completed: other.and_then(|r| r.history(Fate::Copy).1),
                label: label.to_vec(),
            },
        }
    }

    /// The record once the server has ended, at LSN `stop_lsn`, the backup
    /// whose label is `label` and which `by` stopped: that makes the stop a
    /// completed one, in the record's own backup (whose stop, or a stop
    /// that could not write the record, it completes) or in the history of
    /// a start that came in between. `None` when there is nothing to
    /// complete.
    pub fn with_stop_lsn(mut self, label: &[u8], stop_lsn: Lsn, by: &str, now: UnixMicros) -> Option<Record> {
        if self.label == label {
            match self.outcome {
                Outcome::Stopped { stop_lsn: None, .. } | Outcome::Running => {
                    self.outcome = Outcome::Stopped {
                        at: now,
                        stop_lsn: Some(stop_lsn),
                        by: by.to_string(),
                    };
                    Some(self)
                }
                _ => None,
            }
        } else {
            let text = label::parse(label).map(|l| l.label).unwrap_or_default();
            match &mut self.previous {
                Some(p) if p.how == How::Stopped && p.stop_lsn.is_none() && p.label == text => {
                    p.stop_lsn = Some(stop_lsn);
                    p.end_time = Some(now);
                    self.last_completed = Some(now);
                    Some(self)
                }
                _ => None,
            }
        }
    }

    /// The record once a restart of the server ended, at `at`, the backup
    /// whose label is `label` (file identity `label_file`): who started it
    /// and the history come from `kept`, the record that described it, if
    /// any.
    pub fn ended_by_restart(
        kept: Option<&Record>,
        label: &[u8],
        label_file: FileId,
        control_file: Option<FileId>,
        at: UnixMicros,
    ) -> Record {
        let kept = kept.filter(|r| r.label == label);
        Record {
            label_file,
            control_file: kept.and_then(|r| r.control_file).or(control_file),
            outcome: Outcome::EndedByRestart { at },
            session: kept.and_then(|r| r.session.clone()),
            previous: kept.and_then(|r| r.previous.clone()),
            last_completed: kept.and_then(|r| r.last_completed),
            label: label.to_vec(),
        }
    }

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
        ] {
            for (birth, control_file) in [(LIVE.birth, Some(CONTROL)), (None, None), (Some((5, 0)), None)] {
                for (session, previous, last) in [
                    (None, None, None),
                    (Some(session()), Some(previous.clone()), Some(1_795_000_000_000_001)),
                    (
                        Some(Session {
                            started_from: None,
                            application_name: String::new(),
                            ..session()
                        }),
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

    #[test]
    fn a_stop_moves_the_record_on() {
        let mut r = running(LIVE);
        r.session = Some(session());
        let other_file = FileId { ino: 7, ..LIVE };
        // The running backup's own record: kept, but for the outcome.
        let s = Record::stopped(Some(r.clone()), LABEL.as_bytes(), other_file, None, "ops", 5);
        assert_eq!(
            s.outcome,
            Outcome::Stopped {
                at: 5,
                stop_lsn: None,
                by: "ops".into()
            }
        );
        assert_eq!((s.label_file, s.session.clone()), (LIVE, r.session.clone()));
        // Completed by the stop LSN, once.
        let done = s.clone().with_stop_lsn(LABEL.as_bytes(), 0x3000100, "ops", 6).unwrap();
        assert!(matches!(
            done.outcome,
            Outcome::Stopped {
                stop_lsn: Some(0x3000100),
                at: 6,
                ..
            }
        ));
        assert_eq!(done.clone().with_stop_lsn(LABEL.as_bytes(), 1, "ops", 7), None);
        // A label without its record: what the label says.
        let other = LABEL.replace("nightly", "weekly");
        let s = Record::stopped(Some(r.clone()), other.as_bytes(), other_file, Some(LIVE), "ops", 5);
        assert_eq!(
            (s.label_file, s.control_file, s.session),
            (other_file, Some(LIVE), None)
        );
        assert_eq!(s.label, other.as_bytes());
        // A start came in between: the stop LSN completes its history.
        let mut next = running(LIVE);
        next.label = other.clone().into_bytes();
        next.previous = Some(Ended {
            label: b"nightly".to_vec(),
            how: How::Stopped,
            stop_lsn: None,
            end_time: Some(5),
            stopped_by: Some("ops".into()),
        });
        let done = next.with_stop_lsn(LABEL.as_bytes(), 9, "ops", 8).unwrap();
        let p = done.previous.unwrap();
        assert_eq!(
            (p.stop_lsn, p.end_time, done.last_completed),
            (Some(9), Some(8), Some(8))
        );
        // A restart: who started it and the history are kept.
        let e = Record::ended_by_restart(Some(&r), LABEL.as_bytes(), LIVE, None, 11);
        assert_eq!(e.outcome, Outcome::EndedByRestart { at: 11 });
        assert_eq!((e.session, e.control_file), (r.session.clone(), r.control_file));
        let e = Record::ended_by_restart(Some(&r), other.as_bytes(), LIVE, Some(LIVE), 11);
        assert_eq!((e.session, e.control_file), (None, Some(LIVE)));
    }

    #[test]
    fn history_follows_the_outcome() {
        let mut r = running(LIVE);
        r.previous = Some(Ended {
            label: b"before".to_vec(),
            how: How::Stopped,
            stop_lsn: Some(1),
            end_time: Some(2),
            stopped_by: Some("ops".into()),
        });
        r.last_completed = Some(2);
        assert_eq!(r.history(Fate::Current), (r.previous.clone(), Some(2)));
        assert_eq!(r.history(Fate::Copy), (r.previous.clone(), Some(2)));
        let (ended, last) = r.history(Fate::Vanished);
        let ended = ended.unwrap();
        assert_eq!(
            (ended.label.as_slice(), ended.how, ended.end_time),
            (&b"nightly"[..], How::Abandoned, None)
        );
        assert_eq!(last, Some(2));
        let (ended, _) = r.history(Fate::RenamedByRestart { at: Some(5) });
        assert_eq!(
            ended.map(|e| (e.how, e.end_time)),
            Some((How::InterruptedByRestart, Some(5)))
        );

        r.outcome = Outcome::Stopped {
            at: 10,
            stop_lsn: Some(11),
            by: "ops".into(),
        };
        // Whatever the files say now, a stopped backup stays stopped.
        let (ended, last) = r.history(Fate::Vanished);
        let ended = ended.unwrap();
        assert_eq!(
            (
                ended.how,
                ended.stop_lsn,
                ended.end_time,
                ended.stopped_by.as_deref(),
                last
            ),
            (How::Stopped, Some(11), Some(10), Some("ops"), Some(10))
        );
        // Stopped, the server's end of the backup not yet recorded: not
        // (yet) a completed backup.
        r.outcome = Outcome::Stopped {
            at: 10,
            stop_lsn: None,
            by: "ops".into(),
        };
        let (ended, last) = r.history(Fate::Vanished);
        assert_eq!(ended.map(|e| (e.how, e.stop_lsn)), Some((How::Stopped, None)));
        assert_eq!(last, Some(2));
        r.outcome = Outcome::EndedByRestart { at: 12 };
        let (ended, last) = r.history(Fate::Current);
        assert_eq!(ended.map(|e| e.how), Some(How::InterruptedByRestart));
        assert_eq!(last, Some(2));
    }
}
