//! The start protocol: pg_start_backup's work happens in a short-lived
//! background worker, and this module is both sides of it.
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
//! creates. Its `outcome` moves only by compare-and-swap:
//!
//! ```text
//!   PENDING --worker--> READY --caller--> COMMIT --worker--> STARTED | FAILED
//!      |                  |  \--worker (terminated)--> FAILED
//!      |--worker--> FAILED |
//!      \--caller--> ABANDONED <--caller--/
//! ```
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

use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::bindings as pg;
use crate::boundary::{guarded, InterruptsHeld};
use crate::error::{
    already_running, Error, Result, ServerError, SqlState, ADMIN_SHUTDOWN, INSUFFICIENT_RESOURCES, INTERNAL_ERROR,
};
use crate::files::{self, data_dir, Prepared, Published, BACKUP_LABEL, TABLESPACE_MAP};
use crate::hooks;
use crate::label::{self, Lsn, MAX_LABEL_BYTES};
use crate::postmaster;
use crate::server;
use crate::state::{self, Outcome, Record, Session, MAX_STATE_BYTES, STATE_FILE};
use crate::status;

/// How long pg_start_backup waits for a free background worker slot.
const SLOT_WAIT_MS: i64 = 10_000;

/// Room for a role, database or application name (NAMEDATALEN is 64) or a
/// client address.
const NAME_BYTES: usize = 256;

const PENDING: u32 = 0;
const READY: u32 = 1;
const COMMIT: u32 = 2;
const STARTED: u32 = 3;
const FAILED: u32 = 4;
const ABANDONED: u32 = 5;

/// The request in shared memory. Until the outcome leaves PENDING only the
/// caller writes the input fields; the worker writes the output fields
/// before the compare-and-swap that publishes them.
#[repr(C)]
struct Request {
    outcome: AtomicU32,
    caller_latch: *mut c_void,
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
        // SAFETY: the caller's latch lives in shared memory for as long as
        // the caller's process does; setting a latch cannot fail.
        unsafe { pg::peb_set_latch(self.caller_latch) };
    }

    fn wake_worker(&self) {
        let latch = self.worker_latch.load(Ordering::Acquire);
        if !latch.is_null() {
            // SAFETY: as above, for the worker's latch.
            unsafe { pg::peb_set_latch(latch) };
        }
    }
}

/// The request this backend has running: one at a time, since a backend
/// runs one SQL function at a time.
#[derive(Clone, Copy)]
struct Active {
    segment: *mut pg::dsm_segment,
    request: *mut Request,
    worker: *mut pg::BackgroundWorkerHandle,
}

thread_local! {
    static ACTIVE: Cell<Option<Active>> = const { Cell::new(None) };
}

// ---------------------------------------------------------------------
// Caller side
// ---------------------------------------------------------------------

