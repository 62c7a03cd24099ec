//! The calling backend's side of the start protocol (see mod.rs).

use std::cell::{Cell, UnsafeCell};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32};

use super::{Failure, Request, ABANDONED, COMMIT, DECLINED, FAILED, NAME_BYTES, PENDING, READY, STARTED};
use crate::disk;
use crate::error::{already_running, Error, Result, SqlState, INSUFFICIENT_RESOURCES, INTERNAL_ERROR};
use crate::label::{self, Lsn, MAX_LABEL_BYTES};
use crate::server::worker::{send_cancel, wait_latch_quietly, Latch, OnDetach, Segment, Worker, WorkerState};
use crate::server::{self, InterruptsHeld};
use crate::shared::{self, c_text, copy_c};

/// How long pg_start_backup waits for a free background worker slot.
const SLOT_WAIT_MS: i64 = 10_000;

/// How long a request may wait in the mailbox before its caller takes it
/// back and forks a worker for it (the standing worker is busy with
/// another start, a checkpoint long).
const MAILBOX_WAIT_MS: i64 = 1_000;

/// Who serves the request.
#[derive(Clone, Copy)]
enum Server {
    /// Nobody yet.
    None,
    /// Preload mode's standing worker, with this pid.
    Standing(i32),
    /// A worker forked for this request.
    Forked(Worker),
}

/// One start, as its caller holds it: the request's segment, the request,
/// and the worker serving it. The segment's detach callback (this backend
/// leaving, or the start being over) finds it through the pointer
/// registered with the segment, which stays valid until the segment is
/// detached (see `Release`).
struct Caller<'r> {
    segment: Segment,
    request: &'r Request,
    server: Cell<Server>,
}

impl Caller<'_> {
    /// Whether the worker serving the request has exited.
    fn server_gone(&self) -> Result<bool> {
        Ok(match self.server.get() {
            Server::None => true,
            // A worker started since the request was posted may have taken
            // it: that one's exit matters.
            Server::Standing(posted_to) => {
                shared::standing_worker().map(|(_, p)| p) != Some(self.request.taker().unwrap_or(posted_to))
            }
            Server::Forked(w) => w.state()? == WorkerState::Stopped,
        })
    }
}

/// Starts the exclusive backup in a worker and reports its outcome.
/// `label` has been validated by the caller (no NUL, at most
/// MAX_LABEL_BYTES).
pub fn start_in_worker(label: &[u8], fast: bool, method: label::Method) -> Result<Lsn> {
    let session = server::session_info()?;
    let segment = Segment::create(std::mem::size_of::<Request>())?;
    let request = segment.address() as *mut Request;
    let mut initial = Request {
        outcome: AtomicU32::new(PENDING),
        caller_latch: Latch::mine(),
        worker_latch: AtomicPtr::new(std::ptr::null_mut()),
        fast,
        streamed: method == label::Method::Streamed,
        label: [0; MAX_LABEL_BYTES + 1],
        session_user: [0; NAME_BYTES],
        database: [0; NAME_BYTES],
        started_from: [0; NAME_BYTES],
        has_client: session.from.is_some(),
        application_name: [0; NAME_BYTES],
        caller_pid: std::process::id() as i32,
        start_lsn: UnsafeCell::new(0),
        failure: UnsafeCell::new(Failure {
            sqlerrcode: 0,
            message: [0; 1024],
            detail: [0; 1024],
            hint: [0; 512],
        }),
        settled: AtomicBool::new(false),
        served_by: AtomicI32::new(0),
    };
    initial.label[..label.len()].copy_from_slice(label);
    copy_c(&mut initial.session_user, &session.user);
    copy_c(&mut initial.database, &session.database);
    copy_c(&mut initial.started_from, session.from.as_deref().unwrap_or(""));
    copy_c(&mut initial.application_name, &session.application_name);
    // SAFETY: the segment is at least size_of::<Request>() bytes, suitably
    // aligned (dsm segments are page-aligned), and ours alone so far.
    unsafe { request.write(initial) };
    let caller = Caller {
        segment,
        // SAFETY: mapped until `_release` detaches it, after the last use.
        request: unsafe { &*request },
        server: Cell::new(Server::None),
    };
    let _release = Release(&caller);
    // If this backend exits (FATAL) while the request is open, the server
    // detaches the segment on its way out, and the callback abandons the
    // request; as it does when the start ends undecided by an error.
    segment.on_detach::<Caller>(&caller as *const Caller as *mut c_void)?;
    run(&caller)
}

