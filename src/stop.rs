//! The exclusive stop: backup_label and tablespace_map are claimed under
//! the lock (disk.rs), the server ends the backup, and the stop waits for
//! the archiver if asked.
//!
//! Invariant kept with the start: while the server is up, a backup_label
//! written by pg_start_backup exists exactly when the server counts that
//! exclusive backup among its running backups. The claim takes the label
//! away with interrupts held, and from then on nothing stands between it
//! and the server's stop that can fail or be interrupted.

use crate::archive;
use crate::disk::{self, Claim};
use crate::duration;
use crate::errand::{self, Ended};
use crate::error::{
    not_running, recovery_in_progress, Error, Result, INTERNAL_ERROR, OBJECT_NOT_IN_PREREQUISITE_STATE as NOT_READY,
};
use crate::files::BACKUP_LABEL_OLD;
use crate::hooks;
use crate::label::{self, Lsn};
use crate::record::{Outcome, Voider, STATE_FILE};
use crate::server::{self, InterruptsHeld, Level};

/// A non-exclusive backup started in this session owns the session's backup
/// state, which the server's stop routine would reset.
pub fn refuse_if_nonexclusive_backup_here() -> Result<()> {
    if server::session_backup_running()? {
        return Err(
            Error::new(NOT_READY, "a non-exclusive backup is in progress in this session").hint(
                "Finish it with pg_backup_stop() or, as in PostgreSQL 14, pg_stop_backup(false). \
                 Stop the exclusive backup from another session.",
            ),
        );
    }
    Ok(())
}

/// "Not in progress", saying so when the reason is that the server
/// restarted during the backup: at startup the server takes over
/// backup_label as if restoring a backup and renames it backup_label.old.
pub fn not_running_here() -> Error {
    if let Some(e) = ended_otherwise() {
        return e;
    }
    match disk::renamed_since(server::postmaster_start_unix()) {
        Some(label) => not_running()
            .detail(format!(
                "The exclusive backup \"{}\" was interrupted when the server restarted; \
                 the server renamed its label file to \"{BACKUP_LABEL_OLD}\".",
                server::text_for_message(&label)
            ))
            .hint("That backup cannot be completed. Take a new one with pg_start_backup()."),
        None => not_running(),
    }
}

/// The state record says the last backup did not end by a stop: in
/// preload mode the postmaster ended it at a restart, or it was voided
/// (max_duration, pg_exclusive_backup_void()). The record says so until
/// the next start.
fn ended_otherwise() -> Option<Error> {
    let record = disk::record()?;
    const NOT_VALID: &str = "the copy taken during it is not a valid backup";
    const TAKE_NEW: &str = "Take a new one with pg_start_backup().";
    let (how, so, hint) = match &record.outcome {
        Outcome::EndedByRestart { .. } => ("was ended by a server restart".to_string(), NOT_VALID, TAKE_NEW),
        Outcome::Voided {
            by: Voider::Limit { seconds },
            ..
        } => (
            format!(
                "was voided because it ran longer than pg_exclusive_backup.max_duration ({})",
                duration::limit_text(*seconds)
            ),
            NOT_VALID,
            TAKE_NEW,
        ),
        Outcome::Voided {
            by: Voider::Role(role), ..
        } => (format!("was voided by role \"{role}\""), NOT_VALID, TAKE_NEW),
        Outcome::Cloned { .. } => (
            "was running on the primary when this data directory was cloned from it".to_string(),
            "it never ran on this server",
            "If it still runs on the primary, stop it there.",
        ),
        _ => return None,
    };
    let parsed = label::parse(&record.label).ok()?;
    Some(
        not_running()
            .detail(format!(
                "The exclusive backup \"{}\" started at {} {how}; {so}.",
                server::text_for_message(&parsed.label),
                parsed.start_time
            ))
            .hint(hint),
    )
}

