//! The FFI boundary: the one place where Rust and PostgreSQL's error
//! handling meet.
//!
//! PostgreSQL reports an error by longjmp-ing to the innermost PG_TRY (or to
//! the top of the backend's main loop). A longjmp that crosses a Rust frame
//! skips that frame's destructors, and a Rust panic that unwinds into C is
//! undefined behaviour. The design keeps both away from each other:
//!
//! 1. Every call into the server that may ereport goes through [`guarded`].
//!    It runs the call under PG_TRY in the C shim (`peb_try`). If the server
//!    raises an error, the shim copies it (CopyErrorData), clears the error
//!    state and returns it; `guarded` hands it back as `Err(Error::Server)`,
//!    and ordinary Rust control flow (with its destructors) carries it out.
//!    The only Rust frames a longjmp can cross are the trampoline and the
//!    closure passed to `guarded`; the closure is `Copy` and returns a `Copy`
//!    value, so the compiler itself guarantees those frames own nothing that
//!    needs dropping. Closures contain FFI calls only, so they cannot panic.
//!
//! 2. Every SQL entry point runs its body through [`entry`], which catches
//!    panics with `catch_unwind`. An error or a panic is first turned into a
//!    [`Pending`] report: plain pointers to memory the server owns, no Rust
//!    destructors. Only then, with every Rust value gone, does `entry` call
//!    the shim's ereport (or ReThrowError for a server error), which
//!    longjmps out across frames that own nothing.
//!
//! Between catching a server error and re-throwing it, the extension may
//! only do its own cleanup (remove a label file it created, leave backup
//! mode); the transaction is aborted by the re-throw as usual.
//!
//! Cleanup that must run even when the backend dies (FATAL) is not left to
//! Rust destructors, which never run then: the windows in which the
//! extension's and the server's state could disagree hold off interrupts
//! (see [`InterruptsHeld`]), so no cancel or terminate request can act inside
//! them.

use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::bindings as pg;
use crate::error::{packed_sqlstate, Error, Result, ServerError};

struct Call<F, R> {
    f: F,
    out: Option<R>,
}

extern "C" fn trampoline<F: FnOnce() -> R + Copy, R: Copy>(arg: *mut c_void) {
    // SAFETY: `arg` is the `Call` that `guarded` keeps alive across peb_try.
    let call = unsafe { &mut *(arg as *mut Call<F, R>) };
    call.out = Some((call.f)());
}

/// Runs `f` (FFI calls only) and returns its result, or the error the server
/// raised inside it.
pub fn guarded<R: Copy, F: FnOnce() -> R + Copy>(f: F) -> Result<R> {
    let mut call = Call { f, out: None };
    // SAFETY: peb_try calls the trampoline once with the pointer we pass and
    // returns before `call` goes out of scope.
    let caught = unsafe { pg::peb_try(Some(trampoline::<F, R>), &mut call as *mut Call<F, R> as *mut c_void) };
    if !caught.is_null() {
        return Err(Error::Server(ServerError(caught as *mut c_void)));
    }
    call.out
        .ok_or_else(|| Error::new(crate::error::INTERNAL_ERROR, "a guarded server call returned no result"))
}

/// Holds off query cancel and backend termination for as long as it lives;
/// used while the server's backup state and the label file on disk are
/// being changed together.
pub struct InterruptsHeld(());

impl InterruptsHeld {
    pub fn new() -> Self {
        // SAFETY: increments InterruptHoldoffCount; cannot fail.
        unsafe { pg::peb_hold_interrupts() };
        InterruptsHeld(())
    }
}

impl Drop for InterruptsHeld {
    fn drop(&mut self) {
        // SAFETY: paired with the increment in new(); cannot fail.
        unsafe { pg::peb_resume_interrupts() };
    }
}

/// An error ready to be raised: nothing in it needs dropping.
#[derive(Clone, Copy)]
enum Pending {
    Rethrow(ServerError),
    Report {
        sqlstate: i32,
        message: *const c_char,
        detail: *const c_char,
        hint: *const c_char,
    },
}

/// Copies `text` into memory the server owns (the current memory context),
/// so it outlives the Rust value. NUL bytes cannot occur in server text, but
/// are replaced rather than trusted.
fn server_string(text: &str) -> Result<*const c_char> {
    let c = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
    let ptr = c.as_ptr();
    let copied = guarded(move || {
        // SAFETY: `ptr` is a valid NUL-terminated string for this call.
        unsafe { pg::peb_pstrdup(ptr) as *const c_char }
    })?;
    Ok(copied)
}

impl Pending {
    fn from_error(err: Error) -> Pending {
        let (sqlstate, message, detail, hint) = match err {
            Error::Server(e) => return Pending::Rethrow(e),
            Error::Report {
                sqlstate,
                message,
                detail,
                hint,
            } => (packed_sqlstate(sqlstate), message, detail, hint),
            Error::Raw {
                sqlerrcode,
                message,
                detail,
                hint,
            } => (sqlerrcode, message, detail, hint),
        };
        let copy = || -> Result<Pending> {
            let opt = |t: &Option<String>| t.as_deref().map_or(Ok(std::ptr::null()), server_string);
            Ok(Pending::Report {
                sqlstate,
                message: server_string(&message)?,
                detail: opt(&detail)?,
                hint: opt(&hint)?,
            })
        };
        match copy() {
            Ok(p) => p,
            // Out of memory while copying: report that instead.
            Err(Error::Server(e)) => Pending::Rethrow(e),
            Err(_) => unreachable_report(),
        }
    }

    /// Raises the error; never returns.
    ///
    /// # Safety
    /// The caller's frames must own nothing that needs dropping.
    unsafe fn raise(self) -> ! {
        match self {
            // SAFETY: the ErrorData was copied by peb_try into a live context.
            Pending::Rethrow(e) => unsafe { pg::peb_rethrow(e.0 as *mut pg::ErrorData) },
            // SAFETY: the strings were copied into server memory above.
            Pending::Report {
                sqlstate,
                message,
                detail,
                hint,
            } => unsafe { pg::peb_raise(sqlstate, message, detail, hint) },
        }
        #[allow(unreachable_code)]
        loop {}
    }
}

fn unreachable_report() -> Pending {
    Pending::Report {
        sqlstate: packed_sqlstate(*b"XX000"),
        message: c"pg_exclusive_backup could not report an error".as_ptr(),
        detail: std::ptr::null(),
        hint: std::ptr::null(),
    }
}

pub type FunctionCallInfo = *mut pg::FunctionCallInfoBaseData;
pub type Datum = pg::Datum;

/// The body of every SQL-callable function.
pub fn entry(fcinfo: FunctionCallInfo, body: fn(FunctionCallInfo) -> Result<Datum>) -> Datum {
    let pending = match catch_unwind(AssertUnwindSafe(|| body(fcinfo))) {
        Ok(Ok(datum)) => return datum,
        Ok(Err(err)) => Pending::from_error(err),
        Err(payload) => Pending::from_error(Error::from_panic(payload.as_ref())),
    };
    // Every Rust value of this call is gone; only `pending` (plain pointers)
    // and `fcinfo` remain on this frame.
    // SAFETY: see above.
    unsafe { pending.raise() }
}

/// Writes a line to the server log (not to the client).
pub fn log(text: &str) {
    let c = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
    let ptr = c.as_ptr();
    // SAFETY: `ptr` is valid for the call. A failure to log is not worth
    // failing the caller for.
    let _ = guarded(move || unsafe { pg::peb_log(ptr) });
}
