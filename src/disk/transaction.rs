//! The one guard of every transaction on the backup's files: the steps
//! taken so far, undone in reverse order when it is dropped, unless it was
//! committed.

use std::cell::Cell;

use super::Lock;
use crate::error::Result;
use crate::files::{self, data_dir, BACKUP_LABEL};
use crate::record::STATE_FILE;
use crate::shared;

/// One step, and how it is undone.
enum Step {
    /// The caller's own step (the server's backup mode), undone by calling
    /// it.
    Caller(Box<dyn FnOnce()>),
    /// The record replaced; the bytes it had (`None`: there was none).
    Record(Option<Vec<u8>>),
    /// The label linked into place, for the backup that started at
    /// `start` (TimestampTz).
    Label { start: i64 },
    /// A file renamed from `name` to `taken`: renamed back.
    Moved { taken: String, name: &'static str },
}

/// The steps of a transaction. Once its first file step is due it holds
/// the lock, so the undo, too, runs under the lock (the lock is dropped
/// after the undo). A linked label that cannot be removed again stops the
/// undo there: the backup then stays running with it (the record
/// describing it, the caller's step kept, shared memory saying so), label
/// and server agreeing, and `left_in_place` says so.
pub struct Transaction<'a> {
    steps: Vec<Step>,
    left_in_place: Option<&'a Cell<bool>>,
    // Declared last: dropped after the undo in `drop`.
    lock: Option<Lock>,
}

impl<'a> Transaction<'a> {
    /// A start's transaction; `left_in_place` is set if its undo had to
    /// leave the label in place.
    pub fn new(left_in_place: &'a Cell<bool>) -> Transaction<'a> {
        Transaction {
            steps: Vec::new(),
            left_in_place: Some(left_in_place),
            lock: None,
        }
    }

    /// A transaction that holds `lock` from the start.
    pub(super) fn under(lock: Lock) -> Transaction<'static> {
        Transaction {
            steps: Vec::new(),
            left_in_place: None,
            lock: Some(lock),
        }
    }

    pub(super) fn hold(&mut self, lock: Lock) {
        self.lock = Some(lock);
    }

    /// Adds the caller's undo step; it runs last of all.
    pub fn on_undo(&mut self, undo: impl FnOnce() + 'static) {
        self.steps.push(Step::Caller(Box::new(undo)));
    }

    /// The record is about to be replaced; it had `before`.
    pub(super) fn replacing_record(&mut self, before: Option<Vec<u8>>) {
        self.steps.push(Step::Record(before));
    }

    /// The label of the backup started at `start` was linked into place.
    pub(super) fn linked_label(&mut self, start: i64) {
        debug_assert!(self.left_in_place.is_some(), "a label linked outside a start");
        self.steps.push(Step::Label { start });
    }

    /// Renames `name` to `taken` in the data directory, durably, to be
    /// renamed back on undo (also when only the directory's fsync failed);
    /// false (and nothing to undo) when there was no `name`.
    pub(super) fn rename(&mut self, name: &'static str, taken: &str) -> Result<bool> {
        if !files::rename_undurably(data_dir(), name, taken)? {
            return Ok(false);
        }
        self.steps.push(Step::Moved {
            taken: taken.to_string(),
            name,
        });
        files::fsync_dir(data_dir())?;
        Ok(true)
    }

    fn undo(&mut self) {
        while let Some(step) = self.steps.pop() {
            match step {
                Step::Label { start } => {
                    let removed = files::remove(data_dir(), BACKUP_LABEL).is_ok()
                        || files::regular_or_absent(data_dir(), BACKUP_LABEL).is_ok_and(|m| m.is_none());
                    if !removed {
                        shared::set_running_backup(Some(start));
                        if let Some(left) = self.left_in_place {
                            left.set(true);
                        }
                        self.steps.clear();
                    }
                }
                Step::Record(before) => {
                    let _ = match before {
                        Some(bytes) => files::replace(data_dir(), STATE_FILE, &bytes),
                        None => files::remove(data_dir(), STATE_FILE).map(|_| ()),
                    };
                }
                Step::Moved { taken, name } => {
                    let _ = files::put_back(data_dir(), &taken, name);
                }
                Step::Caller(undo) => undo(),
            }
        }
    }

    /// Keeps everything; the lock, if held, is handed back to keep or drop.
    #[must_use = "dropping the lock here releases it at once"]
    pub(super) fn commit(mut self) -> Option<Lock> {
        self.steps.clear();
        self.lock.take()
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        self.undo();
    }
}
