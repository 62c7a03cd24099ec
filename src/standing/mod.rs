//! Preload mode's standing worker: one background worker, registered at
//! server start and restarted by the postmaster a second after it exits.
//! It serves pg_start_backup's requests without a fork per start (start/),
//! ends the backups it started when a session stops or voids them
//! (errand.rs), and enforces pg_exclusive_backup.max_duration and
//! warn_duration on whichever exclusive backup runs.
//!
//! It holds the session state of at most one backup: the one it started
//! last, until that backup ends. While it does, it starts no other (a
//! start request then fails with "already in progress", or, when the
//! backup is being stopped, is declined and served by a forked worker), so
//! that the server never sees it start a backup with one still counted as
//! its own. If it exits, the backup it held runs on: the server counts it
//! until a session stops or voids it with the server's stop.

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::disk;
use crate::duration::{self, Due};
use crate::errand::{self, Ended, Kind};
use crate::error::{Error, Result};
use crate::label::{self, BackupLabel, Lsn};
use crate::record::Voider;
use crate::server::boundary::{log, panic_as_error, report, Level};
use crate::server::worker::{
    before_shmem_exit, error_fields, my_pid, standing_worker_init, standing_worker_round, standing_worker_serving,
    Latch, OnExit,
};
use crate::server::{self, settings, InterruptsHeld, PreparedStop};
use crate::shared;
use crate::start::{self, Request};
use crate::void::{self, started_by};

/// The backup whose session state this worker holds.
struct Held {
    start_lsn: Lsn,
    text: Vec<u8>,
    label: BackupLabel,
}

/// The start request being served, for the exit callback.
static SERVING: AtomicPtr<Request> = AtomicPtr::new(std::ptr::null_mut());

struct Exiting;

impl OnExit for Exiting {
    fn on_exit(_arg: *mut c_void) {
        // The session state goes with this process: a stop of the backup
        // it held now runs in the stopping session.
        shared::set_held(None);
        shared::set_standing_worker(None);
        errand::worker_exiting();
        let req = SERVING.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !req.is_null() {
            // SAFETY: SERVING is set only while the request's segment is
            // attached, which it stays until the exit callbacks have run.
            let req = unsafe { &*req };
            start::worker_exiting(req);
            req.settle();
        }
    }
}

/// The worker's main function; returns the exit code (1: the postmaster
/// restarts it).
pub fn main() -> i32 {
    if standing_worker_init(shared::cancel_word()).is_err()
        || before_shmem_exit::<Exiting>(std::ptr::null_mut()).is_err()
    {
        return 1;
    }
    shared::set_standing_worker(Some((Latch::mine().as_ptr(), my_pid())));
    let mut held: Option<Held> = None;
    loop {
        standing_worker_round();
        // A failed reload keeps the settings as they were, as the server's
        // own processes do.
        let _ = settings::reload_if_asked();
        // Terminate exits here (FATAL). A cancel that came in after the
        // start it was meant for ended has nothing left to cancel.
        let _ = server::check_for_interrupts();
        serve_errand(&mut held);
        if let Some(handle) = shared::take_posted() {
            // A reload that reached the postmaster before the request was
            // posted is in force for it.
            let _ = settings::reload_if_asked();
            serve_start(handle, &mut held);
            continue;
        }
        let next = match panic_as_error(|| enforce_durations(&mut held)) {
            Ok(next) => next,
            Err(e) => {
                log(&format!(
                    "pg_exclusive_backup: the standing worker could not check the backup's duration: {}",
                    error_fields(&e).1
                ));
                Some(10_000_000)
            }
        };
        let ms = next.map_or(60_000, |us| (us / 1000 + 1).clamp(1, 60_000));
        if server::wait_latch(ms, false, "the standing worker waited").is_err() {
            return 1;
        }
    }
}

/// Serves the start request in segment `handle`.
fn serve_start(handle: u32, held: &mut Option<Held>) {
    let Some((segment, request)) = start::attach(handle) else {
        return;
    };
    {
        // SAFETY: mapped until the segment is detached below, after the
        // last use of `req`.
        let req = unsafe { &*request };
        req.taken_by(my_pid());
        standing_worker_serving(handle);
        SERVING.store(request as *mut Request, Ordering::Release);
        if held.is_some() || shared::held().is_some() {
            start::decline(req);
        } else if let Some(p) = start::serve(req, true) {
            *held = Some(Held {
                start_lsn: p.start_lsn,
                text: p.text,
                label: p.label,
            });
        }
        SERVING.store(std::ptr::null_mut(), Ordering::Release);
        standing_worker_serving(0);
        req.settle();
    }
    // A cancel meant for this start that came too late.
    server::forget_query_cancel();
    let _ = segment.detach();
}

