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
use crate::place::Place;

mod format;

/// The record's name, beside backup_label.
pub const STATE_FILE: &str = "pg_exclusive_backup.state";

/// Bigger than any record: a label is at most 8 kB.
pub const MAX_STATE_BYTES: usize = 16 * 1024;

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
    /// Voided at `at`: ended without the end-of-backup record that would
    /// make a copy taken during it consistent.
    Voided { at: UnixMicros, by: Voider },
    /// The postmaster found the primary's own label, at `at`, in a
    /// block-level clone of the primary (see place.rs), and renamed it: the
    /// backup ran on the primary, and this server started from an image
    /// taken during it.
    Cloned { at: UnixMicros },
}

/// Who voided a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voider {
    /// pg_exclusive_backup.max_duration, then `seconds` long.
    Limit { seconds: u64 },
    /// pg_exclusive_backup_void(), called by this role.
    Role(String),
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
    /// Voided by pg_exclusive_backup.max_duration.
    VoidedByLimit,
    /// Voided by pg_exclusive_backup_void() (the role is `stopped_by`).
    Voided,
    /// This server is a block-level clone of the primary, taken during it.
    Cloned,
}

impl How {
    pub fn name(self) -> &'static str {
        match self {
            How::Stopped => "stopped",
            How::InterruptedByRestart => "interrupted by a server restart",
            How::Abandoned => "abandoned",
            How::VoidedByLimit => "voided by pg_exclusive_backup.max_duration",
            How::Voided => "voided",
            How::Cloned => "running on the primary when this server was cloned from it",
        }
    }

    fn from_name(name: &str) -> Option<How> {
        [
            How::Stopped,
            How::InterruptedByRestart,
            How::Abandoned,
            How::VoidedByLimit,
            How::Voided,
            How::Cloned,
        ]
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
    /// Where the primary that published it lived (see place.rs); `None` in
    /// records that did not say.
    pub place: Option<Place>,
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
            (Outcome::Cloned { at }, _) => (ended(How::Cloned, None, Some(*at), None), self.last_completed),
            (Outcome::Voided { at, by }, _) => {
                let (how, by) = match by {
                    Voider::Limit { .. } => (How::VoidedByLimit, None),
                    Voider::Role(role) => (How::Voided, Some(role.clone())),
                };
                (ended(how, None, Some(*at), by), self.last_completed)
            }
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
    pub fn running(label_file: FileId, control_file: FileId, session: Session, label: Vec<u8>, place: Place) -> Record {
        Record {
            label_file,
            control_file: Some(control_file),
            outcome: Outcome::Running,
            session: Some(session),
            previous: None,
            last_completed: None,
            label,
            place: Some(place),
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
                place: None,
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

    /// The record once `by` voided, at `at`, the backup whose label is
    /// `label` (taken away: its file has identity `label_file` now): as
    /// [`Record::stopped`], but a void.
    pub fn voided(
        old: Option<Record>,
        label: &[u8],
        label_file: FileId,
        control_file: Option<FileId>,
        by: Voider,
        at: UnixMicros,
    ) -> Record {
        let stopped = Record::stopped(old, label, label_file, control_file, "", at);
        Record {
            outcome: Outcome::Voided { at, by },
            ..stopped
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
            place: kept.and_then(|r| r.place.clone()),
        }
    }

    /// As [`Record::ended_by_restart`], in a block-level clone of the
    /// primary: the primary's record, and what it knew, are kept.
    pub fn cloned(kept: &Record, at: UnixMicros) -> Record {
        Record {
            outcome: Outcome::Cloned { at },
            ..kept.clone()
        }
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
