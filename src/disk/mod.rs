//! The backup as it lies on disk: the one owner of the lock file,
//! backup_label, tablespace_map and the state record
//! (`pg_exclusive_backup.state`), and of the running backup's start in
//! preload mode's shared memory. The whole product is one promise about
//! them: they change together, under the lock, or not at all. Nothing else
//! takes the lock or writes the record; everyone else observes through this
//! module and changes the backup through one of its transactions:
//!
//! - `publish` (start.rs): the start puts its label, map and record in place;
//! - `claim` and `record_stop_lsn` (stop.rs): the stop takes them away;
//! - `void` (stop.rs): a void renames them to `.old`;
//! - `settle_at_postmaster` (restart.rs): the postmaster voids the
//!   primary's own label at a start, a crash restart or its exit.
//!
//! Each takes the lock itself, and is undone by a guard unless it
//! completes. Plain Rust: how a process waits for the lock is the caller's
//! to say (a backend on its latch, the postmaster by sleeping), and the
//! server's side of a transaction comes in as an undo step. (In the test
//! builds its delay points, hooks.rs, read a setting and sleep.)

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, OBJECT_NOT_IN_PREREQUISITE_STATE as NOT_READY};
use crate::files::{self, data_dir, DirLock, FileId, BACKUP_LABEL, BACKUP_LABEL_OLD, LOCK_FILE, TABLESPACE_MAP};
use crate::label::{self, BackupLabel, MAX_FILE_BYTES};
use crate::record::{Record, UnixMicros, MAX_STATE_BYTES, STATE_FILE};
use crate::verdict::Facts;

mod restart;
mod start;
mod stop;
#[cfg(test)]
mod tests;
mod transaction;

#[cfg_attr(test, allow(unused_imports))]
pub use restart::{control_file_head, settle_at_postmaster, AtPostmaster, Clones, Voided};
#[cfg_attr(test, allow(unused_imports))]
pub use start::{prepare, publish, Publication};
#[cfg_attr(test, allow(unused_imports))]
pub use stop::{claim, forget_vanished, record_stop_lsn, void, Claim};
#[cfg_attr(test, allow(unused_imports))]
pub use transaction::Transaction;

/// How a process waits a moment between two tries for the lock file: an
/// error ends the wait (a backend's cancel).
pub type Between<'a> = &'a mut dyn FnMut() -> Result<()>;

/// How long a start or stop waits for another's hold on the lock file.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// How long callers to whom the lock is a nicety wait for it.
pub const BRIEF_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Why the lock file could not be taken.
#[derive(Debug)]
pub enum Unlocked {
    /// Another process held it all the time allowed.
    Held,
    /// It cannot be taken at all: the error, and why as the end of a
    /// sentence.
    Broken(Error, String),
}

