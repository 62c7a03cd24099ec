//! Proof under fire, part 4: faults and interruptions around
//! pg_start_backup and pg_stop_backup leave no backup behind and, above
//! all, do not leave the server in backup mode.
//!
//! "Not in backup mode" is proven, not assumed: the clusters run with
//! full_page_writes = off, so the first change to a page after a checkpoint
//! writes a full-page image only while the server counts a running backup.
//! Every test first shows the probe reporting full-page images while a
//! backup runs (so the check can fail), and none after each fault.

mod common;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use common::proof::*;
use common::*;
use postgres::error::SqlState;
use postgres::Client;

/// The probe sees full-page images during a backup and none outside one.
fn probe_works(s: &mut Client) {
    assert_no_forced_fpi(s, "before any backup");
    start_backup_with(s, "probe", true);
    assert_forced_fpi(s, "during a backup");
    stop_backup(s, false);
    assert_no_forced_fpi(s, "after a backup");
}

/// No backup left behind, by any measure.
#[track_caller]
fn assert_no_backup(c: &Cluster, s: &mut Client, when: &str) {
    assert_eq!(backup_files(c), Vec::<String>::new(), "{when}");
    assert!(!in_backup(s), "{when}: pg_is_in_backup() is true");
    assert_no_forced_fpi(s, when);
}

/// A start and a stop still work.
#[track_caller]
fn backup_works(c: &Cluster, s: &mut Client, label: &str) {
    start_backup_with(s, label, true);
    assert!(in_backup(s));
    stop_backup(s, false);
    assert_no_backup(c, s, &format!("after backup {label:?}"));
}

