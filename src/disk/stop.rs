//! The stop's transactions, and the void's: the label and map taken away
//! together under the lock, the stop (or the void) recorded, and later the
//! stop's LSN.

use super::{now_micros, record, Between, Lock, Transaction, BRIEF_LOCK_WAIT, LOCK_WAIT};
use crate::error::{Error, Result, OBJECT_NOT_IN_PREREQUISITE_STATE as NOT_READY};
use crate::files::{
    self, data_dir, BACKUP_LABEL, BACKUP_LABEL_OLD, CONTROL_FILE, LOCK_FILE, TABLESPACE_MAP, TABLESPACE_MAP_OLD,
};
use crate::hooks;
use crate::label::{BackupLabel, Lsn, MAX_FILE_BYTES};
use crate::record::{Record, Session, Voider, STATE_FILE};
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
    // Declared first, dropped last: interrupts stay held through the undo.
    let held;
    let mut txn = Transaction::under(Lock::take_or_fail(LOCK_WAIT, between)?);
    held = hold();
    match files::read_optional(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES)? {
        None => return Ok((Claim::Gone, held)),
        Some(t) if t != expected => return Ok((Claim::Changed, held)),
        Some(_) => {}
    }
    hooks::pause("stop_locked");
    if !txn.rename(BACKUP_LABEL, claimed)? {
        return Ok((Claim::Gone, held));
    }
    hooks::may_panic("stop_renamed");
    let claimed_map = format!("{TABLESPACE_MAP}{}", &claimed[BACKUP_LABEL.len()..]);
    txn.rename(TABLESPACE_MAP, &claimed_map)?;
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
    shared::set_running_backup(None);
    let _lock = txn.commit();
    // Durable with the directory's next fsync, the stop LSN's record a
    // moment later: until then a crash may bring the private names back,
    // which nothing reads.
    let _ = files::unlink(data_dir(), &claimed_map);
    let _ = files::unlink(data_dir(), claimed);
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

/// What a void took away.
pub struct VoidTaken {
    /// What the label said.
    pub label: BackupLabel,
    /// Who started it, from the record that described it.
    pub session: Option<Session>,
    /// The error of a record that could not be written.
    pub unrecorded: Option<Error>,
}

/// With the lock held: voids the running backup (the one whose label is
/// `expected`, if given): backup_label and tablespace_map are renamed to
/// `.old`, as a restart renames them, and the record says who voided it.
/// `None` when there is no such label. If either file cannot be renamed,
/// both are put back and the backup stays running. `hold` runs as soon as
/// the lock is held, as for [`claim`].
pub fn void<H>(
    expected: Option<&[u8]>,
    by: Voider,
    between: Between,
    hold: impl FnOnce() -> H,
) -> Result<(Option<VoidTaken>, H)> {
    // Declared first, dropped last: interrupts stay held through the undo.
    let held;
    let mut txn = Transaction::under(Lock::take_or_fail(LOCK_WAIT, between)?);
    held = hold();
    let text = match files::read_optional(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES)? {
        None => return Ok((None, held)),
        Some(t) if expected.is_some_and(|e| e != t.as_slice()) => return Ok((None, held)),
        Some(t) => t,
    };
    let label = super::parse_label(&text)?;
    let old = record();
    hooks::pause("void_locked");
    if !txn.rename(BACKUP_LABEL, BACKUP_LABEL_OLD)? {
        return Ok((None, held));
    }
    txn.rename(TABLESPACE_MAP, TABLESPACE_MAP_OLD)?;
    let session = old.as_ref().filter(|r| r.label == text).and_then(|r| r.session.clone());
    let voided = Record::voided(
        old,
        &text,
        files::file_id(&data_dir().join(BACKUP_LABEL_OLD)).unwrap_or(files::NO_FILE),
        files::file_id(&data_dir().join(CONTROL_FILE)).ok(),
        by,
        now_micros(),
    );
    let unrecorded = files::replace(data_dir(), STATE_FILE, &voided.to_bytes()).err();
    // Renamed, both (or the label and no map): from here the server must
    // leave backup mode.
    shared::set_running_backup(None);
    let _lock = txn.commit();
    Ok((
        Some(VoidTaken {
            label,
            session,
            unrecorded,
        }),
        held,
    ))
}