/// Detaches the request when dropped, after a result, an error or a panic
/// (its detach callback abandons a request still undecided), then frees
/// the worker's handle. The worker stays attached until it exits.
struct Release<'a, 'r>(&'a Caller<'r>);

impl Drop for Release<'_, '_> {
    fn drop(&mut self) {
        let _ = self.0.segment.detach();
        if let Server::Forked(worker) = self.0.server.replace(Server::None) {
            worker.free();
        }
    }
}

impl OnDetach for Caller<'_> {
    fn on_detach(arg: *mut c_void) {
        // SAFETY: registered by start_in_worker with its `Caller`, which
        // outlives the segment's attachment.
        abandon(unsafe { &*(arg as *const Caller) });
    }
}

/// Marks a request that is not yet committed abandoned, has the worker
/// serving it give up its start, and waits (bounded) until it has, so that
/// whoever looks next sees a settled state. A decided request is left
/// alone.
fn abandon(caller: &Caller) {
    let request = caller.request;
    if !(request.cas(PENDING, ABANDONED) || request.cas(READY, ABANDONED)) {
        return; // decided already: started, failed, or being published
    }
    request.wake_worker();
    let worker = match caller.server.get() {
        Server::None => return,
        Server::Standing(pid) => {
            if shared::unpost(caller.segment.handle()) {
                return; // still in the mailbox: nothing was started
            }
            // Cancels the start only while the worker still serves this
            // request (its checkpoint wait ends with an error); a worker
            // that has moved on ignores it.
            shared::cancel_start(caller.segment.handle());
            send_cancel(pid);
            None
        }
        Server::Forked(worker) => {
            // Outside an exit callback a failure just ends the wait;
            // inside one (proc_exit) an error would end the process there,
            // the request being marked abandoned already, which the worker
            // acts on by itself.
            worker.terminate();
            Some(worker)
        }
    };
    for _ in 0..6000 {
        let settled = match worker {
            None => request.settled() || caller.server_gone().unwrap_or(true),
            Some(w) => matches!(
                w.state(),
                Ok(WorkerState::Stopped | WorkerState::PostmasterDied) | Err(_)
            ),
        };
        if settled || wait_latch_quietly(10) {
            break;
        }
    }
}

/// Posts the request to preload mode's standing worker, if one runs and a
/// mailbox slot is free.
fn post(caller: &Caller) -> bool {
    let Some((latch, pid)) = shared::standing_worker() else {
        return false;
    };
    if !shared::post(caller.segment.handle()) {
        return false;
    }
    caller.server.set(Server::Standing(pid));
    Latch::from_ptr(latch).set();
    true
}

/// Launches a worker for the request, waiting for a free slot.
fn launch(caller: &Caller) -> Result<Worker> {
    let mut waited = 0;
    loop {
        if let Some(worker) = Worker::launch(caller.segment)? {
            if let Server::Forked(old) = caller.server.replace(Server::Forked(worker)) {
                // The handle of a worker that has exited.
                old.free();
            }
            return Ok(worker);
        }
        // Out of worker slots (max_worker_processes). Wait a little: most
        // slots are short-lived; a concurrent start may also win meanwhile.
        if disk::label_metadata()?.is_some() {
            return Err(already_running());
        }
        if waited >= SLOT_WAIT_MS {
            return Err(Error::new(
                INSUFFICIENT_RESOURCES,
                "could not start a background worker for pg_start_backup",
            )
            .detail("All background worker slots stayed in use for 10 seconds.")
            .hint("Raise max_worker_processes, or try again later."));
        }
        server::wait_latch(100, false, "pg_start_backup was waiting")?;
        server::check_for_interrupts()?;
        waited += 100;
    }
}