fn session_wait_event(s: &mut Client, pid: i32) -> Option<String> {
    s.query_opt("SELECT wait_event FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap()
        .and_then(|r| r.get(0))
}

/// (i) backup_label cannot be written: the data directory is read-only for
/// the server.
#[test]
fn label_cannot_be_written() {
    let (c, mut s) = probed_cluster(&[]);
    probe_works(&mut s);
    let e = {
        let _ro = ModeGuard::set(c.data_dir(), 0o500);
        let e = db_error(
            s.query_one("SELECT pg_start_backup('read-only', true)", &[]),
            &SqlState::INSUFFICIENT_PRIVILEGE,
        );
        // Nothing was created, not even a temporary file.
        assert_eq!(backup_files(&c), Vec::<String>::new());
        assert!(!in_backup(&mut s));
        e
    };
    eprintln!("read-only data directory: {}", e.message());
    assert!(
        e.message().starts_with("could not create file \"backup_label.tmp.")
            && e.message().ends_with("\": Permission denied"),
        "{}",
        e.message()
    );
    let spid = pid_of(&mut s);
    assert_eq!(start_workers_of(spid), Vec::<i32>::new());
    assert_eq!(start_workers_in_activity(&mut s), 0);
    assert_no_backup(&c, &mut s, "after the failed start");
    backup_works(&c, &mut s, "after restoring the mode");
    assert_log_has_no_crash(&c);
}

/// (ii) tablespace_map cannot be written: a non-empty directory of that
/// name is in the way.
#[test]
fn tablespace_map_cannot_be_written() {
    let (c, mut s) = probed_cluster(&[]);
    let dir = dir_of(&c, "tblspc");
    s.batch_execute(&format!("CREATE TABLESPACE ts LOCATION '{}'", dir.display()))
        .unwrap();
    s.batch_execute("CREATE TABLE in_ts (x int) TABLESPACE ts").unwrap();
    probe_works(&mut s);
    let blocker = c.path("tablespace_map");
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("keep"), b"x").unwrap();
    common::install().chown(&blocker);
    common::install().chown(&blocker.join("keep"));
    let e = db_error(
        s.query_one("SELECT pg_start_backup('map blocked', true)", &[]),
        &SqlState::WRONG_OBJECT_TYPE,
    );
    eprintln!("tablespace_map blocked: {}", e.message());
    assert_eq!(
        e.message(),
        "\"tablespace_map\" in the data directory is not a regular file"
    );
    assert_eq!(backup_files(&c), vec!["tablespace_map".to_string()]);
    assert!(blocker.join("keep").exists());
    assert!(!in_backup(&mut s));
    let spid = pid_of(&mut s);
    assert_eq!(start_workers_of(spid), Vec::<i32>::new());
    assert_eq!(start_workers_in_activity(&mut s), 0);
    assert_no_forced_fpi(&mut s, "after the failed start");
    fs::remove_dir_all(&blocker).unwrap();
    start_backup_with(&mut s, "map free", true);
    assert_eq!(
        c.read_string("tablespace_map"),
        Some(format!(
            "{} {}\n",
            s.query_one("SELECT oid FROM pg_tablespace WHERE spcname = 'ts'", &[])
                .unwrap()
                .get::<_, u32>(0),
            dir.display()
        ))
    );
    stop_backup(&mut s, false);
    assert_no_backup(&c, &mut s, "after the last backup");
    assert_log_has_no_crash(&c);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interrupt {
    StatementTimeout,
    Cancel,
}

/// (iii) pg_start_backup(label, false) interrupted while its worker waits
/// for a slow spread checkpoint.
#[test]
fn start_interrupted_during_checkpoint() {
    let (c, mut admin) = probed_cluster(&["checkpoint_timeout = 30min", "checkpoint_completion_target = 0.9"]);
    admin
        .batch_execute(
            "CREATE TABLE big WITH (autovacuum_enabled = off) AS
               SELECT g AS id, 0 AS v, repeat('b', 40) AS pad FROM generate_series(1, 100000) g",
        )
        .unwrap();
    probe_works(&mut admin);
    for how in [Interrupt::StatementTimeout, Interrupt::Cancel] {
        // Many dirty buffers: the spread checkpoint would take minutes.
        admin.execute("UPDATE big SET v = v + 1", &[]).unwrap();
        let mut victim = c.connect();
        let pid = pid_of(&mut victim);
        if how == Interrupt::StatementTimeout {
            victim.batch_execute("SET statement_timeout = '3s'").unwrap();
        }
        let t = Instant::now();
        let h = thread::spawn(move || {
            let r = victim.query_one("SELECT pg_start_backup('slow start', false)", &[]);
            (r.map(|_| ()), victim, Instant::now())
        });
        // The worker runs and the checkpointer is busy with the spread
        // checkpoint the worker asked for.
        wait_until("the worker to wait for the checkpoint", Duration::from_secs(10), || {
            start_workers_of(pid).len() == 1
                && admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                          WHERE backend_type = 'checkpointer' AND wait_event = 'CheckpointWriteDelay'",
                        &[],
                    )
                    .unwrap()
                    .get::<_, i64>(0)
                    == 1
        });
        assert_eq!(
            session_wait_event(&mut admin, pid).as_deref(),
            Some(bgworker_shutdown_event())
        );
        if how == Interrupt::Cancel {
            thread::sleep(Duration::from_millis(500));
        }
        let sent = Instant::now();
        if how == Interrupt::Cancel {
            let ok: bool = admin.query_one("SELECT pg_cancel_backend($1)", &[&pid]).unwrap().get(0);
            assert!(ok);
        }
        let (r, mut victim, ended) = h.join().unwrap();
        let e = r.expect_err("pg_start_backup completed despite the interrupt");
        let db = e.as_db_error().unwrap_or_else(|| panic!("{how:?}: {e}"));
        assert_eq!(db.code(), &SqlState::QUERY_CANCELED, "{how:?}: {}", db.message());
        let expected = match how {
            Interrupt::StatementTimeout => "canceling statement due to statement timeout",
            Interrupt::Cancel => "canceling statement due to user request",
        };
        assert_eq!(db.message(), expected);
        eprintln!(
            "{how:?}: pg_start_backup failed after {:.2}s ({:.2}s after the worker was seen waiting{})",
            (ended - t).as_secs_f64(),
            (ended - sent).as_secs_f64(),
            if how == Interrupt::Cancel {
                " and the cancel was sent"
            } else {
                ""
            }
        );
        if how == Interrupt::Cancel {
            assert!(
                ended - sent < Duration::from_secs(3),
                "the cancel was not acted on quickly"
            );
        }
        assert!(ended - t < Duration::from_secs(8), "{how:?} was not acted on quickly");
        // The caller has already waited for its worker to undo the start.
        assert_eq!(backup_files(&c), Vec::<String>::new(), "{how:?}");
        assert!(!in_backup(&mut admin), "{how:?}");
        assert_eq!(
            start_workers_of(pid),
            Vec::<i32>::new(),
            "{how:?}: the worker outlived the call"
        );
        thread::sleep(Duration::from_millis(300));
        assert_eq!(start_workers_in_activity(&mut admin), 0);
        assert_no_backup(&c, &mut admin, &format!("after {how:?} of the start"));
        victim.batch_execute("RESET statement_timeout").unwrap();
        backup_works(&c, &mut victim, &format!("after {how:?}"));
    }
    assert_log_has_no_crash(&c);
}

