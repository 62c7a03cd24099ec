//! What each SQL function does. The exported symbols and their pg_finfo
//! records are in lib.rs; each calls [`crate::boundary::entry`] with one of
//! the bodies below.
//!
//! Invariant kept by start and stop: while the server is up, a backup_label
//! written by pg_start_backup exists exactly when the server counts that
//! exclusive backup among its running backups. Every path that changes one
//! changes the other, with interrupts held in between, and undoes its own
//! step if the other cannot be made.

use std::os::unix::fs::MetadataExt;

use crate::archive;
use crate::boundary::{report, Datum, FunctionCallInfo, InterruptsHeld, Level};
use crate::error::{
    already_running, not_running, Error, Result, INVALID_PARAMETER_VALUE, OBJECT_NOT_IN_PREREQUISITE_STATE as NOT_READY,
};
use crate::files::{self, data_dir, DirLock, BACKUP_LABEL, BACKUP_LABEL_OLD, TABLESPACE_MAP};
use crate::hooks;
use crate::label::{self, BackupLabel, BadLabelText, Method, MAX_FILE_BYTES, MAX_LABEL_BYTES};
use crate::postmaster;
use crate::server;
use crate::start;
use crate::state::{Fate, FileId, How, Outcome, Record, MAX_STATE_BYTES, STATE_FILE};
use crate::status;

fn recovery_error() -> Error {
    Error::new(NOT_READY, "recovery is in progress").hint("WAL control functions cannot be executed during recovery.")
}

/// "Not in progress", saying so when the reason is that the server
/// restarted during the backup: at startup the server takes over
/// backup_label as if restoring a backup and renames it backup_label.old.
fn not_running_here() -> Error {
    if let Some(e) = ended_by_restart() {
        return e;
    }
    match interrupted_by_restart() {
        Some(label) => not_running()
            .detail(format!(
                "The exclusive backup \"{label}\" was interrupted when the server restarted; \
                 the server renamed its label file to \"{BACKUP_LABEL_OLD}\"."
            ))
            .hint("That backup cannot be completed. Take a new one with pg_start_backup()."),
        None => not_running(),
    }
}

/// In preload mode the postmaster records in the state file that it ended a
/// backup at a restart; that record says so until the next start.
fn ended_by_restart() -> Option<Error> {
    let bytes = files::read_optional(data_dir(), STATE_FILE, MAX_STATE_BYTES).ok()??;
    let record = Record::parse(&bytes).ok()?;
    let Outcome::EndedByRestart { .. } = record.outcome else {
        return None;
    };
    let parsed = label::parse(&record.label).ok()?;
    Some(
        not_running()
            .detail(format!(
                "The exclusive backup \"{}\" started at {} was ended by a server restart; the copy taken is not \
                 a valid backup.",
                server::text_for_message(&parsed.label),
                parsed.start_time
            ))
            .hint("Take a new one with pg_start_backup()."),
    )
}

/// The label of an exclusive backup whose backup_label this server renamed
/// to backup_label.old at its last start, provided nothing has been added
/// to or removed from the data directory since (a later backup would have):
/// best effort, to explain a "not in progress" without misleading.
fn interrupted_by_restart() -> Option<String> {
    let text = files::read_optional(data_dir(), BACKUP_LABEL_OLD, MAX_FILE_BYTES).ok()??;
    let parsed = label::parse(&text).ok()?;
    // rename(2) updates the file's ctime and the directory's mtime, in the
    // same instant give or take the kernel's clock reads.
    let file = std::fs::metadata(data_dir().join(BACKUP_LABEL_OLD)).ok()?;
    let dir = std::fs::metadata(data_dir()).ok()?;
    let nanos = |s: i64, ns: i64| i128::from(s) * 1_000_000_000 + i128::from(ns);
    let renamed = nanos(file.ctime(), file.ctime_nsec());
    let dir_changed = nanos(dir.mtime(), dir.mtime_nsec());
    if file.ctime() < server::postmaster_start_unix() || dir_changed > renamed + 50_000_000 {
        return None;
    }
    Some(server::text_for_message(&parsed.label))
}