/// Starts the exclusive backup in a worker and reports its outcome.
/// `label` has been validated by the caller (no NUL, at most
/// MAX_LABEL_BYTES).
pub fn start_in_worker(label: &[u8], fast: bool, method: label::Method) -> Result<Lsn> {
    let size = std::mem::size_of::<Request>();
    let session = server::session_info()?;
    // SAFETY: plain server calls; the closure owns nothing.
    let (segment, request) = unsafe {
        guarded(move || {
            let segment = pg::dsm_create(size, 0);
            (segment, pg::dsm_segment_address(segment) as *mut Request)
        })
    }?;
    let mut initial = Request {
        outcome: AtomicU32::new(PENDING),
        // SAFETY: plain shim call.
        caller_latch: unsafe { pg::peb_my_latch() },
        worker_latch: AtomicPtr::new(std::ptr::null_mut()),
        fast,
        streamed: method == label::Method::Streamed,
        label: [0; MAX_LABEL_BYTES + 1],
        session_user: [0; NAME_BYTES],
        database: [0; NAME_BYTES],
        started_from: [0; NAME_BYTES],
        has_client: session.from.is_some(),
        application_name: [0; NAME_BYTES],
        caller_pid: std::process::id() as i32,
        start_lsn: UnsafeCell::new(0),
        failure: UnsafeCell::new(Failure {
            sqlerrcode: 0,
            message: [0; 1024],
            detail: [0; 1024],
            hint: [0; 512],
        }),
    };
    initial.label[..label.len()].copy_from_slice(label);
    copy_c(&mut initial.session_user, &session.user);
    copy_c(&mut initial.database, &session.database);
    copy_c(&mut initial.started_from, session.from.as_deref().unwrap_or(""));
    copy_c(&mut initial.application_name, &session.application_name);
    // SAFETY: the segment is at least size_of::<Request>() bytes, suitably
    // aligned (dsm segments are page-aligned), and ours alone so far.
    unsafe { request.write(initial) };
    ACTIVE.with(|a| {
        a.set(Some(Active {
            segment,
            request,
            worker: std::ptr::null_mut(),
        }))
    });
    // If this backend exits (FATAL) while the request is open, the server
    // detaches the segment on its way out and this callback abandons it.
    // SAFETY: plain server call; the closure owns nothing.
    let registered = unsafe { guarded(move || pg::on_dsm_detach(segment, Some(caller_exiting), 0)) };
    let _release = Release;
    registered.and_then(|()| {
        // SAFETY: mapped until `_release` is dropped.
        run_caller(unsafe { &*request })
    })
}

/// Detaches the request when dropped, after a result, an error or a panic.
struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        release();
    }
}

/// Lets go of the request, normally: no exit callback action needed.
fn release() {
    if let Some(active) = ACTIVE.with(|a| a.take()) {
        // SAFETY: plain server calls on our own segment and handle; the
        // closure owns nothing. The worker stays attached until it exits.
        let _ = unsafe {
            guarded(move || {
                if !active.worker.is_null() {
                    pg::pfree(active.worker as *mut c_void);
                }
                pg::dsm_detach(active.segment)
            })
        };
    }
}

/// Abandons the request unless it is disarmed: on an error (cancel,
/// statement_timeout) or a panic while the caller waits.
struct AbandonUnlessDecided<'a>(&'a Request, bool);

impl Drop for AbandonUnlessDecided<'_> {
    fn drop(&mut self) {
        if self.1 {
            abandon(self.0);
        }
    }
}

/// Marks a request that is not yet committed abandoned, asks the worker to
/// stop and waits (bounded) until it has exited, so that whoever looks next
/// sees a settled state. Also used by the exit callback.
fn abandon(request: &Request) {
    if !(request.cas(PENDING, ABANDONED) || request.cas(READY, ABANDONED)) {
        return; // decided already: started, failed, or being published
    }
    request.wake_worker();
    let Some(active) = ACTIVE.with(|a| a.get()) else { return };
    if active.worker.is_null() {
        return;
    }
    let worker = active.worker;
    // SAFETY: plain server calls on our worker handle; the closure owns
    // nothing. None of them raises errors in practice. Outside an exit
    // callback a failure just ends the wait; inside one (proc_exit) an
    // error would end the process there, the request being marked
    // abandoned already, which the worker acts on by itself.
    let _ = unsafe { guarded(move || pg::TerminateBackgroundWorker(worker)) };
    for _ in 0..6000 {
        match worker_status(worker) {
            Ok(status) if status == pg::BgwHandleStatus::BGWH_STOPPED => break,
            Ok(status) if status == pg::BgwHandleStatus::BGWH_POSTMASTER_DIED => break,
            Err(_) => break,
            Ok(_) => {}
        }
        // SAFETY: plain shim call; the closure owns nothing.
        if unsafe { guarded(|| pg::peb_wait_latch(10, true)) }.unwrap_or(true) {
            break;
        }
    }
}

extern "C" fn caller_exiting(_segment: *mut pg::dsm_segment, _arg: pg::Datum) {
    let _ = std::panic::catch_unwind(|| {
        if let Some(active) = ACTIVE.with(|a| a.get()) {
            // SAFETY: the segment is still mapped while its detach
            // callbacks run.
            abandon(unsafe { &*active.request });
            ACTIVE.with(|a| a.set(None));
        }
    });
}

