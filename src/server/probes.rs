//! SQL-callable probes of the boundary, compiled in only with the cargo
//! feature `test-hooks`; the integration tests declare them by hand.

use super::bindings as pg;
use super::boundary::{guarded, Datum, FunctionCallInfo, InterruptsHeld};
use crate::error::Result;

/// Whether a server error caught inside an interrupt holdoff scope leaves
/// that scope's count as it was (errfinish() zeroes it before its
/// longjmp). On an assert-enabled server a lost count would also trip the
/// assertion in RESUME_INTERRUPTS when the scope ends.
pub fn holdoff_survives_error(_fcinfo: FunctionCallInfo) -> Result<Datum> {
    let held = InterruptsHeld::new();
    // SAFETY: plain shim calls; the closures own nothing.
    let before = unsafe { pg::peb_interrupt_holdoff() };
    let caught = unsafe { guarded(|| pg::peb_test_raise()) };
    let after = unsafe { pg::peb_interrupt_holdoff() };
    drop(held);
    Ok((caught.is_err() && after == before) as Datum)
}

/// A panic inside a guarded call: must come out as an ERROR, with the
/// backend alive.
pub fn panic_in_guarded_call(_fcinfo: FunctionCallInfo) -> Result<Datum> {
    // SAFETY: the closure owns nothing when it panics.
    unsafe { guarded(|| -> i32 { panic!("panic inside a guarded server call") }) }?;
    Ok(0)
}
