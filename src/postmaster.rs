//! Preload mode: what the library does when it is in
//! shared_preload_libraries, most of it in the postmaster.
//!
//! The server's startup process takes any backup_label it finds for the
//! label of a restored backup. On the live primary that is wrong: with a
//! `streamed` label its crash recovery then stops with "WAL ends before
//! end of online backup", and with either method it copies the backup's
//! start into pg_control, where nothing clears it. So in preload mode the
//! postmaster keeps the primary's own label from the startup process:
//!
//! - right before the startup process is forked (at the first start and
//!   after every crash of a child; in single-user mode before the standalone
//!   backend recovers), [`peb_postmaster_starting`] judges backup_label
//!   (see state.rs) and renames it, with tablespace_map, to `.old` when it
//!   is the one this primary published, or stops the start with a FATAL
//!   when that cannot be decided;
//! - when the postmaster exits, however it does short of being killed,
//!   [`peb_postmaster_exiting`] does the same, as PostgreSQL 14 did at
//!   shutdown, but only ever renames; it cannot refuse anything by then.
//!
//! It also holds the shared memory from which pg_is_in_backup() and
//! pg_backup_start_time() answer in preload mode, and the settings.

use std::ffi::c_char;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, Ordering};

use crate::bindings as pg;
use crate::boundary::{guarded, report, Level};
use crate::error::Result;
use crate::files::{self, data_dir, Entry, BACKUP_LABEL, BACKUP_LABEL_OLD, TABLESPACE_MAP, TABLESPACE_MAP_OLD};
use crate::label::{BackupLabel, Method, MAX_FILE_BYTES};
use crate::state::{FileId, Outcome, Record, MAX_STATE_BYTES, STATE_FILE};
use crate::verdict::{self, describe, LabelFile, Refusal, Unusable, Verdict, CONTROL_FILE};

/// Set in _PG_init when it runs from shared_preload_libraries; every
/// process forked from the postmaster inherits it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// What preload mode adds, for the notices given without it.
pub const WITHOUT_PRELOAD: &str = "Without it, a restored copy of an exclusive backup is taken to be consistent \
     as soon as recovery has replayed up to the backup's start, and a primary that crashes during a backup \
     may need backup_label moved away by hand before it starts again.";
pub const PRELOAD_HINT: &str = "Add pg_exclusive_backup to shared_preload_libraries and restart the server: \
     labels then say \"BACKUP METHOD: streamed\", so that restored copies are recovered as pg_basebackup's \
     are, and the postmaster keeps the primary's own label from its startup process.";

/// The short form, for every pg_start_backup without preload mode.
pub const NOTICE_HINT: &str = "In preload mode a restored copy of this backup would be consistent only at its \
     end, as a pg_basebackup copy is, and the primary would restart by itself after a crash during it.";

/// _PG_init.
pub fn init() -> Result<()> {
    // SAFETY: plain shim calls; the closures own nothing.
    unsafe { guarded(|| pg::peb_define_settings()) }?;
    // SAFETY: reads a server flag.
    if unsafe { pg::peb_preload_in_progress() } {
        PRELOADED.store(true, Ordering::Relaxed);
        // SAFETY: sets hook pointers; called once, from _PG_init.
        unsafe { pg::peb_install_preload_hooks() };
    // SAFETY: reads a server flag.
    } else if unsafe { pg::peb_creating_extension() } {
        report(
            Level::Warning,
            "pg_exclusive_backup is not in shared_preload_libraries",
            Some(WITHOUT_PRELOAD),
            Some(PRELOAD_HINT),
        );
    }
    Ok(())
}

/// The BACKUP METHOD pg_start_backup writes (pg_exclusive_backup.label_method).
pub fn label_method() -> Method {
    // SAFETY: reads a setting variable.
    match unsafe { pg::peb_label_method_setting() } as u32 {
        pg::PEB_METHOD_STREAMED => Method::Streamed,
        pg::PEB_METHOD_PG_START_BACKUP => Method::Exclusive,
        _ if preloaded() => Method::Streamed,
        _ => Method::Exclusive,
    }
}

