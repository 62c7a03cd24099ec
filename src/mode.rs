//! Preload mode or not: what _PG_init sets up, which BACKUP METHOD labels
//! get, and the words that tell a DBA what preload mode adds.

use crate::error::Result;
use crate::label::Method;
use crate::server::boundary::{report, Level};
use crate::server::settings::{self, LabelMethod};
use crate::shared;

/// What preload mode adds, for the notices given without it.
pub const WITHOUT_PRELOAD: &str = "Without it, a restored copy of an exclusive backup is taken to be consistent \
     as soon as recovery has replayed up to the backup's start, and a primary that crashes during a backup \
     may need backup_label moved away by hand before it starts again.";
pub const PRELOAD_HINT: &str = "Add pg_exclusive_backup to shared_preload_libraries and restart the server: \
     labels then say \"BACKUP METHOD: streamed\", so that restored copies are recovered as pg_basebackup's \
     are, and the postmaster keeps the primary's own label from its startup process.";

/// The short form, for every pg_start_backup without preload mode.
pub const NOTICE_HINT: &str = "In preload mode a restored copy of this backup would be consistent only at its \
     end, as a pg_basebackup copy is, and the primary would restart by itself after a crash during it.";

/// _PG_init: defines the settings and, from shared_preload_libraries,
/// installs preload mode's hooks.
pub fn init() -> Result<()> {
    settings::define()?;
    if settings::loading_from_preload() {
        shared::set_preloaded();
        settings::install_preload_hooks();
        crate::server::worker::register_standing_worker()?;
    } else if settings::creating_extension() {
        report(
            Level::Warning,
            "pg_exclusive_backup is not in shared_preload_libraries",
            Some(WITHOUT_PRELOAD),
            Some(PRELOAD_HINT),
        );
    }
    Ok(())
}

/// What pg_start_backup says once the backup runs: without preload mode,
/// what it lacks (a WARNING for streamed labels, which then need a hand
/// after a crash; a NOTICE otherwise), and that the durations are not
/// enforced.
pub fn say_after_start(method: Method) {
    warn_if_durations_unenforced();
    if shared::preloaded() {
        return;
    }
    if method == Method::Streamed {
        report(
            Level::Warning,
            "backup_label says \"BACKUP METHOD: streamed\" but pg_exclusive_backup is not in shared_preload_libraries",
            Some(
                "If the server crashes or shuts down during this backup, it will not start again until \
                 backup_label is renamed to backup_label.old by hand.",
            ),
            Some(PRELOAD_HINT),
        );
    } else {
        report(
            Level::Notice,
            "pg_exclusive_backup is not in shared_preload_libraries",
            None,
            Some(NOTICE_HINT),
        );
    }
}

/// Without preload mode no process runs to enforce max_duration and
/// warn_duration: pg_start_backup says so when either is set.
fn warn_if_durations_unenforced() {
    let limits = crate::duration::Limits::of(settings::duration_seconds());
    if shared::preloaded() || (limits.max_seconds == 0 && limits.warn_seconds == 0) {
        return;
    }
    report(
        Level::Warning,
        "pg_exclusive_backup.max_duration and warn_duration are not enforced without preload mode",
        Some(
            "Only preload mode's standing worker watches a running backup; this backup runs until pg_stop_backup() \
              or pg_exclusive_backup_void() ends it.",
        ),
        Some(PRELOAD_HINT),
    );
}

/// The BACKUP METHOD pg_start_backup writes (pg_exclusive_backup.label_method).
pub fn label_method() -> Method {
    match settings::label_method() {
        LabelMethod::Streamed => Method::Streamed,
        LabelMethod::PgStartBackup => Method::Exclusive,
        LabelMethod::Auto if shared::preloaded() => Method::Streamed,
        LabelMethod::Auto => Method::Exclusive,
    }
}
