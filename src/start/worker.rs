//! The background worker's side of the start protocol (see mod.rs): it
//! enters backup mode, prepares the files, waits for the caller's verdict
//! and, on COMMIT, has disk.rs put them in place.

use std::cell::Cell;
use std::ffi::{c_void, CStr};
use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::{c_text, copy_c, no_birth_times, Request, COMMIT, FAILED, PENDING, READY, STARTED};
use crate::disk::{self, Publication, Transaction};
use crate::error::{Error, Result, ADMIN_SHUTDOWN, INTERNAL_ERROR};
use crate::hooks;
use crate::label::{self, Method};
use crate::record::{Record, Session};
use crate::server::boundary::{log, panic_as_error};
use crate::server::worker::{before_shmem_exit, server_error_fields, worker_signals, Latch, OnExit, Segment};
use crate::server::{self, InterruptsHeld};
use crate::shared;

/// The background worker's main function; `handle` names the caller's
/// segment.
pub fn worker_main(handle: u32) {
    worker_signals();
    let request = match Segment::attach(handle) {
        // Another, smaller layout (see peb_start_backup_worker_2 in lib.rs;
        // a segment from the preallocated area is rounded up to pages):
        // touch nothing of it.
        Ok(Some((_, _, len))) if len < std::mem::size_of::<Request>() => {
            log(&format!(
                "pg_exclusive_backup: the start request has {len} bytes where this library expects {}; \
                 the calling session runs another version of the library",
                std::mem::size_of::<Request>()
            ));
            return;
        }
        Ok(Some((_, address, _))) => address as *mut Request,
        Ok(None) => {
            log("pg_exclusive_backup: the start worker found its request gone");
            return;
        }
        Err(e) => {
            log(&format!(
                "pg_exclusive_backup: the start worker could not attach its request: {}",
                error_fields(&e).1
            ));
            return;
        }
    };
    // SAFETY: mapped until this process exits.
    let req = unsafe { &*request };
    // A FATAL exit (an administrator's pg_terminate_backend during the
    // checkpoint) leaves through this callback, after the server's own
    // cleanup has left backup mode.
    if before_shmem_exit::<Request>(request as *mut c_void).is_err() {
        return;
    }
    if req.outcome() != PENDING {
        return; // the caller gave up before we started
    }
    req.worker_latch.store(Latch::mine().as_ptr(), Ordering::Release);
    let left_in_place = Cell::new(false);
    let error = match panic_as_error(|| start_here(req, &left_in_place)) {
        Ok(()) => return,
        Err(e) => e,
    };
    let (code, message, detail, mut hint) = error_fields(&error);
    if left_in_place.get() {
        hint = "The exclusive backup was started but could not be completed, and its backup_label stays: \
                end it with pg_stop_backup()."
            .into();
    }
    fail(req, code, &message, &detail, &hint);
}

/// Records a failure unless the outcome is decided otherwise, and wakes the
/// caller. Only the worker writes the error fields, and the caller reads
/// them only after seeing FAILED.
fn fail(req: &Request, code: i32, message: &str, detail: &str, hint: &str) -> bool {
    if !matches!(req.outcome(), PENDING | READY | COMMIT) {
        return false;
    }
    // SAFETY: the error fields are written by this process alone, and read
    // by the caller only after the compare-and-swap below publishes them.
    let r = unsafe { &mut *req.failure.get() };
    r.sqlerrcode = code;
    copy_c(&mut r.message, message);
    copy_c(&mut r.detail, detail);
    copy_c(&mut r.hint, hint);
    let failed = req.cas(PENDING, FAILED) || req.cas(READY, FAILED) || req.cas(COMMIT, FAILED);
    if failed {
        req.wake_caller();
    }
    failed
}

impl OnExit for Request {
    fn on_exit(arg: *mut c_void) {
        // SAFETY: the segment stays mapped until after the before_shmem_exit
        // callbacks have run.
        terminated(unsafe { &*(arg as *const Request) });
    }
}

/// The worker is being terminated (pg_terminate_backend, or a fast
/// shutdown) before the backup is started: an operator's action, reported
/// as such.
fn terminated(req: &Request) -> bool {
    fail(
        req,
        ADMIN_SHUTDOWN.0,
        "pg_start_backup's background worker was terminated before the backup started",
        "No backup was started.",
        "Someone ran pg_terminate_backend() on the worker, or the server is shutting down.",
    )
}

