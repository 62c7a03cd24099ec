//! The worker's side of the start protocol (see mod.rs): it enters backup
//! mode, prepares the files, waits for the caller's verdict and, on
//! COMMIT, has disk/ put them in place. The same code serves a request in
//! a short-lived worker forked for it and in preload mode's standing
//! worker.

use std::cell::Cell;
use std::ffi::{c_void, CStr};
use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::{no_birth_times, Request, COMMIT, DECLINED, FAILED, PENDING, READY, STARTED};
use crate::disk::{self, Publication, Transaction};
use crate::error::{already_running, Error, Result, ADMIN_SHUTDOWN, INTERNAL_ERROR};
use crate::hooks;
use crate::label::{self, BackupLabel, Lsn, Method};
use crate::record::{Record, Session};
use crate::server::boundary::{log, panic_as_error};
use crate::server::worker::{before_shmem_exit, error_fields, worker_signals, Latch, OnExit, Segment};
use crate::server::{self, InterruptsHeld};
use crate::shared::{self, c_text, copy_c};

/// The short-lived worker's main function; `handle` names the caller's
/// segment.
pub fn worker_main(handle: u32) {
    worker_signals();
    let Some((_, request)) = attach(handle) else { return };
    // SAFETY: mapped until this process exits.
    let request = unsafe { &*request };
    // A FATAL exit (an administrator's pg_terminate_backend during the
    // checkpoint) leaves through this callback, after the server's own
    // cleanup has left backup mode.
    if before_shmem_exit::<Request>(request as *const Request as *mut c_void).is_err() {
        return;
    }
    serve(request, false);
}

/// Attaches the request in segment `handle`: the segment and the request,
/// which is valid until the segment is detached; `None` (logged) when it
/// is gone or has another layout.
pub fn attach(handle: u32) -> Option<(Segment, *const Request)> {
    match Segment::attach(handle) {
        // Another, smaller layout (see peb_start_backup_worker_3 in lib.rs;
        // a segment from the preallocated area is rounded up to pages):
        // touch nothing of it.
        Ok(Some((_, _, len))) if len < std::mem::size_of::<Request>() => {
            log(&format!(
                "pg_exclusive_backup: the start request has {len} bytes where this library expects {}; \
                 the calling session runs another version of the library",
                std::mem::size_of::<Request>()
            ));
            None
        }
        Ok(Some((segment, address, _))) => Some((segment, address as *const Request)),
        Ok(None) => {
            log("pg_exclusive_backup: the start worker found its request gone");
            None
        }
        Err(e) => {
            log(&format!(
                "pg_exclusive_backup: the start worker could not attach its request: {}",
                error_fields(&e).1
            ));
            None
        }
    }
}

/// What a start put in place: the backup this process now holds the
/// session state of.
pub struct Published {
    pub start_lsn: Lsn,
    pub text: Vec<u8>,
    pub label: BackupLabel,
}

/// Serves one request: the backup started and published (`Some`), or the
/// request failed or was given up (its outcome says which, and nothing of
/// the start is left). `standing`: this is preload mode's standing worker,
/// which records in shared memory that it holds the backup's session
/// state from the moment the server entered backup mode.
pub fn serve(req: &Request, standing: bool) -> Option<Published> {
    if req.outcome() != PENDING {
        return None; // the caller gave up before we started
    }
    req.worker_latch.store(Latch::mine().as_ptr(), Ordering::Release);
    let left_in_place = Cell::new(false);
    let error = match panic_as_error(|| start_here(req, &left_in_place, standing)) {
        Ok(published) => return published,
        Err(e) => e,
    };
    let (code, message, detail, mut hint) = error_fields(&error);
    if left_in_place.get() {
        hint = "The exclusive backup was started but could not be completed, and its backup_label stays: \
                end it with pg_stop_backup()."
            .into();
    }
    fail(req, code, &message, &detail, &hint);
    if !left_in_place.get() {
        return None;
    }
    // The backup runs, its label in place, and this process still holds
    // its session state: what it published is what the label says.
    match disk::label() {
        Ok(Some((text, label))) => Some(Published {
            start_lsn: label.start_lsn,
            text,
            label,
        }),
        _ => None,
    }
}

/// The standing worker cannot serve a start while it holds another
/// backup's session state: a label in place says a backup runs; without
/// one, a stop is ending it, and the caller forks a worker of its own.
pub fn decline(req: &Request) {
    if disk::label_metadata().ok().flatten().is_some() {
        let e = already_running();
        let (code, message, detail, hint) = error_fields(&e);
        fail(req, code, &message, &detail, &hint);
    } else if req.cas(PENDING, DECLINED) {
        req.wake_caller();
    }
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

/// The standing worker is leaving while it serves `req`.
pub fn worker_exiting(req: &Request) {
    terminated(req);
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
fn start_here(req: &Request, left_in_place: &Cell<bool>, standing: bool) -> Result<Option<Published>> {
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
            if standing {
                shared::set_held(None);
            }
        }
    });
    let started = server::start_backup(&label, req.fast, &entered)?;
    // Before the label can be seen: a stop of this backup must find it
    // held (see errand.rs).
    if standing {
        shared::set_held(Some(started.start_lsn));
    }
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
    let (text, parsed) =
        label::exclusive_label_from_server(&started.label_text, started.start_epoch, method).map_err(|e| {
            Error::new(
                INTERNAL_ERROR,
                "the server built a backup label this extension cannot read",
            )
            .detail(e.to_string())
        })?;
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
        text.clone(),
        crate::place::here(
            crate::files::data_dir(),
            server::settings::archiving().unwrap_or_else(|| "off".into()),
        ),
    );
    // SAFETY: written before the compare-and-swap that publishes it, and
    // read by the caller only after it.
    unsafe { *req.start_lsn.get() = started.start_lsn };
    // A terminate request that came in while interrupts were held.
    if server::terminate_pending() && terminated(req) {
        return Ok(None);
    }
    if !req.cas(PENDING, READY) {
        return Ok(None); // abandoned: the transaction undoes the start
    }
    req.wake_caller();
    loop {
        match req.outcome() {
            COMMIT => break,
            READY => {}
            _ => return Ok(None), // abandoned: the transaction undoes the start
        }
        if server::terminate_pending() && terminated(req) {
            return Ok(None);
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
    Ok(Some(Published {
        start_lsn: started.start_lsn,
        text,
        label: parsed,
    }))
}
