//! What pg_start_backup records about the label it publishes, and the
//! postmaster's verdict on a backup_label it finds: pure Rust, no server.
//!
//! A file-level copy of the data directory holds the same backup_label and
//! the same pg_control as the primary it was taken from, so their contents
//! cannot tell the live primary from a restored copy. What a copy cannot
//! carry is the label file's own identity: its inode number together with
//! its birth time. pg_start_backup writes that identity, and the label's
//! exact content, into `pg_exclusive_backup.state` before it links the
//! label into place. The record itself travels with a copy, but it names
//! the primary's file, never the copy's.
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

use crate::label::{self, BackupLabel};

/// The record's name, beside backup_label.
pub const STATE_FILE: &str = "pg_exclusive_backup.state";

const HEADER: &[u8] = b"pg_exclusive_backup state 1\n";
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

/// How the backup the record describes ended, as far as this extension
/// knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Published by pg_start_backup; nothing has ended it that wrote here.
    Running,
    /// The postmaster found its label at a start or a restart, or at its
    /// exit, and renamed it; `at` is when, in Unix seconds.
    EndedByRestart { at: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub label_file: FileId,
    pub outcome: Outcome,
    /// backup_label's content, byte for byte, as published.
    pub label: Vec<u8>,
}

impl Record {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        let birth = match self.label_file.birth {
            Some((s, ns)) => format!("{s}.{ns:09}"),
            None => "unknown".to_string(),
        };
        out.extend_from_slice(
            format!(
                "label file: device {} inode {} born {birth}\n",
                self.label_file.dev, self.label_file.ino
            )
            .as_bytes(),
        );
        match self.outcome {
            Outcome::Running => out.extend_from_slice(b"outcome: running\n"),
            Outcome::EndedByRestart { at } => {
                out.extend_from_slice(format!("outcome: ended by a server restart at {at}\n").as_bytes())
            }
        }
        out.extend_from_slice(LABEL_FOLLOWS);
        out.extend_from_slice(&self.label);
        out
    }

    pub fn parse(content: &[u8]) -> Result<Record, String> {
        let rest = content
            .strip_prefix(HEADER)
            .ok_or_else(|| "it does not start with the expected header".to_string())?;
        let (line, rest) = split_line(rest).ok_or("it is truncated")?;
        let words: Vec<&str> = std::str::from_utf8(line)
            .map_err(|_| "its file line is not text")?
            .split(' ')
            .collect();
        let label_file = match words.as_slice() {
            ["label", "file:", "device", dev, "inode", ino, "born", born] => FileId {
                dev: dev.parse().map_err(|_| "bad device number")?,
                ino: ino.parse().map_err(|_| "bad inode number")?,
                birth: parse_birth(born).ok_or("bad birth time")?,
            },
            _ => return Err("its file line is not understood".into()),
        };
        let (line, rest) = split_line(rest).ok_or("it is truncated")?;
        let outcome = if line == b"outcome: running" {
            Outcome::Running
        } else if let Some(at) = line.strip_prefix(b"outcome: ended by a server restart at ".as_slice()) {
            let at = std::str::from_utf8(at)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or("bad restart time")?;
            Outcome::EndedByRestart { at }
        } else {
            return Err("its outcome line is not understood".into());
        };
        let label = rest
            .strip_prefix(LABEL_FOLLOWS)
            .ok_or("the label it describes is missing")?
            .to_vec();
        Ok(Record {
            label_file,
            outcome,
            label,
        })
    }
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

/// What the postmaster makes of what it finds before the startup process
/// runs, or at its exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No backup_label.
    NoLabel,
    /// recovery.signal or standby.signal: a restore or a standby, which
    /// this extension never touches.
    Recovery,
    /// A label pg_start_backup did not write (pg_basebackup's, pg_rewind's,
    /// one edited by hand): the server's own business.
    NotOurs,
    /// Ours, but another file than the one published here: a copy.
    Copy,
    /// The very label this server published, to be renamed so that the
    /// startup process does not take the primary for a restored backup.
    Live(BackupLabel),
    /// Whether this server's own label is in place cannot be decided;
    /// `label` is the label, when it could be read.
    Undecidable { label: Option<BackupLabel>, why: String },
}

