//! pg_start_backup's work happens in a short-lived background worker.
//!
//! Why: the server remembers, per session, that the session has a backup
//! running (its `sessionBackupState`), and only its own pg_backup_stop() can
//! clear that memory. An exclusive backup outlives its session and is
//! usually stopped from another one, so if the caller's session entered
//! backup mode itself it would be left believing it still runs a backup:
//! the built-in pg_backup_stop() would then crash that backend (it finds
//! no state of its own to stop), a later non-exclusive backup in it would
//! be refused, and on servers built with assertions a failed start would
//! trip an assertion. Entering backup mode in a worker that exits right
//! after leaves every session's state untouched, so the built-in
//! non-exclusive functions keep working side by side, in every session.
//!
//! Protocol (the request lives in dynamic shared memory, see csrc/shim.h):
//! the worker runs do_pg_backup_start, writes backup_label and
//! tablespace_map, and then moves the request's outcome from PENDING to
//! STARTED or FAILED with one compare-and-swap and sets the caller's latch,
//! so that after a successful start the caller need not wait for the
//! worker's exit (after a failed one it does). If the caller gives up
//! first (cancel, statement_timeout, its backend exits), the shim's detach
//! callback moves PENDING to ABANDONED instead and stops the worker; a
//! worker that then finds its CAS refused undoes its own start. Whichever
//! CAS wins decides, so the caller is never told "not started" about a
//! backup that runs, nor the reverse.

use std::ffi::{c_char, CStr};

use crate::bindings as pg;
use crate::boundary::{guarded, InterruptsHeld};
use crate::error::{packed_sqlstate, Error, Result, ServerError, INTERNAL_ERROR, OBJECT_NOT_IN_PREREQUISITE_STATE};
use crate::files::{self, data_dir, Published, BACKUP_LABEL, TABLESPACE_MAP};
use crate::label::{self, Lsn, MAX_FILE_BYTES};
use crate::server;

/// How long pg_start_backup waits for a free background worker slot.
const SLOT_WAIT_MS: i64 = 10_000;

const PENDING: u32 = pg::PebStartOutcome::PEB_PENDING as u32;
const STARTED: u32 = pg::PebStartOutcome::PEB_STARTED as u32;
const FAILED: u32 = pg::PebStartOutcome::PEB_FAILED as u32;

/// Caller side: starts the exclusive backup in a worker and reports its
/// outcome. `label` has been validated by the caller.
pub fn start_in_worker(label: &[u8], fast: bool) -> Result<Lsn> {
    // SAFETY: creates the shared request in this backend's memory.
    let request = guarded(|| unsafe { pg::peb_request_create() })?;
    // SAFETY: the segment is mapped until peb_request_release().
    unsafe {
        for (dst, &src) in (*request).label.iter_mut().zip(label.iter()) {
            *dst = src as c_char;
        }
        (*request).fast = fast;
    }
    // A worker that exits without a result never started a backup (it
    // holds off interrupts from entering backup mode until it reports), so
    // trying again is safe; it is logged, since it should not happen.
    let mut result = Err(Error::new(INTERNAL_ERROR, "no attempt was made"));
    for attempt in 1..=3 {
        result = launch_and_wait().and_then(|()| {
            // SAFETY: the outcome is decided (or the worker is gone); the
            // worker writes nothing after its compare-and-swap.
            let r = unsafe { &*request };
            // SAFETY: reads an atomic in mapped memory.
            match unsafe { pg::peb_request_outcome(request) } {
                STARTED => Ok(Some(r.start_lsn)),
                FAILED => Err(reported_error(r)),
                _ => Ok(None),
            }
        });
        match result {
            Ok(None) if attempt < 3 => {
                crate::boundary::log("pg_exclusive_backup: the start worker exited without a result; trying again")
            }
            _ => break,
        }
    }
    let result = result.and_then(|lsn| {
        lsn.ok_or_else(|| {
            Error::new(
                INTERNAL_ERROR,
                "the background worker starting the backup exited without a result",
            )
            .detail("No backup was started. The server log may say why.")
        })
    });
    // On error the detach callback marks the request abandoned and makes
    // sure the worker has undone whatever it did before we return.
    // SAFETY: plain server call.
    let released = guarded(|| unsafe { pg::peb_request_release() });
    let lsn = result?;
    released?;
    Ok(lsn)
}