fn worker_status(worker: *mut pg::BackgroundWorkerHandle) -> Result<pg::BgwHandleStatus> {
    let mut pid: pg::pid_t = 0;
    let pid_ptr: *mut pg::pid_t = &mut pid;
    // SAFETY: plain server call on our handle; the closure owns nothing.
    unsafe { guarded(move || pg::GetBackgroundWorkerPid(worker, pid_ptr)) }
}

fn launch() -> Result<()> {
    let mut waited = 0;
    loop {
        let segment = ACTIVE.with(|a| a.get()).map(|a| a.segment).expect("an active request");
        let mut worker: *mut pg::BackgroundWorkerHandle = std::ptr::null_mut();
        let worker_ptr: *mut *mut pg::BackgroundWorkerHandle = &mut worker;
        // SAFETY: plain server calls; the closure owns nothing.
        let launched =
            unsafe { guarded(move || pg::peb_register_start_worker(pg::dsm_segment_handle(segment), worker_ptr)) }?;
        if launched {
            ACTIVE.with(|a| {
                if let Some(mut active) = a.get() {
                    if !active.worker.is_null() {
                        // SAFETY: the handle of a worker that has exited.
                        let old = active.worker as *mut c_void;
                        let _ = unsafe { guarded(move || pg::pfree(old)) };
                    }
                    active.worker = worker;
                    a.set(Some(active));
                }
            });
            return Ok(());
        }
        // Out of worker slots (max_worker_processes). Wait a little: most
        // slots are short-lived; a concurrent start may also win meanwhile.
        if files::regular_or_absent(data_dir(), BACKUP_LABEL)?.is_some() {
            return Err(already_running());
        }
        if waited >= SLOT_WAIT_MS {
            return Err(Error::new(
                INSUFFICIENT_RESOURCES,
                "could not start a background worker for pg_start_backup",
            )
            .detail("All background worker slots stayed in use for 10 seconds.")
            .hint("Raise max_worker_processes, or try again later."));
        }
        server::wait_latch(100, false, "pg_start_backup was waiting")?;
        server::check_for_interrupts()?;
        waited += 100;
    }
}

fn run_caller(request: &Request) -> Result<Lsn> {
    for attempt in 1..=3 {
        launch()?;
        let worker = ACTIVE.with(|a| a.get()).map(|a| a.worker).expect("a launched worker");
        let mut guard = AbandonUnlessDecided(request, true);
        loop {
            match request.outcome() {
                PENDING => {
                    if worker_status(worker)? == pg::BgwHandleStatus::BGWH_STOPPED && request.outcome() == PENDING {
                        // The worker exited before it even looked at the
                        // request (it records an outcome in every other
                        // case), so nothing was started: try again.
                        break;
                    }
                    server::check_for_interrupts()?;
                    server::wait_latch(1000, true, "pg_start_backup was waiting")?;
                }
                READY => {
                    // From the commit on, this backend is bound to report
                    // the worker's result: no cancel may come in between.
                    let held = InterruptsHeld::new();
                    if !request.cas(READY, COMMIT) {
                        continue; // the worker failed (terminated) meanwhile
                    }
                    guard.1 = false;
                    request.wake_worker();
                    let result = await_publication(request, worker);
                    if result.is_ok() {
                        // A cancel or statement_timeout that arrived after
                        // the commit came too late: the backup runs, and
                        // the caller must hear so, not a cancel error.
                        server::forget_query_cancel();
                    }
                    drop(held);
                    return result;
                }
                FAILED => {
                    guard.1 = false;
                    return Err(failure_after_exit(request, worker));
                }
                other => {
                    guard.1 = false;
                    return Err(Error::new(
                        INTERNAL_ERROR,
                        format!("the start request is in an unexpected state ({other})"),
                    ));
                }
            }
        }
        guard.1 = false;
        if attempt < 3 {
            crate::boundary::log(
                "pg_exclusive_backup: the start worker exited without looking at its request; trying again",
            );
        }
    }
    Err(Error::new(
        INTERNAL_ERROR,
        "the background worker starting the backup exited without a result",
    )
    .detail("No backup was started. The server log may say why."))
}

