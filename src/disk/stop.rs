//! The stop's transactions: the label and map taken away together under
//! the lock, the stop recorded, and later its LSN.

use super::{now_micros, record, Between, Lock, BRIEF_LOCK_WAIT, LOCK_WAIT};
use crate::error::{Error, Result, OBJECT_NOT_IN_PREREQUISITE_STATE as NOT_READY};
use crate::files::{self, data_dir, BACKUP_LABEL, CONTROL_FILE, LOCK_FILE, TABLESPACE_MAP};
use crate::hooks;
use crate::label::{Lsn, MAX_FILE_BYTES};
use crate::record::{Record, STATE_FILE};
use crate::shared;

/// What a claim found.
pub enum Claim {
    /// Taken; with the error of a stop record that could not be written.
    Taken(Option<Error>),
    /// No label any more: another stop took it.
    Gone,
    /// Another label than the one expected: a stop and a start came in
    /// between.
    Changed,
}

/// Puts a file taken away under a private name back in place when
/// dropped, unless disarmed.
struct PutBack {
    taken: String,
    name: &'static str,
    armed: bool,
}

impl Drop for PutBack {
    fn drop(&mut self) {
        if self.armed {
            let _ = files::put_back(data_dir(), &self.taken, self.name);
        }
    }
}

/// With the lock held against starts and other stops: takes backup_label
/// and tablespace_map out of their places if the label still is `expected`
/// (renamed to private names based on `claimed`, then removed), and
/// records that `stopped_by` stopped the backup. Of two sessions stopping
/// at once exactly one takes it, and no start can put a new map in place
/// between the two steps. If either cannot be taken, both are put back
/// and the backup stays running. `hold` runs as soon as the lock is held
/// (the caller holds its interrupts off from there), and what it returns
/// comes back with the claim.
pub fn claim<H>(
    expected: &[u8],
    claimed: &str,
    stopped_by: &str,
    between: Between,
    hold: impl FnOnce() -> H,
) -> Result<(Claim, H)> {
    let _lock = Lock::take_or_fail(LOCK_WAIT, between)?;
    let held = hold();
    match files::read_optional(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES)? {
        None => return Ok((Claim::Gone, held)),
        Some(t) if t != expected => return Ok((Claim::Changed, held)),
        Some(_) => {}
    }
    hooks::pause("stop_locked");
    let mut label = PutBack {
        taken: claimed.to_string(),
        name: BACKUP_LABEL,
        armed: true,
    };
    if !files::rename(data_dir(), BACKUP_LABEL, claimed)? {
        label.armed = false;
        return Ok((Claim::Gone, held));
    }
    hooks::may_panic("stop_renamed");
    let claimed_map = format!("{TABLESPACE_MAP}{}", &claimed[BACKUP_LABEL.len()..]);
    let mut map = PutBack {
        taken: claimed_map.clone(),
        name: TABLESPACE_MAP,
        armed: true,
    };
    files::rename(data_dir(), TABLESPACE_MAP, &claimed_map)?;
    // The record says so before anyone can see the label gone for good;
    // but a full disk must not keep a backup from being stopped.
    let stopped = Record::stopped(
        record(),
        expected,
        files::file_id(&data_dir().join(claimed)).unwrap_or(files::NO_FILE),
        files::file_id(&data_dir().join(CONTROL_FILE)).ok(),
        stopped_by,
        now_micros(),
    );
    let recorded = files::replace(data_dir(), STATE_FILE, &stopped.to_bytes());
    // Taken, both (or the label and no map): from here the stop must reach
    // the server.
    map.armed = false;
    label.armed = false;
    shared::set_running_backup(None);
    let _ = files::remove(data_dir(), &claimed_map);
    let _ = files::remove(data_dir(), claimed);
    Ok((Claim::Taken(recorded.err()), held))
}

/// Adds the stop LSN to the record of a stop, which makes the stop a
/// completed one (see `Record::with_stop_lsn`). The backup has ended by
/// then: the lock is waited for two seconds at most (others hold it for
/// milliseconds).
pub fn record_stop_lsn(label: &[u8], stop_lsn: Lsn, stopped_by: &str, between: Between) -> Result<()> {
    let Ok(_lock) = Lock::take(BRIEF_LOCK_WAIT, between)? else {
        return Err(Error::new(
            NOT_READY,
            format!("\"{LOCK_FILE}\" stayed locked for two seconds"),
        ));
    };
    match record().and_then(|r| r.with_stop_lsn(label, stop_lsn, stopped_by, now_micros())) {
        Some(r) => files::replace(data_dir(), STATE_FILE, &r.to_bytes()),
        None => Ok(()),
    }
}

/// In preload mode, shared memory may still say a backup runs whose label
/// has gone without a stop (removed by hand): once the label is seen to be
/// absent with the lock held, monitoring is told so.
pub fn forget_vanished(between: Between) -> Result<()> {
    if !matches!(shared::running_backup(), Some(Some(_))) {
        return Ok(());
    }
    let _lock = Lock::take_or_fail(LOCK_WAIT, between)?;
    if files::regular_or_absent(data_dir(), BACKUP_LABEL)?.is_none() {
        shared::set_running_backup(None);
    }
    Ok(())
}
