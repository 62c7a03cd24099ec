//! Delay points for the race tests, compiled in only with the cargo
//! feature `test-hooks` (which `tools/test.sh` builds and installs; the
//! Makefile adds it when `PEB_TEST_HOOKS=1`). Without the feature `pause`
//! is empty and the setting below means nothing.
//!
//! With it, the setting `pg_exclusive_backup.test_pause` holds a list of
//! `point:milliseconds` (e.g. `worker_published:3000`), and `pause(point)`
//! sleeps that long, without checking for interrupts, as a slow system
//! call would; and `pg_exclusive_backup.test_panic` names the point at
//! which `may_panic(point)` panics (placed only where a guard must undo
//! what came before); `pg_exclusive_backup.test_archive_clock_scale` makes
//! the clock of pg_stop_backup's archive wait run that many times faster. The start worker reads the settings from
//! the server's configuration file (reload); a backend also from SET.

#[cfg(feature = "test-hooks")]
fn setting(name: &'static std::ffi::CStr) -> String {
    use crate::bindings as pg;
    use crate::boundary::guarded;

    // SAFETY: plain server call with a static name; the closure owns
    // nothing. GetConfigOption with missing_ok raises no error.
    match unsafe { guarded(|| pg::peb_guc_value(name.as_ptr())) } {
        // SAFETY: a NUL-terminated string owned by the GUC machinery.
        Ok(p) if !p.is_null() => unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned(),
        _ => String::new(),
    }
}

#[cfg(feature = "test-hooks")]
pub fn may_panic(point: &str) {
    if setting(c"pg_exclusive_backup.test_panic") == point {
        panic!("test panic at {point}");
    }
}

#[cfg(feature = "test-hooks")]
pub fn pause(point: &str) {
    use crate::bindings as pg;
    use crate::boundary::guarded;

    let setting = setting(c"pg_exclusive_backup.test_pause");
    let ms = setting
        .split(',')
        .filter_map(|item| item.trim().split_once(':'))
        .find(|(p, _)| *p == point)
        .and_then(|(_, ms)| ms.parse::<i64>().ok());
    if let Some(ms) = ms {
        crate::boundary::log(&format!("pg_exclusive_backup: test pause at {point} for {ms} ms"));
        // SAFETY: plain server call that cannot fail; the closure owns nothing.
        let _ = unsafe { guarded(move || pg::pg_usleep(ms * 1000)) };
    }
}

/// How many seconds of the archive wait's clock pass per real second:
/// `pg_exclusive_backup.test_archive_clock_scale`, 1 when unset.
#[cfg(feature = "test-hooks")]
pub fn archive_clock_scale() -> f64 {
    setting(c"pg_exclusive_backup.test_archive_clock_scale")
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 1.0)
        .unwrap_or(1.0)
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn archive_clock_scale() -> f64 {
    1.0
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn pause(_point: &str) {}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn may_panic(_point: &str) {}
