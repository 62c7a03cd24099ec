//! Races, hostile files and faults that must not leave the server and the
//! label disagreeing. Each test holds one side of a race open with the
//! delay points of the test build (src/hooks.rs, `set_test_pause`) and
//! checks the invariant afterwards: backup_label present exactly when
//! pg_is_in_backup() says so, and no full-page writes forced once no backup
//! runs.

mod common;

use std::os::unix::fs::symlink;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use postgres::error::SqlState;
use postgres::Client;

const NOT_READY: &SqlState = &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE;

/// [`common::probed_cluster`], checked: nothing forces full-page writes yet.
fn probed(settings: &[&str]) -> (Cluster, Client) {
    let (c, mut s) = probed_cluster(settings);
    assert_no_forced_fpi(&mut s, "before the test");
    (c, s)
}

/// The invariant once nothing runs: no label, no backup counted, no
/// full-page writes forced, no crash in the log.
#[track_caller]
fn assert_quiet(c: &Cluster, s: &mut Client, when: &str) {
    assert!(!c.exists("backup_label"), "{when}: backup_label is there");
    assert!(!in_backup(s), "{when}: pg_is_in_backup() is true");
    assert_no_forced_fpi(s, when);
    c.assert_log_clean();
}

/// The pid in the log line that announces a test pause at `point`.
fn paused_pid(c: &Cluster, point: &str, from: usize) -> i32 {
    let needle = format!("test pause at {point}");
    let mut pid = 0;
    wait_until(&format!("the pause at {point}"), Duration::from_secs(30), || {
        let log = c.log();
        if let Some(line) = log[from.min(log.len())..].lines().find(|l| l.contains(&needle)) {
            pid = line
                .split('[')
                .nth(1)
                .and_then(|r| r.split(']').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            true
        } else {
            false
        }
    });
    assert!(pid > 0, "no pid in the pause line");
    pid
}

/// Issue 10.1: the caller of pg_start_backup is cancelled while its worker
/// has just put backup_label in place, and another session stops that
/// backup meanwhile. The backup is started exactly once and stopped
/// exactly once: the server's backup counter is back to zero (no forced
/// full-page writes), and the caller hears that its start succeeded.
#[test]
fn cancelled_start_and_concurrent_stop_keep_the_count() {
    let (c, mut s) = probed(&[]);
    set_test_pause(&c, "worker_published:3000");
    let from = c.log().len();
    let mut starter = c.connect();
    let starter_pid = pid_of(&mut starter);
    let h = thread::spawn(move || {
        starter
            .query_one("SELECT pg_start_backup('raced', true)", &[])
            .map(|_| ())
    });
    paused_pid(&c, "worker_published", from);
    assert!(c.exists("backup_label"), "the label is in place during the pause");
    let cancelled: bool = s
        .query_one("SELECT pg_cancel_backend($1)", &[&starter_pid])
        .unwrap()
        .get(0);
    assert!(cancelled);
    // The label is visible and owned by the running backup: stoppable.
    stop_backup(&mut s, false);
    let started = h.join().unwrap();
    assert!(
        started.is_ok(),
        "the start was committed, so it reports success: {started:?}"
    );
    set_test_pause(&c, "");
    assert_quiet(&c, &mut s, "after the raced start and stop");
    let b = start_backup(&mut s, "afterwards");
    assert!(b > 0);
    stop_backup(&mut s, false);
    assert_quiet(&c, &mut s, "after one more cycle");
}

/// Issue 10.1, the other side: cancelled while the worker is still in the
/// checkpoint part of the start (before anything is published), the start
/// is abandoned and undone.
#[test]
fn cancel_before_the_commit_abandons_the_start() {
    let (c, mut s) = probed(&[]);
    set_test_pause(&c, "worker_started:2000");
    let from = c.log().len();
    let mut starter = c.connect();
    let starter_pid = pid_of(&mut starter);
    let h = thread::spawn(move || {
        starter
            .query_one("SELECT pg_start_backup('abandoned', true)", &[])
            .map(|_| ())
    });
    paused_pid(&c, "worker_started", from);
    let _: bool = s
        .query_one("SELECT pg_cancel_backend($1)", &[&starter_pid])
        .unwrap()
        .get(0);
    let e = db_error(h.join().unwrap(), &SqlState::QUERY_CANCELED);
    assert_eq!(e.message(), "canceling statement due to user request");
    // The caller returned only once the worker had undone the start.
    assert_eq!(c.names_starting_with("backup_label"), Vec::<String>::new());
    set_test_pause(&c, "");
    assert_quiet(&c, &mut s, "after the abandoned start");
}

/// Issue 10.2: a stop held just after it took the label away, while a new
/// backup starts (with a tablespace, so with a map): the stop must not
/// delete the new backup's tablespace_map.
#[test]
fn stop_leaves_a_newer_backups_tablespace_map_alone() {
    let (c, mut s) = probed(&[]);
    let dir = c.make_dir("ts");
    s.batch_execute(&format!("CREATE TABLESPACE ts LOCATION '{}'", dir.display()))
        .unwrap();
    start_backup(&mut s, "first");
    let first_map = c.read_string("tablespace_map").expect("a map");
    let mut stopper = c.connect();
    stopper
        .batch_execute("SET pg_exclusive_backup.test_pause = 'stop_claimed:3000'")
        .unwrap();
    let from = c.log().len();
    let h = thread::spawn(move || stopper.query_one("SELECT pg_stop_backup(false)", &[]).map(|_| ()));
    paused_pid(&c, "stop_claimed", from);
    assert!(!c.exists("backup_label"));
    assert!(
        !c.exists("tablespace_map"),
        "the stop removes the map together with the label"
    );
    let mut other = c.connect();
    start_backup(&mut other, "second");
    h.join().unwrap().expect("the first backup stops");
    let label = c.read_string("backup_label").expect("the second backup's label");
    assert!(label.contains("LABEL: second\n"), "{label}");
    assert_eq!(
        c.read_string("tablespace_map"),
        Some(first_map),
        "the second backup's map"
    );
    assert!(in_backup(&mut s));
    stop_backup(&mut s, false);
    assert!(!c.exists("tablespace_map"));
    assert_quiet(&c, &mut s, "after both backups");
}

/// Runs `sql` on a new connection in a thread; the error (if any) within
/// `limit`, or a failure saying the call hung.
fn answers_within(c: &Cluster, sql: &str, limit: Duration) -> Result<(), postgres::Error> {
    let (tx, rx) = mpsc::channel();
    let mut client = c.connect();
    let owned = sql.to_string();
    thread::spawn(move || {
        let _ = tx.send(client.batch_execute(&owned));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{sql} did not answer within {limit:?}"))
}

/// What `kind` puts under `name` in the data directory.
fn put_hostile(c: &Cluster, name: &str, kind: &str, outside: &std::path::Path) {
    let p = c.path(name);
    match kind {
        "fifo" => {
            let cpath = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            // SAFETY: plain libc call with a valid path.
            assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
        }
        "socket" => {
            let l = std::os::unix::net::UnixListener::bind(&p).unwrap();
            std::mem::forget(l);
        }
        "directory" => std::fs::create_dir(&p).unwrap(),
        "symlink" => symlink(outside, &p).unwrap(),
        _ => unreachable!(),
    }
    install().chown(&p);
}

fn remove_hostile(c: &Cluster, name: &str) {
    let p = c.path(name);
    if std::fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false) {
        std::fs::remove_dir_all(&p).unwrap();
    } else {
        std::fs::remove_file(&p).unwrap();
    }
}

/// Issue 10.3: a FIFO, a socket, a directory or a symlink (to a valid
/// label outside the data directory) where backup_label, backup_label.old
/// or tablespace_map belong. Every function answers at once, with 42809
/// naming the file, or ignores backup_label.old; none follows the symlink.
#[test]
fn non_regular_files_are_refused_at_once() {
    let (c, mut s) = probed(&[]);
    // A valid label, to see that the symlink is not followed.
    start_backup(&mut s, "real");
    let outside = c.root().join("outside_label");
    std::fs::copy(c.path("backup_label"), &outside).unwrap();
    install().chown(&outside);
    stop_backup(&mut s, false);
    let limit = Duration::from_secs(10);
    let not_regular = |name: &str| format!("\"{name}\" in the data directory is not a regular file");

    for kind in ["fifo", "socket", "directory", "symlink"] {
        put_hostile(&c, "backup_label", kind, &outside);
        for sql in [
            "SELECT pg_is_in_backup()",
            "SELECT pg_backup_start_time()",
            "SELECT pg_stop_backup(false)",
            "SELECT pg_start_backup('x', true)",
        ] {
            let t = Instant::now();
            let e = db_error(answers_within(&c, sql, limit), &SqlState::WRONG_OBJECT_TYPE);
            assert_eq!(e.message(), not_regular("backup_label"), "{kind}: {sql}");
            assert!(
                e.detail().unwrap().starts_with("It is a"),
                "{kind}: {sql}: {:?}",
                e.detail()
            );
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{kind}: {sql} took {:?}",
                t.elapsed()
            );
        }
        remove_hostile(&c, "backup_label");

        put_hostile(&c, "backup_label.old", kind, &outside);
        let e = db_error(answers_within(&c, "SELECT pg_stop_backup(false)", limit), NOT_READY);
        assert_eq!(e.message(), "exclusive backup not in progress", "{kind}");
        answers_within(&c, "SELECT pg_is_in_backup()", limit).unwrap();
        remove_hostile(&c, "backup_label.old");

        put_hostile(&c, "tablespace_map", kind, &outside);
        let e = db_error(
            answers_within(&c, "SELECT pg_start_backup('x', true)", limit),
            &SqlState::WRONG_OBJECT_TYPE,
        );
        assert_eq!(e.message(), not_regular("tablespace_map"), "{kind}");
        remove_hostile(&c, "tablespace_map");
        assert_quiet(&c, &mut s, kind);
    }
    assert_eq!(
        std::fs::read(&outside).unwrap().is_empty(),
        false,
        "the outside file is untouched"
    );
}

fn set_log_timezone(c: &Cluster, zone: &str) {
    reload_setting(c, "log_timezone", zone);
}

fn start_epoch_now(s: &mut Client) -> f64 {
    s.query_one("SELECT extract(epoch FROM pg_backup_start_time())::float8", &[])
        .unwrap()
        .get(0)
}

/// Issue 10.4: pg_backup_start_time() must not move when log_timezone,
/// timezone or timezone_abbreviations change after the start.
#[test]
fn start_time_does_not_move_with_later_settings() {
    let (c, mut s) = probed(&["log_timezone = 'UTC'"]);
    let before: f64 = s
        .query_one("SELECT extract(epoch FROM now())::float8", &[])
        .unwrap()
        .get(0);
    start_backup(&mut s, "exact");
    let exact = start_epoch_now(&mut s);
    assert!((exact - before).abs() < 30.0, "start {exact} vs now {before}");
    for zone in ["America/New_York", "Asia/Kolkata", "Pacific/Chatham"] {
        set_log_timezone(&c, zone);
        let mut fresh = c.connect();
        assert_eq!(start_epoch_now(&mut fresh), exact, "after log_timezone = {zone}");
        fresh
            .batch_execute("SET timezone = 'Australia/Lord_Howe'; SET timezone_abbreviations = 'India'")
            .unwrap();
        assert_eq!(start_epoch_now(&mut fresh), exact, "with other session settings");
    }
    stop_backup(&mut s, false);
    assert_quiet(&c, &mut s, "after the backup");
}

/// Issue 10.5: a zone abbreviation longer than any in the tz database,
/// which the server writes as it is, must be accepted.
#[test]
fn long_zone_abbreviation_is_accepted() {
    let (c, mut s) = probed(&["log_timezone = '<ABCDEFGHIJKLMNOPQRSTUVWXYZ>-3'"]);
    let now: f64 = s
        .query_one("SELECT extract(epoch FROM now())::float8", &[])
        .unwrap()
        .get(0);
    start_backup(&mut s, "long zone");
    let label = c.read_string("backup_label").unwrap();
    let line = label.lines().find(|l| l.starts_with("START TIME: ")).unwrap();
    assert!(line.ends_with(" ABCDEFGHIJKLMNOPQRSTUVWXYZ"), "{line}");
    let start = start_epoch_now(&mut s);
    assert!((start - now).abs() < 30.0, "start {start} vs now {now}");
    stop_backup(&mut s, false);
    assert_quiet(&c, &mut s, "after the backup");
}

/// Issue 10.6: an administrator's SIGTERM of the start worker while it is
/// in backup mode is an operator action: 57P01 with a message saying so,
/// and nothing of the start is left.
#[test]
fn terminated_start_worker_is_an_admin_shutdown() {
    let (c, mut s) = probed(&[]);
    set_test_pause(&c, "worker_started:2000");
    let from = c.log().len();
    let mut starter = c.connect();
    let h = thread::spawn(move || {
        starter
            .query_one("SELECT pg_start_backup('terminated', true)", &[])
            .map(|_| ())
    });
    let worker = paused_pid(&c, "worker_started", from);
    // SAFETY: plain libc call on the server's own worker process.
    assert_eq!(unsafe { libc::kill(worker, libc::SIGTERM) }, 0);
    let e = db_error(h.join().unwrap(), &SqlState::ADMIN_SHUTDOWN);
    assert_eq!(
        e.message(),
        "pg_start_backup's background worker was terminated before the backup started"
    );
    assert_eq!(e.detail(), Some("No backup was started."));
    set_test_pause(&c, "");
    assert_quiet(&c, &mut s, "after the terminated start");
    start_backup(&mut s, "next");
    stop_backup(&mut s, false);
    assert_quiet(&c, &mut s, "after the next backup");
}

/// Issue 10.7: label text in pg_stop_backup's DETAIL after a restart ended
/// the backup reaches the client intact: as the database reads it when it
/// is valid in its encoding, escaped byte by byte where it is not.
#[test]
fn label_text_in_messages_follows_the_database_encoding() {
    let (mut c, _) = probed(&[]);
    c.connect()
        .batch_execute("CREATE DATABASE latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        .unwrap();
    let mut l = c.connect_as("postgres", "latin1");
    l.batch_execute("CREATE EXTENSION pg_exclusive_backup").unwrap();
    start_backup(&mut l, "café crème");
    let raw = c.read("backup_label").unwrap();
    assert!(
        raw.windows(10).any(|w| w == b"caf\xE9 cr\xE8me"),
        "the label holds the database's bytes"
    );
    drop(l);
    c.restart();
    let mut l = c.connect_as("postgres", "latin1");
    let e = db_error(l.query_one("SELECT pg_stop_backup(false)", &[]), NOT_READY);
    let detail = e.detail().unwrap_or_default();
    assert!(detail.contains("\"café crème\""), "{detail}");
    let mut u = c.connect();
    let e = db_error(u.query_one("SELECT pg_stop_backup(false)", &[]), NOT_READY);
    let detail = e.detail().unwrap_or_default();
    assert!(detail.contains("\"caf\\xE9 cr\\xE8me\""), "{detail}");
    assert_quiet(&c, &mut u, "after the interrupted backup");
}

/// Issue 10.8: the boundary keeps the interrupt holdoff count of a scope
/// across a caught server error, and turns a panic inside a guarded call
/// into an ERROR with the backend alive.
#[test]
fn boundary_survives_errors_and_panics_inside_guarded_calls() {
    let c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    s.batch_execute(
        "CREATE FUNCTION pg_temp.holdoff() RETURNS boolean
           AS '$libdir/pg_exclusive_backup', 'peb_test_holdoff_survives_error' LANGUAGE C;
         CREATE FUNCTION pg_temp.guarded_panic() RETURNS void
           AS '$libdir/pg_exclusive_backup', 'peb_test_panic_in_guarded_call' LANGUAGE C;",
    )
    .unwrap();
    let kept: bool = s.query_one("SELECT pg_temp.holdoff()", &[]).unwrap().get(0);
    assert!(kept, "a caught error lost the interrupt holdoff count");
    let pid = pid_of(&mut s);
    let e = db_error(
        s.query_one("SELECT pg_temp.guarded_panic()", &[]),
        &SqlState::INTERNAL_ERROR,
    );
    assert_eq!(
        e.message(),
        "pg_exclusive_backup internal error: panic inside a guarded server call"
    );
    assert_eq!(pid_of(&mut s), pid, "the backend survived");
    c.assert_log_clean();
}

/// Issue 10.8: a panic after a step with side effects is undone by that
/// step's guard: in the worker after entering backup mode, in the worker
/// after linking the label, in the stop after taking the label away.
#[test]
fn panics_after_side_effects_are_undone() {
    let (c, mut s) = probed(&[]);
    for point in ["worker_started", "worker_linked"] {
        reload_setting(&c, "pg_exclusive_backup.test_panic", point);
        let e = db_error(
            s.query_one("SELECT pg_start_backup('panics', true)", &[]),
            &SqlState::INTERNAL_ERROR,
        );
        assert_eq!(
            e.message(),
            format!("pg_exclusive_backup internal error: test panic at {point}")
        );
        assert_quiet(&c, &mut s, point);
    }
    reload_setting(&c, "pg_exclusive_backup.test_panic", "");
    start_backup(&mut s, "stop panics");
    let mut stopper = c.connect();
    stopper
        .batch_execute("SET pg_exclusive_backup.test_panic = 'stop_renamed'")
        .unwrap();
    let e = db_error(
        stopper.query_one("SELECT pg_stop_backup(false)", &[]),
        &SqlState::INTERNAL_ERROR,
    );
    assert_eq!(
        e.message(),
        "pg_exclusive_backup internal error: test panic at stop_renamed"
    );
    assert!(c.exists("backup_label"), "the label was put back");
    assert!(in_backup(&mut s));
    stopper.batch_execute("RESET pg_exclusive_backup.test_panic").unwrap();
    stop_backup(&mut stopper, false);
    assert_quiet(&c, &mut s, "after the stop");
}

/// Issue 10.6 again, at the other moment: SIGTERM while the worker waits
/// for the spread checkpoint inside the server's start routine. The worker
/// exits through the server's FATAL path, its exit callback reports the
/// termination, and the server's own cleanup has left backup mode.
#[test]
fn worker_terminated_during_the_checkpoint_is_an_admin_shutdown() {
    let (c, mut s) = probed(&["checkpoint_timeout = 30min", "checkpoint_completion_target = 0.9"]);
    s.batch_execute(
        "CREATE TABLE big WITH (autovacuum_enabled = off) AS
           SELECT g AS id, 0 AS v, repeat('b', 40) AS pad FROM generate_series(1, 100000) g;
         CHECKPOINT;
         UPDATE big SET v = v + 1;",
    )
    .unwrap();
    let mut starter = c.connect();
    let starter_pid = pid_of(&mut starter);
    let h = thread::spawn(move || {
        starter
            .query_one("SELECT pg_start_backup('slow', false)", &[])
            .map(|_| ())
    });
    let mut worker = 0;
    wait_until("the worker to wait for the checkpoint", Duration::from_secs(20), || {
        let workers = common::proof::start_workers_of(starter_pid);
        let busy: i64 = s
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE backend_type = 'checkpointer' AND wait_event = 'CheckpointWriteDelay'",
                &[],
            )
            .unwrap()
            .get(0);
        worker = workers.first().copied().unwrap_or(0);
        worker > 0 && busy == 1
    });
    // SAFETY: plain libc call on the server's own worker process.
    assert_eq!(unsafe { libc::kill(worker, libc::SIGTERM) }, 0);
    let e = db_error(h.join().unwrap(), &SqlState::ADMIN_SHUTDOWN);
    assert_eq!(
        e.message(),
        "pg_start_backup's background worker was terminated before the backup started"
    );
    assert_eq!(common::proof::start_workers_of(starter_pid), Vec::<i32>::new());
    assert_quiet(&c, &mut s, "after the worker was terminated in the checkpoint");
}

/// The lock that serialises start and stop is a file of the extension's
/// own: a script that holds `flock $PGDATA` around its calls (a common
/// idiom) cannot block them.
#[test]
fn flock_on_the_data_directory_blocks_nothing() {
    use std::os::unix::io::AsRawFd;
    let (c, mut s) = probed(&[]);
    let dir = std::fs::File::open(c.data_dir()).unwrap();
    // SAFETY: plain libc call on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) }, 0);
    let t = Instant::now();
    start_backup(&mut s, "under flock");
    stop_backup(&mut s, false);
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    drop(dir);
    assert_quiet(&c, &mut s, "after the backup");
    // A hostile lock file is named, not followed.
    std::fs::remove_file(c.path("pg_exclusive_backup.lock")).unwrap();
    symlink(c.root().join("elsewhere"), c.path("pg_exclusive_backup.lock")).unwrap();
    let e = db_error(
        s.query_one("SELECT pg_start_backup('x', true)", &[]),
        &SqlState::WRONG_OBJECT_TYPE,
    );
    assert_eq!(
        e.message(),
        "\"pg_exclusive_backup.lock\" in the data directory is not a regular file"
    );
    assert!(!c.root().join("elsewhere").exists());
    std::fs::remove_file(c.path("pg_exclusive_backup.lock")).unwrap();
    assert_quiet(&c, &mut s, "after the refused start");
}
