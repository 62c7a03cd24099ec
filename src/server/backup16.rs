//! The backup API of PostgreSQL 16 and later: a BackupState struct is the
//! currency between start and stop.

use std::cell::Cell;
use std::ffi::{c_char, CStr};
use std::ptr;

use super::bindings as pg;
use super::boundary::guarded;
use super::{bytes, start_time_unix, Started};
use crate::error::{Error, Result, INTERNAL_ERROR};
use crate::label::{BackupLabel, Lsn};

/// Puts the server into backup mode (checkpoint included) and sets
/// `entered` the moment it is: an error before that means the server has
/// left backup mode again itself; one after it leaves that to the caller.
pub fn start_backup(label: &CStr, fast: bool, entered: &Cell<bool>) -> Result<Started> {
    let label_ptr = label.as_ptr();
    // SAFETY: plain server calls; the closure owns nothing.
    let (state, mapfile) = unsafe {
        guarded(|| {
            (
                pg::palloc0(std::mem::size_of::<pg::BackupState>()) as *mut pg::BackupState,
                pg::makeStringInfo(),
            )
        })
    }?;
    // SAFETY: documented server API; all pointers are valid for the call,
    // and the closure owns nothing.
    unsafe {
        guarded(move || {
            let mut tablespaces: *mut pg::List = ptr::null_mut();
            pg::do_pg_backup_start(label_ptr, fast, &mut tablespaces, state, mapfile);
        })
    }?;
    entered.set(true);
    // SAFETY: `state` was filled by the server; the closure owns nothing.
    let text = unsafe { guarded(move || pg::build_backup_content(state, false) as *const c_char) }?;
    // SAFETY: filled by the server above.
    unsafe {
        Ok(Started {
            start_lsn: (*state).startpoint,
            label_text: CStr::from_ptr(text).to_bytes().to_vec(),
            tablespace_map: bytes((*mapfile).data, (*mapfile).len as usize),
            start_epoch: (*state).starttime,
        })
    }
}

/// Everything the stop needs, built and checked before the label is
/// claimed, so that nothing between the claim and the server call can fail.
pub struct PreparedStop {
    state: Box<pg::BackupState>,
}

impl PreparedStop {
    /// Rebuilds the server's BackupState from the label file, field by
    /// field; the whole label and the exact start time go into the history
    /// file. Fields the label does not have (17's incremental-backup start)
    /// stay zero, as for any full backup.
    pub fn new(label: &BackupLabel, _label_text: &[u8]) -> Result<PreparedStop> {
        let mut state = Box::<pg::BackupState>::default();
        if label.label.len() >= state.name.len() {
            return Err(Error::new(
                INTERNAL_ERROR,
                "label longer than the server's BackupState allows",
            ));
        }
        for (dst, &src) in state.name.iter_mut().zip(label.label.iter()) {
            *dst = src as c_char;
        }
        state.startpoint = label.start_lsn;
        state.starttli = label.start_timeline;
        state.checkpointloc = label.checkpoint_lsn;
        state.starttime = match label.start_epoch {
            Some(t) => t,
            None => start_time_unix(&label.start_time)?,
        };
        state.started_in_recovery = false;
        Ok(PreparedStop { state })
    }

    /// Ends the backup: the server writes the end-of-backup record and the
    /// history file and switches WAL; it does not wait for archiving (see
    /// archive.rs). Returns the stop LSN and timeline.
    pub fn run(mut self) -> Result<(Lsn, u32)> {
        let state_ptr: *mut pg::BackupState = &mut *self.state;
        // SAFETY: documented server API; `self.state` outlives the call and
        // the closure owns nothing.
        unsafe { guarded(move || pg::do_pg_backup_stop(state_ptr, false)) }?;
        Ok((self.state.stoppoint, self.state.stoptli))
    }
}