fn run(caller: &Caller) -> Result<Lsn> {
    let request = caller.request;
    let mut forks = 0;
    let mut in_mailbox_ms = 0;
    if !post(caller) {
        launch(caller)?;
        forks += 1;
    }
    loop {
        match request.outcome() {
            PENDING => {
                let standing = matches!(caller.server.get(), Server::Standing(_));
                let handle = caller.segment.handle();
                // A request the standing worker has not taken: taken back
                // when the worker is gone or busy, and given to a fork.
                let fork_now = if standing && (caller.server_gone()? || in_mailbox_ms >= MAILBOX_WAIT_MS) {
                    shared::unpost(handle)
                } else if !standing && caller.server_gone()? && request.outcome() == PENDING {
                    // The forked worker exited before it even looked at the
                    // request (it records an outcome in every other case),
                    // so nothing was started: try again.
                    if forks >= 3 {
                        return Err(Error::new(
                            INTERNAL_ERROR,
                            "the background worker starting the backup exited without a result",
                        )
                        .detail("No backup was started. The server log may say why."));
                    }
                    server::boundary::log(
                        "pg_exclusive_backup: the start worker exited without looking at its request; trying again",
                    );
                    true
                } else {
                    false
                };
                if fork_now {
                    if standing {
                        // Nobody serves it now: an abandon before a worker
                        // is found waits for nobody.
                        caller.server.set(Server::None);
                    }
                    launch(caller)?;
                    forks += 1;
                    continue;
                }
                server::check_for_interrupts()?;
                server::wait_latch(100, true, "pg_start_backup was waiting")?;
                in_mailbox_ms += 100;
            }
            DECLINED => {
                // The standing worker holds a backup that is being stopped.
                if request.cas(DECLINED, PENDING) {
                    caller.server.set(Server::None);
                    launch(caller)?;
                    forks += 1;
                }
            }
            READY => {
                // From the commit on, this backend is bound to report the
                // worker's result: no cancel may come in between.
                let held = InterruptsHeld::new();
                if !request.cas(READY, COMMIT) {
                    continue; // the worker failed (terminated) meanwhile
                }
                request.wake_worker();
                let result = await_publication(caller);
                if result.is_ok() {
                    // A cancel or statement_timeout that arrived after the
                    // commit came too late: the backup runs, and the caller
                    // must hear so, not a cancel error.
                    server::forget_query_cancel();
                }
                drop(held);
                return result;
            }
            FAILED => return Err(failure_after_exit(caller)),
            other => {
                return Err(Error::new(
                    INTERNAL_ERROR,
                    format!("the start request is in an unexpected state ({other})"),
                ))
            }
        }
    }
}

/// After COMMIT, with interrupts held: the worker only takes the lock (a
/// bounded wait) and links, renames and fsyncs files now.
fn await_publication(caller: &Caller) -> Result<Lsn> {
    let request = caller.request;
    loop {
        match request.outcome() {
            // SAFETY: written by the worker before READY, which we saw.
            STARTED => return Ok(unsafe { *request.start_lsn.get() }),
            FAILED => return Err(failure_after_exit(caller)),
            _ => {}
        }
        if caller.server_gone()? && request.outcome() == COMMIT {
            return Err(Error::new(
                INTERNAL_ERROR,
                "the background worker starting the backup exited while putting backup_label in place",
            )
            .hint("Check pg_is_in_backup(); the server log may say why."));
        }
        server::wait_latch(1000, true, "pg_start_backup was waiting")?;
    }
}

/// The worker's error, once the worker is done with the request (a forked
/// one has exited), so that nothing of the attempt is left when the error
/// reaches the client.
fn failure_after_exit(caller: &Caller) -> Error {
    let request = caller.request;
    for _ in 0..600 {
        let done = match caller.server.get() {
            Server::Forked(w) => !matches!(w.state(), Ok(WorkerState::Started | WorkerState::NotYetStarted)),
            _ => request.settled() || caller.server_gone().unwrap_or(true),
        };
        if done {
            break;
        }
        if server::check_for_interrupts().is_err()
            || server::wait_latch(100, true, "pg_start_backup was waiting").is_err()
        {
            break;
        }
    }
    reported_error(request)
}

fn reported_error(req: &Request) -> Error {
    // SAFETY: written by the worker before FAILED, which the caller saw.
    let r = unsafe { &*req.failure.get() };
    let mut e = Error::new(SqlState(r.sqlerrcode), c_text(&r.message));
    let (detail, hint) = (c_text(&r.detail), c_text(&r.hint));
    if !detail.is_empty() {
        e = e.detail(detail);
    }
    if !hint.is_empty() {
        e = e.hint(hint);
    }
    e
}
