//! Delay points for the race tests, compiled in only with the cargo
//! feature `test-hooks` (which `tools/test.sh` builds and installs; the
//! Makefile adds it when `PEB_TEST_HOOKS=1`). Without the feature, and in
//! the unit tests, every function here does nothing.
//!
//! With it, the setting `pg_exclusive_backup.test_pause` holds a list of
//! `point:milliseconds` (e.g. `worker_published:3000`), and `pause(point)`
//! sleeps that long, without checking for interrupts, as a slow system
//! call would; `pg_exclusive_backup.test_panic` names the point at which
//! `may_panic(point)` panics (placed only where a guard must undo what came
//! before); `pg_exclusive_backup.test_archive_clock_scale` makes the clock
//! of pg_stop_backup's archive wait run that many times faster. The start
//! worker reads the settings from the server's configuration file (reload);
//! a backend also from SET.

#[cfg(all(feature = "test-hooks", not(test)))]
mod enabled {
    use crate::server::settings::{sleep_uninterrupted, value};

    pub fn may_panic(point: &str) {
        if value(c"pg_exclusive_backup.test_panic") == point {
            panic!("test panic at {point}");
        }
    }

    pub fn pause(point: &str) {
        let setting = value(c"pg_exclusive_backup.test_pause");
        let ms = setting
            .split(',')
            .filter_map(|item| item.trim().split_once(':'))
            .find(|(p, _)| *p == point)
            .and_then(|(_, ms)| ms.parse::<i64>().ok());
        if let Some(ms) = ms {
            crate::server::boundary::log(&format!("pg_exclusive_backup: test pause at {point} for {ms} ms"));
            sleep_uninterrupted(ms);
        }
    }

    /// How many seconds of the archive wait's clock pass per real second:
    /// `pg_exclusive_backup.test_archive_clock_scale`, 1 when unset.
    pub fn archive_clock_scale() -> f64 {
        value(c"pg_exclusive_backup.test_archive_clock_scale")
            .parse::<f64>()
            .ok()
            .filter(|s| *s >= 1.0)
            .unwrap_or(1.0)
    }
}

#[cfg(all(feature = "test-hooks", not(test)))]
pub use enabled::{archive_clock_scale, may_panic, pause};

#[cfg(not(all(feature = "test-hooks", not(test))))]
#[inline(always)]
pub fn archive_clock_scale() -> f64 {
    1.0
}

#[cfg(not(all(feature = "test-hooks", not(test))))]
#[inline(always)]
pub fn pause(_point: &str) {}

#[cfg(not(all(feature = "test-hooks", not(test))))]
#[inline(always)]
pub fn may_panic(_point: &str) {}
