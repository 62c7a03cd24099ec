//! pg_is_in_backup() and pg_backup_start_time(): whether an exclusive
//! backup runs, and since when. In preload mode from shared memory alone;
//! otherwise from backup_label, whose verdict each backend remembers for as
//! long as the file stays the same file.

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;

use crate::disk;
use crate::error::Result;
use crate::label::{self, LabelError};
use crate::server;
use crate::shared;

/// The identity of a file as far as a change of its content goes: a new
/// label is a new file (link of a fresh temporary file), and any write would
/// change size or times.
#[derive(Clone, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    fn of(m: &std::fs::Metadata) -> Self {
        FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The start time (TimestampTz) of the running exclusive backup, or the
/// reason its label is invalid.
type LabelVerdict = std::result::Result<i64, LabelError>;

thread_local! {
    /// Monitoring polls pg_is_in_backup() and pg_backup_start_time(); a
    /// stat is much cheaper than opening, reading and parsing the label, so
    /// each backend remembers its verdict on the label for as long as the
    /// file stays the same file.
    static SEEN_LABEL: RefCell<Option<(FileIdentity, LabelVerdict)>> = const { RefCell::new(None) };
}

fn label_identity() -> Result<Option<FileIdentity>> {
    Ok(disk::label_metadata()?.map(|m| FileIdentity::of(&m)))
}

/// The start time of the running exclusive backup, `None` when there is
/// none; an invalid label is an error.
fn start_time_from_label() -> Result<Option<i64>> {
    let Some(identity) = label_identity()? else {
        return Ok(None);
    };
    let remembered = SEEN_LABEL.with(|seen| {
        seen.borrow()
            .as_ref()
            .filter(|(id, _)| *id == identity)
            .map(|(_, verdict)| verdict.clone())
    });
    if let Some(verdict) = remembered {
        return verdict.map(Some).map_err(disk::invalid_label);
    }
    let Some(text) = disk::label_text()? else {
        return Ok(None);
    };
    let verdict = match label::parse(&text) {
        // The exact start; a label without it (written by version 1.0) has
        // only its START TIME, read in today's log_timezone.
        Ok(parsed) => Ok(label::timestamptz_from_unix(match parsed.start_epoch {
            Some(t) => t,
            None => server::start_time_unix(&parsed.start_time)?,
        })),
        Err(e) => Err(e),
    };
    // Remember it only if the file did not change while we read it.
    if label_identity()? == Some(identity.clone()) && text.len() as u64 == identity.size {
        SEEN_LABEL.with(|seen| *seen.borrow_mut() = Some((identity, verdict.clone())));
    }
    verdict.map(Some).map_err(disk::invalid_label)
}

/// The running backup's start (TimestampTz): from shared memory in preload
/// mode, else from backup_label. No exclusive backup can run during
/// recovery; a label there belongs to the backup being restored.
pub fn start_time() -> Result<Option<i64>> {
    if server::recovery_in_progress()? {
        return Ok(None);
    }
    match shared::running_backup() {
        Some(known) => Ok(known),
        None => start_time_from_label(),
    }
}