/// After COMMIT, with interrupts held: the worker only takes the lock (a
/// bounded wait) and links, renames and fsyncs files now.
fn await_publication(request: &Request, worker: *mut pg::BackgroundWorkerHandle) -> Result<Lsn> {
    loop {
        match request.outcome() {
            // SAFETY: written by the worker before READY, which we saw.
            STARTED => return Ok(unsafe { *request.start_lsn.get() }),
            FAILED => return Err(failure_after_exit(request, worker)),
            _ => {}
        }
        if worker_status(worker)? == pg::BgwHandleStatus::BGWH_STOPPED && request.outcome() == COMMIT {
            return Err(Error::new(
                INTERNAL_ERROR,
                "the background worker starting the backup exited while putting backup_label in place",
            )
            .hint("Check pg_is_in_backup(); the server log may say why."));
        }
        server::wait_latch(1000, true, "pg_start_backup was waiting")?;
    }
}

/// The worker's error, once the worker is gone, so that nothing of the
/// attempt is left when the error reaches the client.
fn failure_after_exit(request: &Request, worker: *mut pg::BackgroundWorkerHandle) -> Error {
    for _ in 0..600 {
        match worker_status(worker) {
            Ok(s) if s == pg::BgwHandleStatus::BGWH_STARTED || s == pg::BgwHandleStatus::BGWH_NOT_YET_STARTED => {}
            _ => break,
        }
        if server::check_for_interrupts().is_err()
            || server::wait_latch(100, true, "pg_start_backup was waiting").is_err()
        {
            break;
        }
    }
    reported_error(request)
}

fn c_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn reported_error(req: &Request) -> Error {
    // SAFETY: written by the worker before FAILED, which the caller saw.
    let r = unsafe { &*req.failure.get() };
    let mut e = Error::new(SqlState(r.sqlerrcode), c_text(&r.message));
    let (detail, hint) = (c_text(&r.detail), c_text(&r.hint));
    if !detail.is_empty() {
        e = e.detail(detail);
    }
    if !hint.is_empty() {
        e = e.hint(hint);
    }
    e
}

// ---------------------------------------------------------------------
// Worker side
// ---------------------------------------------------------------------

/// The background worker's main function.
pub fn worker_main(main_arg: pg::Datum) {
    // SAFETY: plain shim call.
    unsafe { pg::peb_worker_signals() };
    let handle = main_arg as u32;
    // SAFETY: attaches the segment the caller created (NULL if it is gone);
    // the closure owns nothing.
    let request = match unsafe {
        guarded(move || {
            let segment = pg::dsm_attach(handle);
            if segment.is_null() {
                (std::ptr::null_mut(), 0)
            } else {
                (
                    pg::dsm_segment_address(segment) as *mut Request,
                    pg::dsm_segment_map_length(segment),
                )
            }
        })
    } {
        // Another, smaller layout (see peb_start_backup_worker_2 in lib.rs;
        // a segment from the preallocated area is rounded up to pages):
        // touch nothing of it.
        Ok((r, len)) if !r.is_null() && len < std::mem::size_of::<Request>() => {
            crate::boundary::log(&format!(
                "pg_exclusive_backup: the start request has {len} bytes where this library expects {}; \
                 the calling session runs another version of the library",
                std::mem::size_of::<Request>()
            ));
            return;
        }
        Ok((r, _)) if !r.is_null() => r,
        Ok(_) => {
            crate::boundary::log("pg_exclusive_backup: the start worker found its request gone");
            return;
        }
        Err(e) => {
            crate::boundary::log(&format!(
                "pg_exclusive_backup: the start worker could not attach its request: {}",
                error_fields(&e).1
            ));
            return;
        }
    };
    // SAFETY: mapped until this process exits.
    let req = unsafe { &*request };
    // A FATAL exit (an administrator's pg_terminate_backend during the
    // checkpoint) leaves through this callback, after the server's own
    // cleanup has left backup mode.
    // SAFETY: plain server call; the closure owns nothing.
    if unsafe { guarded(move || pg::before_shmem_exit(Some(worker_exiting), request as pg::Datum)) }.is_err() {
        return;
    }
    if req.outcome() != PENDING {
        return; // the caller gave up before we started
    }
    // SAFETY: plain shim call.
    req.worker_latch.store(unsafe { pg::peb_my_latch() }, Ordering::Release);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| start_here(req)));
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(payload) => Error::from_panic(payload.as_ref()),
    };
    let (code, message, detail, mut hint) = error_fields(&error);
    if LABEL_LEFT_IN_PLACE.with(|l| l.get()) {
        hint = "The exclusive backup was started but could not be completed, and its backup_label stays: \
                end it with pg_stop_backup()."
            .into();
    }
    fail(req, code, &message, &detail, &hint);
}

