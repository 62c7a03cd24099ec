//! pg_stop_backup(true)'s wait for the archiver. The server's own wait in
//! do_pg_backup_stop looks at the archive status once a second, so any
//! archiving that is not done at the first look costs a whole second. The
//! stop therefore calls the server without its wait and waits here: for
//! the same two files (the last WAL segment the backup needs and the backup
//! history file), with the server's own messages at the same moments, but
//! looking again after 1 ms, then 2, 4, ... up to every 100 ms.

use std::time::{Duration, Instant};

use crate::bindings as pg;
use crate::boundary::guarded;
use crate::error::Result;
use crate::hooks;
use crate::label::Lsn;

const FIRST_LOOK: Duration = Duration::from_millis(1);
const LAST_LOOK: Duration = Duration::from_millis(100);
/// The server's NOTICE comes after more than 5 s of waiting, its first
/// WARNING at 60 s, then at 120, 240, ...
const NOTICE_AFTER_S: u64 = 5;
const FIRST_WARNING_S: u64 = 60;

const WAITING: i32 = 0;
const STILL_WAITING: i32 = 1;
const ARCHIVED: i32 = 2;
const NOT_ENABLED: i32 = 3;

fn report(what: i32, seconds: u64) -> Result<()> {
    let seconds = seconds.min(i32::MAX as u64) as i32;
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(move || pg::peb_report_archive_wait(what, seconds)) }
}

fn busy(file: &[std::ffi::c_char; 64]) -> Result<bool> {
    let ptr = file.as_ptr();
    // SAFETY: a NUL-terminated name that outlives the call; the closure
    // owns nothing.
    unsafe { guarded(move || pg::peb_archive_busy(ptr)) }
}

/// Waits until the archiver is done with the backup that started at
/// `start` and stopped at `stop` on timeline `tli`, as the server's stop
/// would; cancellable (the backup itself is already over then).
pub fn wait_for_archive(start: Lsn, stop: Lsn, tli: u32) -> Result<()> {
    // SAFETY: plain shim call; the closure owns nothing.
    if !unsafe { guarded(|| pg::peb_archiving_active()) }? {
        return report(NOT_ENABLED, 0);
    }
    let mut last_wal = [0 as std::ffi::c_char; 64];
    let mut history = [0 as std::ffi::c_char; 64];
    let (last_ptr, history_ptr) = (last_wal.as_mut_ptr(), history.as_mut_ptr());
    // SAFETY: both buffers are MAXFNAMELEN (64) bytes and outlive the call;
    // the closure owns nothing.
    unsafe { guarded(move || pg::peb_backup_wait_files(start, stop, tli, last_ptr, history_ptr)) }?;

    // Test builds can make this clock run faster, to see the warnings
    // without waiting minutes for them.
    let scale = hooks::archive_clock_scale();
    let began = Instant::now();
    let mut look = FIRST_LOOK;
    let mut noticed = false;
    let mut next_warning = FIRST_WARNING_S;
    while busy(&last_wal)? || busy(&history)? {
        crate::server::check_for_interrupts()?;
        let waited = began.elapsed().as_secs_f64() * scale;
        if !noticed && waited > NOTICE_AFTER_S as f64 {
            report(WAITING, 0)?;
            noticed = true;
        }
        if waited >= next_warning as f64 {
            report(STILL_WAITING, next_warning)?;
            next_warning = next_warning.saturating_mul(2);
        }
        let ms = look.as_millis() as i64;
        // SAFETY: plain shim call; the closure owns nothing.
        unsafe { guarded(move || pg::peb_wait_for_archiver(ms)) }?;
        look = (look * 2).min(LAST_LOOK);
    }
    report(ARCHIVED, 0)
}
