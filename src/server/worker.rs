//! The start worker's machinery: the dynamic shared memory segment that
//! carries a start request, the background worker that serves it, the
//! latches the two wake each other with, and the callbacks that run when
//! either process leaves. The protocol itself is in start/.

use std::ffi::c_void;

use super::bindings as pg;
use super::boundary::{callback, guarded};
use crate::error::Result;

/// A dynamic shared memory segment this process created or attached.
#[derive(Clone, Copy)]
pub struct Segment(*mut pg::dsm_segment);

/// What runs when a segment is detached, the process exiting included:
/// `arg` is what was registered with it.
pub trait OnDetach {
    fn on_detach(arg: *mut c_void);
}

extern "C" fn detach_trampoline<T: OnDetach>(_segment: *mut pg::dsm_segment, arg: pg::Datum) {
    callback(|| T::on_detach(arg as *mut c_void), |_| ());
}

impl Segment {
    /// A new segment of `size` bytes.
    pub fn create(size: usize) -> Result<Segment> {
        // SAFETY: plain server call; the closure owns nothing.
        unsafe { guarded(move || Segment(pg::dsm_create(size, 0))) }
    }

    /// Attaches the segment `handle` names: its address and mapped length,
    /// `None` when it is gone.
    pub fn attach(handle: u32) -> Result<Option<(Segment, *mut c_void, usize)>> {
        // SAFETY: plain server calls; the closure owns nothing.
        unsafe {
            guarded(move || {
                let segment = pg::dsm_attach(handle);
                if segment.is_null() {
                    None
                } else {
                    Some((
                        Segment(segment),
                        pg::dsm_segment_address(segment),
                        pg::dsm_segment_map_length(segment),
                    ))
                }
            })
        }
    }

    pub fn address(self) -> *mut c_void {
        // SAFETY: a segment of this process; the call cannot fail.
        unsafe { pg::dsm_segment_address(self.0) }
    }

    pub fn handle(self) -> u32 {
        // SAFETY: as above.
        unsafe { pg::dsm_segment_handle(self.0) }
    }

    /// Has `T::on_detach(arg)` run when the segment is detached.
    pub fn on_detach<T: OnDetach>(self, arg: *mut c_void) -> Result<()> {
        let segment = self.0;
        // SAFETY: plain server call; the closure owns nothing.
        unsafe { guarded(move || pg::on_dsm_detach(segment, Some(detach_trampoline::<T>), arg as pg::Datum)) }
    }

    /// Detaches the segment, running its detach callbacks.
    pub fn detach(self) -> Result<()> {
        let segment = self.0;
        // SAFETY: plain server call; the closure owns nothing.
        unsafe { guarded(move || pg::dsm_detach(segment)) }
    }
}

/// What the postmaster says of a background worker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WorkerState {
    NotYetStarted,
    Started,
    Stopped,
    PostmasterDied,
}

/// The handle of a background worker this backend registered; freed with
/// [`Worker::free`].
#[derive(Clone, Copy)]
pub struct Worker(*mut pg::BackgroundWorkerHandle);

impl Worker {
    /// Registers the start worker for the request in segment `handle`;
    /// `None` when every background worker slot is taken.
    pub fn launch(segment: Segment) -> Result<Option<Worker>> {
        let mut worker: *mut pg::BackgroundWorkerHandle = std::ptr::null_mut();
        let worker_ptr: *mut *mut pg::BackgroundWorkerHandle = &mut worker;
        let handle = segment.handle();
        // SAFETY: `worker` outlives the call; the closure owns nothing.
        let launched = unsafe { guarded(move || pg::peb_register_start_worker(handle, worker_ptr)) }?;
        Ok(launched.then_some(Worker(worker)))
    }

    pub fn state(self) -> Result<WorkerState> {
        let mut pid: pg::pid_t = 0;
        let pid_ptr: *mut pg::pid_t = &mut pid;
        let worker = self.0;
        // SAFETY: plain server call on our handle; the closure owns nothing.
        let status = unsafe { guarded(move || pg::GetBackgroundWorkerPid(worker, pid_ptr)) }?;
        Ok(match status {
            pg::BgwHandleStatus::BGWH_NOT_YET_STARTED => WorkerState::NotYetStarted,
            pg::BgwHandleStatus::BGWH_STARTED => WorkerState::Started,
            pg::BgwHandleStatus::BGWH_STOPPED => WorkerState::Stopped,
            pg::BgwHandleStatus::BGWH_POSTMASTER_DIED => WorkerState::PostmasterDied,
        })
    }

    /// Asks the postmaster to terminate the worker; a failure (none is
    /// known in practice) is not worth reporting.
    pub fn terminate(self) {
        let worker = self.0;
        // SAFETY: plain server call on our handle; the closure owns nothing.
        let _ = unsafe { guarded(move || pg::TerminateBackgroundWorker(worker)) };
    }