/// Records a failure unless the outcome is decided otherwise, and wakes the
/// caller. Only the worker writes the error fields, and the caller reads
/// them only after seeing FAILED.
fn fail(req: &Request, code: i32, message: &str, detail: &str, hint: &str) -> bool {
    if !matches!(req.outcome(), PENDING | READY | COMMIT) {
        return false;
    }
    // SAFETY: the error fields are written by this process alone, and read
    // by the caller only after the compare-and-swap below publishes them.
    let r = unsafe { &mut *req.failure.get() };
    r.sqlerrcode = code;
    copy_c(&mut r.message, message);
    copy_c(&mut r.detail, detail);
    copy_c(&mut r.hint, hint);
    let failed = req.cas(PENDING, FAILED) || req.cas(READY, FAILED) || req.cas(COMMIT, FAILED);
    if failed {
        req.wake_caller();
    }
    failed
}

extern "C" fn worker_exiting(_code: i32, arg: pg::Datum) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the segment stays mapped until after the before_shmem_exit
        // callbacks have run.
        let req = unsafe { &*(arg as *const Request) };
        terminated(req);
    });
}

/// The worker is being terminated (pg_terminate_backend, or a fast
/// shutdown) before the backup is started: an operator's action, reported
/// as such.
fn terminated(req: &Request) -> bool {
    fail(
        req,
        ADMIN_SHUTDOWN.0,
        "pg_start_backup's background worker was terminated before the backup started",
        "No backup was started.",
        "Someone ran pg_terminate_backend() on the worker, or the server is shutting down.",
    )
}

fn copy_c(dst: &mut [u8], text: &str) {
    let mut n = text.len().min(dst.len() - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&text.as_bytes()[..n]);
    dst[n] = 0;
}

fn error_fields(error: &Error) -> (i32, String, String, String) {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    match error {
        Error::Report {
            sqlstate,
            message,
            detail,
            hint,
        } => (sqlstate.0, message.clone(), opt(detail), opt(hint)),
        Error::Server(ServerError(ptr)) => {
            let edata = *ptr as *const pg::ErrorData;
            let text = |p: *mut c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    // SAFETY: NUL-terminated server strings.
                    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                }
            };
            // SAFETY: an ErrorData copied by peb_try in this process.
            unsafe {
                (
                    (*edata).sqlerrcode,
                    text((*edata).message),
                    text((*edata).detail),
                    text((*edata).hint),
                )
            }
        }
    }
}

/// Leaves the backup mode this worker entered when dropped, unless
/// disarmed: every way out of `start_here` after the server's start
/// (error, early return, panic) undoes it. It stays armed only as long as
/// no backup_label of this start is visible; if one could not be taken
/// back (see [`LinkedLabel`]), the backup is left running instead, label
/// and count agreeing.
struct InBackupMode(bool);

thread_local! {
    /// Set when a linked label could not be removed again.
    static LABEL_LEFT_IN_PLACE: Cell<bool> = const { Cell::new(false) };
}

