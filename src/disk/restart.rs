//! What the postmaster does to the files in preload mode, at a start, a
//! crash restart or its exit: it judges backup_label (see verdict.rs) and
//! voids the primary's own label, renaming it and the map to `.old` and
//! recording that a restart ended the backup, with the lock held.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use super::{now_micros, Between, Lock, Unlocked};
use crate::error::Error;
use crate::files::{
    self, data_dir, Entry, FileId, BACKUP_LABEL, BACKUP_LABEL_OLD, CONTROL_FILE, TABLESPACE_MAP, TABLESPACE_MAP_OLD,
};
use crate::label::{BackupLabel, MAX_FILE_BYTES};
use crate::place::{self, Sameness};
use crate::record::{Record, MAX_STATE_BYTES, STATE_FILE};
use crate::refusal::{Refusal, Unusable};
use crate::verdict::{self, LabelFile, Verdict};

/// What the postmaster saw, and its verdict.
struct Look {
    verdict: Verdict,
    /// backup_label's content and identity, when it has them.
    content: Vec<u8>,
    id: Option<FileId>,
    /// For a live label, the record judged to describe it: it keeps who
    /// started the backup, where, pg_control's identity and the history.
    kept: Option<Record>,
}

/// What became of the files.
pub enum AtPostmaster {
    /// Nothing to do: no label, a restore, another writer's label.
    Untouched,
    /// A restored copy's label, left to recovery.
    Copy(BackupLabel),
    /// The primary's own label, renamed.
    Voided(Voided),
    /// The start must not go on.
    Refused(Refusal),
}

/// The primary's own label renamed to backup_label.old: what else came of
/// it, for the postmaster to report.
pub struct Voided {
    pub label: BackupLabel,
    /// `None`: there was no map; else whether it was renamed too.
    pub map: Option<Result<(), Error>>,
    /// The rename happened, but the directory could not be fsynced.
    pub not_durable: Option<String>,
    /// The record of the end could not be written.
    pub unrecorded: Option<Error>,
    /// The label is the primary's own file, but found elsewhere than the
    /// primary kept it: this is most likely a block-level clone of the
    /// primary.
    pub clone: Option<CloneFound>,
}

/// A block-level clone of the primary, as the postmaster's first start
/// finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneFound {
    /// What differs from where the primary lived, in words.
    pub differences: Vec<String>,
    /// It archives WAL as the primary did (the same settings, or the
    /// primary's are not known).
    pub archives_as_primary: bool,
}

/// What a first start looks for in the primary's own label: a block-level
/// clone of the primary.
pub struct Clones<'a> {
    /// How this server archives WAL (see place.rs), `None` when it does not.
    pub archiving: Option<&'a str>,
    /// A clone that archives as the primary did must not start.
    pub refuse_archiving: bool,
}

/// A signal file as the server sees it: stat(2), so a dangling symlink is
/// no signal file.
fn signal_file(name: &str) -> bool {
    std::fs::metadata(data_dir().join(name)).is_ok()
}

/// What puts part of the data directory on another file system than the
/// rest: pg_wal or a tablespace elsewhere.
/// (Anything that cannot be examined counts, as a reason to refuse.)
fn several_file_systems() -> Option<String> {
    let dev = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.dev());
    let here = match dev(data_dir()) {
        Ok(d) => d,
        Err(e) => return Some(format!("the data directory cannot be examined ({e})")),
    };
    match dev(&data_dir().join("pg_wal")) {
        Ok(d) if d == here => {}
        Ok(_) => return Some("pg_wal is on another file system than the data directory".into()),
        Err(e) => return Some(format!("pg_wal cannot be examined ({e})")),
    }
    let entries = match std::fs::read_dir(data_dir().join("pg_tblspc")) {
        Ok(entries) => entries,
        Err(e) => return Some(format!("pg_tblspc cannot be read ({e})")),
    };
    for e in entries {
        let e = match e {
            Ok(e) => e,
            Err(e) => return Some(format!("pg_tblspc cannot be read ({e})")),
        };
        let name = e.file_name().to_string_lossy().into_owned();
        match dev(&e.path()) {
            Ok(d) if d == here => {}
            Ok(_) => {
                return Some(format!(
                    "tablespace {name} is on another file system than the data directory"
                ))
            }
            Err(err) => return Some(format!("tablespace {name} cannot be examined ({err})")),
        }
    }
    None
}

