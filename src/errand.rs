//! The errand: a session asks the standing worker to end a backup whose
//! session state the worker holds.
//!
//! Why: the server remembers per process that the process entered backup
//! mode (`sessionBackupState`); only that process can leave backup mode
//! without writing WAL (a void), and if another process stopped the
//! backup, the worker would be left believing it still runs one, which an
//! assertion of the server's next start in it trips over. So a backup the
//! worker started is ended in the worker.
//!
//! The caller has claimed the label under the lock file (or renamed it, for
//! a void) and holds its interrupts off; the slot in shared memory moves
//! only by compare-and-swap:
//!
//! ```text
//!   FREE --caller--> WRITING --caller--> POSTED --worker--> TAKEN --worker--> CALLING --worker--> DONE | FAILED
//!                                          |                  |                  \--worker exits--> LOST
//!                                          |                  \--worker, or its exit--> DECLINED
//!                                          \--caller, the worker it posted to gone--> FREE
//! ```
//!
//! Only the caller frees the slot, after DONE, FAILED, DECLINED or LOST,
//! or while nobody has taken it; only the worker that took it moves it on
//! from TAKEN, and its exit callback settles an errand it leaves behind.
//! A worker that declines, or exits before CALLING, never asked the server
//! anything, and its session state goes with it: the caller then ends the
//! backup itself. Between TAKEN and DONE the worker holds its interrupts
//! off, so only a crash of the server (which ends every session) or a
//! FATAL raised inside the server's stop leaves one at CALLING (LOST).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result, SqlState, INTERNAL_ERROR};
use crate::hooks;
use crate::label::Lsn;
use crate::server;
use crate::server::worker::{error_fields, Latch};
use crate::shared::{self, c_text, copy_c, Errand};

const FREE: u32 = 0;
const WRITING: u32 = 1;
const POSTED: u32 = 2;
const TAKEN: u32 = 3;
const CALLING: u32 = 4;
const DONE: u32 = 5;
const FAILED: u32 = 6;
const DECLINED: u32 = 7;
const LOST: u32 = 8;

/// Whether this (standing worker) process has taken an errand it has not
/// yet settled, for its exit callback.
static TAKEN_HERE: AtomicBool = AtomicBool::new(false);

/// What the caller asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// pg_stop_backup: the server's stop, end-of-backup record and all.
    Stop = 1,
    /// A void: leave backup mode with no end-of-backup record for it.
    Void = 2,
}

/// How the server ended a backup: by its stop (a void falls back to a stop
/// whose end-of-backup record names no backup's start, see void.rs), at
/// this LSN and timeline; or by leaving backup mode without WAL.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ended {
    Stopped { lsn: Lsn, timeline: u32 },
    Left,
}