fn invalid_label(err: label::LabelError) -> Error {
    Error::new(NOT_READY, format!("invalid data in file \"{BACKUP_LABEL}\""))
        .detail(err.to_string())
        .hint(format!(
            "If no exclusive backup is running, move \"{BACKUP_LABEL}\" out of the data directory. \
         Never do this on a restored backup or a standby."
        ))
}

/// A non-exclusive backup started in this session owns the session's backup
/// state, which the server's stop routine would reset.
fn refuse_if_nonexclusive_backup_here() -> Result<()> {
    if server::session_backup_running()? {
        return Err(
            Error::new(NOT_READY, "a non-exclusive backup is in progress in this session").hint(
                "Finish it with pg_backup_stop() or, as in PostgreSQL 14, pg_stop_backup(false). \
                 Stop the exclusive backup from another session.",
            ),
        );
    }
    Ok(())
}

/// Reads and validates backup_label; `None` when there is none.
pub fn current_label() -> Result<Option<(Vec<u8>, BackupLabel)>> {
    match files::read_optional(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES)? {
        None => Ok(None),
        Some(text) => {
            let parsed = label::parse(&text).map_err(invalid_label)?;
            Ok(Some((text, parsed)))
        }
    }
}

pub fn start_backup(fcinfo: FunctionCallInfo) -> Result<Datum> {
    let label_text = server::text_arg(fcinfo, 0)?;
    let fast = server::bool_arg(fcinfo, 1);

    match label::check_label_text(&label_text) {
        Ok(()) => {}
        Err(BadLabelText::TooLong { bytes }) => {
            return Err(Error::new(
                INVALID_PARAMETER_VALUE,
                format!("backup label too long (max {MAX_LABEL_BYTES} bytes)"),
            )
            .detail(format!("The label is {bytes} bytes long.")))
        }
        Err(BadLabelText::HasLineBreak) => {
            return Err(
                Error::new(INVALID_PARAMETER_VALUE, "backup label must not contain a line break")
                    .detail("A newline or carriage return would corrupt the backup_label file."),
            )
        }
    }
    if server::recovery_in_progress()? {
        return Err(recovery_error());
    }
    // Cheap early checks, so a second caller does not wait for a checkpoint
    // only to lose, and something odd in the way is named at once; the
    // race-free check is the worker's exclusive link.
    if files::regular_or_absent(data_dir(), BACKUP_LABEL)?.is_some() {
        return Err(already_running());
    }
    files::regular_or_absent(data_dir(), TABLESPACE_MAP)?;
    let preloaded = postmaster::preloaded();
    if !preloaded && postmaster::require_preload() {
        return Err(Error::new(
            NOT_READY,
            "pg_start_backup requires pg_exclusive_backup in shared_preload_libraries",
        )
        .detail(format!(
            "pg_exclusive_backup.require_preload is on. {}",
            postmaster::WITHOUT_PRELOAD
        ))
        .hint(postmaster::PRELOAD_HINT));
    }
    if preloaded && files::file_id(data_dir()).map(|id| id.birth.is_none()).unwrap_or(false) {
        return Err(start::no_birth_times());
    }
    let method = postmaster::label_method();
    let start_lsn = start::start_in_worker(&label_text, fast, method)?;
    if !preloaded {
        if method == Method::Streamed {
            report(
                Level::Warning,
                "backup_label says \"BACKUP METHOD: streamed\" but pg_exclusive_backup is not in shared_preload_libraries",
                Some(
                    "If the server crashes or shuts down during this backup, it will not start again until \
                     backup_label is renamed to backup_label.old by hand.",
                ),
                Some(postmaster::PRELOAD_HINT),
            );
        } else {
            report(
                Level::Notice,
                "pg_exclusive_backup is not in shared_preload_libraries",
                None,
                Some(postmaster::NOTICE_HINT),
            );
        }
    }
    Ok(start_lsn as Datum)
}

/// pg_stop_backup(), and pg_stop_backup(wait_for_archive) as versions 1.0
/// and 1.1 declare it: the exclusive stop, returning its LSN.
pub fn stop_backup(fcinfo: FunctionCallInfo) -> Result<Datum> {
    let wait_for_archive = server::nargs(fcinfo) == 0 || server::bool_arg(fcinfo, 0);
    Ok(stop_exclusive(wait_for_archive)? as Datum)
}

