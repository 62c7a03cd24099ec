//! What pg_start_backup records about the label it publishes, and what
//! became of the backup a record names: pure Rust, no server. The
//! postmaster's verdict on a backup_label it finds is in verdict.rs.
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

/// The identity of a file, as far as telling it from a copy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// Birth time (seconds, nanoseconds), when the file system records it.
    pub birth: Option<(i64, u32)>,
}

impl FileId {
    /// Whether `self` and `other` are one file: `None` when only birth
    /// times could tell and one of them is unknown. The device number is
    /// left out: it can change across a reboot (device-mapper, NVMe
    /// enumeration), and a block-level image keeps inode numbers and birth
    /// times on another device.
    pub fn same_file(self, other: FileId) -> Option<bool> {
        if self.ino != other.ino {
            return Some(false);
        }
        match (self.birth, other.birth) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        }
    }

    fn to_text(self) -> String {
        let birth = match self.birth {
            Some((s, ns)) => format!("{s}.{ns:09}"),
            None => "unknown".to_string(),
        };
        format!("device {} inode {} born {birth}", self.dev, self.ino)
    }

    fn from_text(text: &str) -> Option<FileId> {
        match text.split(' ').collect::<Vec<_>>().as_slice() {
            ["device", dev, "inode", ino, "born", born] => Some(FileId {
                dev: dev.parse().ok()?,
                ino: ino.parse().ok()?,
                birth: parse_birth(born)?,
            }),
            _ => None,
        }
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

/// What decides a running record's [`Fate`].
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// backup_label's content, when an exclusive backup is running.
    pub running_label: Option<&'a [u8]>,
    pub in_recovery: bool,
    /// backup_label.old's content, when it was renamed (its ctime), and
    /// its identity.
    pub old_label: Option<(&'a [u8], Option<UnixMicros>, Option<FileId>)>,
    /// The timeline the server writes WAL on (not in recovery).
    pub timeline: Option<u32>,
}

pub fn fate(record: &Record, facts: &Facts) -> Fate {
    if facts.running_label == Some(record.label.as_slice()) {
        return Fate::Current;
    }
    if facts.in_recovery {
        return Fate::Copy;
    }
    // A restored copy ends its recovery on a new timeline; the primary's
    // own restart does not change it.
    let started_on = label::parse(&record.label).ok().map(|l| l.start_timeline);
    if started_on.is_some() && facts.timeline.is_some() && started_on != facts.timeline {
        return Fate::Copy;
    }
    let Some((old, at, id)) = facts.old_label else {
        return Fate::Vanished;
    };
    if old == record.label.as_slice() {
        // A rename keeps the file: the same content in another file is a
        // copy's label, renamed by the copy's own recovery.
        let other_file = id.is_some_and(|id| id.same_file(record.label_file) == Some(false));
        return if other_file {
            Fate::Copy
        } else {
            Fate::RenamedByRestart { at }
        };
    }
    // Another label. Renamed before the record's backup started, it is
    // an old leftover (pg_basebackup's label of the standby this primary
    // once was, say) and says nothing. An older backup of this server's
    // leaves the record's backup to have vanished too. Renamed since, a
    // label of pg_basebackup's, pg_rewind's or a later backup's means this
    // is a copy that started from it.
    let parsed = label::parse(&record.label).ok();
    let started = parsed.as_ref().and_then(|r| r.start_epoch).map(|s| s * 1_000_000);
    if matches!((at, started), (Some(at), Some(started)) if at < started) {
        return Fate::Vanished;
    }
    let older = match (label::parse(old), parsed) {
        (Ok(o), Some(r)) => o.start_lsn < r.start_lsn,
        _ => false,
    };
    if older {
        Fate::Vanished
    } else {
        Fate::Copy
    }
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

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        let mut line = |key: &str, value: &str| {
            out.extend_from_slice(format!("{key}: {value}\n").as_bytes());
        };
        line("label file", &self.label_file.to_text());
        if let Some(id) = self.control_file {
            line("control file", &id.to_text());
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

        let label_file = FileId::from_text(need("label file")?).ok_or("its label file line is not understood")?;
        let control_file = get("control file")
            .map(|v| FileId::from_text(v).ok_or("its control file line is not understood"))
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
    fn files_are_the_same_only_when_it_is_certain() {
        assert_eq!(LIVE.same_file(LIVE), Some(true));
        assert_eq!(LIVE.same_file(FileId { dev: 1, ..LIVE }), Some(true));
        assert_eq!(LIVE.same_file(FileId { ino: 9, ..LIVE }), Some(false));
        assert_eq!(
            LIVE.same_file(FileId {
                birth: Some((1, 2)),
                ..LIVE
            }),
            Some(false)
        );
        let unknown = FileId { birth: None, ..LIVE };
        assert_eq!(LIVE.same_file(unknown), None);
        assert_eq!(unknown.same_file(unknown), None);
        assert_eq!(unknown.same_file(FileId { ino: 9, ..unknown }), Some(false));
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

    fn facts<'a>() -> Facts<'a> {
        Facts {
            running_label: None,
            in_recovery: false,
            old_label: None,
            timeline: Some(1),
        }
    }

    #[test]
    fn what_became_of_a_running_backup() {
        let r = running(LIVE);
        let label = LABEL.as_bytes();
        let other = LABEL.replace("nightly", "weekly");
        let f = |facts: Facts| fate(&r, &facts);
        let base = facts();
        assert_eq!(
            f(Facts {
                running_label: Some(label),
                ..base
            }),
            Fate::Current
        );
        // Another backup runs now: this one ended somehow.
        assert_eq!(
            f(Facts {
                running_label: Some(other.as_bytes()),
                ..base
            }),
            Fate::Vanished
        );
        assert_eq!(f(base), Fate::Vanished);
        assert_eq!(
            f(Facts {
                old_label: Some((label, Some(9), Some(LIVE))),
                ..base
            }),
            Fate::RenamedByRestart { at: Some(9) }
        );
        assert_eq!(
            f(Facts {
                old_label: Some((label, None, None)),
                ..base
            }),
            Fate::RenamedByRestart { at: None }
        );
        // The same content in another file: a copy restored without a
        // signal file, whose crash recovery renamed its own label.
        let copied = FileId { ino: 9, ..LIVE };
        assert_eq!(
            f(Facts {
                old_label: Some((label, Some(9), Some(copied))),
                ..base
            }),
            Fate::Copy
        );
        let reborn = FileId {
            birth: Some((1, 2)),
            ..LIVE
        };
        assert_eq!(
            f(Facts {
                old_label: Some((label, Some(9), Some(reborn))),
                ..base
            }),
            Fate::Copy
        );
        // An older label of this server's renamed at an earlier start.
        let older = LABEL.replace("0/2000028", "0/1000028");
        assert_eq!(
            f(Facts {
                old_label: Some((older.as_bytes(), None, None)),
                ..base
            }),
            Fate::Vanished
        );
        // pg_basebackup's or pg_rewind's label, or a later one: a copy.
        let later = LABEL.replace("0/2000028", "0/3000028");
        assert_eq!(
            f(Facts {
                old_label: Some((later.as_bytes(), None, None)),
                ..base
            }),
            Fate::Copy
        );
        let basebackup = LABEL.replace("START EPOCH: 1795575906\n", "");
        assert_eq!(
            f(Facts {
                old_label: Some((basebackup.as_bytes(), None, None)),
                ..base
            }),
            Fate::Copy
        );
        // ... unless it was renamed before this backup started (the record's
        // START EPOCH is 1795575906): a leftover of the server's own past.
        let before = Some(1_795_575_905_000_000);
        let since = Some(1_795_575_907_000_000);
        assert_eq!(
            f(Facts {
                old_label: Some((basebackup.as_bytes(), before, None)),
                ..base
            }),
            Fate::Vanished
        );
        assert_eq!(
            f(Facts {
                old_label: Some((basebackup.as_bytes(), since, None)),
                ..base
            }),
            Fate::Copy
        );
        assert_eq!(
            f(Facts {
                old_label: Some((later.as_bytes(), before, None)),
                ..base
            }),
            Fate::Vanished
        );
        // A standby, a restore in progress, or a restore promoted onto a
        // new timeline: the record came with the copy.
        assert_eq!(
            f(Facts {
                in_recovery: true,
                ..base
            }),
            Fate::Copy
        );
        assert_eq!(
            f(Facts {
                timeline: Some(2),
                old_label: Some((label, None, Some(LIVE))),
                ..base
            }),
            Fate::Copy
        );
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
