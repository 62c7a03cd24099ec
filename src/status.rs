//! pg_exclusive_backup_status(): which exclusive backup runs, who started
//! it from where, and how the last one ended. It reads backup_label (or, in
//! preload mode, shared memory for whether one runs) and the state record.
//! It changes no file (on a primary it may take the lock file, creating it
//! if it is missing, see `status`), and answers on a standby too.
//!
//! The record outlives the session that started the backup and a restart
//! of the server. A copy of the data directory carries the primary's
//! record, so a record is only believed about the backup running here when
//! backup_label still is the label it names (see `verdict::fate`).

use crate::disk;
use crate::duration;
use crate::error::Result;
use crate::label::{self, BackupLabel};
use crate::record::{Ended, Fate, Outcome, Record, Session, UnixMicros};
use crate::server::rows::{self, Type};
use crate::server::{self, Datum, FunctionCallInfo};
use crate::shared;
use crate::verdict;

fn timestamptz(t: UnixMicros) -> i64 {
    t - label::POSTGRES_EPOCH_UNIX_SECONDS * 1_000_000
}

/// One reading of the files.
struct Look {
    /// The running backup's label (content and parsed), when one runs.
    running: Option<(Vec<u8>, BackupLabel)>,
    in_progress: bool,
    record: Option<(Record, Fate)>,
}

fn look() -> Result<Look> {
    let in_recovery = server::recovery_in_progress()?;
    let timeline = if in_recovery {
        None
    } else {
        Some(server::insert_timeline()?)
    };
    let old_label = disk::old_label();
    // Record first: a start writes it before it links the label.
    let record = disk::record();
    let (in_progress, label) = if in_recovery {
        // A label during recovery belongs to the backup being restored.
        (false, None)
    } else {
        match shared::running_backup() {
            // Preload mode: shared memory says whether a backup runs, as
            // for pg_is_in_backup(); a label it does not count is not
            // read, and a damaged one leaves the details to the record.
            Some(None) => (false, None),
            Some(Some(_)) => (true, disk::label().ok().flatten()),
            // As pg_is_in_backup(): an invalid label is an error.
            None => {
                let label = disk::label()?;
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
        let running_label = running.as_ref().map(|(t, _)| t.as_slice());
        let facts = disk::facts(running_label, in_recovery, timeline, old_label.as_ref());
        let fate = verdict::fate(&r, &facts);
        (r, fate)
    });
    Ok(Look {
        running,
        in_progress,
        record,
    })
}

/// The columns, in the order of the SQL definition.
const TYPES: [Type; 22] = [
    Type::Bool,        // in_progress
    Type::Text,        // label
    Type::PgLsn,       // start_lsn
    Type::PgLsn,       // checkpoint_lsn
    Type::Int4,        // start_timeline
    Type::TimestampTz, // start_time
    Type::Interval,    // duration
    Type::Bool,        // fast
    Type::Text,        // started_by
    Type::Text,        // started_from
    Type::Text,        // application_name
    Type::Int4,        // start_pid
    Type::Text,        // database
    Type::Text,        // label_method
    Type::Bool,        // preloaded
    Type::Text,        // last_label
    Type::PgLsn,       // last_stop_lsn
    Type::TimestampTz, // last_end_time
    Type::Text,        // last_outcome
    Type::Text,        // last_stopped_by
    Type::TimestampTz, // last_completed_time
    Type::TimestampTz, // deadline
];

pub fn status(fcinfo: FunctionCallInfo) -> Result<Datum> {
    let mut seen = look()?;
    if matches!(&seen.record, Some((r, Fate::Vanished)) if r.outcome == Outcome::Running) {
        // A start between writing its record and linking its label looks
        // the same for a moment; both happen under the lock, which starts
        // and stops hold for milliseconds. Looked at again with the lock
        // held, if it comes free within two seconds; otherwise (or if it
        // cannot be taken at all) what was seen. A cancel during that wait
        // ends the call, as any cancel does.
        if let Some(again) = disk::settled(&mut server::pause_for_lock, look)? {
            seen = again?;
        }
    }
    let mut values = [0 as Datum; TYPES.len()];
    let mut nulls = [true; TYPES.len()];
    let mut set = |i: usize, v: Datum| {
        values[i] = v;
        nulls[i] = false;
    };
    set(0, seen.in_progress as Datum);
    set(14, shared::preloaded() as Datum);
    let session: Option<&Session> = match &seen.record {
        Some((r, Fate::Current)) if r.outcome == Outcome::Running => r.session.as_ref(),
        _ => None,
    };
    if let Some((_, l)) = &seen.running {
        set(1, rows::text(&l.label)?);
        set(2, l.start_lsn as Datum);
        set(3, l.checkpoint_lsn as Datum);
        set(4, l.start_timeline as Datum);
        let start = match l.start_epoch {
            Some(s) => s,
            None => server::start_time_unix(&l.start_time)?,
        } * 1_000_000;
        set(5, timestamptz(start) as Datum);
        // Only preload mode's standing worker enforces max_duration.
        if shared::preloaded() {
            if let Some(d) = duration::deadline(start, duration::Limits::of(server::settings::duration_seconds())) {
                set(21, timestamptz(d) as Datum);
            }
        }
        set(6, rows::interval(disk::now_micros() - start)?);
        set(13, rows::text(l.method.name().as_bytes())?);
        if let Some(s) = session {
            set(7, s.fast as Datum);
            set(8, rows::text(s.started_by.as_bytes())?);
            if let Some(from) = &s.started_from {
                set(9, rows::text(from.as_bytes())?);
            }
            set(10, rows::text(s.application_name.as_bytes())?);
            set(11, s.pid as Datum);
            set(12, rows::text(s.database.as_bytes())?);
        }
    }
    let (last, completed): (Option<Ended>, Option<UnixMicros>) = match &seen.record {
        Some((r, fate)) => r.history(*fate),
        None => (None, None),
    };
    if let Some(e) = last {
        set(15, rows::text(&e.label)?);
        if let Some(lsn) = e.stop_lsn {
            set(16, lsn as Datum);
        }
        if let Some(t) = e.end_time {
            set(17, timestamptz(t) as Datum);
        }
        set(18, rows::text(e.how.name().as_bytes())?);
        if let Some(by) = &e.stopped_by {
            set(19, rows::text(by.as_bytes())?);
        }
    }
    if let Some(t) = completed {
        set(20, timestamptz(t) as Datum);
    }
    rows::row(fcinfo, &TYPES, &mut values, &mut nulls)
}