/// PostgreSQL 14's record-returning stops: pg_stop_backup(exclusive,
/// wait_for_archive), and pg_stop_backup(b), which in a session running a
/// non-exclusive backup means what 14's pg_stop_backup(false) meant when
/// `b` is false (stop that backup, waiting for the archive) and otherwise
/// what version 1.0's did (the exclusive stop, `b` saying whether to wait).
pub fn stop_backup_fourteen(fcinfo: FunctionCallInfo) -> Result<Datum> {
    let (exclusive, wait_for_archive) = if server::nargs(fcinfo) >= 2 {
        (server::bool_arg(fcinfo, 0), server::bool_arg(fcinfo, 1))
    } else {
        let b = server::bool_arg(fcinfo, 0);
        if !b && server::session_backup_running()? {
            (false, true)
        } else {
            (true, b)
        }
    };
    server::prepare_stop_row(fcinfo)?;
    if exclusive {
        let lsn = stop_exclusive(wait_for_archive)?;
        server::return_exclusive_stop(fcinfo, lsn)?;
    } else {
        server::return_session_stop(fcinfo, wait_for_archive)?;
    }
    Ok(0)
}

fn stop_exclusive(wait_for_archive: bool) -> Result<label::Lsn> {
    if server::recovery_in_progress()? {
        return Err(recovery_error());
    }
    refuse_if_nonexclusive_backup_here()?;
    let stopped_by = server::session_info()?.user;
    let claimed = format!("{BACKUP_LABEL}.stopping.{}", std::process::id());
    for _ in 0..3 {
        // Prepare: everything that can fail, before anything changes. Any
        // error up to the claim leaves the backup running and stoppable.
        let Some((text, parsed)) = current_label()? else {
            forget_vanished_backup()?;
            return Err(not_running_here());
        };
        let prepared = server::PreparedStop::new(&parsed, &text)?;
        // Waiting for the lock stays cancellable; from the claim on, nothing
        // may interrupt until the server has ended the backup.
        let lock = server::lock_data_dir()?;
        let held = InterruptsHeld::new();
        let claimed = claim(&lock, &claimed, &text, &stopped_by);
        let unrecorded_stop;
        drop(lock);
        match claimed? {
            Claim::Changed => continue,
            Claim::Gone => return Err(not_running().detail("Another session stopped it at the same time.")),
            Claim::Taken(unrecorded) => unrecorded_stop = unrecorded,
        }
        hooks::pause("stop_claimed");
        // The label is gone from its place; the server must now leave backup
        // mode whatever happens. The prepared stop cannot fail before it has
        // (its only earlier checks are recovery and wal_level, settled
        // above), and nothing between here and there checks for interrupts.
        // The server's part is short (a WAL switch and the history file):
        // held off, a cancel cannot make it report an error for a backup it
        // has ended.
        let (stop_lsn, stop_tli) = prepared.run()?;
        if let Some(e) = unrecorded_stop {
            report(
                Level::Warning,
                &format!("could not record the stop of the exclusive backup in \"{STATE_FILE}\""),
                Some(&e.to_string()),
                Some("The backup was stopped all the same."),
            );
        }
        record_stop_lsn(&text, stop_lsn, &stopped_by);
        if !wait_for_archive {
            // A cancel that came in meanwhile came too late.
            server::forget_query_cancel();
            drop(held);
            return Ok(stop_lsn);
        }
        // The wait stays cancellable, as the server's own is: a cancel now
        // (or one that came in during the stop) ends the call with an
        // error, the backup being over.
        drop(held);
        archive::wait_for_archive(parsed.start_lsn, stop_lsn, stop_tli)?;
        return Ok(stop_lsn);
    }
    Err(Error::new(
        NOT_READY,
        "could not stop the exclusive backup: backup_label kept changing",
    )
    .detail("Other sessions stopped and started exclusive backups while this one tried to stop one.")
    .hint("Try again."))
}

