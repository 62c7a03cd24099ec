//! The backup API of PostgreSQL 15: the label text is the currency between
//! start and stop.

use std::cell::Cell;
use std::ffi::{c_char, CStr, CString};
use std::ptr;

#[path = "label15.rs"]
mod label15;

use super::bindings as pg;
use super::boundary::guarded;
use super::{bytes, start_time_unix, Started};
use crate::error::{Error, Result, INTERNAL_ERROR};
use crate::label::{BackupLabel, Lsn};
use label15::{server_lines, server_start_time};

/// Puts the server into backup mode (checkpoint included) and sets
/// `entered` the moment it is: an error before that means the server has
/// left backup mode again itself; one after it leaves that to the caller.
pub fn start_backup(label: &CStr, fast: bool, entered: &Cell<bool>) -> Result<Started> {
    let label_ptr = label.as_ptr();
    // SAFETY: plain server calls; the closure owns nothing.
    let (labelfile, mapfile) = unsafe { guarded(|| (pg::makeStringInfo(), pg::makeStringInfo())) }?;
    // SAFETY: documented server API; all pointers are valid for the call,
    // and the closure owns nothing.
    let lsn = unsafe {
        guarded(move || {
            let mut tli: pg::TimeLineID = 0;
            let mut tablespaces: *mut pg::List = ptr::null_mut();
            pg::do_pg_backup_start(label_ptr, fast, &mut tli, labelfile, &mut tablespaces, mapfile)
        })
    }?;
    entered.set(true);
    // SAFETY: both StringInfos were filled by the server.
    let (label_text, tablespace_map) = unsafe {
        (
            bytes((*labelfile).data, (*labelfile).len as usize),
            bytes((*mapfile).data, (*mapfile).len as usize),
        )
    };
    // 15 keeps the start time to itself; it formatted it a moment ago in
    // this process's log_timezone, which has not changed since (the start
    // worker never reloads the configuration).
    let start_time = server_start_time(&label_text).ok_or_else(|| {
        Error::new(
            INTERNAL_ERROR,
            "the server built a backup label this extension cannot read",
        )
        .detail("Its START TIME line is missing or malformed.")
    })?;
    Ok(Started {
        start_lsn: lsn,
        start_epoch: start_time_unix(&start_time)?,
        label_text,
        tablespace_map,
    })
}

/// Everything the stop needs, built and checked before the label is
/// claimed, so that nothing between the claim and the server call can fail.
pub struct PreparedStop {
    text: CString,
}

impl PreparedStop {
    pub fn new(_label: &BackupLabel, label_text: &[u8]) -> Result<PreparedStop> {
        // The server re-parses the text and copies it into the backup
        // history file: hand it the server's own lines.
        let text = CString::new(server_lines(label_text))
            .map_err(|_| Error::new(INTERNAL_ERROR, "backup label contains a NUL byte"))?;
        Ok(PreparedStop { text })
    }

    /// Ends the backup: the server writes the end-of-backup record and the
    /// history file and switches WAL; it does not wait for archiving (see
    /// archive.rs). Returns the stop LSN and timeline.
    pub fn run(self) -> Result<(Lsn, u32)> {
        let text_ptr = self.text.as_ptr() as *mut c_char;
        // SAFETY: documented server API; `self.text` outlives the call and
        // the closure owns nothing.
        unsafe {
            guarded(move || {
                let mut tli: pg::TimeLineID = 0;
                let lsn = pg::do_pg_backup_stop(text_ptr, false, &mut tli);
                (lsn, tli)
            })
        }
    }
}
