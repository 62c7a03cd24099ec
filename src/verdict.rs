//! What the files say about a backup: the postmaster's verdict on the
//! backup_label it finds right before the startup process runs (and at its
//! exit), with the words of a refusal, and what became of a backup the
//! state record says is running: pure Rust, no server.
//!
//! The questions come in this order, and the order is the point:
//!
//! 1. A signal file means a restore or a standby: never touched.
//! 2. Is backup_label the very file this primary published (the record's
//!    inode number and birth time, see state.rs)? Then it is this primary's
//!    own whatever it now holds: renamed when it holds what was published;
//!    otherwise the start refuses, for it cannot be a file-level copy and
//!    the one writer that keeps the file while changing it is a restore
//!    copied over the primary's files in place, which renaming would turn
//!    into silent corruption.
//! 3. Another file, beside this primary's own global/pg_control (which the
//!    server and its tools rewrite only in place): a label put back into the
//!    primary's data directory (moved out and copied back), or a backup
//!    copied over it in place. The two cannot be told apart, and renaming
//!    would ruin the second, so the start refuses with advice for both.
//! 4. Another file and another pg_control: a restored copy, whose label is
//!    recovery's.
//!
//! Only a whole label of another writer's (pg_basebackup, pg_rewind) goes
//! to the startup process without a record that says whose it is; where
//! nothing can tell, the start refuses.

use crate::files::FileId;
use crate::label::{self, BackupLabel, Kind};
use crate::record::{Fate, Record, UnixMicros, MAX_STATE_BYTES};
use crate::refusal::{Holds, Refusal, Unknowable, Unusable};

/// backup_label as the postmaster found it.
#[derive(Debug, Clone)]
pub struct LabelFile<'a> {
    /// Its identity, or why it could not be had.
    pub id: Result<FileId, String>,
    /// Its size in bytes.
    pub size: u64,
    /// Its first bytes (at most one more than a label can have), or why
    /// they could not be read.
    pub content: Result<&'a [u8], Unusable>,
}

/// What the postmaster found in the data directory.
#[derive(Debug, Clone)]
pub struct Found<'a> {
    /// recovery.signal or standby.signal, as the server sees them.
    pub signal_file: bool,
    pub label: Option<LabelFile<'a>>,
    /// The state file's bytes (at most one more than a record can have),
    /// or why it cannot be read; `None` when there is none.
    pub record: Option<Result<&'a [u8], Unusable>>,
    /// global/pg_control's identity, when it could be had.
    pub control_file: Option<FileId>,
    /// At a first start, what puts part of the data directory on another
    /// file system (see state.rs), if anything.
    pub several_file_systems: Option<&'a str>,
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

/// What the postmaster does with what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    NoLabel,
    /// A restore or a standby: recovery's business.
    Recovery,
    /// A whole label another writer wrote (pg_basebackup, pg_rewind), and
    /// no sign that this primary published it.
    NotOurs,
    /// A restored copy of this extension's backup: recovery's label.
    Copy(BackupLabel),
    /// The very label this primary published, holding what was published:
    /// to be renamed so that the startup process does not take the primary
    /// for a restored backup.
    Live(BackupLabel),
    /// The start must not go on.
    Refuse(Refusal),
}

/// The state file as a record that can judge (with the label it holds),
/// or why it cannot.
fn record_of(found: &Found) -> Result<(Record, BackupLabel), Unknowable> {
    let bytes = match &found.record {
        None => return Err(Unknowable::NoRecord),
        Some(Err(u)) => return Err(Unknowable::Record(u.clone())),
        Some(Ok(bytes)) => *bytes,
    };
    let invalid = |why: String| Unknowable::Record(Unusable { why, not_a_file: false });
    if bytes.len() > MAX_STATE_BYTES {
        return Err(invalid(format!(
            "is larger than {MAX_STATE_BYTES} bytes, which no record is"
        )));
    }
    let record = Record::parse(bytes).map_err(|e| invalid(format!("is not valid: {e}")))?;
    // Every record holds a label pg_start_backup wrote: one that holds
    // anything else is damaged itself, whatever the label file holds.
    let published = label::parse(&record.label).map_err(|e| {
        invalid(format!(
            "is not valid: the label it holds is not one pg_start_backup writes ({e})"
        ))
    })?;
    Ok((record, published))
}