/// Ends the exclusive backup, from any session; waits for the archiver when
/// `wait_for_archive`. Returns the stop LSN.
pub fn stop_exclusive(wait_for_archive: bool) -> Result<Lsn> {
    if server::recovery_in_progress()? {
        return Err(recovery_in_progress());
    }
    refuse_if_nonexclusive_backup_here()?;
    let stopped_by = server::session_info()?.user;
    let claimed = format!("backup_label.stopping.{}", std::process::id());
    for _ in 0..3 {
        // Prepare: everything that can fail, before anything changes. Any
        // error up to the claim leaves the backup running and stoppable.
        let Some((text, parsed)) = disk::label()? else {
            disk::forget_vanished(&mut server::pause_for_lock)?;
            return Err(not_running_here());
        };
        let prepared = server::PreparedStop::new(&parsed, &text)?;
        // Waiting for the lock stays cancellable; from the claim on, nothing
        // may interrupt until the server has ended the backup.
        let (claim, held) = disk::claim(
            &text,
            &claimed,
            &stopped_by,
            &mut server::pause_for_lock,
            InterruptsHeld::new,
        )?;
        let unrecorded_stop = match claim {
            Claim::Changed => continue,
            Claim::Gone => {
                return Err(ended_otherwise()
                    .unwrap_or_else(|| not_running().detail("Another session stopped it at the same time.")))
            }
            Claim::Taken(unrecorded) => unrecorded,
        };
        hooks::pause("stop_claimed");
        // The label is gone from its place; the server must now leave backup
        // mode whatever happens. The prepared stop cannot fail before it has
        // (its only earlier checks are recovery and wal_level, settled
        // above), and nothing between here and there checks for interrupts.
        // The server's part is short (a WAL switch and the history file):
        // held off, a cancel cannot make it report an error for a backup it
        // has ended.
        // A backup the standing worker started is stopped in the worker,
        // which holds its session state (errand.rs).
        let (stop_lsn, stop_tli) = match errand::ask(errand::Kind::Stop, parsed.start_lsn) {
            Some(Ok(Ended::Stopped { lsn, timeline })) => (lsn, timeline),
            Some(Ok(Ended::Left)) => {
                return Err(Error::new(
                    INTERNAL_ERROR,
                    "the standing worker left backup mode instead of stopping the backup",
                ))
            }
            Some(Err(e)) => return Err(e),
            None => prepared.run()?,
        };
        if let Some(e) = unrecorded_stop {
            server::boundary::report(
                Level::Warning,
                &format!("could not record the stop of the exclusive backup in \"{STATE_FILE}\""),
                Some(&e.to_string()),
                Some("The backup was stopped all the same."),
            );
        }
        // Interrupts may be held here, and the backup has ended: the record
        // of its LSN waits for the lock two seconds at most, and a failure
        // only costs the status view that LSN.
        if let Err(e) = disk::record_stop_lsn(&text, stop_lsn, &stopped_by, &mut server::pause_for_lock) {
            server::boundary::report(
                Level::Warning,
                &format!("could not record the stop LSN in \"{STATE_FILE}\""),
                Some(&e.to_string()),
                Some(
                    "The backup was stopped and completed; pg_exclusive_backup_status() does not show it as completed.",
                ),
            );
        }
        if !wait_for_archive {
            // A cancel that came in meanwhile came too late.
            server::forget_query_cancel();
            drop(held);
            return Ok(stop_lsn);
        }
        // The wait stays cancellable, as the server's own is: a cancel now
        // (or one that came in during the stop) ends the call with an
        // error, the backup being over.
        drop(held);
        archive::wait_for_archive(parsed.start_lsn, stop_lsn, stop_tli)?;
        return Ok(stop_lsn);
    }
    Err(Error::new(
        NOT_READY,
        "could not stop the exclusive backup: backup_label kept changing",
    )
    .detail("Other sessions stopped and started exclusive backups while this one tried to stop one.")
    .hint("Try again."))
}