/// Judges what is in the data directory; `first_start`: nothing is known
/// about its past, the postmaster having just started.
fn look(first_start: bool) -> Look {
    let signal = signal_file("recovery.signal") || signal_file("standby.signal");
    let label_entry = if signal {
        Entry::Absent
    } else {
        files::examine(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES)
    };
    let id = match label_entry {
        Entry::Absent => None,
        _ => Some(files::file_id(&data_dir().join(BACKUP_LABEL)).map_err(|e| crate::error::strerror(&e))),
    };
    let label = match (&label_entry, &id) {
        (Entry::Absent, _) | (_, None) => None,
        (Entry::File { head, size }, Some(id)) => Some(LabelFile {
            id: id.clone(),
            size: *size,
            content: Ok(head.as_slice()),
        }),
        (Entry::NotAFile(kind), Some(id)) => Some(LabelFile {
            id: id.clone(),
            size: 0,
            content: Err(Unusable {
                why: format!("is {kind}"),
                not_a_file: true,
            }),
        }),
        (Entry::Unreadable(why), Some(id)) => Some(LabelFile {
            id: id.clone(),
            size: 0,
            content: Err(Unusable {
                why: why.clone(),
                not_a_file: false,
            }),
        }),
    };
    let record_entry = files::examine(data_dir(), STATE_FILE, MAX_STATE_BYTES);
    let record = match &record_entry {
        Entry::Absent => None,
        Entry::File { head, .. } => Some(Ok(head.as_slice())),
        Entry::NotAFile(kind) => Some(Err(Unusable {
            why: format!("is {kind}"),
            not_a_file: true,
        })),
        Entry::Unreadable(why) => Some(Err(Unusable {
            why: why.clone(),
            not_a_file: false,
        })),
    };
    let spans = if first_start && label.is_some() {
        several_file_systems()
    } else {
        None
    };
    let verdict = verdict::judge(&verdict::Found {
        signal_file: signal,
        label,
        record,
        control_file: files::file_id(&data_dir().join(CONTROL_FILE)).ok(),
        several_file_systems: spans.as_deref(),
    });
    let content = match label_entry {
        Entry::File { head, .. } => head,
        _ => Vec::new(),
    };
    let kept = match (&verdict, &record_entry) {
        (Verdict::Live(_), Entry::File { head, .. }) => Record::parse(head).ok(),
        _ => None,
    };
    Look {
        verdict,
        content,
        id: id.and_then(|id| id.ok()),
        kept,
    }
}

/// global/pg_control's first bytes, for the postmaster's words about how
/// the server before it ended.
pub fn control_file_head() -> Vec<u8> {
    match files::examine(data_dir(), CONTROL_FILE, 64) {
        Entry::File { head, .. } => head,
        _ => Vec::new(),
    }
}

/// Judges backup_label and, when it is this primary's own, voids it: with
/// the lock, taken within `patience` (waiting with `between`), and judged
/// again under it. `first_start`: see [`look`]. `clones`: what to look
/// for in the primary's own label (only at a first start: a postmaster
/// that has judged this data directory once knows it is the primary); a
/// clone refused is left as it is.
pub fn settle_at_postmaster(
    first_start: bool,
    patience: Duration,
    between: Between,
    clones: Option<&Clones>,
) -> AtPostmaster {
    let found = look(first_start);
    let Verdict::Live(label) = found.verdict else {
        return settled(found.verdict);
    };
    // No other process of this server should be alive now, but the lock is
    // taken all the same (a killed postmaster may leave a child behind for
    // a moment), and the verdict made again under it.
    let _lock = match Lock::take(patience, between) {
        Ok(Ok(lock)) => lock,
        Ok(Err(Unlocked::Held)) => {
            return AtPostmaster::Refused(Refusal::Unlocked {
                label,
                why: "another process holds it".into(),
                held: true,
            })
        }
        Ok(Err(Unlocked::Broken(_, why))) => {
            return AtPostmaster::Refused(Refusal::Unlocked {
                label,
                why,
                held: false,
            })
        }
        Err(e) => {
            return AtPostmaster::Refused(Refusal::Unlocked {
                label,
                why: e.to_string(),
                held: false,
            })
        }
    };
    let found = look(first_start);
    match found.verdict {
        Verdict::Live(label) => {
            let kept = found.kept;
            let clone = clones.and_then(|c| clone_of(kept.as_ref()?, &found.content, found.id.as_ref(), c.archiving));
            match (clone, clones) {
                (
                    Some(clone),
                    Some(Clones {
                        archiving: Some(archiving),
                        refuse_archiving: true,
                    }),
                ) if clone.archives_as_primary => AtPostmaster::Refused(Refusal::ArchivingClone {
                    label,
                    differences: clone.differences,
                    archiving: archiving.to_string(),
                }),
                (clone, _) => void(label, &found.content, found.id, kept, clone),
            }
        }
        other => settled(other),
    }
}

