//! Whether this process runs in preload mode, and preload mode's shared
//! memory: the running backup's start, from which pg_is_in_backup() and
//! pg_backup_start_time() answer there, and what the standing worker
//! shares with the sessions (standing/). Plain Rust: the server's shared
//! memory hook hands over the memory (see lib.rs).

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Set in _PG_init when it runs from shared_preload_libraries; every
/// process forked from the postmaster inherits it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

pub fn set_preloaded() {
    PRELOADED.store(true, Ordering::Relaxed);
}

/// Preload mode's shared memory.
#[repr(C)]
pub struct Shared {
    /// The running exclusive backup's start (TimestampTz), or NO_BACKUP.
    /// Written only by disk/ with the lock file held, right after
    /// backup_label appeared or was taken away; each restart begins with
    /// no backup, since the postmaster has just renamed any label of this
    /// primary's.
    start_time: AtomicI64,
    standing: Standing,
}

/// What the standing worker and the sessions that need it share (see
/// standing/).
#[repr(C)]
pub struct Standing {
    /// The worker's latch and pid, while one runs (null and 0 otherwise).
    latch: AtomicPtr<c_void>,
    pid: AtomicI32,
    /// Start requests waiting for the worker: handles of dynamic shared
    /// memory segments, 0 for a free slot.
    mailbox: [AtomicU32; MAILBOX_SLOTS],
    /// The start request a caller gave up on: the worker's SIGINT handler
    /// cancels the start it serves only if it is this one (csrc/shim.c).
    cancel: AtomicU32,
    /// The start LSN of the backup whose session state the worker holds
    /// (it started it, and the server's stop or abort of it must run in
    /// the worker); 0 for none.
    held: AtomicU64,
    /// The one errand for the worker: end the backup it holds.
    pub errand: Errand,
    /// For the backup that started at `warned_for` (TimestampTz): how many
    /// multiples of warn_duration have been logged.
    warned_for: AtomicI64,
    warned: AtomicU64,
}

/// The errand slot: a session that has claimed the label of a backup the
/// standing worker holds asks the worker to end it (standing/errand.rs has
/// the protocol). The text fields are written by the worker before it
/// publishes FAILED, and read by the caller after it saw that.
#[repr(C)]
pub struct Errand {
    pub state: AtomicU32,
    pub kind: AtomicU32,
    pub start_lsn: AtomicU64,
    pub caller_latch: AtomicPtr<c_void>,
    pub stop_lsn: AtomicU64,
    pub stop_tli: AtomicU32,
    pub sqlstate: AtomicI32,
    pub message: UnsafeCell<[u8; 1024]>,
    pub detail: UnsafeCell<[u8; 1024]>,
}

/// How many start requests can wait for the standing worker at once; a
/// start that finds no free slot forks a worker of its own.
pub const MAILBOX_SLOTS: usize = 8;

const NO_BACKUP: i64 = i64::MIN;

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());

/// How much shared memory preload mode asks for.
pub fn size() -> usize {
    std::mem::size_of::<Shared>()
}

/// Takes over the shared memory the server set aside (`found`: another
/// process initialised it already).
///
/// # Safety
/// `shared` points to at least [`size`] bytes of shared memory, MAXALIGNed,
/// mapped for as long as this process lives, and not initialised by anyone
/// else unless `found`.
pub unsafe fn attach(shared: *mut Shared, found: bool) {
    if !found {
        // SAFETY: see the function's contract.
        unsafe {
            shared.write(Shared {
                start_time: AtomicI64::new(NO_BACKUP),
                standing: Standing {
                    latch: AtomicPtr::new(std::ptr::null_mut()),
                    pid: AtomicI32::new(0),
                    mailbox: std::array::from_fn(|_| AtomicU32::new(0)),
                    cancel: AtomicU32::new(0),
                    held: AtomicU64::new(0),
                    errand: Errand {
                        state: AtomicU32::new(0),
                        kind: AtomicU32::new(0),
                        start_lsn: AtomicU64::new(0),
                        caller_latch: AtomicPtr::new(std::ptr::null_mut()),
                        stop_lsn: AtomicU64::new(0),
                        stop_tli: AtomicU32::new(0),
                        sqlstate: AtomicI32::new(0),
                        message: UnsafeCell::new([0; 1024]),
                        detail: UnsafeCell::new([0; 1024]),
                    },
                    warned_for: AtomicI64::new(NO_BACKUP),
                    warned: AtomicU64::new(0),
                },
            })
        };
    }
    SHARED.store(shared, Ordering::Release);
}

