//! What the stop's wait for the archiver asks the server (see archive.rs
//! above this module for the wait itself).

use std::ffi::c_char;

use super::bindings as pg;
use super::boundary::guarded;
use crate::error::Result;
use crate::label::Lsn;

/// A WAL or history file name (MAXFNAMELEN bytes, NUL-terminated).
pub struct FileName([c_char; 64]);

/// The server's own messages about the wait.
#[derive(Clone, Copy)]
pub enum Said {
    /// "base backup done, waiting for required WAL segments to be archived"
    Waiting,
    /// "still waiting for all required WAL segments to be archived (N
    /// seconds elapsed)"
    StillWaiting { seconds: u64 },
    /// "all required WAL segments have been archived"
    Archived,
    /// "WAL archiving is not enabled; ..."
    NotEnabled,
}

/// Whether the server archives WAL (archive_mode, and on a standby
/// archive_mode = always).
pub fn archiving_active() -> Result<bool> {
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(|| pg::peb_archiving_active()) }
}

/// The last WAL file a backup from `start` to `stop` on timeline `tli`
/// needs, and its backup history file.
pub fn files_to_wait_for(start: Lsn, stop: Lsn, tli: u32) -> Result<(FileName, FileName)> {
    let mut last_wal = [0 as c_char; 64];
    let mut history = [0 as c_char; 64];
    let (last_ptr, history_ptr) = (last_wal.as_mut_ptr(), history.as_mut_ptr());
    // SAFETY: both buffers are MAXFNAMELEN (64) bytes and outlive the call;
    // the closure owns nothing.
    unsafe { guarded(move || pg::peb_backup_wait_files(start, stop, tli, last_ptr, history_ptr)) }?;
    Ok((FileName(last_wal), FileName(history)))
}

/// Whether the archiver still has `file` to do.
pub fn busy(file: &FileName) -> Result<bool> {
    let ptr = file.0.as_ptr();
    // SAFETY: a NUL-terminated name that outlives the call; the closure
    // owns nothing.
    unsafe { guarded(move || pg::peb_archive_busy(ptr)) }
}

/// Sleeps at most `ms` on the latch, with the server's wait event of the
/// archive wait.
pub fn nap(ms: i64) -> Result<()> {
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(move || pg::peb_wait_for_archiver(ms)) }
}

pub fn say(what: Said) -> Result<()> {
    let (what, seconds) = match what {
        Said::Waiting => (0, 0),
        Said::StillWaiting { seconds } => (1, seconds.min(i32::MAX as u64) as i32),
        Said::Archived => (2, 0),
        Said::NotEnabled => (3, 0),
    };
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(move || pg::peb_report_archive_wait(what, seconds)) }
}