fn cannot_tell(label: Option<BackupLabel>, why: Unknowable) -> Verdict {
    Verdict::Refuse(Refusal::CannotTell { label, why })
}

fn ours(kind: &Kind) -> Option<BackupLabel> {
    match kind {
        Kind::Ours(l) => Some(l.clone()),
        _ => None,
    }
}

/// What the record says of global/pg_control now.
enum Control {
    /// Compared with the identity recorded: `None` when only birth times
    /// could tell and one is unknown.
    Compared(Option<bool>),
    /// Recorded, but pg_control cannot be examined now.
    Unreadable,
    /// A record written before pg_control's identity was kept.
    NotRecorded,
}

pub fn judge(found: &Found) -> Verdict {
    if found.signal_file {
        return Verdict::Recovery;
    }
    let Some(file) = &found.label else {
        return Verdict::NoLabel;
    };
    let record = record_of(found);
    let content = match &file.content {
        Ok(c) => *c,
        Err(unreadable) => {
            // Its identity may still say whose it is.
            let published = match (&record, &file.id) {
                (Ok((r, l)), Ok(id)) if id.same_file(r.label_file) == Some(true) => Some(l.clone()),
                _ => None,
            };
            return Verdict::Refuse(Refusal::Unreadable {
                why: unreadable.clone(),
                published,
            });
        }
    };
    let kind = label::kind(content);
    let (record, published) = match record {
        Ok(r) => r,
        Err(state) => {
            return match kind {
                Kind::Other => Verdict::NotOurs,
                Kind::Ours(l) => cannot_tell(Some(l), state),
                Kind::Damaged(e) => Verdict::Refuse(Refusal::Damaged {
                    reason: e.to_string(),
                    state: Some(state),
                }),
            }
        }
    };
    let id = match &file.id {
        Ok(id) => *id,
        Err(why) => {
            return cannot_tell(
                ours(&kind),
                Unknowable::LabelUnreadable(format!("its inode cannot be examined: {why}")),
            )
        }
    };
    let control = match (record.control_file, found.control_file) {
        (Some(then), Some(now)) => Control::Compared(then.same_file(now)),
        (Some(_), None) => Control::Unreadable,
        (None, _) => Control::NotRecorded,
    };
    // A whole label of another writer's: neither ours nor ours cut short.
    let foreign = matches!(kind, Kind::Other) && !record.label.starts_with(content);
    match id.same_file(record.label_file) {
        None => cannot_tell(ours(&kind), Unknowable::NoBirthTimes),
        // This primary's own label file, whatever it holds now.
        Some(true) => match control {
            Control::Compared(Some(false)) => Verdict::Refuse(Refusal::OwnLabelOtherControl { published }),
            Control::Compared(None) => cannot_tell(Some(published), Unknowable::NoBirthTimes),
            Control::Unreadable => cannot_tell(Some(published), Unknowable::ControlUnreadable),
            Control::Compared(Some(true)) | Control::NotRecorded => {
                if content == record.label.as_slice() && file.size == content.len() as u64 {
                    match found.several_file_systems {
                        None => Verdict::Live(published),
                        Some(what) => cannot_tell(Some(published), Unknowable::SeveralFileSystems(what.to_string())),
                    }
                } else if foreign {
                    Verdict::Refuse(Refusal::OwnOverwritten {
                        published,
                        method: backup_method(content),
                    })
                } else {
                    Verdict::Refuse(Refusal::OwnChanged {
                        change: change(&record.label, content, file.size),
                        published,
                    })
                }
            }
        },
        Some(false) => {
            if foreign {
                return Verdict::NotOurs;
            }
            let holds = match kind {
                _ if content == record.label.as_slice() => Holds::Published,
                Kind::Ours(l) => Holds::Ours(l),
                Kind::Damaged(e) => Holds::Damaged(e.to_string()),
                // Cut short, the label published here is no other writer's,
                // whatever its remaining lines look like.
                Kind::Other => Holds::Damaged(format!(
                    "It is the first {} of the {} bytes of the label published here.",
                    content.len(),
                    record.label.len()
                )),
            };
            let unknowable = |why: Unknowable, holds: Holds| match holds {
                Holds::Published => cannot_tell(Some(published.clone()), why),
                Holds::Ours(l) => cannot_tell(Some(l), why),
                Holds::Damaged(reason) => Verdict::Refuse(Refusal::Damaged {
                    reason,
                    state: Some(why),
                }),
            };
            match control {
                Control::Compared(Some(true)) => Verdict::Refuse(Refusal::Recreated {
                    published: published.clone(),
                    holds,
                }),
                Control::Compared(None) => unknowable(Unknowable::NoBirthTimes, holds),
                Control::Unreadable => unknowable(Unknowable::ControlUnreadable, holds),
                Control::Compared(Some(false)) | Control::NotRecorded => match holds {
                    Holds::Published => Verdict::Copy(published),
                    Holds::Ours(l) => Verdict::Copy(l),
                    Holds::Damaged(reason) => Verdict::Refuse(Refusal::Damaged { reason, state: None }),
                },
            }
        }
    }
}