/// The lock file, held: backup_label, tablespace_map and the record change
/// only while a process holds it. Holders only read, rename, link, remove
/// and fsync files while they hold it; the kernel drops it when the holder
/// exits, however it exits.
pub struct Lock(#[allow(dead_code)] DirLock);

impl Lock {
    /// The one loop that takes the lock: tries, and calls `between` while
    /// another holder has it, for at most `limit`.
    pub fn take(limit: Duration, between: Between) -> Result<std::result::Result<Lock, Unlocked>> {
        let began = Instant::now();
        loop {
            match DirLock::try_acquire(data_dir()) {
                Ok(Some(lock)) => return Ok(Ok(Lock(lock))),
                Ok(None) if began.elapsed() >= limit => return Ok(Err(Unlocked::Held)),
                Ok(None) => between()?,
                Err(e) => {
                    let why = match files::blocking(data_dir(), LOCK_FILE) {
                        Some(kind) => format!("\"{LOCK_FILE}\" in the data directory is {kind}"),
                        None => format!("taking it failed: {e}"),
                    };
                    return Ok(Err(Unlocked::Broken(e, why)));
                }
            }
        }
    }

    /// [`Lock::take`] for a start or stop: a lock file that is held too
    /// long or cannot be taken is an error.
    fn take_or_fail(limit: Duration, between: Between) -> Result<Lock> {
        match Lock::take(limit, between)? {
            Ok(lock) => Ok(lock),
            Err(Unlocked::Held) => Err(Error::new(
                NOT_READY,
                format!("could not lock \"{LOCK_FILE}\" within {} seconds", limit.as_secs()),
            )
            .detail("Another pg_start_backup or pg_stop_backup held it all that time.")
            .hint("Try again; if it persists, look for a process holding the file open.")),
            Err(Unlocked::Broken(e, _)) => Err(e),
        }
    }
}

/// Runs `look` with the lock held if it comes free within two seconds,
/// `None` otherwise (or if it cannot be taken at all): for a reader that
/// wants a moment when no start or stop is half done.
pub fn settled<T>(between: Between, look: impl FnOnce() -> T) -> Result<Option<T>> {
    match Lock::take(BRIEF_LOCK_WAIT, between)? {
        Ok(_lock) => Ok(Some(look())),
        Err(_) => Ok(None),
    }
}

// ---------------------------------------------------------------------
// Observing
// ---------------------------------------------------------------------

/// The error for a backup_label that is not one pg_start_backup writes.
pub fn invalid_label(err: label::LabelError) -> Error {
    Error::new(NOT_READY, format!("invalid data in file \"{BACKUP_LABEL}\""))
        .detail(err.to_string())
        .hint(format!(
            "If no exclusive backup is running, move \"{BACKUP_LABEL}\" out of the data directory. \
             Never do this on a restored backup or a standby."
        ))
}

/// backup_label's content and what it says; `None` when there is none. A
/// label that is not one pg_start_backup writes is an error.
pub fn label() -> Result<Option<(Vec<u8>, BackupLabel)>> {
    match label_text()? {
        None => Ok(None),
        Some(text) => {
            let parsed = label::parse(&text).map_err(invalid_label)?;
            Ok(Some((text, parsed)))
        }
    }
}

/// What a label's content says, or the error [`label`] gives for it.
pub fn parse_label(text: &[u8]) -> Result<BackupLabel> {
    label::parse(text).map_err(invalid_label)
}

/// backup_label's content, `None` when there is none.
pub fn label_text() -> Result<Option<Vec<u8>>> {
    files::read_optional(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES)
}

/// backup_label's metadata (not following a symlink), `None` when there is
/// none; anything but a regular file under the name is an error.
pub fn label_metadata() -> Result<Option<std::fs::Metadata>> {
    files::regular_or_absent(data_dir(), BACKUP_LABEL)
}

/// An error if something other than a regular file lies where
/// tablespace_map belongs.
pub fn check_map() -> Result<()> {
    files::regular_or_absent(data_dir(), TABLESPACE_MAP).map(|_| ())
}

/// The state record, when there is a valid one: an unreadable or damaged
/// record only costs the history.
pub fn record() -> Option<Record> {
    let bytes = files::read_optional(data_dir(), STATE_FILE, MAX_STATE_BYTES).ok()??;
    Record::parse(&bytes).ok()
}

/// backup_label.old as the files show it: what `verdict::fate` needs
/// beyond the server's own facts.
pub struct OldLabel {
    content: Vec<u8>,
    /// When it was renamed (the rename set its ctime).
    renamed_at: Option<UnixMicros>,
    id: Option<FileId>,
}

pub fn old_label() -> Option<OldLabel> {
    let content = files::read_optional(data_dir(), BACKUP_LABEL_OLD, MAX_FILE_BYTES).ok()??;
    let path = data_dir().join(BACKUP_LABEL_OLD);
    let renamed_at = std::fs::symlink_metadata(&path)
        .ok()
        .map(|m| m.ctime() * 1_000_000 + m.ctime_nsec() / 1000);
    Some(OldLabel {
        content,
        renamed_at,
        id: files::file_id(&path).ok(),
    })
}

/// The facts `verdict::fate` decides on: the running label, the server's
/// `in_recovery` and `timeline`, and backup_label.old.
pub fn facts<'a>(
    running_label: Option<&'a [u8]>,
    in_recovery: bool,
    timeline: Option<u32>,
    old: Option<&'a OldLabel>,
) -> Facts<'a> {
    Facts {
        running_label,
        in_recovery,
        old_label: old.map(|o| (o.content.as_slice(), o.renamed_at, o.id)),
        timeline,
    }
}

/// The LABEL of an exclusive backup whose backup_label was renamed to
/// backup_label.old since `postmaster_start` (Unix seconds), provided
/// nothing has been added to or removed from the data directory since (a
/// later backup would have): best effort, to explain a "not in progress"
/// without misleading.
pub fn renamed_since(postmaster_start: i64) -> Option<Vec<u8>> {
    let text = files::read_optional(data_dir(), BACKUP_LABEL_OLD, MAX_FILE_BYTES).ok()??;
    let parsed = label::parse(&text).ok()?;
    // rename(2) updates the file's ctime and the directory's mtime, in the
    // same instant give or take the kernel's clock reads.
    let file = std::fs::metadata(data_dir().join(BACKUP_LABEL_OLD)).ok()?;
    let dir = std::fs::metadata(data_dir()).ok()?;
    let nanos = |s: i64, ns: i64| i128::from(s) * 1_000_000_000 + i128::from(ns);
    let renamed = nanos(file.ctime(), file.ctime_nsec());
    let dir_changed = nanos(dir.mtime(), dir.mtime_nsec());
    if file.ctime() < postmaster_start || dir_changed > renamed + 50_000_000 {
        return None;
    }
    Some(parsed.label)
}

/// Whether the data directory's file system records birth times, which
/// preload mode needs to tell the primary's label from a copy's; `None`
/// when that cannot be examined.
pub fn birth_times_recorded() -> Option<bool> {
    files::file_id(data_dir()).ok().map(|id| id.birth.is_some())
}

pub fn now_micros() -> UnixMicros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