/// `label`: backup_label's content and identity, if there is one;
/// `record`: the state file's content, if there is one (or why it could
/// not be read); `several_file_systems`: at a first start, what makes the
/// data directory span file systems (see the module comment), if anything.
///
/// The same judgement serves a restart after a crash, where the postmaster
/// has been running on this data directory: a copy's label may still be in
/// place then, if something crashed before the startup process took it.
pub fn judge(
    signal_file: bool,
    label: Option<(&[u8], FileId)>,
    record: Option<Result<Vec<u8>, String>>,
    several_file_systems: Option<&str>,
) -> Verdict {
    if signal_file {
        return Verdict::Recovery;
    }
    let Some((content, id)) = label else {
        return Verdict::NoLabel;
    };
    let Ok(parsed) = label::parse(content) else {
        return Verdict::NotOurs;
    };
    let undecidable = |why: &str| Verdict::Undecidable {
        label: Some(parsed.clone()),
        why: why.to_string(),
    };
    let record = match record {
        None => return undecidable(&format!("there is no \"{STATE_FILE}\" describing it")),
        Some(Err(e)) => return undecidable(&format!("\"{STATE_FILE}\" could not be read: {e}")),
        Some(Ok(bytes)) => match Record::parse(&bytes) {
            Ok(r) => r,
            Err(e) => return undecidable(&format!("\"{STATE_FILE}\" is not valid: {e}")),
        },
    };
    if record.label_file.ino != id.ino {
        return Verdict::Copy;
    }
    match (record.label_file.birth, id.birth) {
        (Some(a), Some(b)) if a != b => Verdict::Copy,
        (Some(_), Some(_)) if record.label == content => match several_file_systems {
            None => Verdict::Live(parsed),
            Some(what) => undecidable(&format!(
                "{what}: after a crash of the postmaster this may as well be a restore of snapshots of \
                 several file systems, which only recovery from the label makes consistent"
            )),
        },
        (Some(_), Some(_)) => undecidable("it is the file published here, but its content has changed since"),
        _ => undecidable(
            "the file system does not record birth times, so a copy whose label reuses the inode \
             number of the one published here cannot be told from it",
        ),
    }
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

    fn record(id: FileId) -> Option<Result<Vec<u8>, String>> {
        Some(Ok(Record {
            label_file: id,
            outcome: Outcome::Running,
            label: LABEL.as_bytes().to_vec(),
        }
        .to_bytes()))
    }

    fn verdict(id: FileId, rec: Option<Result<Vec<u8>, String>>) -> Verdict {
        judge(false, Some((LABEL.as_bytes(), id)), rec, None)
    }

    #[test]
    fn record_round_trip() {
        for outcome in [Outcome::Running, Outcome::EndedByRestart { at: 1_795_576_000 }] {
            for birth in [LIVE.birth, None, Some((5, 0))] {
                let r = Record {
                    label_file: FileId { birth, ..LIVE },
                    outcome,
                    label: b"any\xffbytes\n\nat all".to_vec(),
                };
                assert_eq!(Record::parse(&r.to_bytes()), Ok(r));
            }
        }
    }

    #[test]
    fn bad_records_are_refused() {
        let good = record(LIVE).unwrap().unwrap();
        for cut in [0, 10, 30, 60, 90] {
            assert!(Record::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let text = String::from_utf8(good).unwrap();
        for (from, to) in [
            ("inode 131075", "inode x"),
            (".123456789", ".12345"),
            ("outcome: running", "outcome: maybe"),
            ("state 1", "state 2"),
        ] {
            assert!(Record::parse(text.replace(from, to).as_bytes()).is_err(), "{to}");
        }
    }

    #[test]
    fn the_label_published_here_is_live() {
        assert!(matches!(verdict(LIVE, record(LIVE)), Verdict::Live(_)));
        // Another device number: a renumbered disk or a block-level image.
        let moved = FileId { dev: 64768, ..LIVE };
        assert!(matches!(verdict(moved, record(LIVE)), Verdict::Live(_)));
    }

    #[test]
    fn over_several_file_systems_the_first_start_does_not_decide() {
        let v = judge(
            false,
            Some((LABEL.as_bytes(), LIVE)),
            record(LIVE),
            Some("pg_wal is on another file system"),
        );
        assert!(
            matches!(v, Verdict::Undecidable { ref why, .. } if why.starts_with("pg_wal is on another")),
            "{v:?}"
        );
        // A copy stays a copy.
        let other = FileId { ino: 9, ..LIVE };
        assert_eq!(
            judge(false, Some((LABEL.as_bytes(), other)), record(LIVE), Some("x")),
            Verdict::Copy
        );
    }

    #[test]
    fn another_file_is_a_copy() {
        let other_inode = FileId { ino: 9, ..LIVE };
        assert_eq!(verdict(other_inode, record(LIVE)), Verdict::Copy);
        // The inode number reused by a file born later: a restore into a
        // fresh directory on the same file system.
        let reused = FileId {
            birth: Some((1_795_576_100, 5)),
            ..LIVE
        };
        assert_eq!(verdict(reused, record(LIVE)), Verdict::Copy);
        // Birth times differing by a nanosecond are different files.
        let close = FileId {
            birth: Some((1_795_575_906, 123_456_790)),
            ..LIVE
        };
        assert_eq!(verdict(close, record(LIVE)), Verdict::Copy);
        // Without birth times, another inode number is still another file.
        let no_birth = FileId {
            birth: None,
            ino: 9,
            ..LIVE
        };
        assert_eq!(verdict(no_birth, record(FileId { birth: None, ..LIVE })), Verdict::Copy);
    }

    #[test]
    fn what_cannot_be_told_is_undecidable() {
        let undecided = |v: Verdict| matches!(v, Verdict::Undecidable { .. });
        assert!(undecided(verdict(LIVE, None)));
        assert!(undecided(verdict(LIVE, Some(Err("EACCES".into())))));
        assert!(undecided(verdict(LIVE, Some(Ok(b"garbage".to_vec())))));
        let no_birth = FileId { birth: None, ..LIVE };
        assert!(undecided(verdict(no_birth, record(no_birth))));
        assert!(undecided(verdict(LIVE, record(no_birth))));
        assert!(undecided(verdict(no_birth, record(LIVE))));
        // Same file, rewritten in place (say, a restore over it).
        let mut other = Record::parse(&record(LIVE).unwrap().unwrap()).unwrap();
        other.label = LABEL.replace("nightly", "weekly").into_bytes();
        assert!(undecided(verdict(LIVE, Some(Ok(other.to_bytes())))));
    }

    #[test]
    fn restores_and_foreign_labels_are_left_alone() {
        assert_eq!(
            judge(true, Some((LABEL.as_bytes(), LIVE)), record(LIVE), None),
            Verdict::Recovery
        );
        assert_eq!(
            judge(true, Some((LABEL.as_bytes(), LIVE)), None, None),
            Verdict::Recovery
        );
        let basebackup = LABEL.replace("START EPOCH: 1795575906\n", "");
        assert_eq!(
            judge(false, Some((basebackup.as_bytes(), LIVE)), record(LIVE), None),
            Verdict::NotOurs
        );
        assert_eq!(judge(false, None, record(LIVE), None), Verdict::NoLabel);
    }
}