impl Drop for InBackupMode {
    fn drop(&mut self) {
        if !self.0 || LABEL_LEFT_IN_PLACE.with(|l| l.get()) {
            return;
        }
        let _held = InterruptsHeld::new();
        if let Err(e) = server::abort_session_backup() {
            crate::boundary::log(&format!(
                "pg_exclusive_backup: could not leave backup mode after a failed start: {}",
                error_fields(&e).1
            ));
        }
    }
}

/// Removes the backup_label this worker linked into place when dropped,
/// unless disarmed; lives only while the lock is held, so no start or stop
/// can have acted on the label (a reader without the lock may have seen it). `start` is the backup's start (TimestampTz), for
/// preload mode's shared memory when the label has to stay.
struct LinkedLabel {
    armed: bool,
    start: i64,
}

impl Drop for LinkedLabel {
    fn drop(&mut self) {
        if self.armed
            && files::remove(data_dir(), BACKUP_LABEL).is_err()
            && files::regular_or_absent(data_dir(), BACKUP_LABEL).map_or(true, |m| m.is_some())
        {
            LABEL_LEFT_IN_PLACE.with(|l| l.set(true));
            // The backup stays running with its label: say so to monitoring.
            postmaster::set_running_backup(Some(self.start));
        }
    }
}

/// Puts back the state record a start replaced when dropped, unless
/// disarmed: a start that fails after writing its record leaves the
/// history as it was. Lives only while the lock is held and no label of
/// this start is in place (dropped after [`LinkedLabel`]).
struct RecordWritten {
    before: Option<Vec<u8>>,
    armed: bool,
}

impl Drop for RecordWritten {
    fn drop(&mut self) {
        if !self.armed || LABEL_LEFT_IN_PLACE.with(|l| l.get()) {
            return;
        }
        let _ = match &self.before {
            Some(bytes) => files::replace(data_dir(), STATE_FILE, bytes),
            None => files::remove(data_dir(), STATE_FILE).map(|_| ()),
        };
    }
}

/// Preload mode tells the primary's own label from a copy's by its birth
/// time, which this file system does not record.
pub fn no_birth_times() -> Error {
    Error::new(
        crate::error::OBJECT_NOT_IN_PREREQUISITE_STATE,
        "the file system of the data directory does not record file birth times",
    )
    .detail(
        "In preload mode the postmaster tells this primary's own backup_label from a restored copy's by the \
         label file's inode number and birth time; without birth times it could not decide after a crash, and \
         would refuse to start.",
    )
    .hint("Put the data directory on a file system that records birth times (ext4, XFS, Btrfs), or take the backup without preload mode.")
}

