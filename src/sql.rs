//! The bodies of the SQL functions: arguments in, the protocol modules'
//! work, a result out. lib.rs exports each through the boundary.

use crate::error::Result;
use crate::mode;
use crate::monitor;
use crate::server::{self, rows, Datum, FunctionCallInfo};
use crate::start;
use crate::stop;

/// pg_start_backup(label, fast).
pub fn start_backup(fcinfo: FunctionCallInfo) -> Result<Datum> {
    let label_text = server::text_arg(fcinfo, 0)?;
    let fast = server::bool_arg(fcinfo, 1);
    start::refuse_early(&label_text)?;
    let method = mode::label_method();
    let start_lsn = start::start_in_worker(&label_text, fast, method)?;
    mode::say_after_start(method);
    Ok(start_lsn as Datum)
}

/// pg_stop_backup(), and pg_stop_backup(wait_for_archive) as versions 1.0
/// and 1.1 declare it: the exclusive stop, returning its LSN.
pub fn stop_backup(fcinfo: FunctionCallInfo) -> Result<Datum> {
    let wait_for_archive = server::nargs(fcinfo) == 0 || server::bool_arg(fcinfo, 0);
    Ok(stop::stop_exclusive(wait_for_archive)? as Datum)
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
    rows::prepare_stop_row(fcinfo)?;
    if exclusive {
        let lsn = stop::stop_exclusive(wait_for_archive)?;
        rows::exclusive_stop_row(fcinfo, lsn)?;
    } else {
        rows::session_stop_row(fcinfo, wait_for_archive)?;
    }
    Ok(0)
}

/// pg_is_in_backup().
pub fn is_in_backup(_fcinfo: FunctionCallInfo) -> Result<Datum> {
    Ok(monitor::start_time()?.is_some() as Datum)
}

/// pg_backup_start_time().
pub fn backup_start_time(fcinfo: FunctionCallInfo) -> Result<Datum> {
    match monitor::start_time()? {
        Some(timestamp) => Ok(timestamp as Datum),
        None => {
            server::set_null_result(fcinfo);
            Ok(0)
        }
    }
}

/// pg_exclusive_backup_void(): ends the running exclusive backup as void
/// and returns its label.
pub fn void_backup(_fcinfo: FunctionCallInfo) -> Result<Datum> {
    let label = crate::void::void_for_caller()?;
    rows::text(&label)
}

/// A deliberate panic, for the tests that prove it becomes an ERROR.
pub fn test_panic(_fcinfo: FunctionCallInfo) -> Result<Datum> {
    panic!("deliberate panic requested by a test");
}