fn shared() -> Option<&'static Shared> {
    if !preloaded() {
        return None;
    }
    // SAFETY: set by the postmaster at every shared memory initialisation
    // (its first start and each crash restart), before the processes that
    // read it are forked; mapped for as long as this process lives.
    unsafe { SHARED.load(Ordering::Acquire).as_ref() }
}

/// In preload mode, `Some` with the running backup's start (TimestampTz),
/// if one runs; `None` without preload mode.
pub fn running_backup() -> Option<Option<i64>> {
    let t = shared()?.start_time.load(Ordering::Acquire);
    Some((t != NO_BACKUP).then_some(t))
}

/// Records in shared memory that a backup started (its TimestampTz) or
/// ended (`None`); the caller holds the lock file.
pub fn set_running_backup(start: Option<i64>) {
    if let Some(s) = shared() {
        s.start_time.store(start.unwrap_or(NO_BACKUP), Ordering::Release);
    }
}

fn standing() -> Option<&'static Standing> {
    shared().map(|s| &s.standing)
}

/// The standing worker, while one runs: its latch and pid.
pub fn standing_worker() -> Option<(*mut c_void, i32)> {
    let s = standing()?;
    let pid = s.pid.load(Ordering::Acquire);
    let latch = s.latch.load(Ordering::Acquire);
    (!latch.is_null() && pid != 0).then_some((latch, pid))
}

/// The standing worker says it runs (`Some`) or is leaving (`None`).
pub fn set_standing_worker(worker: Option<(*mut c_void, i32)>) {
    if let Some(s) = standing() {
        let (latch, pid) = worker.unwrap_or((std::ptr::null_mut(), 0));
        s.latch.store(latch, Ordering::Release);
        s.pid.store(pid, Ordering::Release);
    }
}

/// Posts a start request's segment handle into a free slot of the
/// mailbox; `false` when none is free (or without preload mode).
pub fn post(handle: u32) -> bool {
    let Some(s) = standing() else { return false };
    s.mailbox.iter().any(|slot| {
        slot.compare_exchange(0, handle, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })
}

/// Takes a posted request back, unless the standing worker took it
/// already: whether it was still there.
pub fn unpost(handle: u32) -> bool {
    let Some(s) = standing() else { return false };
    s.mailbox.iter().any(|slot| {
        slot.compare_exchange(handle, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })
}

/// Takes one posted request out of the mailbox, for the standing worker.
pub fn take_posted() -> Option<u32> {
    let s = standing()?;
    s.mailbox.iter().find_map(|slot| match slot.swap(0, Ordering::AcqRel) {
        0 => None,
        h => Some(h),
    })
}

/// Asks the standing worker to cancel the start of request `handle`, if
/// it still serves it.
pub fn cancel_start(handle: u32) {
    if let Some(s) = standing() {
        s.cancel.store(handle, Ordering::Release);
    }
}

/// Where the standing worker's SIGINT handler reads which start to cancel.
pub fn cancel_word() -> *mut u32 {
    standing().map_or(std::ptr::null_mut(), |s| s.cancel.as_ptr())
}

/// The start LSN of the backup whose session state the standing worker
/// holds, if any.
pub fn held() -> Option<u64> {
    let s = standing()?;
    match s.held.load(Ordering::Acquire) {
        0 => None,
        lsn => Some(lsn),
    }
}

/// The standing worker holds (or no longer holds) a backup's session state.
pub fn set_held(start_lsn: Option<u64>) {
    if let Some(s) = standing() {
        s.held.store(start_lsn.unwrap_or(0), Ordering::Release);
    }
}

/// The errand slot, in preload mode.
pub fn errand() -> Option<&'static Errand> {
    standing().map(|s| &s.errand)
}

/// How many multiples of warn_duration have been logged for the backup
/// that started at `start`.
pub fn warned(start: i64) -> u64 {
    match standing() {
        Some(s) if s.warned_for.load(Ordering::Acquire) == start => s.warned.load(Ordering::Acquire),
        _ => 0,
    }
}

pub fn set_warned(start: i64, n: u64) {
    if let Some(s) = standing() {
        s.warned_for.store(NO_BACKUP, Ordering::Release);
        s.warned.store(n, Ordering::Release);
        s.warned_for.store(start, Ordering::Release);
    }
}

/// `text` into `dst`, NUL-terminated, cut at a character boundary.
pub fn copy_c(dst: &mut [u8], text: &str) {
    let mut n = text.len().min(dst.len() - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&text.as_bytes()[..n]);
    dst[n] = 0;
}

/// The text of a NUL-terminated field.
pub fn c_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