/// In preload mode, shared memory may still say a backup runs whose label
/// has gone without a stop (removed by hand): once the label is seen to be
/// absent with the lock held, monitoring is told so.
fn forget_vanished_backup() -> Result<()> {
    if !matches!(postmaster::running_backup(), Some(Some(_))) {
        return Ok(());
    }
    let _lock = server::lock_data_dir()?;
    if files::regular_or_absent(data_dir(), BACKUP_LABEL)?.is_none() {
        postmaster::set_running_backup(None);
    }
    Ok(())
}

enum Claim {
    /// With the error of a stop record that could not be written.
    Taken(Option<Error>),
    Gone,
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
/// and tablespace_map out of their places (renamed to private names) if the
/// label still is `expected`. Of two sessions stopping at once exactly one
/// takes it, and no start can put a new map in place between the two
/// steps. If either cannot be taken, both are put back and the backup
/// stays running.
fn claim(_lock: &DirLock, claimed: &str, expected: &[u8], stopped_by: &str) -> Result<Claim> {
    match files::read_optional(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES)? {
        None => return Ok(Claim::Gone),
        Some(t) if t != expected => return Ok(Claim::Changed),
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
        return Ok(Claim::Gone);
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
    let recorded = record_stop(expected, claimed, stopped_by);
    // Taken, both (or the label and no map): from here the stop must reach
    // the server.
    map.armed = false;
    label.armed = false;
    postmaster::set_running_backup(None);
    let _ = files::remove(data_dir(), &claimed_map);
    let _ = files::remove(data_dir(), claimed);
    // Reported once the server has ended the backup: a message to the
    // client may block, and must not while the lock is held.
    Ok(Claim::Taken(recorded.err()))
}

/// Records, with the lock held and the label taken (now named `claimed`),
/// that `stopped_by` stops the backup whose label is `label`.
fn record_stop(label: &[u8], claimed: &str, stopped_by: &str) -> Result<()> {
    let now = status::unix_micros_now();
    let stopped = Outcome::Stopped {
        at: now,
        stop_lsn: None,
        by: stopped_by.to_string(),
    };
    let record = match status::read_record() {
        Some(r) if r.outcome == Outcome::Running && r.label == label => Record { outcome: stopped, ..r },
        // A label without its record (started by version 1.0): what the
        // label says, and the history the record had.
        other => Record {
            label_file: files::file_id(&data_dir().join(claimed)).unwrap_or(FileId {
                dev: 0,
                ino: 0,
                birth: None,
            }),
            control_file: files::file_id(&data_dir().join(crate::verdict::CONTROL_FILE)).ok(),
            outcome: stopped,
            session: None,
            previous: None,
            last_completed: other.and_then(|r| r.history(Fate::Copy).1),
            label: label.to_vec(),
        },
    };
    files::replace(data_dir(), STATE_FILE, &record.to_bytes())
}

/// Adds the stop LSN to the record of a stop, and with it makes the stop a
/// completed one: in the record's own backup, or in the history of a start
/// that came in between. The backup has ended: a failure here only costs
/// the status view that LSN, and is reported as a warning.
fn record_stop_lsn(label: &[u8], stop_lsn: label::Lsn, stopped_by: &str) {
    // Interrupts may be held here, and the backup has ended: wait for the
    // lock (held by others for milliseconds) two seconds at most.
    let lock = match server::lock_data_dir_briefly() {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(Error::new(
            NOT_READY,
            format!("\"{}\" stayed locked for two seconds", files::LOCK_FILE),
        )),
        Err(e) => Err(e),
    };
    let done = lock.and_then(|_lock| {
        let Some(mut r) = status::read_record() else {
            return Ok(());
        };
        let now = status::unix_micros_now();
        if r.label == label {
            match r.outcome {
                // The stop's own record, or one it could not write.
                Outcome::Stopped { stop_lsn: None, .. } | Outcome::Running => {
                    r.outcome = Outcome::Stopped {
                        at: now,
                        stop_lsn: Some(stop_lsn),
                        by: stopped_by.to_string(),
                    };
                }
                _ => return Ok(()),
            }
        } else {
            let text = label::parse(label).map(|l| l.label).unwrap_or_default();
            match &mut r.previous {
                Some(p) if p.how == How::Stopped && p.stop_lsn.is_none() && p.label == text => {
                    p.stop_lsn = Some(stop_lsn);
                    p.end_time = Some(now);
                    r.last_completed = Some(now);
                }
                _ => return Ok(()),
            }
        }
        files::replace(data_dir(), STATE_FILE, &r.to_bytes())
    });
    if let Err(e) = done {
        report(
            Level::Warning,
            &format!("could not record the stop LSN in \"{STATE_FILE}\""),
            Some(&e.to_string()),
            Some("The backup was stopped and completed; pg_exclusive_backup_status() does not show it as completed."),
        );
    }
}

/// The identity of a file as far as a change of its content goes: a new
/// label is a new file (link of a fresh temporary file), and any write would
/// change size or times.
#[derive(Clone, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    fn of(m: &std::fs::Metadata) -> Self {
        FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The start time (TimestampTz) of the running exclusive backup, or the
/// reason its label is invalid.
type LabelVerdict = std::result::Result<i64, label::LabelError>;

thread_local! {
    /// Monitoring polls pg_is_in_backup() and pg_backup_start_time(); a
    /// stat is much cheaper than opening, reading and parsing the label, so
    /// each backend remembers its verdict on the label for as long as the
    /// file stays the same file.
    static SEEN_LABEL: std::cell::RefCell<Option<(FileIdentity, LabelVerdict)>> = const { std::cell::RefCell::new(None) };
}

fn label_identity() -> Result<Option<FileIdentity>> {
    Ok(files::regular_or_absent(data_dir(), BACKUP_LABEL)?.map(|m| FileIdentity::of(&m)))
}

/// The start time of the running exclusive backup, `None` when there is
/// none; an invalid label is an error.
fn running_backup_start_time() -> Result<Option<i64>> {
    let Some(identity) = label_identity()? else {
        return Ok(None);
    };
    let remembered = SEEN_LABEL.with(|seen| {
        seen.borrow()
            .as_ref()
            .filter(|(id, _)| *id == identity)
            .map(|(_, verdict)| verdict.clone())
    });
    if let Some(verdict) = remembered {
        return verdict.map(Some).map_err(invalid_label);
    }
    let Some(text) = files::read_optional(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES)? else {
        return Ok(None);
    };
    let verdict = match label::parse(&text) {
        // The exact start; a label without it (written by version 1.0) has
        // only its START TIME, read in today's log_timezone.
        Ok(parsed) => Ok(label::timestamptz_from_unix(match parsed.start_epoch {
            Some(t) => t,
            None => server::start_time_unix(&parsed.start_time)?,
        })),
        Err(e) => Err(e),
    };
    // Remember it only if the file did not change while we read it.
    if label_identity()? == Some(identity.clone()) && text.len() as u64 == identity.size {
        SEEN_LABEL.with(|seen| *seen.borrow_mut() = Some((identity, verdict.clone())));
    }
    verdict.map(Some).map_err(invalid_label)
}

/// The running backup's start: from shared memory in preload mode, else
/// from backup_label. No exclusive backup can run during recovery; a label
/// there belongs to the backup being restored.
fn monitored_start_time() -> Result<Option<i64>> {
    if server::recovery_in_progress()? {
        return Ok(None);
    }
    match postmaster::running_backup() {
        Some(known) => Ok(known),
        None => running_backup_start_time(),
    }
}

pub fn is_in_backup(_fcinfo: FunctionCallInfo) -> Result<Datum> {
    Ok(monitored_start_time()?.is_some() as Datum)
}

pub fn backup_start_time(fcinfo: FunctionCallInfo) -> Result<Datum> {
    let found = monitored_start_time()?;
    match found {
        Some(timestamp) => Ok(timestamp as Datum),
        None => {
            // SAFETY: fcinfo is the server's call frame for this function.
            unsafe { (*fcinfo).isnull = true };
            Ok(0)
        }
    }
}

pub fn test_panic(_fcinfo: FunctionCallInfo) -> Result<Datum> {
    panic!("deliberate panic requested by a test");
}
