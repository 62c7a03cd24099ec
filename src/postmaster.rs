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
use crate::files::{self, data_dir, BACKUP_LABEL, BACKUP_LABEL_OLD, TABLESPACE_MAP};
use crate::label::{self, BackupLabel, Method, MAX_FILE_BYTES};
use crate::server;
use crate::state::{self, FileId, Outcome, Record, Verdict, MAX_STATE_BYTES, STATE_FILE};

pub const TABLESPACE_MAP_OLD: &str = "tablespace_map.old";

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
    FirstStart,
    CrashRestart,
    Exit,
}

struct Found {
    verdict: Verdict,
    content: Vec<u8>,
    id: Option<FileId>,
}

fn exists(name: &str) -> bool {
    std::fs::symlink_metadata(data_dir().join(name)).is_ok()
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

/// Judges what is in the data directory (see state.rs); `first_start`:
/// nothing is known about its past, the postmaster having just started.
fn look(first_start: bool) -> Found {
    let signal = signal_file("recovery.signal") || signal_file("standby.signal");
    let unreadable = |why: String| Found {
        verdict: Verdict::Undecidable { label: None, why },
        content: Vec::new(),
        id: None,
    };
    let label = if signal {
        None
    } else {
        match files::read_optional(data_dir(), BACKUP_LABEL, MAX_FILE_BYTES) {
            Ok(Some(text)) => match files::file_id(&data_dir().join(BACKUP_LABEL)) {
                Ok(id) => Some((text, id)),
                Err(e) => return unreadable(format!("its inode could not be read: {e}")),
            },
            Ok(None) => None,
            // Not a regular file, too big, unreadable: the startup process
            // would make something of it, or fail; it decides nothing.
            Err(e) => return unreadable(format!("it cannot be read: {e}")),
        }
    };
    let record = match files::read_optional(data_dir(), STATE_FILE, MAX_STATE_BYTES) {
        Ok(Some(bytes)) => Some(Ok(bytes)),
        Ok(None) => None,
        Err(e) => Some(Err(e.to_string())),
    };
    let spans = if first_start && label.is_some() {
        several_file_systems()
    } else {
        None
    };
    let verdict = state::judge(
        signal,
        label.as_ref().map(|(t, id)| (t.as_slice(), *id)),
        record,
        spans.as_deref(),
    );
    let (content, id) = label.map_or((Vec::new(), None), |(t, id)| (t, Some(id)));
    Found { verdict, content, id }
}

fn describe(label: &BackupLabel) -> String {
    format!(
        "exclusive backup \"{}\" started at {}",
        server::text_for_message(&label.label),
        label.start_time
    )
}

/// A FATAL for the C half to raise once no Rust frame is left.
struct Refusal {
    message: String,
    detail: String,
    hint: String,
}

fn undecidable(label: Option<&BackupLabel>, why: &str) -> Refusal {
    // The texts have room for the longest label, escaped (see shim.c).
    let what = match label {
        Some(l) => format!("\"{BACKUP_LABEL}\" is the label of the {}", describe(l)),
        None => format!("\"{BACKUP_LABEL}\" is in the data directory"),
    };
    Refusal {
        message: format!(
            "pg_exclusive_backup cannot tell whether \"{BACKUP_LABEL}\" is this server's own or a restored backup's"
        ),
        detail: format!("{what}, but {why}."),
        hint: format!(
            "If this data directory is a restored backup, create \"recovery.signal\" (or \"standby.signal\") \
             in it and start the server again. If it is the primary that was running this backup, the backup \
             is void: rename \"{BACKUP_LABEL}\" to \"{BACKUP_LABEL_OLD}\" (and \"{TABLESPACE_MAP}\" to \
             \"{TABLESPACE_MAP_OLD}\", if there is one) and start the server again. Never do that in a \
             restored backup."
        ),
    }
}

/// Renames backup_label and tablespace_map to `.old`, durably, records the
/// outcome, and then logs as PostgreSQL 14 did (the work first: a failure
/// to log must not leave it half done). `Err` when backup_label itself
/// could not be renamed (the message has been logged). The caller holds
/// the lock file and has judged the label with it held.
fn cancel(
    label: &BackupLabel,
    content: &[u8],
    id: Option<FileId>,
    occasion: Occasion,
) -> std::result::Result<(), String> {
    let mut not_durable = None;
    match files::rename(data_dir(), BACKUP_LABEL, BACKUP_LABEL_OLD) {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        // Renamed, but the directory could not be fsynced.
        Err(e) if !exists(BACKUP_LABEL) && exists(BACKUP_LABEL_OLD) => not_durable = Some(e.to_string()),
        Err(e) => {
            let e = e.to_string();
            report(
                Level::Warning,
                "online backup mode was not canceled",
                Some(&format!(
                    "File \"{BACKUP_LABEL}\" could not be renamed to \"{BACKUP_LABEL_OLD}\": {e}."
                )),
                None,
            );
            return Err(e);
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
    // the backup and the history.
    let kept = files::read_optional(data_dir(), STATE_FILE, MAX_STATE_BYTES)
        .ok()
        .flatten()
        .and_then(|b| Record::parse(&b).ok())
        .filter(|r| r.label == content);
    let record = Record {
        label_file: id.unwrap_or(FileId {
            dev: 0,
            ino: 0,
            birth: None,
        }),
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
                "File \"{BACKUP_LABEL}\" was renamed to \"{BACKUP_LABEL_OLD}\", but file \"{TABLESPACE_MAP}\" \
                 could not be renamed to \"{TABLESPACE_MAP_OLD}\": {e}."
            )),
            None,
        ),
    }
    let why = match occasion {
        Occasion::FirstStart => "the server had not been shut down cleanly",
        Occasion::CrashRestart => "a server process crashed and the server restarted",
        Occasion::Exit => "the server shut down",
    };
    report(
        Level::Log,
        &format!("pg_exclusive_backup: the {} was ended: {why}", describe(label)),
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
/// or someone else's, can hold it here).
fn lock_for_postmaster(ms: u64) -> std::result::Result<files::DirLock, String> {
    let began = std::time::Instant::now();
    loop {
        match files::DirLock::try_acquire(data_dir()) {
            Ok(Some(lock)) => return Ok(lock),
            Ok(None) if began.elapsed().as_millis() < u128::from(ms) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Ok(None) => return Err(format!("another process holds \"{}\"", files::LOCK_FILE)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn starting() -> std::result::Result<(), Refusal> {
    let occasion = if STARTS.fetch_add(1, Ordering::Relaxed) == 0 {
        Occasion::FirstStart
    } else {
        Occasion::CrashRestart
    };
    let first = matches!(occasion, Occasion::FirstStart);
    let mut found = look(first);
    let _lock;
    if matches!(found.verdict, Verdict::Live(_)) {
        // No other process of this server is alive now, but the lock is
        // taken all the same, and the verdict made again under it.
        _lock = lock_for_postmaster(5000).map_err(|why| {
            let label = label::parse(&found.content).ok();
            undecidable(label.as_ref(), &why)
        })?;
        found = look(first);
    }
    match found.verdict {
        Verdict::NoLabel | Verdict::Recovery | Verdict::NotOurs => Ok(()),
        Verdict::Copy => {
            if let Ok(parsed) = label::parse(&found.content) {
                report(
                    Level::Log,
                    &format!(
                        "pg_exclusive_backup: \"{BACKUP_LABEL}\" is a copy of the label of the {}, not this \
                         server's own; recovery will use it",
                        describe(&parsed)
                    ),
                    None,
                    None,
                );
            }
            Ok(())
        }
        Verdict::Live(label) => cancel(&label, &found.content, found.id, occasion).map_err(|e| Refusal {
            message: format!("could not rename file \"{BACKUP_LABEL}\" to \"{BACKUP_LABEL_OLD}\": {e}"),
            detail: format!(
                "It is the label of the {}, which this server was running; the startup process would take \
                 it for a restored backup's.",
                describe(&label)
            ),
            hint: format!(
                "Rename \"{BACKUP_LABEL}\" to \"{BACKUP_LABEL_OLD}\" (and \"{TABLESPACE_MAP}\" to \
                 \"{TABLESPACE_MAP_OLD}\", if there is one) and start the server again."
            ),
        }),
        Verdict::Undecidable { label, why } => Err(undecidable(label.as_ref(), &why)),
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
        Err(_) => Refusal {
            message: "pg_exclusive_backup failed while checking backup_label".into(),
            detail: String::new(),
            hint: "Report this as a bug; see the server log.".into(),
        },
    };
    REFUSED.store(true, Ordering::Relaxed);
    copy_out(&refusal.message, message, len);
    copy_out(&refusal.detail, detail, len);
    copy_out(&refusal.hint, hint, len);
    false
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
            Verdict::Live(_) => {
                // A postmaster that exits abnormally may leave children
                // behind for a moment; one of them may be changing the
                // files.
                let _lock = match lock_for_postmaster(0) {
                    Ok(lock) => lock,
                    Err(why) => {
                        report(
                            Level::Warning,
                            "online backup mode was not canceled",
                            Some(&format!("The lock file could not be taken: {why}.")),
                            None,
                        );
                        return;
                    }
                };
                let found = look(false);
                if let Verdict::Live(label) = found.verdict {
                    let _ = cancel(&label, &found.content, found.id, Occasion::Exit);
                }
            }
            Verdict::Undecidable { label, why } => {
                let r = undecidable(label.as_ref(), &why);
                report(Level::Warning, &r.message, Some(&r.detail), Some(&r.hint));
            }
            _ => {}
        }
    });
}
