//! Cancels, statement timeouts and terminations at every stage of a start
//! and a stop: the backup is either fully started or not at all, the
//! start's worker never outlives the call, and the errors name what
//! happened.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::proof::*;
use common::*;
use postgres::error::SqlState;
use postgres::Client;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interrupt {
    Cancel,
    StatementTimeout,
    Terminate,
}

fn session_wait_event(s: &mut Client, pid: i32) -> Option<String> {
    s.query_opt("SELECT wait_event FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap()
        .and_then(|r| r.get(0))
}

/// Interrupting pg_start_backup while its worker waits for a spread
/// checkpoint leaves no backup behind, and no worker.
#[test]
fn interrupted_start_leaves_no_backup() {
    let c = Cluster::with_extension(&["full_page_writes = off", "checkpoint_timeout = 600"]);
    let mut admin = c.connect();
    create_fpi_probe(&mut admin);
    for how in [Interrupt::Cancel, Interrupt::StatementTimeout, Interrupt::Terminate] {
        // About 120 dirty pages: a spread checkpoint writes them at roughly
        // ten per second.
        admin
            .batch_execute(
                "DROP TABLE IF EXISTS dirty;
                 CREATE TABLE dirty AS SELECT g, repeat('d', 1000) AS pad FROM generate_series(1, 800) g",
            )
            .unwrap();
        let mut victim = c.connect();
        let pid = pid_of(&mut victim);
        if how == Interrupt::StatementTimeout {
            victim.batch_execute("SET statement_timeout = '1500ms'").unwrap();
        }
        let t = Instant::now();
        let h = thread::spawn(move || {
            let r = victim.query_one("SELECT pg_start_backup('interrupted', false)", &[]);
            (r.map(|_| ()), victim)
        });
        wait_until(
            "pg_start_backup to wait for its worker",
            Duration::from_secs(10),
            || {
                let n: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND lower(wait_event) = 'bgworkershutdown'",
                        &[&pid],
                    )
                    .unwrap()
                    .get(0);
                n == 1
            },
        );
        // The worker is forked and renamed a moment after it is requested.
        wait_until("the worker to show up", Duration::from_secs(10), || {
            start_workers_of(pid).len() == 1
        });
        // The worker is in the spread checkpoint it asked for.
        wait_until("the checkpointer to spread its writes", Duration::from_secs(10), || {
            admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE backend_type = 'checkpointer' AND wait_event = 'CheckpointWriteDelay'",
                    &[],
                )
                .unwrap()
                .get::<_, i64>(0)
                == 1
        });
        match how {
            Interrupt::Cancel | Interrupt::Terminate => {
                let f = if how == Interrupt::Terminate {
                    "pg_terminate_backend"
                } else {
                    "pg_cancel_backend"
                };
                let sent: bool = admin.query_one(&format!("SELECT {f}($1)"), &[&pid]).unwrap().get(0);
                assert!(sent);
            }
            Interrupt::StatementTimeout => {}
        }
        let (r, mut victim) = h.join().unwrap();
        let e = r.expect_err("pg_start_backup completed despite the interrupt");
        assert!(t.elapsed() < Duration::from_secs(8), "{how:?} was not acted on quickly");
        if how == Interrupt::Terminate {
            wait_backend_gone(&mut admin, pid);
            assert!(victim.is_closed() || victim.batch_execute("SELECT 1").is_err());
        } else {
            assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{how:?}: {e:?}");
            // The caller waited for its worker to undo the start.
            assert_eq!(start_workers_of(pid), Vec::<i32>::new(), "{how:?}: worker still alive");
            victim.batch_execute("RESET statement_timeout; SELECT 1").unwrap();
            assert!(!in_backup(&mut victim));
        }
        wait_until("the worker to exit", Duration::from_secs(20), || {
            start_workers_of(pid).is_empty()
        });
        assert_eq!(backup_files(&c), Vec::<String>::new());
        assert!(!in_backup(&mut admin));
        assert_no_forced_fpi(&mut admin, &format!("after {how:?}"));
        if how != Interrupt::Terminate {
            // The interrupted session itself can take a backup.
            start_backup(&mut victim, "after the interrupt");
            stop_backup(&mut victim, false);
        }
    }
    start_backup(&mut admin, "at the end");
    stop_backup(&mut admin, false);
    assert_no_forced_fpi(&mut admin, "at the end");
    c.assert_log_clean();
}

/// Issue 10.6: an administrator's SIGTERM of the start worker while it is
/// in backup mode is an operator action: 57P01 with a message saying so,
/// and nothing of the start is left.
#[test]
fn terminated_start_worker_is_an_admin_shutdown() {
    let (c, mut s) = probed_cluster(&[]);
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

/// Issue 10.6 again, at the other moment: SIGTERM while the worker waits
/// for the spread checkpoint inside the server's start routine. The worker
/// exits through the server's FATAL path, its exit callback reports the
/// termination, and the server's own cleanup has left backup mode.
#[test]
fn worker_terminated_during_the_checkpoint_is_an_admin_shutdown() {
    let (c, mut s) = probed_cluster(&["checkpoint_timeout = 30min", "checkpoint_completion_target = 0.9"]);
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
        let sent = Instant::now();
        if how == Interrupt::Cancel {
            let ok: bool = admin.query_one("SELECT pg_cancel_backend($1)", &[&pid]).unwrap().get(0);
            assert!(ok);
        }
        let (r, mut victim, ended) = h.join().unwrap();
        let e = r.expect_err("pg_start_backup completed despite the interrupt");
        let db = e.as_db_error().unwrap_or_else(|| panic!("{how:?}: {e}"));
        assert_eq!(db.code(), &SqlState::QUERY_CANCELED, "{how:?}: {}", db.message());
        let expected = if how == Interrupt::StatementTimeout {
            "canceling statement due to statement timeout"
        } else {
            "canceling statement due to user request"
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