/// Enters backup mode in this (worker) process, prepares the files, waits
/// for the caller's verdict and, on COMMIT, puts them in place.
fn start_here(req: &Request) -> Result<()> {
    let label = CStr::from_bytes_until_nul(&req.label)
        .map_err(|_| Error::new(INTERNAL_ERROR, "the start request's label is not terminated"))?
        .to_owned();
    // Armed by start_backup as soon as the server has entered backup mode,
    // before anything else in it can fail.
    let mut mode = InBackupMode(false);
    let started = server::start_backup(&label, req.fast, &mut mode.0)?;
    // From here until the outcome is decided, nothing may interrupt us; a
    // terminate request is looked at explicitly below.
    let _held = InterruptsHeld::new();
    hooks::pause("worker_started");
    hooks::may_panic("worker_started");
    let method = if req.streamed {
        label::Method::Streamed
    } else {
        label::Method::Exclusive
    };
    let text = label::exclusive_label_from_server(&started.label_text, started.start_epoch, method)
        .map_err(|e| {
            Error::new(
                INTERNAL_ERROR,
                "the server built a backup label this extension cannot read",
            )
            .detail(e.to_string())
        })?
        .0;
    let label_file = Prepared::write(data_dir(), BACKUP_LABEL, &text)?;
    // What a copy of the label cannot have: see state.rs.
    let mut record = Record {
        label_file: label_file.file_id()?,
        control_file: Some(
            files::file_id(&data_dir().join(crate::verdict::CONTROL_FILE))
                .map_err(|e| Error::file("stat", crate::verdict::CONTROL_FILE, &e))?,
        ),
        outcome: Outcome::Running,
        session: Some(Session {
            started_by: c_text(&req.session_user),
            started_from: req.has_client.then(|| c_text(&req.started_from)),
            application_name: c_text(&req.application_name),
            pid: req.caller_pid,
            database: c_text(&req.database),
            fast: req.fast,
        }),
        previous: None,
        last_completed: None,
        label: text.clone(),
    };
    if record.label_file.birth.is_none() && postmaster::preloaded() {
        return Err(no_birth_times());
    }
    let map_file = if started.tablespace_map.is_empty() {
        None
    } else {
        Some(Prepared::write(data_dir(), TABLESPACE_MAP, &started.tablespace_map)?)
    };
    // SAFETY: written before the compare-and-swap that publishes it, and
    // read by the caller only after it.
    unsafe { *req.start_lsn.get() = started.start_lsn };
    // A terminate request that came in while interrupts were held.
    // SAFETY: plain shim call.
    if unsafe { pg::peb_proc_die_pending() } && terminated(req) {
        return Ok(());
    }
    if !req.cas(PENDING, READY) {
        return Ok(()); // abandoned: the guards undo the start
    }
    req.wake_caller();
    loop {
        match req.outcome() {
            COMMIT => break,
            READY => {}
            _ => return Ok(()), // abandoned: the guards undo the start
        }
        // SAFETY: plain shim call.
        if unsafe { pg::peb_proc_die_pending() } && terminated(req) {
            return Ok(());
        }
        server::wait_latch(1000, false, "pg_start_backup was waiting")?;
    }

    hooks::pause("worker_committed");
    {
        // Interrupts are held: the wait for the lock cannot be cancelled,
        // and is bounded.
        let _lock = server::lock_data_dir()?;
        let raced = || already_running().detail("Another session started an exclusive backup at the same time.");
        // The record describes the running backup's label: never replace it
        // while one is in place.
        if files::regular_or_absent(data_dir(), BACKUP_LABEL)?.is_some() {
            return Err(raced());
        }
        // The history moves on from the record of the backup before, which
        // no label names any more.
        // Best effort: a record that cannot be read only loses the history
        // (writing the new one below still has to succeed).
        let before = files::read_optional(data_dir(), STATE_FILE, MAX_STATE_BYTES)
            .ok()
            .flatten();
        if let Some(old) = before.as_deref().and_then(|b| Record::parse(b).ok()) {
            let seen = status::Seen::now()?;
            (record.previous, record.last_completed) = old.history(state::fate(&old, &seen.facts(None)));
        }
        // Before the link: a label in place always has its record, even if
        // the postmaster is killed right after the link.
        files::replace(data_dir(), STATE_FILE, &record.to_bytes())?;
        let mut recorded = RecordWritten { before, armed: true };
        hooks::pause("worker_recorded");
        if label_file.link_exclusive()? == Published::AlreadyExists {
            return Err(raced());
        }
        let start_time = label::timestamptz_from_unix(started.start_epoch);
        let mut linked = LinkedLabel {
            armed: true,
            start: start_time,
        };
        hooks::may_panic("worker_linked");
        files::fsync_dir(data_dir())?;
        // The label is ours now, and with it the right to tablespace_map. A
        // stale map from an interrupted backup must not end up in this one.
        match map_file {
            Some(map) => map.replace()?,
            None => {
                files::remove(data_dir(), TABLESPACE_MAP)?;
            }
        }
        // The label is visible from the moment the lock is released, and
        // from then on it, not this worker, owns the backup: whoever stops
        // it leaves backup mode.
        linked.armed = false;
        recorded.armed = false;
        mode.0 = false;
        postmaster::set_running_backup(Some(start_time));
    }
    hooks::pause("worker_published");
    req.outcome.store(STARTED, Ordering::Release);
    req.wake_caller();
    Ok(())
}
