//! The start protocol: pg_start_backup's work happens in a background
//! worker, preload mode's standing worker (standing/) or, without it, one
//! forked for the start; `caller.rs` is the calling backend's side of it,
//! `worker.rs` the worker's, and this module the request they share.
//!
//! Why a worker: the server remembers, per session, that the session has a
//! backup running (its `sessionBackupState`), and only its own
//! pg_backup_stop() can clear that memory. An exclusive backup outlives its
//! session and is usually stopped from another one, so if the caller's
//! session entered backup mode itself it would be left believing it still
//! runs a backup: the built-in pg_backup_stop() would then crash that
//! backend, a later non-exclusive backup in it would be refused, and on
//! servers built with assertions a failed start would trip an assertion.
//! Entering backup mode in a worker that exits right after leaves every
//! session's state untouched.
//!
//! The request lives in a dynamic shared memory segment the caller
//! creates, and reaches the standing worker through the mailbox in shared
//! memory, or a worker forked for it as its argument. Its `outcome` moves
//! only by compare-and-swap:
//!
//! ```text
//!   PENDING --worker--> READY --caller--> COMMIT --worker--> STARTED | FAILED
//!      |                  |  \--worker (terminated)--> FAILED
//!      |--worker--> FAILED |
//!      |--caller--> ABANDONED <--caller--/
//!      \--standing worker--> DECLINED --caller--> PENDING (for a forked worker)
//! ```
//!
//! The standing worker declines while it holds another backup whose stop
//! is under way; a caller whose request the standing worker has not taken
//! within a second (it is busy with another start) takes it back from the
//! mailbox and forks a worker too. Either way one worker serves it.
//!
//! The worker enters backup mode and writes the label and map under
//! private names (READY) and then waits for the caller's verdict. The
//! caller either commits (holding off its own interrupts from then until
//! the worker reports, so that it cannot be cancelled after it has agreed)
//! or, if it is cancelled, times out or exits first, abandons. Only after
//! COMMIT does the worker put the files in place; so backup_label is never
//! visible for a start the caller may still give up on, and the worker
//! never has to take back a label another session could already have seen
//! and stopped. So the caller is told "started" exactly when the backup
//! runs with its label in place. One exception: a caller terminated
//! (pg_terminate_backend) after it committed leaves once the worker is done,
//! without an answer, while the backup runs; pg_is_in_backup() says so.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};

use crate::disk;
use crate::error::{
    already_running, recovery_in_progress, Error, Result, INVALID_PARAMETER_VALUE, OBJECT_NOT_IN_PREREQUISITE_STATE,
};
use crate::label::{self, BadLabelText, Lsn, MAX_LABEL_BYTES};
use crate::mode;
use crate::server::{self, worker::Latch};
use crate::shared;

mod caller;
mod worker;

pub use caller::start_in_worker;
pub use worker::{attach, decline, serve, worker_exiting, worker_main};

/// Room for a role, database or application name (NAMEDATALEN is 64) or a
/// client address.
const NAME_BYTES: usize = 256;

const PENDING: u32 = 0;
const READY: u32 = 1;
const COMMIT: u32 = 2;
const STARTED: u32 = 3;
const FAILED: u32 = 4;
const ABANDONED: u32 = 5;
const DECLINED: u32 = 6;

/// The request in shared memory. Until the outcome leaves PENDING only the
/// caller writes the input fields; the worker writes the output fields
/// before the compare-and-swap that publishes them. Its layout is that of
/// the worker entry point's name (`peb_start_backup_worker_3`, lib.rs).
#[repr(C)]
pub struct Request {
    outcome: AtomicU32,
    caller_latch: Latch,
    worker_latch: AtomicPtr<c_void>,
    fast: bool,
    /// The BACKUP METHOD to write; the worker does not see the caller's
    /// settings.
    streamed: bool,
    label: [u8; MAX_LABEL_BYTES + 1],
    /// The caller's session, for the state record (NUL-terminated).
    session_user: [u8; NAME_BYTES],
    database: [u8; NAME_BYTES],
    started_from: [u8; NAME_BYTES],
    has_client: bool,
    application_name: [u8; NAME_BYTES],
    caller_pid: i32,
    /// Written by the worker before READY, read by the caller after it.
    start_lsn: UnsafeCell<Lsn>,
    /// Written by the worker before FAILED, read by the caller after it.
    failure: UnsafeCell<Failure>,
    /// Set by the standing worker once it is done with the request (a
    /// forked worker is done when it exits).
    settled: AtomicBool,
    /// The pid of the standing worker that took the request from the
    /// mailbox (0 until one did): the one whose exit matters to the caller.
    served_by: AtomicI32,
}

#[repr(C)]
struct Failure {
    sqlerrcode: i32,
    message: [u8; 1024],
    detail: [u8; 1024],
    hint: [u8; 512],
}

impl Request {
    fn outcome(&self) -> u32 {
        self.outcome.load(Ordering::Acquire)
    }

    fn cas(&self, from: u32, to: u32) -> bool {
        self.outcome
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn wake_caller(&self) {
        self.caller_latch.set();
    }

    /// The standing worker (this process) takes the request.
    pub fn taken_by(&self, pid: i32) {
        self.served_by.store(pid, Ordering::Release);
    }

    /// The standing worker that took the request, if one did.
    fn taker(&self) -> Option<i32> {
        match self.served_by.load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// The standing worker is done with the request.
    pub fn settle(&self) {
        self.settled.store(true, Ordering::Release);
        self.wake_caller();
    }

    fn settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    fn wake_worker(&self) {
        Latch::from_ptr(self.worker_latch.load(Ordering::Acquire)).set();
    }
}

/// What pg_start_backup refuses before it asks a worker: a bad label, a
/// server in recovery, a backup already in place, something odd in the
/// way, preload mode required but off, a file system without birth times
/// in preload mode. Cheap early checks, so that a second caller does not
/// wait for a checkpoint only to lose, and something odd in the way is
/// named at once; the race-free checks are the worker's (its exclusive
/// link, the birth time of the very label file it writes).
pub fn refuse_early(label_text: &[u8]) -> Result<()> {
    match label::check_label_text(label_text) {
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
        return Err(recovery_in_progress());
    }
    if disk::label_metadata()?.is_some() {
        return Err(already_running());
    }
    disk::check_map()?;
    let preloaded = shared::preloaded();
    if !preloaded && server::settings::require_preload() {
        return Err(Error::new(
            OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_start_backup requires pg_exclusive_backup in shared_preload_libraries",
        )
        .detail(format!(
            "pg_exclusive_backup.require_preload is on. {}",
            mode::WITHOUT_PRELOAD
        ))
        .hint(mode::PRELOAD_HINT));
    }
    if preloaded && disk::birth_times_recorded() == Some(false) {
        return Err(no_birth_times());
    }
    Ok(())
}

/// Preload mode tells the primary's own label from a copy's by its birth
/// time, which this file system does not record.
pub fn no_birth_times() -> Error {
    Error::new(
        OBJECT_NOT_IN_PREREQUISITE_STATE,
        "the file system of the data directory does not record file birth times",
    )
    .detail(
        "In preload mode the postmaster tells this primary's own backup_label from a restored copy's by the \
         label file's inode number and birth time; without birth times it could not decide after a crash, and \
         would refuse to start.",
    )
    .hint("Put the data directory on a file system that records birth times (ext4, XFS, Btrfs), or take the backup without preload mode.")
}
