//! The FFI boundary: the one place where Rust and PostgreSQL's error
//! handling meet.
//!
//! PostgreSQL reports an error by longjmp-ing to the innermost PG_TRY (or to
//! the top of the backend's main loop). A longjmp that crosses a Rust frame
//! skips that frame's destructors, and a Rust panic that unwinds into C is
//! undefined behaviour. What this module does about both:
//!
//! 1. Every call into the server that may ereport goes through [`guarded`].
//!    It runs the call under PG_TRY in the C shim (`peb_try`). If the server
//!    raises an ERROR, the shim puts back the interrupt holdoff counts that
//!    errfinish() zeroed, copies the error into a memory context set aside
//!    for that (whose kept first block holds an ordinary error without a
//!    new allocation), clears the error state and returns the copy; `guarded` hands it back as
//!    `Err(Error::Server)`, and ordinary Rust control flow (with its
//!    destructors) carries it out. A longjmp can cross only the trampoline
//!    and the closure given to `guarded`; `guarded` is an `unsafe fn` whose
//!    contract is that the closure holds nothing that needs dropping while
//!    it calls the server. A panic inside the closure is caught in the
//!    trampoline, before it could reach C, and resumed once `peb_try` has
//!    returned.
//!
//! 2. Every SQL entry point runs its body through [`entry`], which catches
//!    panics with `catch_unwind`. An error or a panic is first turned into a
//!    [`Pending`] report: plain pointers to memory the server owns, no Rust
//!    destructors. Only then, with every Rust value of the call gone, does
//!    `entry` call the shim's ereport (or ReThrowError for a server error),
//!    which longjmps out across frames that own nothing.
//!
//! 3. Every other entry from C (a worker's main function, an exit or detach
//!    callback, a shared memory or postmaster hook) runs its body through
//!    [`callback`], which turns a panic into the value the caller gives for
//!    that case: nothing unwinds into C.
//!
//! What this does not cover: a FATAL (backend termination, postmaster
//! death) ends the process from inside the server without returning, so
//! no Rust destructor runs then. The steps whose undo must survive that are
//! either done with interrupts held (see [`InterruptsHeld`]), so that no
//! terminate request can act inside them, or are undone by an exit callback
//! (the start protocol's, in start/).

use std::any::Any;
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::bindings as pg;
use crate::error::{Error, Result, ServerError, INTERNAL_ERROR};

struct Call<F, R> {
    f: Option<F>,
    out: Option<R>,
    panic: Option<Box<dyn Any + Send>>,
}

extern "C" fn trampoline<F: FnOnce() -> R, R>(arg: *mut c_void) {
    // SAFETY: `arg` is the `Call` that `guarded` keeps alive across peb_try.
    let call = unsafe { &mut *(arg as *mut Call<F, R>) };
    if let Some(f) = call.f.take() {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => call.out = Some(r),
            Err(payload) => call.panic = Some(payload),
        }
    }
}

/// Runs `f` and returns its result, or the ERROR the server raised inside
/// it.
///
/// # Safety
/// If the server raises an ERROR inside `f`, the frames of `f` are left by
/// longjmp: `f` must not own, at any point where it calls the server, a
/// value that needs dropping (no `String`, `Vec`, `Box`, guard, ... alive
/// across such a call). Captured references and `Copy` values are fine.
pub(super) unsafe fn guarded<R, F: FnOnce() -> R>(f: F) -> Result<R> {
    let mut call = Call {
        f: Some(f),
        out: None,
        panic: None,
    };
    // SAFETY: peb_try calls the trampoline once with the pointer we pass and
    // returns before `call` goes out of scope.
    let caught = unsafe { pg::peb_try(Some(trampoline::<F, R>), &mut call as *mut Call<F, R> as *mut c_void) };
    if let Some(payload) = call.panic.take() {
        resume_unwind(payload);
    }
    if !caught.is_null() {
        return Err(Error::Server(ServerError(caught as *mut c_void)));
    }
    call.out
        .ok_or_else(|| Error::new(INTERNAL_ERROR, "a guarded server call returned no result"))
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
        // SAFETY: paired with the increment in new(); peb_try restores the
        // count after a caught error, so it is still ours to decrement.
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
/// so it outlives the Rust value. Our texts are UTF-8; the server's are in
/// the database encoding, so the copy is converted to it (characters it
/// cannot hold become an error of the conversion, which is reported
/// instead). NUL bytes cannot occur in server text, but are replaced
/// rather than trusted.
fn server_string(text: &str) -> Result<*const c_char> {
    let c = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
    let ptr = c.as_ptr();
    let len = c.as_bytes().len() as i32;
    // SAFETY: `ptr` is a valid NUL-terminated string for this call, and the
    // closure owns nothing.
    let copied = unsafe { guarded(move || pg::peb_server_text(ptr, len) as *const c_char) }?;
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
            } => (sqlstate.0, message, detail, hint),
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
            // Out of memory or an unconvertible character while copying:
            // report that instead.
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
        // The shim's functions do not return; bindgen does not carry their
        // noreturn attribute over.
        #[allow(unreachable_code)]
        loop {}
    }
}

