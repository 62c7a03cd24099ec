//! Safe wrappers over the server functions the extension calls. Each one
//! goes through the boundary, so a server error comes back as `Err`.
//!
//! The backup API changed in PostgreSQL 16 (BackupState replaced the label
//! text as the currency between start and stop). Each generation has its
//! own module, chosen here and only here: `pg15.rs` for 15, `pg16.rs` for
//! 16 and later.

use std::ffi::{c_char, CStr, CString};

use crate::bindings as pg;
use crate::boundary::{guarded, FunctionCallInfo};
use crate::error::{Error, Result, INTERNAL_ERROR};
use crate::label::{Lsn, StartTime};

#[cfg_attr(pg16_plus, path = "pg16.rs")]
#[cfg_attr(not(pg16_plus), path = "pg15.rs")]
mod api;

pub use api::{start_backup, PreparedStop};

pub fn recovery_in_progress() -> Result<bool> {
    // SAFETY: plain server call, no arguments; the closure owns nothing.
    unsafe { guarded(|| pg::RecoveryInProgress()) }
}

/// Whether the server counts a backup as started by this session.
pub fn session_backup_running() -> Result<bool> {
    // SAFETY: reads a backend-local variable; the closure owns nothing.
    unsafe { guarded(|| pg::get_backup_status() == pg::SessionBackupState::SESSION_BACKUP_RUNNING) }
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
/// How many arguments the SQL declaration passes.
pub fn nargs(fcinfo: FunctionCallInfo) -> usize {
    // SAFETY: the server passes a valid call frame.
    usize::try_from(unsafe { (*fcinfo).nargs }).unwrap_or(0)
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
pub fn return_exclusive_stop(fcinfo: FunctionCallInfo, lsn: Lsn) -> Result<()> {
    // SAFETY: as above, after prepare_stop_row.
    unsafe { guarded(move || pg::peb_return_exclusive_stop(fcinfo, lsn)) }
}

/// Stops this session's non-exclusive backup with the server's
/// pg_backup_stop(wait_for_archive) and returns its row.
pub fn return_session_stop(fcinfo: FunctionCallInfo, wait_for_archive: bool) -> Result<()> {
    // SAFETY: as above, after prepare_stop_row.
    unsafe { guarded(move || pg::peb_return_session_stop(fcinfo, wait_for_archive)) }
}

pub fn bool_arg(fcinfo: FunctionCallInfo, n: usize) -> bool {
    // SAFETY: the SQL declaration guarantees argument `n` exists.
    unsafe { (*fcinfo).args.as_slice(n + 1)[n].value != 0 }
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

/// How long a start or stop waits for another's hold on the lock file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes the lock that serialises the changes of backup_label and
/// tablespace_map. While another process holds it (for a few file
/// operations), waits on the latch in steps of a few milliseconds, checking
/// for interrupts: a cancel ends the wait, unless interrupts are held.
pub fn lock_data_dir() -> Result<crate::files::DirLock> {
    crate::files::DirLock::acquire(crate::files::data_dir(), LOCK_WAIT, &mut || {
        check_for_interrupts()?;
        wait_latch(5, false, "waiting for pg_exclusive_backup.lock")
    })
}

/// The lock file if it comes free within two seconds, `None` otherwise;
/// for callers to whom the lock is a nicety, not a must. Checks for
/// interrupts between tries (a no-op while they are held).
pub fn lock_data_dir_briefly() -> Result<Option<crate::files::DirLock>> {
    for _ in 0..400 {
        if let Some(lock) = crate::files::DirLock::try_acquire(crate::files::data_dir())? {
            return Ok(Some(lock));
        }
        check_for_interrupts()?;
        wait_latch(5, false, "waiting for pg_exclusive_backup.lock")?;
    }
    Ok(None)
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
            crate::error::ADMIN_SHUTDOWN,
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
