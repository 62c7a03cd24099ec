//! pg_exclusive_backup_status(): which exclusive backup runs, who started
//! it from where, and how the last one ended. It reads backup_label (or, in
//! preload mode, shared memory for whether one runs) and the state record.
//! It changes no file (on a primary it may take the lock file, creating it
//! if it is missing, see `status`), and answers on a standby too.
//!
//! The record outlives the session that started the backup and a restart
//! of the server. A copy of the data directory carries the primary's
//! record, so a record is only believed about the backup running here when
//! backup_label still is the label it names (see `state::fate`).

use std::os::unix::fs::MetadataExt;

use crate::bindings as pg;
use crate::boundary::{guarded, Datum, FunctionCallInfo};
use crate::error::Result;
use crate::files::{self, data_dir, BACKUP_LABEL_OLD};
use crate::label::{self, BackupLabel, MAX_FILE_BYTES};
use crate::postmaster;
use crate::server;
use crate::sql;
use crate::state::{self, Ended, Facts, Fate, Outcome, Record, Session, UnixMicros, MAX_STATE_BYTES, STATE_FILE};

pub fn unix_micros_now() -> UnixMicros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn timestamptz(t: UnixMicros) -> i64 {
    t - label::POSTGRES_EPOCH_UNIX_SECONDS * 1_000_000
}

/// The state record, when there is a valid one: an unreadable or damaged
/// record only costs the history.
pub fn read_record() -> Option<Record> {
    let bytes = files::read_optional(data_dir(), STATE_FILE, MAX_STATE_BYTES).ok()??;
    Record::parse(&bytes).ok()
}

/// What `state::fate` needs beyond the running label.
pub struct Seen {
    in_recovery: bool,
    old_label: Option<(Vec<u8>, Option<UnixMicros>, Option<state::FileId>)>,
    timeline: Option<u32>,
}

impl Seen {
    pub fn now() -> Result<Seen> {
        let in_recovery = server::recovery_in_progress()?;
        let old_label = files::read_optional(data_dir(), BACKUP_LABEL_OLD, MAX_FILE_BYTES)
            .ok()
            .flatten()
            .map(|text| {
                // The rename that made it .old set its ctime.
                let path = data_dir().join(BACKUP_LABEL_OLD);
                let at = std::fs::symlink_metadata(&path)
                    .ok()
                    .map(|m| m.ctime() * 1_000_000 + m.ctime_nsec() / 1000);
                (text, at, files::file_id(&path).ok())
            });
        let timeline = if in_recovery {
            None
        } else {
            Some(server::insert_timeline()?)
        };
        Ok(Seen {
            in_recovery,
            old_label,
            timeline,
        })
    }

    pub fn facts<'a>(&'a self, running_label: Option<&'a [u8]>) -> Facts<'a> {
        Facts {
            running_label,
            in_recovery: self.in_recovery,
            old_label: self.old_label.as_ref().map(|(t, at, id)| (t.as_slice(), *at, *id)),
            timeline: self.timeline,
        }
    }
}

/// One reading of the files.
struct Look {
    /// The running backup's label (content and parsed), when one runs.
    running: Option<(Vec<u8>, BackupLabel)>,
    in_progress: bool,
    record: Option<(Record, Fate)>,
}

fn look() -> Result<Look> {
    let seen = Seen::now()?;
    // Record first: a start writes it before it links the label.
    let record = read_record();
    let (in_progress, label) = if seen.in_recovery {
        // A label during recovery belongs to the backup being restored.
        (false, None)
    } else {
        match postmaster::running_backup() {
            // Preload mode: shared memory says whether a backup runs, as
            // for pg_is_in_backup(); a label it does not count is not
            // read, and a damaged one leaves the details to the record.
            Some(None) => (false, None),
            Some(Some(_)) => (true, sql::current_label().ok().flatten()),
            // As pg_is_in_backup(): an invalid label is an error.
            None => {
                let label = sql::current_label()?;
                (label.is_some(), label)
            }
        }
    };
    let running = match (in_progress, label) {
        (false, _) => None,
        (true, Some(l)) => Some(l),
        // Preload mode, its label moved away by hand: the record has it.
        (true, None) => record
            .as_ref()
            .filter(|r| r.outcome == Outcome::Running)
            .and_then(|r| label::parse(&r.label).ok().map(|p| (r.label.clone(), p))),
    };
    let record = record.map(|r| {
        let fate = state::fate(&r, &seen.facts(running.as_ref().map(|(t, _)| t.as_slice())));
        (r, fate)
    });
    Ok(Look {
        running,
        in_progress,
        record,
    })
}

const BOOL: pg::Oid = 16;
const INT4: pg::Oid = 23;
const TEXT: pg::Oid = 25;
const TIMESTAMPTZ: pg::Oid = 1184;
const INTERVAL: pg::Oid = 1186;
const PG_LSN: pg::Oid = 3220;