/// What a label's BACKUP METHOD line says.
fn backup_method(content: &[u8]) -> String {
    content
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"BACKUP METHOD: "))
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default()
}

/// How `now` (the file's first bytes; `size` in all) differs from
/// `published`, as the end of a sentence.
fn change(published: &[u8], now: &[u8], size: u64) -> String {
    let then = published.len() as u64;
    let bytes = |n: u64| {
        if n == 1 {
            "1 byte".to_string()
        } else {
            format!("{n} bytes")
        }
    };
    if size == 0 {
        "it has been emptied".into()
    } else if size < then && published.starts_with(now) {
        format!("it has been cut from {then} to {}", bytes(size))
    } else if size > then && now.starts_with(published) {
        let added = size - then;
        format!(
            "{} {} been added to its end",
            bytes(added),
            if added == 1 { "has" } else { "have" }
        )
    } else if size == then && now.len() == published.len() {
        let changed = now.iter().zip(published).filter(|(a, b)| a != b).count();
        format!(
            "{changed} of its {then} bytes {} been changed",
            if changed == 1 { "has" } else { "have" }
        )
    } else {
        format!(
            "its content has been replaced ({} when published, {} now)",
            bytes(then),
            bytes(size)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use crate::refusal::texts;

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

    fn record(label_file: FileId, control_file: Option<FileId>) -> Vec<u8> {
        Record {
            label_file,
            control_file,
            outcome: Outcome::Running,
            session: None,
            previous: None,
            last_completed: None,
            label: LABEL.as_bytes().to_vec(),
            place: None,
        }
        .to_bytes()
    }

    /// The verdict on a label file with `content` and identity `id`, the
    /// state file holding `state`, and pg_control with identity `control`.
    fn judged(content: &[u8], id: FileId, state: Option<&[u8]>, control: FileId) -> Verdict {
        judge(&Found {
            signal_file: false,
            label: Some(LabelFile {
                id: Ok(id),
                size: content.len() as u64,
                content: Ok(content),
            }),
            record: state.map(Ok),
            control_file: Some(control),
            several_file_systems: None,
        })
    }

    fn primary(content: &[u8]) -> Verdict {
        judged(content, LIVE, Some(&record(LIVE, Some(CONTROL))), CONTROL)
    }

    fn refusal(v: Verdict) -> Refusal {
        match v {
            Verdict::Refuse(r) => r,
            v => panic!("not a refusal: {v:?}"),
        }
    }

    fn published() -> BackupLabel {
        label::parse(LABEL.as_bytes()).unwrap()
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

    fn running(id: FileId) -> Record {
        Record::parse(&record(id, Some(CONTROL))).unwrap()
    }

    #[test]
    fn the_label_published_here_is_live() {
        assert_eq!(primary(LABEL.as_bytes()), Verdict::Live(published()));
        // Another device number: a renumbered disk or a block-level image.
        let moved = FileId { dev: 64768, ..LIVE };
        let moved_control = FileId { dev: 64768, ..CONTROL };
        assert_eq!(
            judged(
                LABEL.as_bytes(),
                moved,
                Some(&record(LIVE, Some(CONTROL))),
                moved_control
            ),
            Verdict::Live(published())
        );
        // A record of version 2, without pg_control's identity.
        assert_eq!(
            judged(LABEL.as_bytes(), LIVE, Some(&record(LIVE, None)), CONTROL),
            Verdict::Live(published())
        );
    }

    #[test]
    fn the_primarys_own_label_changed_in_place_refuses() {
        let half = &LABEL.as_bytes()[..LABEL.len() / 2];
        let mut flipped = LABEL.as_bytes().to_vec();
        flipped[40] ^= 1;
        let cases: [(Vec<u8>, String); 5] = [
            (
                format!("{LABEL}\n").into_bytes(),
                "1 byte has been added to its end".into(),
            ),
            (Vec::new(), "it has been emptied".into()),
            (
                half.to_vec(),
                format!("it has been cut from {} to {} bytes", LABEL.len(), half.len()),
            ),
            (flipped, format!("1 of its {} bytes has been changed", LABEL.len())),
            (
                LABEL.replace("nightly", "weekly").into_bytes(),
                format!(
                    "its content has been replaced ({} bytes when published, {} bytes now)",
                    LABEL.len(),
                    LABEL.len() - 1
                ),
            ),
        ];
        for (content, change) in cases {
            assert_eq!(
                refusal(primary(&content)),
                Refusal::OwnChanged {
                    published: published(),
                    change
                },
                "{}",
                String::from_utf8_lossy(&content)
            );
        }
        // Padded far beyond what a label can be: only the head was read.
        let mut padded = LABEL.as_bytes().to_vec();
        padded.resize(label::MAX_FILE_BYTES + 1, b'x');
        let v = judge(&Found {
            signal_file: false,
            label: Some(LabelFile {
                id: Ok(LIVE),
                size: 200 << 20,
                content: Ok(&padded),
            }),
            record: Some(Ok(&record(LIVE, Some(CONTROL)))),
            control_file: Some(CONTROL),
            several_file_systems: None,
        });
        assert!(matches!(refusal(v), Refusal::OwnChanged { ref change, .. }
                if *change == format!("{} bytes have been added to its end", (200 << 20) - LABEL.len())),);
    }

    #[test]
    fn a_label_put_back_beside_the_primarys_pg_control_refuses() {
        let state = record(LIVE, Some(CONTROL));
        let copied_back = FileId {
            ino: 9,
            birth: Some((1_795_576_000, 1)),
            ..LIVE
        };
        let v = judged(LABEL.as_bytes(), copied_back, Some(&state), CONTROL);
        assert_eq!(
            refusal(v),
            Refusal::Recreated {
                published: published(),
                holds: Holds::Published
            }
        );
        // Another label of ours, copied over the data directory in place.
        let older = LABEL.replace("nightly", "weekly");
        let v = judged(older.as_bytes(), copied_back, Some(&state), CONTROL);
        assert!(matches!(refusal(v), Refusal::Recreated { holds: Holds::Ours(ref l), .. } if l.label == b"weekly"));
        // Copied back, and cut short on the way.
        for cut in [0, 40, LABEL.len() - 20] {
            let v = judged(&LABEL.as_bytes()[..cut], copied_back, Some(&state), CONTROL);
            assert!(
                matches!(
                    refusal(v),
                    Refusal::Recreated {
                        holds: Holds::Damaged(_),
                        ..
                    }
                ),
                "cut at {cut}"
            );
        }
        // pg_rewind's label: rewinding rewrites pg_control in place.
        let rewind = "START WAL LOCATION: 0/5000028 (file 000000020000000000000005)\n\
                      CHECKPOINT LOCATION: 0/5000060\nBACKUP METHOD: pg_rewind\nBACKUP FROM: standby\n\
                      START TIME: 2026-11-25 04:00:00 UTC\n";
        assert_eq!(label::kind(rewind.as_bytes()), Kind::Other);
        assert_eq!(
            judged(rewind.as_bytes(), copied_back, Some(&state), CONTROL),
            Verdict::NotOurs
        );
    }

    #[test]
    fn restored_copies_are_copies() {
        let state = record(LIVE, Some(CONTROL));
        let fresh = |ino, birth| FileId {
            dev: 2049,
            ino,
            birth: Some(birth),
        };
        // Into a fresh directory: every file new.
        assert_eq!(
            judged(
                LABEL.as_bytes(),
                fresh(9, (1_795_576_100, 5)),
                Some(&state),
                fresh(10, (1_795_576_100, 6))
            ),
            Verdict::Copy(published())
        );
        // Into the same path after the old directory was removed, both
        // freed inode numbers handed out again: only birth times tell.
        let reused = FileId {
            birth: Some((1_795_576_100, 5)),
            ..LIVE
        };
        let reused_control = FileId {
            birth: Some((1_795_576_100, 6)),
            ..CONTROL
        };
        assert_eq!(
            judged(LABEL.as_bytes(), reused, Some(&state), reused_control),
            Verdict::Copy(published())
        );
        // Birth times a nanosecond apart are different files.
        let close = FileId {
            birth: Some((1_795_575_906, 123_456_790)),
            ..LIVE
        };
        assert_eq!(
            judged(LABEL.as_bytes(), close, Some(&state), reused_control),
            Verdict::Copy(published())
        );
        // A record of version 2 cannot tell a label put back from a copy.
        assert_eq!(
            judged(LABEL.as_bytes(), fresh(9, (1, 1)), Some(&record(LIVE, None)), CONTROL),
            Verdict::Copy(published())
        );
        // A copy whose label was damaged: refused, as a copy's.
        let v = judged(b"START WAL", fresh(9, (1, 1)), Some(&state), fresh(10, (1, 2)));
        assert!(matches!(refusal(v), Refusal::Damaged { state: None, .. }));
        // A pg_basebackup copy of this primary.
        let basebackup = LABEL
            .replace("START EPOCH: 1795575906\n", "")
            .replace("nightly", "pg_basebackup base backup");
        assert_eq!(
            judged(basebackup.as_bytes(), fresh(9, (1, 1)), Some(&state), fresh(10, (1, 2))),
            Verdict::NotOurs
        );
    }

    #[test]
    fn without_a_usable_record_nothing_is_renamed() {
        let cannot_tell = |v: Verdict| match refusal(v) {
            Refusal::CannotTell { label: Some(_), why } => why,
            r => panic!("{r:?}"),
        };
        assert_eq!(
            cannot_tell(judged(LABEL.as_bytes(), LIVE, None, CONTROL)),
            Unknowable::NoRecord
        );
        let good = record(LIVE, Some(CONTROL));
        let mut padded = good.clone();
        padded.resize(MAX_STATE_BYTES + 1, b'x');
        let why = |state: &[u8]| match cannot_tell(judged(LABEL.as_bytes(), LIVE, Some(state), CONTROL)) {
            Unknowable::Record(u) => u.why,
            w => panic!("{w:?}"),
        };
        assert!(why(&padded).starts_with("is larger than"), "{}", why(&padded));
        assert!(why(b"garbage").starts_with("is not valid"));
        assert!(why(&good[..good.len() / 2]).starts_with("is not valid"));
        // Padded a little: the label it holds grew, not the label file.
        let mut grown = good.clone();
        grown.extend_from_slice(b"\0\0\0\0");
        assert!(
            why(&grown).contains("the label it holds is not one pg_start_backup writes"),
            "{}",
            why(&grown)
        );
        // Not a file at all.
        let v = judge(&Found {
            signal_file: false,
            label: Some(LabelFile {
                id: Ok(LIVE),
                size: LABEL.len() as u64,
                content: Ok(LABEL.as_bytes()),
            }),
            record: Some(Err(Unusable {
                why: "is a directory".into(),
                not_a_file: true,
            })),
            control_file: Some(CONTROL),
            several_file_systems: None,
        });
        let t = texts(&refusal(v));
        assert!(
            t.detail
                .contains("\"pg_exclusive_backup.state\", which tells whether it is this server's own, is a directory"),
            "{}",
            t.detail
        );
        assert!(
            t.hint
                .contains("move \"pg_exclusive_backup.state\" out of the data directory"),
            "{}",
            t.hint
        );
        // Another writer's label: the server's business. Damaged: refused.
        let basebackup = LABEL.replace("START EPOCH: 1795575906\n", "");
        assert_eq!(judged(basebackup.as_bytes(), LIVE, None, CONTROL), Verdict::NotOurs);
        assert!(matches!(
            refusal(judged(b"", LIVE, None, CONTROL)),
            Refusal::Damaged {
                state: Some(Unknowable::NoRecord),
                ..
            }
        ));
    }

    #[test]
    fn what_cannot_be_told_refuses() {
        let no_birth = FileId { birth: None, ..LIVE };
        for (label_id, recorded) in [(no_birth, no_birth), (LIVE, no_birth), (no_birth, LIVE)] {
            let v = judged(
                LABEL.as_bytes(),
                label_id,
                Some(&record(recorded, Some(CONTROL))),
                CONTROL,
            );
            assert!(matches!(
                refusal(v),
                Refusal::CannotTell {
                    why: Unknowable::NoBirthTimes,
                    ..
                }
            ));
        }
        // pg_control's birth time unknown, its inode number the same.
        let v = judged(
            LABEL.as_bytes(),
            FileId { ino: 9, ..LIVE },
            Some(&record(LIVE, Some(CONTROL))),
            FileId { birth: None, ..CONTROL },
        );
        assert!(matches!(
            refusal(v),
            Refusal::CannotTell {
                why: Unknowable::NoBirthTimes,
                ..
            }
        ));
        // At a first start, over several file systems.
        let v = judge(&Found {
            signal_file: false,
            label: Some(LabelFile {
                id: Ok(LIVE),
                size: LABEL.len() as u64,
                content: Ok(LABEL.as_bytes()),
            }),
            record: Some(Ok(&record(LIVE, Some(CONTROL)))),
            control_file: Some(CONTROL),
            several_file_systems: Some("pg_wal is on another file system"),
        });
        assert!(matches!(
            refusal(v),
            Refusal::CannotTell {
                why: Unknowable::SeveralFileSystems(_),
                ..
            }
        ));
        // Unreadable, or not a file: refused, and said whose file it is
        // when its identity tells.
        let unreadable = |id: FileId, not_a_file: bool| {
            refusal(judge(&Found {
                signal_file: false,
                label: Some(LabelFile {
                    id: Ok(id),
                    size: 0,
                    content: Err(Unusable {
                        why: if not_a_file {
                            "is a directory"
                        } else {
                            "cannot be opened: Permission denied"
                        }
                        .into(),
                        not_a_file,
                    }),
                }),
                record: Some(Ok(&record(LIVE, Some(CONTROL)))),
                control_file: Some(CONTROL),
                several_file_systems: None,
            }))
        };
        assert!(matches!(
            unreadable(LIVE, false),
            Refusal::Unreadable { published: Some(_), .. }
        ));
        assert!(matches!(
            unreadable(FileId { ino: 9, ..LIVE }, true),
            Refusal::Unreadable { published: None, .. }
        ));
        let t = texts(&unreadable(LIVE, false));
        assert_eq!(t.message, "could not read \"backup_label\"");
        assert!(
            t.detail
                .starts_with("It cannot be opened: Permission denied. It is the file"),
            "{t:?}"
        );
        // pg_control recorded, but not to be examined now.
        let v = judge(&Found {
            signal_file: false,
            label: Some(LabelFile {
                id: Ok(LIVE),
                size: LABEL.len() as u64,
                content: Ok(LABEL.as_bytes()),
            }),
            record: Some(Ok(&record(LIVE, Some(CONTROL)))),
            control_file: None,
            several_file_systems: None,
        });
        assert!(matches!(
            refusal(v),
            Refusal::CannotTell {
                why: Unknowable::ControlUnreadable,
                ..
            }
        ));
    }

    #[test]
    fn the_primarys_own_label_beside_another_pg_control_refuses() {
        let state = record(LIVE, Some(CONTROL));
        // rsync over the crashed primary: the label kept (same size and
        // time), pg_control replaced through a temporary file.
        let replaced = FileId {
            ino: 77,
            birth: Some((1_795_576_300, 1)),
            ..CONTROL
        };
        assert_eq!(
            refusal(judged(LABEL.as_bytes(), LIVE, Some(&state), replaced)),
            Refusal::OwnLabelOtherControl { published: published() }
        );
        let unknown = FileId { birth: None, ..CONTROL };
        assert!(matches!(
            refusal(judged(LABEL.as_bytes(), LIVE, Some(&state), unknown)),
            Refusal::CannotTell {
                why: Unknowable::NoBirthTimes,
                ..
            }
        ));
        // A record of version 2 cannot tell: the label is the primary's.
        assert_eq!(
            judged(LABEL.as_bytes(), LIVE, Some(&record(LIVE, None)), replaced),
            Verdict::Live(published())
        );
        // pg_rewind's label written in place over the primary's own file.
        let rewind = "START WAL LOCATION: 0/5000028 (file 000000020000000000000005)\n\
                      CHECKPOINT LOCATION: 0/5000060\nBACKUP METHOD: pg_rewind\nBACKUP FROM: standby\n\
                      START TIME: 2026-11-25 04:00:00 UTC\n";
        assert_eq!(
            refusal(judged(rewind.as_bytes(), LIVE, Some(&state), CONTROL)),
            Refusal::OwnOverwritten {
                published: published(),
                method: "pg_rewind".into()
            }
        );
        // A copy's label damaged, the record of version 2.
        let v = judged(
            b"START WAL",
            FileId { ino: 9, ..LIVE },
            Some(&record(LIVE, None)),
            CONTROL,
        );
        assert!(matches!(refusal(v), Refusal::Damaged { state: None, .. }));
    }

    #[test]
    fn signal_files_and_absence() {
        let state = record(LIVE, Some(CONTROL));
        let mut found = Found {
            signal_file: true,
            label: Some(LabelFile {
                id: Ok(LIVE),
                size: 0,
                content: Ok(b""),
            }),
            record: Some(Ok(&state)),
            control_file: Some(CONTROL),
            several_file_systems: None,
        };
        assert_eq!(judge(&found), Verdict::Recovery);
        found.signal_file = false;
        found.label = None;
        assert_eq!(judge(&found), Verdict::NoLabel);
    }
}