/// What differs between where the primary that published `content` (this
/// very file, by its identity `id`; `record` its record) lived and where
/// the file is now: `Some` when this is most likely a block-level clone of
/// the primary (see place.rs).
fn clone_of(record: &Record, content: &[u8], id: Option<&FileId>, archiving: Option<&str>) -> Option<CloneFound> {
    if record.label != content {
        return None;
    }
    let then = record.place.as_ref()?;
    let now_dev = id.map_or(0, |id| id.dev);
    let now = place::here(data_dir(), archiving.unwrap_or("off").to_string());
    match place::compare(then, record.label_file.dev, &now, now_dev) {
        Sameness::Clone(differences) => Some(CloneFound {
            differences,
            archives_as_primary: place::archives_as_primary(then, archiving),
        }),
        Sameness::Same => None,
    }
}

fn settled(verdict: Verdict) -> AtPostmaster {
    match verdict {
        Verdict::NoLabel | Verdict::Recovery | Verdict::NotOurs => AtPostmaster::Untouched,
        Verdict::Copy(label) => AtPostmaster::Copy(label),
        Verdict::Refuse(refusal) => AtPostmaster::Refused(refusal),
        // Judged live, but not under the lock: never acted on.
        Verdict::Live(label) => AtPostmaster::Refused(Refusal::Unlocked {
            label,
            why: "the verdict was not made under it".into(),
            held: false,
        }),
    }
}

/// Renames backup_label and tablespace_map to `.old`, durably, and records
/// the outcome. The caller holds the lock file and has judged the label
/// with it held.
fn void(
    label: BackupLabel,
    content: &[u8],
    id: Option<FileId>,
    kept: Option<Record>,
    clone: Option<CloneFound>,
) -> AtPostmaster {
    let exists = |name: &str| std::fs::symlink_metadata(data_dir().join(name)).is_ok();
    let mut not_durable = None;
    match files::rename(data_dir(), BACKUP_LABEL, BACKUP_LABEL_OLD) {
        Ok(true) => {}
        Ok(false) => return AtPostmaster::Untouched,
        // Renamed, but the directory could not be fsynced.
        Err(e) if !exists(BACKUP_LABEL) && exists(BACKUP_LABEL_OLD) => not_durable = Some(e.to_string()),
        Err(e) => {
            return AtPostmaster::Refused(Refusal::NotRenamed {
                label,
                error: e.to_string(),
                blocking: files::blocking(data_dir(), BACKUP_LABEL_OLD),
            })
        }
    }
    // files::rename says itself whether there was a map to rename.
    let map = match files::rename(data_dir(), TABLESPACE_MAP, TABLESPACE_MAP_OLD) {
        Ok(false) => None,
        Ok(true) => Some(Ok(())),
        Err(e) => Some(Err(e)),
    };
    let label_file = id.unwrap_or(files::NO_FILE);
    let now = now_micros();
    let record = match (&clone, &kept) {
        // The primary's record stays as it was, but for the outcome.
        (Some(_), Some(kept)) => Record::cloned(kept, now),
        _ => Record::ended_by_restart(
            kept.as_ref(),
            content,
            label_file,
            files::file_id(&data_dir().join(CONTROL_FILE)).ok(),
            now,
        ),
    };
    let unrecorded = files::replace(data_dir(), STATE_FILE, &record.to_bytes()).err();
    AtPostmaster::Voided(Voided {
        label,
        map,
        not_durable,
        unrecorded,
        clone,
    })
}