pub fn require_preload() -> bool {
    // SAFETY: reads a setting variable.
    unsafe { pg::peb_require_preload_setting() }
}

// ---------------------------------------------------------------------
// Shared memory
// ---------------------------------------------------------------------

/// The running exclusive backup's start (TimestampTz), or NO_BACKUP.
/// Written only with the lock file held, right after backup_label appeared
/// or was taken away; each restart begins with no backup, since the
/// postmaster has just renamed any label of this primary's.
#[repr(C)]
struct Shared {
    start_time: AtomicI64,
}

const NO_BACKUP: i64 = i64::MIN;

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());

#[no_mangle]
extern "C" fn peb_shared_size() -> usize {
    std::mem::size_of::<Shared>()
}

#[no_mangle]
extern "C" fn peb_shared_attached(shared: *mut std::ffi::c_void, found: bool) {
    let shared = shared as *mut Shared;
    if !found {
        // SAFETY: ShmemInitStruct returned at least size_of::<Shared>()
        // MAXALIGNed bytes, new and ours alone so far.
        unsafe {
            shared.write(Shared {
                start_time: AtomicI64::new(NO_BACKUP),
            })
        };
    }
    SHARED.store(shared, Ordering::Release);
}

fn shared() -> Option<&'static Shared> {
    if !preloaded() {
        return None;
    }
    // SAFETY: set by the postmaster at every shared memory initialisation
    // (its first start and each crash restart), before the processes that
    // read it are forked; mapped for as long as this process lives.
    unsafe { SHARED.load(Ordering::Acquire).as_ref() }
}

/// In preload mode, `Some` with the running backup's start (TimestampTz),
/// if one runs; `None` without preload mode.
pub fn running_backup() -> Option<Option<i64>> {
    let t = shared()?.start_time.load(Ordering::Acquire);
    Some((t != NO_BACKUP).then_some(t))
}

/// Records in shared memory that a backup started (its TimestampTz) or
/// ended (`None`); the caller holds the lock file.
pub fn set_running_backup(start: Option<i64>) {
    if let Some(s) = shared() {
        s.start_time.store(start.unwrap_or(NO_BACKUP), Ordering::Release);
    }
}

// ---------------------------------------------------------------------
// The postmaster's side
// ---------------------------------------------------------------------

/// Set when the start was refused, so that the exit that follows the FATAL
/// does not judge again.
static REFUSED: AtomicBool = AtomicBool::new(false);
static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// What made the postmaster end the backup: the words of its log line.
#[derive(Clone, Copy)]
enum Occasion {
    /// The first start of this postmaster; whether pg_control says the
    /// server before it was shut down cleanly.
    FirstStart {
        shut_down: bool,
    },
    CrashRestart,
    Exit,
}

/// What the postmaster saw, and its verdict.
struct Look {
    verdict: Verdict,
    /// backup_label's content and identity, when it has them.
    content: Vec<u8>,
    id: Option<FileId>,
}

/// A signal file as the server sees it: stat(2), so a dangling symlink is
/// no signal file.
fn signal_file(name: &str) -> bool {
    std::fs::metadata(data_dir().join(name)).is_ok()
}

/// What puts part of the data directory on another file system than the
/// rest: pg_wal or a tablespace elsewhere.
/// (Anything that cannot be examined counts, as a reason to refuse.)
fn several_file_systems() -> Option<String> {
    let dev = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.dev());
    let here = match dev(data_dir()) {
        Ok(d) => d,
        Err(e) => return Some(format!("the data directory cannot be examined ({e})")),
    };
    match dev(&data_dir().join("pg_wal")) {
        Ok(d) if d == here => {}
        Ok(_) => return Some("pg_wal is on another file system than the data directory".into()),
        Err(e) => return Some(format!("pg_wal cannot be examined ({e})")),
    }
    let entries = match std::fs::read_dir(data_dir().join("pg_tblspc")) {
        Ok(entries) => entries,
        Err(e) => return Some(format!("pg_tblspc cannot be read ({e})")),
    };
    for e in entries {
        let e = match e {
            Ok(e) => e,
            Err(e) => return Some(format!("pg_tblspc cannot be read ({e})")),
        };
        let name = e.file_name().to_string_lossy().into_owned();
        match dev(&e.path()) {
            Ok(d) if d == here => {}
            Ok(_) => {
                return Some(format!(
                    "tablespace {name} is on another file system than the data directory"
                ))
            }
            Err(err) => return Some(format!("tablespace {name} cannot be examined ({err})")),
        }
    }
    None
}

