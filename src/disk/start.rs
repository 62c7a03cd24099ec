//! The start's transaction: the label, the map and the record put in
//! place together under the lock, or none of them, and the server's backup
//! mode left again with them.

use super::{facts, old_label, Between, Lock, Transaction, LOCK_WAIT};
use crate::error::{already_running, Error, Result};
use crate::files::{self, data_dir, FileId, Prepared, Published, BACKUP_LABEL, CONTROL_FILE, TABLESPACE_MAP};
use crate::hooks;
use crate::record::{Record, MAX_STATE_BYTES, STATE_FILE as STATE_FILE_NAME};
use crate::shared;
use crate::verdict;

/// A start's label and map, written and fsynced under private names, and
/// the identities the record keeps (see record.rs).
pub struct Files {
    label: Prepared,
    /// `None` without tablespaces.
    map: Option<Prepared>,
    /// What the label file will be once in place (a link keeps it).
    pub label_file: FileId,
    /// global/pg_control's identity now.
    pub control_file: FileId,
}

/// Writes a start's label and map under private names, ready to be put in
/// place by [`publish`] (a link or rename cannot run out of space or leave
/// half a file); removed again when dropped unpublished.
pub fn prepare(label: &[u8], map: &[u8]) -> Result<Files> {
    let label = Prepared::write(data_dir(), BACKUP_LABEL, label)?;
    let label_file = label.file_id()?;
    let control_file =
        files::file_id(&data_dir().join(CONTROL_FILE)).map_err(|e| Error::file("stat", CONTROL_FILE, &e))?;
    let map = if map.is_empty() {
        None
    } else {
        Some(Prepared::write(data_dir(), TABLESPACE_MAP, map)?)
    };
    Ok(Files {
        label,
        map,
        label_file,
        control_file,
    })
}

/// What a start puts in place.
pub struct Publication {
    pub files: Files,
    /// The record of the new backup; its history is filled in here.
    pub record: Record,
    /// The backup's start (TimestampTz), for shared memory.
    pub start_time: i64,
    /// The server's recovery state and timeline, which decide what became
    /// of the backup the old record names (its history).
    pub in_recovery: bool,
    pub timeline: Option<u32>,
}

/// Puts the label, the map and the record in place, with the lock held:
/// all of them, and the transaction is committed (the label is the
/// backup's from then on), or none, the transaction undoing every step.
pub fn publish(mut txn: Transaction, p: Publication, between: Between) -> Result<()> {
    txn.hold(Lock::take_or_fail(LOCK_WAIT, between)?);
    let raced = || already_running().detail("Another session started an exclusive backup at the same time.");
    // The record describes the running backup's label: never replace it
    // while one is in place.
    if files::regular_or_absent(data_dir(), BACKUP_LABEL)?.is_some() {
        return Err(raced());
    }
    let mut record = p.record;
    // The history moves on from the record of the backup before, which no
    // label names any more. Best effort: a record that cannot be read only
    // loses the history (writing the new one below still has to succeed).
    let before = files::read_optional(data_dir(), STATE_FILE_NAME, MAX_STATE_BYTES)
        .ok()
        .flatten();
    if let Some(old) = before.as_deref().and_then(|b| Record::parse(b).ok()) {
        let old_label = old_label();
        let facts = facts(None, p.in_recovery, p.timeline, old_label.as_ref());
        (record.previous, record.last_completed) = old.history(verdict::fate(&old, &facts));
    }
    // Before the link: a label in place always has its record, even if the
    // postmaster is killed right after the link.
    // Pushed first: a rename that succeeds before a failed directory fsync
    // is undone too (putting the old record back is right either way).
    txn.replacing_record(before);
    files::replace(data_dir(), STATE_FILE_NAME, &record.to_bytes())?;
    hooks::pause("worker_recorded");
    if p.files.label.link_exclusive()? == Published::AlreadyExists {
        return Err(raced());
    }
    txn.linked_label(p.start_time);
    hooks::may_panic("worker_linked");
    files::fsync_dir(data_dir())?;
    // The label is ours now, and with it the right to tablespace_map. A
    // stale map from an interrupted backup must not end up in this one.
    match p.files.map {
        Some(map) => map.replace()?,
        None => {
            files::remove(data_dir(), TABLESPACE_MAP)?;
        }
    }
    // The label is visible from the moment the lock is released, and from
    // then on it, not the starting process, owns the backup: whoever stops
    // it leaves backup mode.
    shared::set_running_backup(Some(p.start_time));
    // The lock is let go of here.
    drop(txn.commit());
    Ok(())
}
