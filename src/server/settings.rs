//! The extension's settings (`pg_exclusive_backup.*`), and what _PG_init
//! learns from the server: whether it runs from shared_preload_libraries,
//! where preload mode's hooks go in.

use std::ffi::CStr;

use super::bindings as pg;
use super::boundary::guarded;
use crate::error::Result;

/// pg_exclusive_backup.label_method.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LabelMethod {
    Auto,
    Streamed,
    PgStartBackup,
}

/// Defines the settings (from _PG_init).
pub fn define() -> Result<()> {
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(|| pg::peb_define_settings()) }
}

pub fn label_method() -> LabelMethod {
    // SAFETY: reads a setting variable.
    match unsafe { pg::peb_label_method_setting() } as u32 {
        pg::PEB_METHOD_STREAMED => LabelMethod::Streamed,
        pg::PEB_METHOD_PG_START_BACKUP => LabelMethod::PgStartBackup,
        _ => LabelMethod::Auto,
    }
}

/// pg_exclusive_backup.require_preload.
pub fn require_preload() -> bool {
    // SAFETY: reads a setting variable.
    unsafe { pg::peb_require_preload_setting() }
}

/// pg_exclusive_backup.refuse_archiving_clone.
pub fn refuse_archiving_clone() -> bool {
    // SAFETY: reads a setting variable.
    unsafe { pg::peb_refuse_archiving_clone_setting() }
}

/// pg_exclusive_backup.max_duration and warn_duration, as read now: whole
/// seconds, 0 when off.
pub fn duration_seconds() -> (u64, u64) {
    // SAFETY: reads setting variables.
    let (max, warn) = unsafe { (pg::peb_max_duration_setting(), pg::peb_warn_duration_setting()) };
    (u64::try_from(max).unwrap_or(0), u64::try_from(warn).unwrap_or(0))
}

/// Rereads the configuration file if the postmaster asked for it (SIGHUP);
/// for the standing worker, which has no client to do it for it.
pub fn reload_if_asked() -> Result<()> {
    // SAFETY: plain shim call; the closure owns nothing.
    unsafe { guarded(|| pg::peb_reload_config_if_asked()) }
}

/// Whether _PG_init runs from shared_preload_libraries.
pub fn loading_from_preload() -> bool {
    // SAFETY: reads a server flag.
    unsafe { pg::peb_preload_in_progress() }
}

/// Whether _PG_init runs for CREATE EXTENSION.
pub fn creating_extension() -> bool {
    // SAFETY: reads a server flag.
    unsafe { pg::peb_creating_extension() }
}

/// Installs preload mode's shared memory hooks; once, from _PG_init.
pub fn install_preload_hooks() {
    // SAFETY: sets hook pointers; called once, from _PG_init.
    unsafe { pg::peb_install_preload_hooks() };
}

/// How this server archives WAL ("archive_command '...' (archive_mode =
/// on)", or with archive_library), `None` when it does not.
pub fn archiving() -> Option<String> {
    let mode = value(c"archive_mode");
    if mode.is_empty() || mode == "off" {
        return None;
    }
    let library = value(c"archive_library");
    Some(if library.is_empty() {
        format!(
            "archive_command '{}' (archive_mode = {mode})",
            value(c"archive_command")
        )
    } else {
        format!("archive_library '{library}' (archive_mode = {mode})")
    })
}

/// A setting's current value as text, empty when it is not set.
pub fn value(name: &'static CStr) -> String {
    // SAFETY: plain server call with a static name; the closure owns
    // nothing. GetConfigOption with missing_ok raises no error.
    match unsafe { guarded(|| pg::peb_guc_value(name.as_ptr())) } {
        // SAFETY: a NUL-terminated string owned by the GUC machinery.
        Ok(p) if !p.is_null() => unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned(),
        _ => String::new(),
    }
}

/// Sleeps `ms` without looking at interrupts, as a slow system call
/// would (the test builds' delay points).
#[cfg(feature = "test-hooks")]
pub fn sleep_uninterrupted(ms: i64) {
    // SAFETY: plain server call that cannot fail; the closure owns nothing.
    let _ = unsafe { guarded(move || pg::pg_usleep(ms * 1000)) };
}
