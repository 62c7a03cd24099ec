//! Preload mode's postmaster side. The server's startup process takes any
//! backup_label it finds for the label of a restored backup. On the live
//! primary that is wrong: with a `streamed` label its crash recovery then
//! stops with "WAL ends before end of online backup", and with either
//! method it copies the backup's start into pg_control, where nothing
//! clears it. So in preload mode the postmaster keeps the primary's own
//! label from the startup process:
//!
//! - right before the startup process is forked (at the first start and
//!   after every crash of a child; in single-user mode before the standalone
//!   backend recovers), [`starting`] has disk.rs judge backup_label (see
//!   verdict.rs) and void it when it is the one this primary published, or
//!   stops the start with a FATAL when it must not go on;
//! - when the postmaster exits, however it does short of being killed,
//!   [`exiting`] does the same, as PostgreSQL 14 did at shutdown, but only
//!   ever voids; it cannot refuse anything by then.
//!
//! This module decides when, and says what happened.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use crate::disk::{self, AtPostmaster, Voided};
use crate::files::{BACKUP_LABEL, BACKUP_LABEL_OLD, TABLESPACE_MAP, TABLESPACE_MAP_OLD};
use crate::record::STATE_FILE;
use crate::refusal::{self, describe, Refusal, Texts};
use crate::server;
use crate::server::boundary::{report, Level};

/// Set when the start was refused, so that the exit that follows the FATAL
/// does not judge again.
static REFUSED: AtomicBool = AtomicBool::new(false);
static STARTS: AtomicU32 = AtomicU32::new(0);

/// What made the postmaster end the backup: the words of its log line.
#[derive(Clone, Copy)]
enum Occasion {
    /// The first start of this postmaster; whether pg_control says the
    /// server before it was shut down cleanly.
    FirstStart {
        shut_down: bool,
    },
    CrashRestart,
    Exit,
}

/// The postmaster waits between two tries for the lock file by sleeping:
/// it has no latch to wait on, and nothing to cancel it.
fn nap() -> crate::error::Result<()> {
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}

/// Logs what voiding the primary's label did, as PostgreSQL 14 did (the
/// work is done by then: a failure to log cannot leave it half done).
fn say_voided(v: &Voided, occasion: Occasion) {
    match &v.map {
        None => report(
            Level::Log,
            "online backup mode canceled",
            Some(&format!(
                "File \"{BACKUP_LABEL}\" was renamed to \"{BACKUP_LABEL_OLD}\"."
            )),
            None,
        ),
        Some(Ok(())) => report(
            Level::Log,
            "online backup mode canceled",
            Some(&format!(
                "Files \"{BACKUP_LABEL}\" and \"{TABLESPACE_MAP}\" were renamed to \"{BACKUP_LABEL_OLD}\" and \
                 \"{TABLESPACE_MAP_OLD}\", respectively."
            )),
            None,
        ),
        Some(Err(e)) => report(
            Level::Warning,
            "online backup mode canceled",
            Some(&format!(
                "File \"{BACKUP_LABEL}\" was renamed to \"{BACKUP_LABEL_OLD}\", but {e}."
            )),
            crate::files::blocking(crate::files::data_dir(), TABLESPACE_MAP_OLD)
                .map(|_| format!("Move \"{TABLESPACE_MAP_OLD}\" out of the data directory."))
                .as_deref(),
        ),
    }
    let why = match occasion {
        Occasion::FirstStart { shut_down: true } => "the server was shut down during it",
        Occasion::FirstStart { shut_down: false } => "the server had not been shut down cleanly",
        Occasion::CrashRestart => "a server process crashed and the server restarted",
        Occasion::Exit => "the server shut down",
    };
    match &v.clone {
        None => report(
            Level::Log,
            &format!("pg_exclusive_backup: {} was ended: {why}", describe(&v.label)),
            Some("The copy taken during this backup is not a valid backup. Take a new one with pg_start_backup()."),
            None,
        ),
        Some(clone) => {
            report(
                Level::Log,
                &format!(
                    "pg_exclusive_backup: this data directory is most likely a block-level clone of the primary, \
                     taken during {}",
                    describe(&v.label)
                ),
                Some(&format!(
                    "\"{BACKUP_LABEL}\" is the primary's own file, but {}. It was renamed, and the server recovers \
                     the clone as the image of the primary at the instant of the snapshot (crash-consistent), \
                     which is valid as such; the backup itself ran on the primary, which may have stopped it.",
                    clone.differences.join("; ")
                )),
                Some(
                    "To recover the snapshot to the backup's end or to a point in time instead, take it again \
                     and create \"recovery.signal\" (with restore_command) before its first start.",
                ),
            );
            if clone.archives_as_primary {
                warn_that_clone_archives(&v.label);
            }
        }
    }
    if let Some(e) = &v.not_durable {
        report(
            Level::Warning,
            &format!("the rename of \"{BACKUP_LABEL}\" may not be durable"),
            Some(e),
            None,
        );
    }
    if let Some(e) = &v.unrecorded {
        report(
            Level::Warning,
            &format!("pg_exclusive_backup could not record the end of the backup in \"{STATE_FILE}\""),
            Some(&e.to_string()),
            None,
        );
    }
}

