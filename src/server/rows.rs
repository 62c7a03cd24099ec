//! Datums and rows for the results of the SQL functions.

use super::bindings as pg;
use super::boundary::{guarded, Datum, FunctionCallInfo};
use crate::error::Result;
use crate::label::Lsn;

/// The types of the status view's columns, by their fixed OIDs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Type {
    Bool,
    Int4,
    Text,
    TimestampTz,
    Interval,
    PgLsn,
}

impl Type {
    fn oid(self) -> pg::Oid {
        match self {
            Type::Bool => 16,
            Type::Int4 => 23,
            Type::Text => 25,
            Type::TimestampTz => 1184,
            Type::Interval => 1186,
            Type::PgLsn => 3220,
        }
    }
}

/// Text in the database encoding when the bytes are valid in it (labels
/// and names keep the encoding of the session that gave them), otherwise
/// with each byte outside ASCII written as `\xNN`.
pub fn text(bytes: &[u8]) -> Result<Datum> {
    let (ptr, len) = (bytes.as_ptr() as *const std::ffi::c_char, bytes.len() as i32);
    // SAFETY: `bytes` outlives both calls; the closures own nothing.
    if unsafe { guarded(move || pg::peb_valid_in_database(ptr, len)) }? {
        return unsafe { guarded(move || pg::peb_text_datum(ptr, len)) };
    }
    let escaped = crate::label::escape_non_ascii(bytes);
    let (ptr, len) = (escaped.as_ptr() as *const std::ffi::c_char, escaped.len() as i32);
    // SAFETY: as above, for `escaped`.
    unsafe { guarded(move || pg::peb_text_datum(ptr, len)) }
}

/// An interval of `usec` microseconds.
pub fn interval(usec: i64) -> Result<Datum> {
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(move || pg::peb_interval_datum(usec)) }
}

/// The one-row result of a function whose SQL definition has the columns
/// `types`, or the first of them (an older version's definition, until
/// ALTER EXTENSION UPDATE); an error if the definition does not match.
pub fn row(fcinfo: FunctionCallInfo, types: &[Type], values: &mut [Datum], nulls: &mut [bool]) -> Result<Datum> {
    let oids: Vec<pg::Oid> = types.iter().map(|t| t.oid()).collect();
    assert!(values.len() == oids.len() && nulls.len() == oids.len());
    let (t, v, n, len) = (
        oids.as_ptr(),
        values.as_mut_ptr(),
        nulls.as_mut_ptr(),
        oids.len() as i32,
    );
    // SAFETY: the three arrays hold `len` entries and outlive the call; the
    // closure owns nothing.
    unsafe { guarded(move || pg::peb_row(fcinfo, t, len, v, n)) }
}

/// Sets up the one row of PostgreSQL 14's record-returning stops; called
/// before anything is stopped, so that a call where no set can be returned
/// fails first.
pub fn prepare_stop_row(fcinfo: FunctionCallInfo) -> Result<()> {
    // SAFETY: the call frame of the running SQL function; the closure owns
    // nothing.
    unsafe { guarded(move || pg::peb_prepare_stop_row(fcinfo)) }
}

/// The row of an exclusive stop: its LSN, no label, no map.
pub fn exclusive_stop_row(fcinfo: FunctionCallInfo, lsn: Lsn) -> Result<()> {
    // SAFETY: as above, after prepare_stop_row.
    unsafe { guarded(move || pg::peb_return_exclusive_stop(fcinfo, lsn)) }
}

/// Stops this session's non-exclusive backup with the server's
/// pg_backup_stop(wait_for_archive) and returns its row.
pub fn session_stop_row(fcinfo: FunctionCallInfo, wait_for_archive: bool) -> Result<()> {
    // SAFETY: as above, after prepare_stop_row.
    unsafe { guarded(move || pg::peb_return_session_stop(fcinfo, wait_for_archive)) }
}
