//! pg_stop_backup(true)'s wait for the archiver. The server's own wait in
//! do_pg_backup_stop looks at the archive status once a second, so any
//! archiving that is not done at the first look costs a whole second. The
//! stop therefore calls the server without its wait and waits here: for
//! the same two files (the last WAL segment the backup needs and the backup
//! history file), with the server's own messages at the same moments, but
//! looking again after 1 ms, then 2, 4, ... up to every 100 ms.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::hooks;
use crate::label::Lsn;
use crate::server::{self, archive::Said};

const FIRST_LOOK: Duration = Duration::from_millis(1);
const LAST_LOOK: Duration = Duration::from_millis(100);
/// The server's NOTICE comes after more than 5 s of waiting, its first
/// WARNING at 60 s, then at 120, 240, ...
const NOTICE_AFTER_S: u64 = 5;
const FIRST_WARNING_S: u64 = 60;

/// Waits until the archiver is done with the backup that started at
/// `start` and stopped at `stop` on timeline `tli`, as the server's stop
/// would; cancellable (the backup itself is already over then).
pub fn wait_for_archive(start: Lsn, stop: Lsn, tli: u32) -> Result<()> {
    use server::archive::{busy, files_to_wait_for, nap, say};
    if !server::archive::archiving_active()? {
        return say(Said::NotEnabled);
    }
    let (last_wal, history) = files_to_wait_for(start, stop, tli)?;
    // Test builds can make this clock run faster, to see the warnings
    // without waiting minutes for them.
    let scale = hooks::archive_clock_scale();
    let began = Instant::now();
    let mut look = FIRST_LOOK;
    let mut noticed = false;
    let mut next_warning = FIRST_WARNING_S;
    while busy(&last_wal)? || busy(&history)? {
        server::check_for_interrupts()?;
        let waited = began.elapsed().as_secs_f64() * scale;
        if !noticed && waited > NOTICE_AFTER_S as f64 {
            say(Said::Waiting)?;
            noticed = true;
        }
        if waited >= next_warning as f64 {
            say(Said::StillWaiting { seconds: next_warning })?;
            next_warning = next_warning.saturating_mul(2);
        }
        nap(look.as_millis() as i64)?;
        look = (look * 2).min(LAST_LOOK);
    }
    say(Said::Archived)
}