fn launch_and_wait() -> Result<()> {
    let mut waited = 0;
    // SAFETY: plain server calls.
    while !guarded(|| unsafe { pg::peb_request_launch() })? {
        // Out of worker slots (max_worker_processes). Wait a little: most
        // slots are short-lived; a concurrent start may also win meanwhile.
        if files::exists(data_dir(), BACKUP_LABEL)? {
            return Err(crate::sql::already_running());
        }
        if waited >= SLOT_WAIT_MS {
            return Err(
                Error::new(*b"53000", "could not start a background worker for pg_start_backup")
                    .detail("All background worker slots stayed in use for 10 seconds.")
                    .hint("Raise max_worker_processes, or try again later."),
            );
        }
        // SAFETY: plain server call; checks for interrupts.
        guarded(|| unsafe { pg::peb_wait_a_moment(100) })?;
        waited += 100;
    }
    // SAFETY: plain server call; checks for interrupts while it waits.
    let status = guarded(|| unsafe { pg::peb_request_wait() })?;
    if status == pg::BgwHandleStatus::BGWH_POSTMASTER_DIED as i32 {
        return Err(Error::new(
            *b"57P01",
            "the postmaster died while pg_start_backup was waiting",
        ));
    }
    Ok(())
}

fn c_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn reported_error(r: &pg::PebStartRequest) -> Error {
    let nonempty = |s: String| if s.is_empty() { None } else { Some(s) };
    Error::Raw {
        sqlerrcode: r.sqlerrcode,
        message: c_text(&r.message),
        detail: nonempty(c_text(&r.detail)),
        hint: nonempty(c_text(&r.hint)),
    }
}

/// Worker side: the background worker's main function.
pub fn worker_main(main_arg: pg::Datum) {
    // SAFETY: attaches the segment the caller created; NULL if it is gone.
    let request = match guarded(|| unsafe { pg::peb_worker_attach(main_arg) }) {
        Ok(r) if !r.is_null() => r,
        Ok(_) => {
            crate::boundary::log("pg_exclusive_backup: the start worker found its request gone");
            return;
        }
        Err(e) => {
            let (_, message, _, _) = error_fields(&e);
            crate::boundary::log(&format!(
                "pg_exclusive_backup: the start worker could not attach its request: {message}"
            ));
            return;
        }
    };
    // SAFETY: reads an atomic in mapped memory.
    if unsafe { pg::peb_request_outcome(request) } != PENDING {
        return; // the caller gave up before we started
    }
    // SAFETY: mapped until this process exits; the caller does not write
    // the label or flag once the worker runs.
    let (label, fast) = unsafe {
        let r = &*request;
        (CStr::from_ptr(r.label.as_ptr()).to_owned(), r.fast)
    };
    let outcome = std::panic::catch_unwind(|| start_here(&label, fast, request));
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(payload) => Error::from_panic(payload.as_ref()),
    };
    record_error(request, &error);
}

fn record_error(request: *mut pg::PebStartRequest, error: &Error) {
    let (code, message, detail, hint) = error_fields(error);
    // SAFETY: mapped memory that only this worker writes until the CAS.
    let r = unsafe { &mut *request };
    r.sqlerrcode = code;
    copy_c(&mut r.message, &message);
    copy_c(&mut r.detail, &detail);
    copy_c(&mut r.hint, &hint);
    // SAFETY: CAS on mapped memory. If the caller abandoned the request,
    // nobody reads the error; nothing was started either.
    unsafe { pg::peb_request_finish(request, FAILED) };
}

fn copy_c(dst: &mut [c_char], text: &str) {
    let n = text.len().min(dst.len() - 1);
    for (d, &s) in dst.iter_mut().zip(text.as_bytes()[..n].iter()) {
        *d = s as c_char;
    }
    dst[n] = 0;
}