    /// Frees the handle (the worker itself is not affected).
    pub fn free(self) {
        let worker = self.0 as *mut c_void;
        // SAFETY: a handle palloc'd by the server for us, freed once.
        let _ = unsafe { guarded(move || pg::pfree(worker)) };
    }
}

/// A process's latch, set to wake it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Latch(*mut c_void);

impl Latch {
    /// This process's latch.
    pub fn mine() -> Latch {
        // SAFETY: plain shim call.
        Latch(unsafe { pg::peb_my_latch() })
    }

    pub fn as_ptr(self) -> *mut c_void {
        self.0
    }

    pub fn from_ptr(p: *mut c_void) -> Latch {
        Latch(p)
    }

    /// Sets the latch; a latch in shared memory lives as long as its
    /// process, and setting one cannot fail.
    pub fn set(self) {
        if !self.0.is_null() {
            // SAFETY: see above.
            unsafe { pg::peb_set_latch(self.0) };
        }
    }
}

/// Waits on this process's latch for at most `ms`; `true` when the
/// postmaster has died. Errors are taken for that too, for a caller that
/// is leaving anyway (an exit callback).
pub fn wait_latch_quietly(ms: i64) -> bool {
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(move || pg::peb_wait_latch(ms, true)) }.unwrap_or(true)
}

/// The start worker's signal handlers (terminate, and the defaults).
pub fn worker_signals() {
    // SAFETY: plain shim call.
    unsafe { pg::peb_worker_signals() };
}

/// Registers preload mode's standing worker with the postmaster; from
/// _PG_init in the postmaster only.
pub fn register_standing_worker() -> Result<()> {
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(|| pg::peb_register_standing_worker()) }
}

/// The standing worker's setup: its signal handlers (reload, terminate,
/// and the cancel of the start it serves, which reads `cancel_word`), a
/// resource owner, and the memory context it works in.
pub fn standing_worker_init(cancel_word: *mut u32) -> Result<()> {
    // SAFETY: `cancel_word` is in shared memory, mapped for the life of the
    // process; the closure owns nothing.
    unsafe { guarded(move || pg::peb_standing_worker_init(cancel_word)) }
}

/// Frees what the standing worker's last round of work allocated.
pub fn standing_worker_round() {
    // SAFETY: plain shim call; resets the worker's own context.
    let _ = unsafe { guarded(|| pg::peb_standing_worker_round()) };
}

/// Tells the standing worker's SIGINT handler which start request it
/// serves now (0: none).
pub fn standing_worker_serving(handle: u32) {
    // SAFETY: sets a process-local variable.
    unsafe { pg::peb_standing_worker_serving(handle) };
}

/// This process's pid, as the server knows it.
pub fn my_pid() -> i32 {
    // SAFETY: reads a process-local variable.
    unsafe { pg::peb_my_pid() }
}

/// Sends SIGINT to `pid`: the standing worker cancels the start a caller
/// marked (see `shared::cancel_start`). A failure (the worker has just
/// exited) needs no answer: its exit settles the request.
pub fn send_cancel(pid: i32) {
    // SAFETY: kill(2) has no memory effects in this process.
    unsafe { libc::kill(pid, libc::SIGINT) };
}

/// Ends this process with `code` (the postmaster restarts a background
/// worker that exits with 1); for an entry point whose Rust frames are
/// gone.
pub fn exit(code: i32) {
    // SAFETY: runs the exit callbacks and exits; nothing on the stack
    // above the caller owns anything.
    unsafe { pg::proc_exit(code) };
}

/// What runs before this process leaves shared memory, a FATAL exit
/// included: `arg` is what was registered with it.
pub trait OnExit {
    fn on_exit(arg: *mut c_void);
}

extern "C" fn exit_trampoline<T: OnExit>(_code: i32, arg: pg::Datum) {
    callback(|| T::on_exit(arg as *mut c_void), |_| ());
}

/// Has `T::on_exit(arg)` run before this process leaves shared memory.
pub fn before_shmem_exit<T: OnExit>(arg: *mut c_void) -> Result<()> {
    // SAFETY: plain server call; the closure owns nothing.
    unsafe { guarded(move || pg::before_shmem_exit(Some(exit_trampoline::<T>), arg as pg::Datum)) }
}

/// An error as another process needs it: SQLSTATE, message, detail, hint.
pub fn error_fields(error: &crate::error::Error) -> (i32, String, String, String) {
    use crate::error::Error;
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    match error {
        Error::Report {
            sqlstate,
            message,
            detail,
            hint,
        } => (sqlstate.0, message.clone(), opt(detail), opt(hint)),
        Error::Server(e) => server_error_fields(*e),
    }
}

/// This process's own copy of an error the server raised in it.
fn server_error_fields(e: crate::error::ServerError) -> (i32, String, String, String) {
    let edata = e.0 as *const pg::ErrorData;
    let text = |p: *mut std::ffi::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: NUL-terminated server strings.
            unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
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