fn unreachable_report() -> Pending {
    Pending::Report {
        sqlstate: INTERNAL_ERROR.0,
        message: c"pg_exclusive_backup could not report an error".as_ptr(),
        detail: std::ptr::null(),
        hint: std::ptr::null(),
    }
}

pub type FunctionCallInfo = *mut pg::FunctionCallInfoBaseData;
pub type Datum = pg::Datum;

/// The body of every SQL-callable function.
pub fn entry(fcinfo: FunctionCallInfo, body: fn(FunctionCallInfo) -> Result<Datum>) -> Datum {
    // Error copies of an earlier call are no longer referenced by anyone.
    // SAFETY: plain shim call; cannot fail.
    unsafe { pg::peb_reset_error_copies() };
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

/// `_PG_init`: as [`entry`], for a body that returns nothing.
pub fn init_entry(body: fn() -> Result<()>) {
    // SAFETY: plain shim call; cannot fail.
    unsafe { pg::peb_reset_error_copies() };
    let pending = match catch_unwind(body) {
        Ok(Ok(())) => return,
        Ok(Err(err)) => Pending::from_error(err),
        Err(payload) => Pending::from_error(Error::from_panic(payload.as_ref())),
    };
    // SAFETY: as in `entry`, only `pending` is left.
    unsafe { pending.raise() }
}

/// Runs the body of an entry from C that is not a SQL function; a panic in
/// it gives `on_panic(payload)` instead of unwinding into C (a panic there
/// is caught too, and gives `R::default()`).
pub fn callback<R: Default>(body: impl FnOnce() -> R, on_panic: impl FnOnce(Box<dyn Any + Send>) -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => catch_unwind(AssertUnwindSafe(|| on_panic(payload))).unwrap_or_default(),
    }
}

/// Runs `body`, a panic in it coming back as an internal error: for code
/// that must answer for every failure itself (the start worker, whose
/// caller waits for its answer).
pub fn panic_as_error<R>(body: impl FnOnce() -> Result<R>) -> Result<R> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(Error::from_panic(payload.as_ref())))
}

/// How loud a [`report`] is; none of them interrupts the caller.
#[derive(Clone, Copy)]
pub enum Level {
    Log,
    Warning,
    Notice,
}

/// A message with optional detail and hint, at a level that does not
/// raise: to the server log, or (notice, warning) to the client as well.
/// An error while reporting (out of memory) is caught and dropped, except
/// in an exit callback, where the server turns it into a FATAL that ends
/// the process at once: exit-time code reports after its work is done.
pub fn report(level: Level, message: &str, detail: Option<&str>, hint: Option<&str>) {
    // In the database encoding, as errors are (see `server_string`); a
    // text that cannot be converted is left out rather than failing.
    let text = |t: &str| server_string(t).unwrap_or(std::ptr::null());
    let (mp, dp, hp) = (
        text(message),
        detail.map_or(std::ptr::null(), text),
        hint.map_or(std::ptr::null(), text),
    );
    if mp.is_null() {
        return;
    }
    let level = match level {
        Level::Log => pg::PEB_LOG,
        Level::Warning => pg::PEB_WARNING,
        Level::Notice => pg::PEB_NOTICE,
    } as i32;
    // SAFETY: the strings are in server memory and the closure owns
    // nothing. A failure to report is not worth failing the caller for.
    let _ = unsafe { guarded(move || pg::peb_report(level, mp, dp, hp)) };
}

/// Writes a line to the server log (not to the client).
pub fn log(text: &str) {
    let c = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
    let ptr = c.as_ptr();
    // SAFETY: `ptr` is valid for the call and the closure owns nothing. A
    // failure to log is not worth failing the caller for.
    let _ = unsafe { guarded(move || pg::peb_log(ptr)) };
}