/// (iv) pg_stop_backup(true) interrupted while it waits for an archiver
/// that always fails.
#[test]
fn stop_interrupted_while_waiting_for_archive() {
    let (c, mut admin) = probed_cluster(&["archive_mode = on", "archive_command = 'false'"]);
    probe_works(&mut admin);
    for how in [Interrupt::StatementTimeout, Interrupt::Cancel] {
        let mut victim = c.connect();
        let pid = pid_of(&mut victim);
        start_backup_with(&mut victim, "never archived", true);
        assert_forced_fpi(&mut admin, "during the backup");
        if how == Interrupt::StatementTimeout {
            victim.batch_execute("SET statement_timeout = '2s'").unwrap();
        }
        let t = Instant::now();
        let h = thread::spawn(move || {
            let r = victim.query_one("SELECT pg_stop_backup(true)", &[]);
            (r.map(|_| ()), victim)
        });
        wait_until(
            "pg_stop_backup to wait for the archiver",
            Duration::from_secs(10),
            || session_wait_event(&mut admin, pid).as_deref() == Some("BackupWaitWalArchive"),
        );
        if how == Interrupt::Cancel {
            let ok: bool = admin.query_one("SELECT pg_cancel_backend($1)", &[&pid]).unwrap().get(0);
            assert!(ok);
        }
        let (r, mut victim) = h.join().unwrap();
        let e = r.expect_err("pg_stop_backup(true) returned although nothing can be archived");
        let db = e.as_db_error().unwrap_or_else(|| panic!("{how:?}: {e}"));
        assert_eq!(db.code(), &SqlState::QUERY_CANCELED, "{how:?}: {}", db.message());
        assert!(t.elapsed() < Duration::from_secs(8), "{how:?} was not acted on quickly");
        // The backup ended before the wait began.
        assert_no_backup(&c, &mut admin, &format!("after {how:?} of the stop"));
        victim.batch_execute("RESET statement_timeout").unwrap();
        assert!(!in_backup(&mut victim));
        backup_works(&c, &mut victim, &format!("after {how:?} of the stop"));
    }
    let failed: i64 = admin
        .query_one("SELECT failed_count FROM pg_stat_archiver", &[])
        .unwrap()
        .get(0);
    assert!(failed > 0, "the archiver never failed: the test did not test anything");
    assert_log_has_no_crash(&c);
}

/// (v) the session that ran pg_start_backup is terminated: the backup is
/// the server's, not the session's, and lives on until another session
/// stops it.
#[test]
fn starting_session_terminated() {
    let (c, mut admin) = probed_cluster(&[]);
    probe_works(&mut admin);
    let mut starter = c.connect();
    let pid = pid_of(&mut starter);
    start_backup_with(&mut starter, "outlives its session", true);
    let ok: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(ok);
    wait_until("the starting session to exit", Duration::from_secs(10), || {
        session_wait_event(&mut admin, pid).is_none()
            && admin
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid])
                .unwrap()
                .get::<_, i64>(0)
                == 0
    });
    assert!(starter.batch_execute("SELECT 1").is_err());
    assert!(in_backup(&mut admin));
    assert!(c.exists("backup_label"));
    assert_forced_fpi(&mut admin, "after the starting session was terminated");
    let mut other = c.connect();
    stop_backup(&mut other, false);
    assert_no_backup(&c, &mut admin, "after another session stopped the backup");
    assert_log_has_no_crash(&c);
}