/// Judges what is in the data directory (see verdict.rs); `first_start`:
/// nothing is known about its past, the postmaster having just started.
fn look(first_start: bool) -> Look {
    let signal = signal_file("recovery.signal") || signal_file("standby.signal");
    let label_entry = if signal {
        Entry::Absent
    } else {
        files::examine(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES)
    };
    let id = match label_entry {
        Entry::Absent => None,
        _ => Some(files::file_id(&data_dir().join(BACKUP_LABEL)).map_err(|e| crate::error::strerror(&e))),
    };
    let label = match (&label_entry, &id) {
        (Entry::Absent, _) | (_, None) => None,
        (Entry::File { head, size }, Some(id)) => Some(LabelFile {
            id: id.clone(),
            size: *size,
            content: Ok(head.as_slice()),
        }),
        (Entry::NotAFile(kind), Some(id)) => Some(LabelFile {
            id: id.clone(),
            size: 0,
            content: Err(format!("it is {kind}")),
        }),
        (Entry::Unreadable(why), Some(id)) => Some(LabelFile {
            id: id.clone(),
            size: 0,
            content: Err(format!("it {why}")),
        }),
    };
    let record_entry = files::examine(data_dir(), STATE_FILE, MAX_STATE_BYTES);
    let record = match &record_entry {
        Entry::Absent => None,
        Entry::File { head, .. } => Some(Ok(head.as_slice())),
        Entry::NotAFile(kind) => Some(Err(Unusable {
            why: format!("is {kind}"),
            not_a_file: true,
        })),
        Entry::Unreadable(why) => Some(Err(Unusable {
            why: why.clone(),
            not_a_file: false,
        })),
    };
    let spans = if first_start && label.is_some() {
        several_file_systems()
    } else {
        None
    };
    let verdict = verdict::judge(&verdict::Found {
        signal_file: signal,
        label,
        record,
        control_file: files::file_id(&data_dir().join(CONTROL_FILE)).ok(),
        several_file_systems: spans.as_deref(),
    });
    let content = match label_entry {
        Entry::File { head, .. } => head,
        _ => Vec::new(),
    };
    Look {
        verdict,
        content,
        id: id.and_then(|id| id.ok()),
    }
}

/// Whether global/pg_control says the server was shut down cleanly.
fn control_file_says_shut_down() -> bool {
    match files::examine(data_dir(), CONTROL_FILE, 64) {
        Entry::File { head, .. } => {
            let at = pg::PEB_CONTROL_STATE_OFFSET as usize;
            head.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .is_some_and(|b| i32::from_ne_bytes(b) == pg::PEB_DB_SHUTDOWNED as i32)
        }
        _ => false,
    }
}