/// The columns, in the order of the SQL definition.
const TYPES: [pg::Oid; 21] = [
    BOOL,        // in_progress
    TEXT,        // label
    PG_LSN,      // start_lsn
    PG_LSN,      // checkpoint_lsn
    INT4,        // start_timeline
    TIMESTAMPTZ, // start_time
    INTERVAL,    // duration
    BOOL,        // fast
    TEXT,        // started_by
    TEXT,        // started_from
    TEXT,        // application_name
    INT4,        // start_pid
    TEXT,        // database
    TEXT,        // label_method
    BOOL,        // preloaded
    TEXT,        // last_label
    PG_LSN,      // last_stop_lsn
    TIMESTAMPTZ, // last_end_time
    TEXT,        // last_outcome
    TEXT,        // last_stopped_by
    TIMESTAMPTZ, // last_completed_time
];

/// Text in the database encoding when the bytes are valid in it (labels
/// and names keep the encoding of the session that gave them), otherwise
/// with each byte outside ASCII written as `\xNN`.
fn text(bytes: &[u8]) -> Result<Datum> {
    let (ptr, len) = (bytes.as_ptr() as *const std::ffi::c_char, bytes.len() as i32);
    // SAFETY: `bytes` outlives both calls; the closures own nothing.
    if unsafe { guarded(move || pg::peb_valid_in_database(ptr, len)) }? {
        return unsafe { guarded(move || pg::peb_text_datum(ptr, len)) };
    }
    let escaped = crate::label::escape_non_ascii(bytes);
    let (ptr, len) = (escaped.as_ptr() as *const std::ffi::c_char, escaped.len() as i32);
    // SAFETY: as above, for `escaped`.
    unsafe { guarded(move || pg::peb_text_datum(ptr, len)) }
}

pub fn status(fcinfo: FunctionCallInfo) -> Result<Datum> {
    let mut seen = look()?;
    if matches!(&seen.record, Some((r, Fate::Vanished)) if r.outcome == Outcome::Running) {
        // A start between writing its record and linking its label looks
        // the same for a moment; both happen under the lock, which starts
        // and stops hold for milliseconds. Looked at again with the lock
        // held, if it comes free within two seconds; otherwise (or if it
        // cannot be taken at all) what was seen.
        if let Ok(Some(_lock)) = server::lock_data_dir_briefly() {
            seen = look()?;
        }
    }
    let mut values = [0 as Datum; TYPES.len()];
    let mut nulls = [true; TYPES.len()];
    let mut set = |i: usize, v: Datum| {
        values[i] = v;
        nulls[i] = false;
    };
    set(0, seen.in_progress as Datum);
    set(14, postmaster::preloaded() as Datum);
    let session: Option<&Session> = match &seen.record {
        Some((r, Fate::Current)) if r.outcome == Outcome::Running => r.session.as_ref(),
        _ => None,
    };
    if let Some((_, l)) = &seen.running {
        set(1, text(&l.label)?);
        set(2, l.start_lsn as Datum);
        set(3, l.checkpoint_lsn as Datum);
        set(4, l.start_timeline as Datum);
        let start = match l.start_epoch {
            Some(s) => s,
            None => server::start_time_unix(&l.start_time)?,
        } * 1_000_000;
        set(5, timestamptz(start) as Datum);
        let since = unix_micros_now() - start;
        // SAFETY: plain shim call; the closure owns nothing.
        set(6, unsafe { guarded(move || pg::peb_interval_datum(since)) }?);
        set(13, text(l.method.name().as_bytes())?);
        if let Some(s) = session {
            set(7, s.fast as Datum);
            set(8, text(s.started_by.as_bytes())?);
            if let Some(from) = &s.started_from {
                set(9, text(from.as_bytes())?);
            }
            set(10, text(s.application_name.as_bytes())?);
            set(11, s.pid as Datum);
            set(12, text(s.database.as_bytes())?);
        }
    }
    let (last, completed): (Option<Ended>, Option<UnixMicros>) = match &seen.record {
        Some((r, fate)) => r.history(*fate),
        None => (None, None),
    };
    if let Some(e) = last {
        set(15, text(&e.label)?);
        if let Some(lsn) = e.stop_lsn {
            set(16, lsn as Datum);
        }
        if let Some(t) = e.end_time {
            set(17, timestamptz(t) as Datum);
        }
        set(18, text(e.how.name().as_bytes())?);
        if let Some(by) = &e.stopped_by {
            set(19, text(by.as_bytes())?);
        }
    }
    if let Some(t) = completed {
        set(20, timestamptz(t) as Datum);
    }
    let (v, n) = (values.as_mut_ptr(), nulls.as_mut_ptr());
    // SAFETY: both arrays hold TYPES.len() entries and outlive the call;
    // the closure owns nothing.
    unsafe { guarded(move || pg::peb_row(fcinfo, TYPES.as_ptr(), TYPES.len() as i32, v, n)) }
}
