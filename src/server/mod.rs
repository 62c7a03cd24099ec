//! Everything that calls the server. The rest of the extension is plain
//! Rust: it reaches PostgreSQL only through the functions of this module
//! and its children, each of which goes through the boundary
//! (`boundary.rs`), so that a server error comes back as `Err` and no
//! longjmp or panic crosses a Rust frame that owns something. The bindings
//! themselves are private to this module.
//!
//! - `boundary`: the longjmp/panic boundary, and every entry from C
//! - `backup15`, `backup16`: the server's backup API of each generation
//!   (BackupState replaced the label text in PostgreSQL 16), chosen here
//! - `worker`: the start worker's machinery: dynamic shared memory,
//!   background workers, latches, exit callbacks
//! - `rows`: datums and rows for SQL results
//! - `settings`: the settings, preload mode's hooks and flags
//! - `archive`: the archiver's status, for the stop's wait
//! - `probes`: SQL-callable probes of the boundary (test builds only)

use std::ffi::{c_char, CStr, CString};

pub mod archive;
mod bindings;
pub mod boundary;
#[cfg(feature = "test-hooks")]
pub mod probes;
pub mod rows;
pub mod settings;
pub mod worker;

#[cfg_attr(pg16_plus, path = "backup16.rs")]
#[cfg_attr(not(pg16_plus), path = "backup15.rs")]
mod backup;

pub use backup::{start_backup, PreparedStop};
use bindings as pg;
pub use bindings::{Pg_finfo_record, Pg_magic_struct};
use boundary::guarded;
pub use boundary::{Datum, FunctionCallInfo, InterruptsHeld, Level};

use crate::error::{Error, Result, ADMIN_SHUTDOWN, INTERNAL_ERROR};
use crate::label::{Lsn, StartTime};

/// The module magic block the loader checks, built by the C shim.
pub fn magic() -> *const Pg_magic_struct {
    // SAFETY: returns a pointer to static data built by the C shim.
    unsafe { pg::peb_magic_data() }
}

pub fn recovery_in_progress() -> Result<bool> {
    // SAFETY: plain server call, no arguments; the closure owns nothing.
    unsafe { guarded(|| pg::RecoveryInProgress()) }
}

/// Whether the server counts a backup as started by this session.
pub fn session_backup_running() -> Result<bool> {
    // SAFETY: reads a backend-local variable; the closure owns nothing.
    unsafe { guarded(|| pg::get_backup_status() == pg::SessionBackupState::SESSION_BACKUP_RUNNING) }
}

/// How many arguments the SQL declaration passes.
pub fn nargs(fcinfo: FunctionCallInfo) -> usize {
    // SAFETY: the server passes a valid call frame.
    usize::try_from(unsafe { (*fcinfo).nargs }).unwrap_or(0)
}

/// The text argument `n` of a STRICT function, as bytes.
pub fn text_arg(fcinfo: FunctionCallInfo, n: usize) -> Result<Vec<u8>> {
    // SAFETY: the function is STRICT and declares `n` as text, so the datum
    // is a valid, non-null varlena.
    let datum = unsafe { (*fcinfo).args.as_slice(n + 1)[n].value };
    // SAFETY: text_to_cstring detoasts and copies into a palloc'd string;
    // the closure owns nothing.
    let ptr = unsafe { guarded(move || pg::text_to_cstring(datum as *const pg::text) as *const c_char) }?;
    // SAFETY: the server returned a NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec())
}

/// The boolean argument `n` of a STRICT function.
pub fn bool_arg(fcinfo: FunctionCallInfo, n: usize) -> bool {
    // SAFETY: the SQL declaration guarantees argument `n` exists.
    unsafe { (*fcinfo).args.as_slice(n + 1)[n].value != 0 }
}

/// Marks the result of the running SQL function NULL.
pub fn set_null_result(fcinfo: FunctionCallInfo) {
    // SAFETY: fcinfo is the server's call frame for the running function.
    unsafe { (*fcinfo).isnull = true };
}

/// What do_pg_backup_start hands back.
pub struct Started {
    pub start_lsn: Lsn,
    /// The label as the server would write it ("BACKUP METHOD: streamed").
    pub label_text: Vec<u8>,
    /// tablespace_map content; empty when pg_tblspc/ has no links.
    pub tablespace_map: Vec<u8>,
    /// The start time the server put into the label, in Unix seconds.
    pub start_epoch: i64,
}

/// Copies a server string of known length.
///
/// # Safety
/// `data` must point to at least `len` readable bytes.
unsafe fn bytes(data: *const c_char, len: usize) -> Vec<u8> {
    if data.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(data as *const u8, len) }.to_vec()
}

/// A backend's wait between two tries for the lock file: a few
/// milliseconds on the latch, ended early by a cancel (unless interrupts
/// are held).
pub fn pause_for_lock() -> Result<()> {
    check_for_interrupts()?;
    wait_latch(5, false, "waiting for pg_exclusive_backup.lock")
}

/// CHECK_FOR_INTERRUPTS(): a pending cancel comes back as its error (a
/// no-op while interrupts are held).
pub fn check_for_interrupts() -> Result<()> {
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(|| pg::peb_check_for_interrupts()) }
}

/// Waits on this process's latch for at most `ms`; an error naming what
/// was going on (`while ...`) when the postmaster has died.
pub fn wait_latch(ms: i64, for_worker: bool, while_: &str) -> Result<()> {
    // SAFETY: plain shim call; the closure owns nothing.
    if unsafe { guarded(move || pg::peb_wait_latch(ms, for_worker)) }? {
        return Err(Error::new(
            ADMIN_SHUTDOWN,
            format!("the postmaster died while {while_}"),
        ));
    }
    Ok(())
}