/// Serves the errand waiting for the worker, if any.
fn serve_errand(held: &mut Option<Held>) {
    let _interrupts = InterruptsHeld::new();
    let Some(taken) = errand::take() else { return };
    let Some(h) = held.as_ref().filter(|h| h.start_lsn == taken.start_lsn) else {
        taken.decline();
        return;
    };
    taken.calling();
    let kind = taken.kind;
    let result = panic_as_error(|| match kind {
        Kind::Stop => PreparedStop::new(&h.label, &h.text)?
            .run()
            .map(|(lsn, timeline)| Ended::Stopped { lsn, timeline }),
        Kind::Void => leave_held(h),
    });
    // Ended either way: a stop fails only after the server stopped
    // counting the backup (see stop.rs).
    *held = None;
    shared::set_held(None);
    taken.finish(result);
}

/// Leaves backup mode for a void of the backup this worker holds: without
/// WAL while the server still counts it as this process's; otherwise (a
/// shifted stop of another backup reset that) by the shifted stop.
fn leave_held(h: &Held) -> Result<Ended> {
    if server::session_backup_running()? {
        server::abort_session_backup()?;
        return Ok(Ended::Left);
    }
    let (shifted_label, shifted_text) = label::voiding(&h.label, &h.text)
        .ok_or_else(|| Error::new(crate::error::INTERNAL_ERROR, "the held label cannot be voided"))?;
    PreparedStop::new(&shifted_label, &shifted_text)?
        .run()
        .map(|(lsn, timeline)| Ended::Stopped { lsn, timeline })
}

/// Voids the running backup once it is past max_duration, warns each time
/// it passes another multiple of warn_duration; returns in how many
/// microseconds to look again.
fn enforce_durations(held: &mut Option<Held>) -> Result<Option<i64>> {
    let Some(Some(start_ts)) = shared::running_backup() else {
        return Ok(None);
    };
    let limits = duration::Limits::of(settings::duration_seconds());
    let start = start_ts + label::POSTGRES_EPOCH_UNIX_SECONDS * 1_000_000;
    let now = disk::now_micros();
    let (due, next) = duration::due(start, now, limits, shared::warned(start_ts));
    match due {
        Due::Nothing => {}
        Due::Warn { multiple } => {
            let Some((text, label)) = disk::label()? else {
                return Ok(next);
            };
            let session = disk::record().filter(|r| r.label == text).and_then(|r| r.session);
            let detail = match limits.max_seconds {
                0 => format!("It started at {}.", label.start_time),
                max => format!(
                    "It started at {}; pg_exclusive_backup.max_duration voids it when it has run for {}.",
                    label.start_time,
                    duration::limit_text(max)
                ),
            };
            report(
                Level::Warning,
                &format!(
                    "exclusive backup \"{}\" has been running for {}, started{}",
                    server::text_for_message(&label.label),
                    duration::age_text(now - start),
                    started_by(session.as_ref())
                ),
                Some(&detail),
                Some(
                    "End it with pg_stop_backup() once its copy is complete, or with pg_exclusive_backup_void() \
                     if the copy failed.",
                ),
            );
            shared::set_warned(start_ts, multiple);
        }
        Due::Void => {
            let Some((text, label)) = disk::label()? else {
                // Removed by hand: shared memory learns so under the lock.
                disk::forget_vanished(&mut server::pause_for_lock)?;
                return Ok(Some(1_000_000));
            };
            if label.start_epoch.map(label::timestamptz_from_unix) != Some(start_ts) {
                // Another backup than the one judged (or a label edited in
                // place): judged again from shared memory.
                return Ok(Some(1_000_000));
            }
            let seconds = limits.max_seconds;
            let voided = void::void_running(Some(&text), Voider::Limit { seconds }, |label, shifted| {
                match held.as_ref().filter(|h| h.start_lsn == label.start_lsn) {
                    Some(h) => {
                        let r = leave_held(h);
                        *held = None;
                        shared::set_held(None);
                        r
                    }
                    None => shifted.run().map(|(lsn, timeline)| Ended::Stopped { lsn, timeline }),
                }
            })?;
            if let Some(v) = voided {
                report(
                    Level::Warning,
                    &format!(
                        "exclusive backup \"{}\" was voided: it ran longer than pg_exclusive_backup.max_duration ({})",
                        server::text_for_message(&v.label.label),
                        duration::limit_text(seconds)
                    ),
                    Some(&format!(
                        "It was started at {}{}. Its backup_label was renamed backup_label.old, and {}: a copy \
                         taken during this backup is not a valid backup.",
                        v.label.start_time,
                        started_by(v.session.as_ref()),
                        v.how()
                    )),
                    Some(
                        "Find out why pg_stop_backup() never came (a post-backup script killed by its timeout, say), \
                         and take a new backup.",
                    ),
                );
            }
            return Ok(Some(0));
        }
    }
    Ok(next)
}
