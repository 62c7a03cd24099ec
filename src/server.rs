//! Safe wrappers over the server functions the extension calls. Each one
//! goes through the boundary, so a server error comes back as `Err`.
//!
//! The backup API changed in PostgreSQL 16 (BackupState replaced the label
//! text as the currency between start and stop); the `pg16_plus` cfg from
//! build.rs picks the path.

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use crate::bindings as pg;
use crate::boundary::{guarded, FunctionCallInfo};
use crate::error::{Error, Result, INTERNAL_ERROR};
use crate::label::{BackupLabel, Lsn, StartTime};

pub fn recovery_in_progress() -> Result<bool> {
    // SAFETY: plain server call, no arguments.
    guarded(|| unsafe { pg::RecoveryInProgress() })
}

/// Whether the server counts a backup as started by this session.
pub fn session_backup_running() -> Result<bool> {
    // SAFETY: reads a backend-local variable.
    guarded(|| unsafe { pg::get_backup_status() } == pg::SessionBackupState::SESSION_BACKUP_RUNNING)
}

/// The text argument `n` of a STRICT function, as bytes.
pub fn text_arg(fcinfo: FunctionCallInfo, n: usize) -> Result<Vec<u8>> {
    // SAFETY: the function is STRICT and declares `n` as text, so the datum
    // is a valid, non-null varlena.
    let datum = unsafe { (*fcinfo).args.as_slice(n + 1)[n].value };
    // SAFETY: text_to_cstring detoasts and copies into a palloc'd string.
    let ptr = guarded(move || unsafe { pg::text_to_cstring(datum as *const pg::text) as *const c_char })?;
    // SAFETY: the server returned a NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec())
}

/// The boolean argument `n` of a STRICT function.
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

/// Puts the server into backup mode (checkpoint included). On error the
/// server has already left backup mode again.
pub fn start_backup(label: &CStr, fast: bool) -> Result<Started> {
    let label_ptr = label.as_ptr();

    #[cfg(not(pg16_plus))]
    {
        let (lsn, labelfile, mapfile) = guarded(move || {
            // SAFETY: documented server API; all pointers are valid for the call.
            unsafe {
                let labelfile = pg::makeStringInfo();
                let mapfile = pg::makeStringInfo();
                let mut tli: pg::TimeLineID = 0;
                let mut tablespaces: *mut pg::List = ptr::null_mut();
                let lsn = pg::do_pg_backup_start(label_ptr, fast, &mut tli, labelfile, &mut tablespaces, mapfile);
                (lsn, labelfile, mapfile)
            }
        })?;
        // SAFETY: both StringInfos were filled by the server.
        unsafe {
            Ok(Started {
                start_lsn: lsn,
                label_text: bytes((*labelfile).data, (*labelfile).len as usize),
                tablespace_map: bytes((*mapfile).data, (*mapfile).len as usize),
            })
        }
    }

    #[cfg(pg16_plus)]
    {
        let (state, mapfile, text) = guarded(move || {
            // SAFETY: documented server API; all pointers are valid for the call.
            unsafe {
                let state = pg::palloc0(std::mem::size_of::<pg::BackupState>()) as *mut pg::BackupState;
                let mapfile = pg::makeStringInfo();
                let mut tablespaces: *mut pg::List = ptr::null_mut();
                pg::do_pg_backup_start(label_ptr, fast, &mut tablespaces, state, mapfile);
                let text = pg::build_backup_content(state, false) as *const c_char;
                (state, mapfile, text)
            }
        })?;
        // SAFETY: filled by the server above.
        unsafe {
            Ok(Started {
                start_lsn: (*state).startpoint,
                label_text: CStr::from_ptr(text).to_bytes().to_vec(),
                tablespace_map: bytes((*mapfile).data, (*mapfile).len as usize),
            })
        }
    }
}

/// Leaves the backup mode this session's start_backup entered, without
/// writing anything to WAL; used when the start cannot be completed.
pub fn abort_session_backup() -> Result<()> {
    // SAFETY: plain server call.
    guarded(|| unsafe { pg::peb_abort_session_backup() })
}

/// Ends the backup described by `label` (whose file text is `label_text`):
/// the server writes the end-of-backup record and the history file,
/// switches WAL and, if asked, waits for archiving. Returns the stop LSN.
#[allow(unused_variables)]
pub fn stop_backup(label: &BackupLabel, label_text: &[u8], wait_for_archive: bool) -> Result<Lsn> {
    #[cfg(not(pg16_plus))]
    {
        // The 15 API re-parses the text; hand it exactly what the file says.
        let text = CString::new(label_text).map_err(|_| Error::new(INTERNAL_ERROR, "label text contains NUL"))?;
        let text_ptr = text.as_ptr() as *mut c_char;
        guarded(move || {
            let mut tli: pg::TimeLineID = 0;
            // SAFETY: documented server API; `text` outlives the call.
            unsafe { pg::do_pg_backup_stop(text_ptr, wait_for_archive, &mut tli) }
        })
    }

    #[cfg(pg16_plus)]
    {
        let mut state = Box::new(backup_state(label)?);
        let state_ptr: *mut pg::BackupState = &mut *state;
        // SAFETY: documented server API; `state` outlives the call.
        guarded(move || unsafe { pg::do_pg_backup_stop(state_ptr, wait_for_archive) })?;
        Ok(state.stoppoint)
    }
}

/// Rebuilds the server's BackupState from the label file, field by field.
/// The whole label and the exact start time go into the history file.
#[cfg(pg16_plus)]
fn backup_state(label: &BackupLabel) -> Result<pg::BackupState> {
    let mut state = pg::BackupState::default();
    if label.label.len() >= state.name.len() {
        return Err(Error::new(
            INTERNAL_ERROR,
            "label longer than the server's BackupState allows",
        ));
    }
    for (dst, &src) in state.name.iter_mut().zip(label.label.iter()) {
        *dst = src as c_char;
    }
    state.startpoint = label.start_lsn;
    state.starttli = label.start_timeline;
    state.checkpointloc = label.checkpoint_lsn;
    state.starttime = start_time_unix(&label.start_time)?;
    state.started_in_recovery = false;
    Ok(state)
}

/// The instant a label's START TIME denotes, in Unix seconds. The server
/// wrote it in log_timezone, so the zone abbreviation is resolved there,
/// which is exact even for abbreviations that mean different offsets in
/// different zones.
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
    // SAFETY: `tm` and `zone` outlive the call; log_timezone is set up by
    // the time any SQL function runs.
    let offset = guarded(move || unsafe { pg::DetermineTimeZoneAbbrevOffset(tm_ptr, zone_ptr, pg::log_timezone) })?;
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