/// Renames backup_label and tablespace_map to `.old`, durably, records the
/// outcome, and then logs as PostgreSQL 14 did (the work first: a failure
/// to log must not leave it half done). `Err` when backup_label itself
/// could not be renamed, for the caller to report. The caller holds the
/// lock file and has judged the label with it held.
fn cancel(
    label: &BackupLabel,
    content: &[u8],
    id: Option<FileId>,
    occasion: Occasion,
) -> std::result::Result<(), Refusal> {
    let mut not_durable = None;
    let exists = |name: &str| std::fs::symlink_metadata(data_dir().join(name)).is_ok();
    match files::rename(data_dir(), BACKUP_LABEL, BACKUP_LABEL_OLD) {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        // Renamed, but the directory could not be fsynced.
        Err(e) if !exists(BACKUP_LABEL) && exists(BACKUP_LABEL_OLD) => not_durable = Some(e.to_string()),
        Err(e) => {
            return Err(Refusal::NotRenamed {
                label: label.clone(),
                error: e.to_string(),
                blocking: files::blocking(data_dir(), BACKUP_LABEL_OLD),
            })
        }
    }
    // files::rename says itself whether there was a map to rename.
    let map = match files::rename(data_dir(), TABLESPACE_MAP, TABLESPACE_MAP_OLD) {
        Ok(false) => None,
        renamed => Some(renamed),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    // The record was judged to describe this label: it keeps who started
    // the backup, pg_control's identity and the history.
    let kept = match files::examine(data_dir(), STATE_FILE, MAX_STATE_BYTES) {
        Entry::File { head, .. } => Record::parse(&head).ok().filter(|r| r.label == content),
        _ => None,
    };
    let record = Record {
        label_file: id.unwrap_or(FileId {
            dev: 0,
            ino: 0,
            birth: None,
        }),
        control_file: kept
            .as_ref()
            .and_then(|r| r.control_file)
            .or_else(|| files::file_id(&data_dir().join(CONTROL_FILE)).ok()),
        outcome: Outcome::EndedByRestart { at: now },
        session: kept.as_ref().and_then(|r| r.session.clone()),
        previous: kept.as_ref().and_then(|r| r.previous.clone()),
        last_completed: kept.as_ref().and_then(|r| r.last_completed),
        label: content.to_vec(),
    };
    let recorded = files::replace(data_dir(), STATE_FILE, &record.to_bytes());

    match map {
        None => report(
            Level::Log,
            "online backup mode canceled",
            Some(&format!(
                "File \"{BACKUP_LABEL}\" was renamed to \"{BACKUP_LABEL_OLD}\"."
            )),
            None,
        ),
        Some(Ok(_)) => report(
            Level::Log,
            "online backup mode canceled",
            Some(&format!(
                "Files \"{BACKUP_LABEL}\" and \"{TABLESPACE_MAP}\" were renamed to \"{BACKUP_LABEL_OLD}\" and \
                 \"{TABLESPACE_MAP_OLD}\", respectively."
            )),
            None,
        ),
        Some(Err(e)) => report(
            Level::Warning,
            "online backup mode canceled",
            Some(&format!(
                "File \"{BACKUP_LABEL}\" was renamed to \"{BACKUP_LABEL_OLD}\", but {e}."
            )),
            files::blocking(data_dir(), TABLESPACE_MAP_OLD)
                .map(|_| format!("Move \"{TABLESPACE_MAP_OLD}\" out of the data directory."))
                .as_deref(),
        ),
    }
    let why = match occasion {
        Occasion::FirstStart { shut_down: true } => "the server was shut down during it",
        Occasion::FirstStart { shut_down: false } => "the server had not been shut down cleanly",
        Occasion::CrashRestart => "a server process crashed and the server restarted",
        Occasion::Exit => "the server shut down",
    };
    report(
        Level::Log,
        &format!("pg_exclusive_backup: {} was ended: {why}", describe(label)),
        Some("The copy taken during this backup is not a valid backup. Take a new one with pg_start_backup()."),
        None,
    );
    if let Some(e) = not_durable {
        report(
            Level::Warning,
            &format!("the rename of \"{BACKUP_LABEL}\" may not be durable"),
            Some(&e),
            None,
        );
    }
    if let Err(e) = recorded {
        report(
            Level::Warning,
            &format!("pg_exclusive_backup could not record the end of the backup in \"{STATE_FILE}\""),
            Some(&e.to_string()),
            None,
        );
    }
    Ok(())
}

/// The lock file, taken as a start or stop takes it, waiting at most
/// `ms` for another holder (only a process of a server that is going away,
/// or someone else's, can hold it here). `Err`: why not, as the end of a
/// sentence, and whether another process holds it.
fn lock_for_postmaster(ms: u64) -> std::result::Result<files::DirLock, (String, bool)> {
    let began = std::time::Instant::now();
    loop {
        match files::DirLock::try_acquire(data_dir()) {
            Ok(Some(lock)) => return Ok(lock),
            Ok(None) if began.elapsed().as_millis() < u128::from(ms) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Ok(None) => return Err(("another process holds it".into(), true)),
            Err(e) => {
                let why = match files::blocking(data_dir(), files::LOCK_FILE) {
                    Some(kind) => format!("\"{}\" in the data directory is {kind}", files::LOCK_FILE),
                    None => format!("taking it failed: {e}"),
                };
                return Err((why, false));
            }
        }
    }
}

fn starting() -> std::result::Result<(), Refusal> {
    let occasion = if STARTS.fetch_add(1, Ordering::Relaxed) == 0 {
        Occasion::FirstStart {
            shut_down: control_file_says_shut_down(),
        }
    } else {
        Occasion::CrashRestart
    };
    let first = matches!(occasion, Occasion::FirstStart { .. });
    let mut found = look(first);
    let _lock;
    if let Verdict::Live(label) = &found.verdict {
        // No other process of this server is alive now, but the lock is
        // taken all the same, and the verdict made again under it.
        _lock = lock_for_postmaster(5000).map_err(|(why, held)| Refusal::Unlocked {
            label: label.clone(),
            why,
            held,
        })?;
        found = look(first);
    }
    match found.verdict {
        Verdict::NoLabel | Verdict::Recovery | Verdict::NotOurs => Ok(()),
        Verdict::Copy(label) => {
            report(
                Level::Log,
                &format!(
                    "pg_exclusive_backup: \"{BACKUP_LABEL}\" is a copy of the label of {}, not this server's own; \
                     recovery will use it",
                    describe(&label)
                ),
                None,
                None,
            );
            Ok(())
        }
        Verdict::Live(label) => cancel(&label, &found.content, found.id, occasion),
        Verdict::Refuse(refusal) => Err(refusal),
    }
}

fn copy_out(text: &str, buf: *mut c_char, len: usize) {
    if buf.is_null() || len == 0 {
        return;
    }
    let mut n = text.len().min(len - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `buf` has room for `len` bytes, of which we write n + 1.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
}

/// The shmem startup hook's judgement, in the postmaster or a single-user
/// backend. `false`: the caller raises FATAL with the texts written into
/// the three buffers of `len` bytes each.
#[no_mangle]
extern "C" fn peb_postmaster_starting(
    message: *mut c_char,
    detail: *mut c_char,
    hint: *mut c_char,
    len: usize,
) -> bool {
    let refusal = match std::panic::catch_unwind(starting) {
        Ok(Ok(())) => return true,
        Ok(Err(r)) => r,
        Err(_) => Refusal::Internal,
    };
    REFUSED.store(true, Ordering::Relaxed);
    let t = std::panic::catch_unwind(|| verdict::texts(&refusal)).unwrap_or_else(|_| verdict::Texts {
        message: "pg_exclusive_backup failed while checking backup_label".into(),
        detail: String::new(),
        hint: String::new(),
    });
    copy_out(&t.message, message, len);
    copy_out(&t.detail, detail, len);
    copy_out(&t.hint, hint, len);
    false
}

/// At exit, what kept the postmaster from renaming this primary's label:
/// the next start tries again.
fn not_canceled(refusal: &Refusal) {
    let t = verdict::texts(refusal);
    report(
        Level::Warning,
        &t.message,
        Some(&format!("Online backup mode was not canceled. {}", t.detail)),
        Some(&t.hint),
    );
}

/// The postmaster's exit callback.
#[no_mangle]
extern "C" fn peb_postmaster_exiting() {
    if REFUSED.load(Ordering::Relaxed) {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        let found = look(false);
        match found.verdict {
            Verdict::Live(label) => {
                // A postmaster that exits abnormally may leave children
                // behind for a moment; one of them may be changing the
                // files.
                let _lock = match lock_for_postmaster(0) {
                    Ok(lock) => lock,
                    Err((why, held)) => {
                        not_canceled(&Refusal::Unlocked { label, why, held });
                        return;
                    }
                };
                let found = look(false);
                if let Verdict::Live(label) = found.verdict {
                    if let Err(refusal) = cancel(&label, &found.content, found.id, Occasion::Exit) {
                        not_canceled(&refusal);
                    }
                }
            }
            Verdict::Refuse(refusal) => {
                let t = verdict::texts(&refusal);
                report(Level::Warning, &t.message, Some(&t.detail), Some(&t.hint));
            }
            _ => {}
        }
    });
}