/// Drops a query cancel or statement timeout that came in while
/// interrupts were held, for a call that has completed what it was asked.
pub fn forget_query_cancel() {
    // SAFETY: plain shim call; cannot fail.
    unsafe { pg::peb_forget_query_cancel() };
}

/// Whether this process has been asked to terminate (looked at while
/// interrupts are held).
pub fn terminate_pending() -> bool {
    // SAFETY: plain shim call; reads a flag.
    unsafe { pg::peb_proc_die_pending() }
}

/// Leaves the backup mode this session's start_backup entered, without
/// writing anything to WAL; used when the start cannot be completed.
pub fn abort_session_backup() -> Result<()> {
    // SAFETY: plain server call; the closure owns nothing.
    unsafe { guarded(|| pg::peb_abort_session_backup()) }
}

/// The instant a label's START TIME denotes, in Unix seconds, reading its
/// zone abbreviation in the current log_timezone. Exact only while
/// log_timezone is the one the server wrote it in: the start worker uses
/// it right after the start, and stop and monitoring only for labels that
/// have no START EPOCH line.
pub fn start_time_unix(t: &StartTime) -> Result<i64> {
    let zone = CString::new(t.zone.as_str()).map_err(|_| Error::new(INTERNAL_ERROR, "zone contains NUL"))?;
    let zone_ptr = zone.as_ptr();
    let mut tm = pg::pg_tm {
        tm_year: t.year,
        tm_mon: t.month as i32,
        tm_mday: t.day as i32,
        tm_hour: t.hour as i32,
        tm_min: t.minute as i32,
        tm_sec: t.second as i32,
        ..Default::default()
    };
    let tm_ptr: *mut pg::pg_tm = &mut tm;
    // SAFETY: `tm` and `zone` outlive the call, the closure owns nothing;
    // log_timezone is set up by the time any SQL function runs.
    let offset = unsafe { guarded(move || pg::DetermineTimeZoneAbbrevOffset(tm_ptr, zone_ptr, pg::log_timezone)) }?;
    // The server's offsets count seconds west of Greenwich.
    Ok(t.local_seconds() + i64::from(offset))
}

/// When the postmaster started, in Unix seconds.
pub fn postmaster_start_unix() -> i64 {
    // SAFETY: PgStartTime is set once by the postmaster before any backend
    // exists and never changes afterwards.
    let start = unsafe { pg::PgStartTime };
    start.div_euclid(1_000_000) + crate::label::POSTGRES_EPOCH_UNIX_SECONDS
}

/// Label text (bytes in the encoding of the database that started the
/// backup) for a message: as the current database reads it when the bytes
/// are valid in its encoding, otherwise with every byte outside ASCII
/// written as `\xNN`, so that it reaches the client intact either way.
pub fn text_for_message(raw: &[u8]) -> String {
    if raw.is_ascii() {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let escaped = || crate::label::escape_non_ascii(raw);
    let Ok(c) = CString::new(raw) else {
        return escaped();
    };
    let ptr = c.as_ptr();
    let len = raw.len() as i32;
    // SAFETY: `ptr` is valid for the call; the closure owns nothing.
    match unsafe { guarded(move || pg::peb_utf8_from_database_text(ptr, len) as *const c_char) } {
        // SAFETY: a NUL-terminated palloc'd string.
        Ok(p) if !p.is_null() => match unsafe { CStr::from_ptr(p) }.to_str() {
            Ok(s) => s.to_string(),
            Err(_) => escaped(),
        },
        _ => escaped(),
    }
}

/// The calling session as the status view names it.
pub struct SessionInfo {
    pub user: String,
    pub database: String,
    pub from: Option<String>,
    pub application_name: String,
}

/// session_user, the database, the client's address and application_name
/// of this backend.
pub fn session_info() -> Result<SessionInfo> {
    const LEN: usize = 256;
    let mut user = [0u8; LEN];
    let mut db = [0u8; LEN];
    let mut from = [0u8; LEN];
    let (u, d, f) = (user.as_mut_ptr(), db.as_mut_ptr(), from.as_mut_ptr());
    // SAFETY: each buffer is LEN bytes and outlives the call; the closure
    // owns nothing.
    let connected =
        unsafe { guarded(move || pg::peb_session_info(u as *mut c_char, d as *mut c_char, f as *mut c_char, LEN)) }?;
    // SAFETY: application_name is a NUL-terminated setting, copied at once.
    let app = unsafe { CStr::from_ptr(pg::peb_application_name()) }
        .to_bytes()
        .to_vec();
    let text = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Ok(SessionInfo {
        user: text(&user),
        database: text(&db),
        from: connected.then(|| text(&from)),
        application_name: text(&app),
    })
}

/// The timeline the server writes WAL on; only outside recovery.
pub fn insert_timeline() -> Result<u32> {
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(|| pg::peb_insert_timeline()) }
}

/// Whether global/pg_control says the server was shut down cleanly, from
/// the file's first bytes (its state, where catalog/pg_control.h puts it;
/// shim.c checks the offset and the value at build time).
pub fn control_file_says_shut_down(head: &[u8]) -> bool {
    let at = pg::PEB_CONTROL_STATE_OFFSET as usize;
    head.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .is_some_and(|b| i32::from_ne_bytes(b) == pg::PEB_DB_SHUTDOWNED as i32)
}