fn error_fields(error: &Error) -> (i32, String, String, String) {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    match error {
        Error::Report {
            sqlstate,
            message,
            detail,
            hint,
        } => (sqlstate.0, message.clone(), opt(detail), opt(hint)),
        Error::Server(e) => server_error_fields(*e),
    }
}

/// Leaves the backup mode this worker entered: the last undo step of a
/// start that does not complete.
fn leave_backup_mode() {
    let _held = InterruptsHeld::new();
    if let Err(e) = server::abort_session_backup() {
        log(&format!(
            "pg_exclusive_backup: could not leave backup mode after a failed start: {}",
            error_fields(&e).1
        ));
    }
}

/// Enters backup mode in this (worker) process, prepares the files, waits
/// for the caller's verdict and, on COMMIT, puts them in place. Every way
/// out before that (error, early return, panic) undoes the start: the
/// transaction holds its steps.
fn start_here(req: &Request, left_in_place: &Cell<bool>) -> Result<()> {
    let label = CStr::from_bytes_until_nul(&req.label)
        .map_err(|_| Error::new(INTERNAL_ERROR, "the start request's label is not terminated"))?
        .to_owned();
    let mut txn = Transaction::new(left_in_place);
    // Registered before the server is asked, so that every way out of the
    // call (a panic included) after the server has entered backup mode
    // leaves it again.
    let entered = Rc::new(Cell::new(false));
    let in_backup_mode = entered.clone();
    txn.on_undo(move || {
        if in_backup_mode.get() {
            leave_backup_mode();
        }
    });
    let started = server::start_backup(&label, req.fast, &entered)?;
    // From here until the outcome is decided, nothing may interrupt us; a
    // terminate request is looked at explicitly below.
    let _held = InterruptsHeld::new();
    hooks::pause("worker_started");
    hooks::may_panic("worker_started");
    let method = if req.streamed {
        Method::Streamed
    } else {
        Method::Exclusive
    };
    let text = label::exclusive_label_from_server(&started.label_text, started.start_epoch, method)
        .map_err(|e| {
            Error::new(
                INTERNAL_ERROR,
                "the server built a backup label this extension cannot read",
            )
            .detail(e.to_string())
        })?
        .0;
    let files = disk::prepare(&text, &started.tablespace_map)?;
    // What a copy of the label cannot have: see record.rs.
    if files.label_file.birth.is_none() && shared::preloaded() {
        return Err(no_birth_times());
    }
    let record = Record::running(
        files.label_file,
        files.control_file,
        Session {
            started_by: c_text(&req.session_user),
            started_from: req.has_client.then(|| c_text(&req.started_from)),
            application_name: c_text(&req.application_name),
            pid: req.caller_pid,
            database: c_text(&req.database),
            fast: req.fast,
        },
        text,
    );
    // SAFETY: written before the compare-and-swap that publishes it, and
    // read by the caller only after it.
    unsafe { *req.start_lsn.get() = started.start_lsn };
    // A terminate request that came in while interrupts were held.
    if server::terminate_pending() && terminated(req) {
        return Ok(());
    }
    if !req.cas(PENDING, READY) {
        return Ok(()); // abandoned: the transaction undoes the start
    }
    req.wake_caller();
    loop {
        match req.outcome() {
            COMMIT => break,
            READY => {}
            _ => return Ok(()), // abandoned: the transaction undoes the start
        }
        if server::terminate_pending() && terminated(req) {
            return Ok(());
        }
        server::wait_latch(1000, false, "pg_start_backup was waiting")?;
    }

    hooks::pause("worker_committed");
    let in_recovery = server::recovery_in_progress()?;
    let timeline = if in_recovery {
        None
    } else {
        Some(server::insert_timeline()?)
    };
    // Interrupts are held: the wait for the lock cannot be cancelled, and
    // is bounded.
    disk::publish(
        txn,
        Publication {
            files,
            record,
            start_time: label::timestamptz_from_unix(started.start_epoch),
            in_recovery,
            timeline,
        },
        &mut server::pause_for_lock,
    )?;
    hooks::pause("worker_published");
    req.outcome.store(STARTED, Ordering::Release);
    req.wake_caller();
    Ok(())
}