fn error_fields(error: &Error) -> (i32, String, String, String) {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    match error {
        Error::Report {
            sqlstate,
            message,
            detail,
            hint,
        } => (packed_sqlstate(*sqlstate), message.clone(), opt(detail), opt(hint)),
        Error::Raw {
            sqlerrcode,
            message,
            detail,
            hint,
        } => (*sqlerrcode, message.clone(), opt(detail), opt(hint)),
        Error::Server(ServerError(ptr)) => {
            let edata = *ptr as *const pg::ErrorData;
            // SAFETY: an ErrorData copied by peb_try in this process.
            let text = |p: *mut c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    // SAFETY: NUL-terminated server strings.
                    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                }
            };
            // SAFETY: see above.
            unsafe {
                (
                    (*edata).sqlerrcode,
                    text((*edata).message),
                    text((*edata).detail),
                    text((*edata).hint),
                )
            }
        }
    }
}

/// Enters backup mode in this (worker) process and writes the files. On
/// any failure, or if the caller has given up meanwhile, leaves backup mode
/// again and removes what it wrote.
fn start_here(label: &CStr, fast: bool, request: *mut pg::PebStartRequest) -> Result<()> {
    let started = server::start_backup(label, fast)?;

    // From here until the outcome is decided, nothing may interrupt us.
    let _held = InterruptsHeld::new();
    let text = match label::exclusive_label_from_server(&started.label_text) {
        Ok((text, _)) => text,
        Err(e) => {
            let err = Error::new(
                INTERNAL_ERROR,
                "the server built a backup label this extension cannot read",
            )
            .detail(e.to_string());
            return Err(undo_start(None, err));
        }
    };
    if let Err(e) = write_backup_files(&text, &started.tablespace_map) {
        return Err(undo_start(Some(&text), e));
    }
    // SAFETY: mapped memory; written before the CAS publishes it.
    unsafe { (*request).start_lsn = started.start_lsn };
    // SAFETY: CAS on mapped memory.
    if !unsafe { pg::peb_request_finish(request, STARTED) } {
        // The caller gave up (cancel, timeout, exit) before we were done.
        let _ = files::remove(data_dir(), TABLESPACE_MAP);
        let _ = undo_start(Some(&text), Error::new(OBJECT_NOT_IN_PREREQUISITE_STATE, "abandoned"));
    }
    Ok(())
}

/// Writes backup_label (exclusively, which settles any race) and then
/// tablespace_map.
fn write_backup_files(label_text: &[u8], tablespace_map: &[u8]) -> Result<()> {
    if files::publish_exclusive(data_dir(), BACKUP_LABEL, label_text)? == Published::AlreadyExists {
        return Err(
            crate::sql::already_running().detail("Another session started an exclusive backup at the same time.")
        );
    }
    // The label is ours now, and with it the right to write tablespace_map.
    // A stale map from an interrupted backup must not end up in this one.
    if tablespace_map.is_empty() {
        files::remove(data_dir(), TABLESPACE_MAP).map(|_| ())
    } else {
        files::replace(data_dir(), TABLESPACE_MAP, tablespace_map)
    }
}

/// Undoes a start after the server entered backup mode: removes our label
/// if it got written, then takes the server out of backup mode. If our
/// label cannot be removed, the backup is left running (and stoppable)
/// rather than leaving a label the server does not count.
fn undo_start(ours: Option<&[u8]>, err: Error) -> Error {
    let ours_on_disk = ours.is_some_and(
        |ours| matches!(files::read_optional(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES), Ok(Some(t)) if t == ours),
    );
    if ours_on_disk {
        if let Err(e) = files::remove(data_dir(), BACKUP_LABEL) {
            return e
                .hint("The exclusive backup was started but could not be completed; end it with pg_stop_backup().");
        }
    }
    if let Err(e) = server::abort_session_backup() {
        return e;
    }
    err
}
