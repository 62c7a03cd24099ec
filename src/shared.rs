//! Whether this process runs in preload mode, and the running backup's
//! start in the shared memory of preload mode, from which
//! pg_is_in_backup() and pg_backup_start_time() answer there. Plain Rust:
//! the server's shared memory hook hands over the memory (see lib.rs).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, Ordering};

/// Set in _PG_init when it runs from shared_preload_libraries; every
/// process forked from the postmaster inherits it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

pub fn set_preloaded() {
    PRELOADED.store(true, Ordering::Relaxed);
}

/// The running exclusive backup's start (TimestampTz), or NO_BACKUP.
/// Written only by disk.rs with the lock file held, right after
/// backup_label appeared or was taken away; each restart begins with no
/// backup, since the postmaster has just renamed any label of this
/// primary's.
#[repr(C)]
pub struct Shared {
    start_time: AtomicI64,
}

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
