//! Voiding the running exclusive backup: it ends with no end-of-backup
//! record that could complete a copy taken during it, its label and map
//! are renamed to `.old` under the lock file (as a restart renames them),
//! and the state record says who voided it. pg_exclusive_backup_void()
//! and the standing worker's max_duration both come here.
//!
//! How the server leaves backup mode without that record: the process
//! that entered backup mode can leave it without writing WAL (the server's
//! abort of its session's backup), and the standing worker does so for
//! the backups it started (standing/). Any other process has only the
//! server's stop, which writes an end-of-backup record for the start it is
//! given. A void gives it the backup's start plus one byte
//! (`label::voiding`): WAL records start on 8-byte boundaries, so no backup
//! ever starts there, recovery ends a backup only at a record naming its
//! own start, and the record completes no copy. Its history file names
//! the backup "voided: <label>".

use crate::disk;
use crate::errand::{self, Ended};
use crate::error::{Error, Result, INTERNAL_ERROR};
use crate::hooks;
use crate::label::{self, BackupLabel};
use crate::record::{Session, Voider, STATE_FILE};
use crate::server::{self, InterruptsHeld, Level, PreparedStop};

/// A backup that was voided.
pub struct Voided {
    pub label: BackupLabel,
    /// Who started it, as its record said.
    pub session: Option<Session>,
    /// How the server left backup mode.
    pub ended: Ended,
}

impl Voided {
    /// How the server left backup mode, for a log line.
    pub fn how(&self) -> String {
        match self.ended {
            Ended::Left => "the server left backup mode without writing WAL".into(),
            Ended::Stopped { lsn, .. } => format!(
                "the server left backup mode by a stop whose end-of-backup record, at {}, names no backup's \
                 start; the backup history file it wrote, labelled \"voided: {}\", marks no valid backup",
                label::format_lsn(lsn),
                server::text_for_message(&self.label.label)
            ),
        }
    }
}

/// Voids the running backup as `by` (the one whose label is `expected`,
/// if given); `None` when there is none (or another one runs). `leave`
/// takes the server out of backup mode, given the backup and the stop
/// prepared for the shifted start; it runs with interrupts held, the
/// label already renamed.
pub fn void_running(
    expected: Option<&[u8]>,
    by: Voider,
    leave: impl FnOnce(&BackupLabel, PreparedStop) -> Result<Ended>,
) -> Result<Option<Voided>> {
    let Some((text, parsed)) = disk::label()? else {
        return Ok(None);
    };
    if expected.is_some_and(|e| e != text.as_slice()) {
        return Ok(None);
    }
    // Prepared before anything changes, as the stop is.
    let (shifted_label, shifted_text) = label::voiding(&parsed, &text).ok_or_else(|| {
        Error::new(
            INTERNAL_ERROR,
            "backup_label has no START WAL LOCATION or LABEL line to void",
        )
    })?;
    let shifted = PreparedStop::new(&shifted_label, &shifted_text)?;
    let (taken, held) = disk::void(Some(&text), by, &mut server::pause_for_lock, InterruptsHeld::new)?;
    let Some(taken) = taken else {
        return Ok(None); // stopped, voided or replaced meanwhile
    };
    hooks::pause("void_taken");
    // The label is gone: the server must leave backup mode now, whatever
    // happens (nothing before its call can fail but the checks the stop
    // was prepared with).
    let ended = leave(&taken.label, shifted)?;
    if let Some(e) = &taken.unrecorded {
        server::boundary::report(
            Level::Warning,
            &format!("could not record the void of the exclusive backup in \"{STATE_FILE}\""),
            Some(&e.to_string()),
            Some("The backup was voided all the same."),
        );
    }
    drop(held);
    Ok(Some(Voided {
        label: taken.label,
        session: taken.session,
        ended,
    }))
}

/// How a session other than the standing worker leaves backup mode for a
/// void: through the worker if it holds the backup, else by the shifted
/// stop.
pub fn leave_from_session(label: &BackupLabel, shifted: PreparedStop) -> Result<Ended> {
    match errand::ask(errand::Kind::Void, label.start_lsn) {
        Some(result) => result,
        None => shifted.run().map(|(lsn, timeline)| Ended::Stopped { lsn, timeline }),
    }
}

/// pg_exclusive_backup_void(): voids the running backup for the calling
/// role and returns its label.
pub fn void_for_caller() -> Result<Vec<u8>> {
    if server::recovery_in_progress()? {
        return Err(crate::error::recovery_in_progress());
    }
    // The shifted stop would end this session's own backup state.
    crate::stop::refuse_if_nonexclusive_backup_here()?;
    let role = server::session_info()?.user;
    match void_running(None, Voider::Role(role.clone()), leave_from_session)? {
        Some(v) => {
            server::boundary::report(
                Level::Log,
                &format!(
                    "exclusive backup \"{}\" voided by role \"{}\"",
                    server::text_for_message(&v.label.label),
                    role
                ),
                Some(&format!(
                    "It was started at {}{}. Its backup_label was renamed backup_label.old, and {}: a copy taken \
                     during it is not a valid backup.",
                    v.label.start_time,
                    started_by(v.session.as_ref()),
                    v.how()
                )),
                None,
            );
            Ok(v.label.label)
        }
        None => Err(crate::stop::not_running_here()),
    }
}

/// " by alice from 10.0.0.5 (application "x", PID 42)", from the record
/// of who started a backup.
pub fn started_by(session: Option<&Session>) -> String {
    let Some(s) = session else { return String::new() };
    let from = match s.started_from.as_deref() {
        Some("local") => " over a local socket".to_string(),
        Some(addr) => format!(" from {addr}"),
        None => String::new(),
    };
    let app = if s.application_name.is_empty() {
        String::new()
    } else {
        format!("application \"{}\", ", s.application_name)
    };
    format!(" by {}{from} ({app}PID {})", s.started_by, s.pid)
}