fn cas(errand: &Errand, from: u32, to: u32) -> bool {
    errand
        .state
        .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

fn worker_pid() -> Option<i32> {
    shared::standing_worker().map(|(_, pid)| pid)
}

/// Asks the standing worker to end the backup that started at `start_lsn`,
/// if it holds that backup's session state. `None`: it does not (or it is
/// gone without having asked the server anything); the caller ends the
/// backup itself. Called with interrupts held; waits as long as the worker
/// lives.
pub fn ask(kind: Kind, start_lsn: Lsn) -> Option<Result<Ended>> {
    let errand = shared::errand()?;
    let pid = loop {
        if shared::held() != Some(start_lsn) {
            return None;
        }
        let (latch, pid) = shared::standing_worker()?;
        if cas(errand, FREE, WRITING) {
            errand.kind.store(kind as u32, Ordering::Relaxed);
            errand.start_lsn.store(start_lsn, Ordering::Relaxed);
            errand.caller_latch.store(Latch::mine().as_ptr(), Ordering::Relaxed);
            errand.state.store(POSTED, Ordering::Release);
            Latch::from_ptr(latch).set();
            hooks::pause("errand_posted");
            break pid;
        }
        // Only one backup runs, and only its claimant asks; a slot still
        // in use is one whose caller is just freeing it.
        if let Err(e) = wait(10) {
            return Some(Err(e));
        }
    };
    loop {
        let state = errand.state.load(Ordering::Acquire);
        match state {
            DONE => {
                let ended = match errand.stop_lsn.load(Ordering::Acquire) {
                    0 => Ended::Left,
                    lsn => Ended::Stopped {
                        lsn,
                        timeline: errand.stop_tli.load(Ordering::Acquire),
                    },
                };
                errand.state.store(FREE, Ordering::Release);
                return Some(Ok(ended));
            }
            FAILED => {
                let e = failure(errand);
                errand.state.store(FREE, Ordering::Release);
                return Some(Err(e));
            }
            DECLINED => {
                errand.state.store(FREE, Ordering::Release);
                return None;
            }
            LOST => {
                errand.state.store(FREE, Ordering::Release);
                return Some(Err(Error::new(
                    INTERNAL_ERROR,
                    "the standing worker of pg_exclusive_backup exited while it ended the backup",
                )
                .hint("Check pg_is_in_backup() and the server log.")));
            }
            // Nobody took it, and the worker it was posted to is gone (its
            // exit callback has cleared `held`): a worker started since
            // does not hold the backup. Unless one just took it.
            POSTED if worker_pid() != Some(pid) && cas(errand, POSTED, FREE) => return None,
            _ => {}
        }
        if let Err(e) = wait(100) {
            return Some(Err(e));
        }
    }
}

/// A wait on the latch, with interrupts held; an error only when the
/// postmaster has died.
fn wait(ms: i64) -> Result<()> {
    server::wait_latch(ms, false, "the standing worker ended the backup")
}

fn failure(errand: &Errand) -> Error {
    // SAFETY: written by the worker before it published FAILED, which the
    // caller saw; the worker does not touch them again until the slot has
    // been freed and posted anew.
    let (message, detail) = unsafe { (c_text(&*errand.message.get()), c_text(&*errand.detail.get())) };
    let e = Error::new(SqlState(errand.sqlstate.load(Ordering::Acquire)), message);
    if detail.is_empty() {
        e
    } else {
        e.detail(detail)
    }
}

/// The worker's side: the errand waiting for it, if any, taken (TAKEN).
/// The worker holds its interrupts off from before this call until
/// [`Taken::finish`].
pub fn take() -> Option<Taken> {
    let errand = shared::errand()?;
    if !cas(errand, POSTED, TAKEN) {
        return None;
    }
    TAKEN_HERE.store(true, Ordering::Release);
    let kind = match errand.kind.load(Ordering::Acquire) {
        1 => Kind::Stop,
        _ => Kind::Void,
    };
    Some(Taken {
        errand,
        kind,
        start_lsn: errand.start_lsn.load(Ordering::Acquire),
    })
}

/// An errand the worker took.
pub struct Taken {
    errand: &'static Errand,
    pub kind: Kind,
    pub start_lsn: Lsn,
}

impl Taken {
    /// The worker does not hold that backup: the caller ends it itself.
    pub fn decline(self) {
        cas(self.errand, TAKEN, DECLINED);
        TAKEN_HERE.store(false, Ordering::Release);
        self.wake();
    }

    /// The worker is about to ask the server.
    pub fn calling(&self) {
        cas(self.errand, TAKEN, CALLING);
    }

    /// Publishes the result and wakes the caller.
    pub fn finish(self, result: Result<Ended>) {
        match result {
            Ok(ended) => {
                let (lsn, tli) = match ended {
                    Ended::Stopped { lsn, timeline } => (lsn, timeline),
                    Ended::Left => (0, 0),
                };
                self.errand.stop_lsn.store(lsn, Ordering::Release);
                self.errand.stop_tli.store(tli, Ordering::Release);
                cas(self.errand, CALLING, DONE);
            }
            Err(e) => {
                let (code, message, detail, _) = error_fields(&e);
                self.errand.sqlstate.store(code, Ordering::Release);
                // SAFETY: the caller reads these only after FAILED, below.
                unsafe {
                    copy_c(&mut *self.errand.message.get(), &message);
                    copy_c(&mut *self.errand.detail.get(), &detail);
                }
                cas(self.errand, CALLING, FAILED);
            }
        }
        TAKEN_HERE.store(false, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        Latch::from_ptr(self.errand.caller_latch.load(Ordering::Acquire)).set();
    }
}

/// The standing worker's exit callback: an errand it took and did not
/// settle is declined (nothing was asked of the server yet) or lost.
pub fn worker_exiting() {
    if !TAKEN_HERE.swap(false, Ordering::AcqRel) {
        return;
    }
    let Some(errand) = shared::errand() else { return };
    if cas(errand, TAKEN, DECLINED) || cas(errand, CALLING, LOST) {
        Latch::from_ptr(errand.caller_latch.load(Ordering::Acquire)).set();
    }
}