/// A clone that archives with the primary's archive_command stays on the
/// primary's timeline: its segments have the primary's names, and in a
/// shared archive they can overwrite the primary's.
fn warn_that_clone_archives(label: &crate::label::BackupLabel) {
    let how = server::settings::archiving().unwrap_or_default();
    report(
        Level::Warning,
        "this clone of the primary archives WAL as the primary does",
        Some(&format!(
            "It continues the primary's timeline {}, and it archives with the primary's own settings, {how}: \
             its WAL segments have the names of the primary's, in the primary's archive they can overwrite the \
             primary's own, and a restore of a valid backup from that archive would then fail.",
            label.start_timeline
        )),
        Some(
            "Stop this server and start it with archive_mode = off or an archive_command of its own. A clone \
             recovered with \"recovery.signal\" needs that too: its new timeline's segments and history file \
             would land in the primary's archive, where a restore that follows the latest timeline takes them. \
             pg_exclusive_backup.refuse_archiving_clone = on makes such a clone refuse to start instead.",
        ),
    );
}

/// The shmem startup hook's judgement, in the postmaster or a single-user
/// backend: `Err` with the FATAL to raise when the start must not go on.
pub fn starting() -> Result<(), Texts> {
    let occasion = if STARTS.fetch_add(1, Ordering::Relaxed) == 0 {
        Occasion::FirstStart {
            shut_down: server::control_file_says_shut_down(&disk::control_file_head()),
        }
    } else {
        Occasion::CrashRestart
    };
    let first = matches!(occasion, Occasion::FirstStart { .. });
    let archiving = server::settings::archiving();
    let clones = disk::Clones {
        archiving: archiving.as_deref(),
        refuse_archiving: server::settings::refuse_archiving_clone(),
    };
    // Only a first start looks for a clone: after a crash restart this
    // postmaster has judged this data directory once and knows it is the
    // primary (its host name may have changed since, the data not).
    let clones = first.then_some(&clones);
    let refusal = match disk::settle_at_postmaster(first, Duration::from_secs(5), &mut nap, clones) {
        AtPostmaster::Untouched => return Ok(()),
        AtPostmaster::Copy(label) => {
            report(
                Level::Log,
                &format!(
                    "pg_exclusive_backup: \"{BACKUP_LABEL}\" is a copy of the label of {}, not this server's own; \
                     recovery will use it",
                    describe(&label)
                ),
                None,
                None,
            );
            return Ok(());
        }
        AtPostmaster::Voided(v) => {
            say_voided(&v, occasion);
            return Ok(());
        }
        AtPostmaster::Refused(refusal) => refusal,
    };
    Err(refused(&refusal))
}

/// The FATAL of a refused start; the exit that follows does not judge
/// again.
pub fn refused(refusal: &Refusal) -> Texts {
    REFUSED.store(true, Ordering::Relaxed);
    refusal::texts(refusal)
}

/// The postmaster's exit: the primary's own label is voided, as 14 did at
/// shutdown; what keeps it from that is a warning, and the next start tries
/// again.
pub fn exiting() {
    if REFUSED.load(Ordering::Relaxed) {
        return;
    }
    // A postmaster that exits abnormally may leave children behind for a
    // moment; one of them may be changing the files: the lock is not waited
    // for.
    match disk::settle_at_postmaster(false, Duration::ZERO, &mut nap, None) {
        AtPostmaster::Untouched | AtPostmaster::Copy(_) => {}
        AtPostmaster::Voided(v) => say_voided(&v, Occasion::Exit),
        AtPostmaster::Refused(refusal) => {
            let t = refusal::texts(&refusal);
            let not_canceled = matches!(refusal, Refusal::Unlocked { .. } | Refusal::NotRenamed { .. });
            let detail = if not_canceled {
                format!("Online backup mode was not canceled. {}", t.detail)
            } else {
                t.detail
            };
            report(Level::Warning, &t.message, Some(&detail), Some(&t.hint));
        }
    }
}
