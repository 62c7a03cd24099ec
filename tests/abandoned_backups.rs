//! Backups whose pg_stop_backup never comes: pg_exclusive_backup.max_duration
//! voids them and warn_duration warns about them (preload mode's standing
//! worker), pg_exclusive_backup_void() voids one on request; and the
//! standing worker serving starts, racing stops, killed, and restarted.
//! A voided backup leaves backup mode (the full-page-write probe), its
//! label is renamed, and a copy taken during it never comes up consistent.

mod common;

use std::fs;
use std::thread;
use std::time::Duration;

use common::proof::*;
use common::*;
use postgres::error::SqlState;
use postgres::Client;

/// The status view's verdict on the last backup: outcome and who.
fn last_outcome(s: &mut Client) -> (Option<String>, Option<String>) {
    let row = s
        .query_one(
            "SELECT last_outcome, last_stopped_by FROM pg_exclusive_backup_status",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// The status view's deadline minus its start time, in seconds, while a
/// backup runs (`None`: no deadline).
fn deadline_after_start(s: &mut Client) -> Option<f64> {
    s.query_one(
        "SELECT extract(epoch FROM deadline - start_time)::float8 FROM pg_exclusive_backup_status",
        &[],
    )
    .unwrap()
    .get(0)
}

/// pg_stop_backup() after a void fails with 55000 and says why.
#[track_caller]
fn stop_says_voided(s: &mut Client, why: &str) {
    let e = db_error(s.query_one("SELECT pg_stop_backup()", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    let detail = e.detail().unwrap_or_default();
    assert!(detail.contains(why), "{detail}");
    assert!(
        detail.contains("the copy taken during it is not a valid backup"),
        "{detail}"
    );
}

#[test]
fn a_backup_past_max_duration_is_voided_and_its_stop_says_so() {
    let (c, mut s) = preloaded_probed(&[]);
    reload_setting(&c, "pg_exclusive_backup.max_duration", "3s");
    let from = log_len(&c);
    start_backup_with(&mut s, "never stopped", true);
    assert_eq!(deadline_after_start(&mut s), Some(3.0));
    let line = await_log_line(
        &c,
        from,
        "was voided: it ran longer than pg_exclusive_backup.max_duration (3s)",
    );
    assert!(line.contains("WARNING:  exclusive backup \"never stopped\""), "{line}");
    let log = log_since(&c, from);
    let detail = line_with(&log, "DETAIL:  It was started at").expect("no DETAIL");
    assert!(detail.contains(" by postgres "), "{detail}");
    assert!(detail.contains("not a valid backup"), "{detail}");
    assert!(!c.exists("backup_label"));
    let old = c.read_string("backup_label.old").expect("backup_label.old");
    assert_eq!(field(&old, "LABEL"), Some("never stopped"));
    assert!(!c.exists("tablespace_map"));
    assert!(!in_backup(&mut s));
    assert_no_forced_fpi(&mut s, "after the void");
    assert_eq!(
        last_outcome(&mut s),
        (Some("voided by pg_exclusive_backup.max_duration".into()), None)
    );
    stop_says_voided(&mut s, "ran longer than pg_exclusive_backup.max_duration (3s)");
    // The standing worker started it and left backup mode without WAL: no
    // history file was written for it.
    let wal = fs::read_dir(c.data_dir().join("pg_wal")).unwrap();
    assert!(
        !wal.filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".backup")
                && fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .contains("never stopped")),
        "a history file names the voided backup"
    );
    cycle_works(&c, &mut s, "after a void");
    c.assert_log_clean_except(&["was voided: it ran longer"]);
}

#[test]
fn warn_duration_warns_once_per_multiple() {
    let (c, mut s) = preloaded_probed(&[]);
    reload_setting(&c, "pg_exclusive_backup.warn_duration", "1s");
    let from = log_len(&c);
    start_backup_with(&mut s, "slow copy", true);
    assert_eq!(deadline_after_start(&mut s), None);
    await_log_line(&c, from, "exclusive backup \"slow copy\" has been running for 2 s");
    stop_backup(&mut s, false);
    let log = log_since(&c, from);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("has been running for")).collect();
    assert!(warnings.len() >= 2, "{warnings:?}");
    for (i, w) in warnings.iter().enumerate() {
        assert!(w.contains("WARNING:"), "{w}");
        assert!(
            w.contains(&format!("running for {} s, started by postgres", i + 1)),
            "{warnings:?}"
        );
    }
    let hint = line_with(&log, "HINT:  End it with pg_stop_backup()").expect("no HINT");
    assert!(hint.contains("pg_exclusive_backup_void()"), "{hint}");
    assert_eq!(last_outcome(&mut s).0.as_deref(), Some("stopped"));
    assert_no_backup(&c, &mut s, "after the stop");
}

/// The void and a stop racing, both ways round, each side held by a delay
/// point with the lock file taken: exactly one ends the backup, the other
/// is told it is not in progress, and backup mode is left once.
#[test]
fn a_void_and_a_stop_racing_end_the_backup_once() {
    let (c, mut s) = preloaded_probed(&[]);
    // The void (by the limit) holds the lock; the stop waits and loses.
    set_test_pause(&c, "void_locked:2000");
    reload_setting(&c, "pg_exclusive_backup.max_duration", "1s");
    let from = log_len(&c);
    start_backup_with(&mut s, "void wins", true);
    paused_pid(&c, "void_locked", from);
    stop_says_voided(&mut s, "ran longer than pg_exclusive_backup.max_duration (1s)");
    assert_none_in_place(&c, &mut s, "after the void won");

    // The stop holds the lock past the deadline; the void finds nothing.
    reload_setting(&c, "pg_exclusive_backup.max_duration", "2s");
    set_test_pause(&c, "stop_locked:4000");
    let from = log_len(&c);
    start_backup_with(&mut s, "stop wins", true);
    stop_backup(&mut s, false);
    assert!(log_since(&c, from).contains("test pause at stop_locked"));
    assert_eq!(last_outcome(&mut s).0.as_deref(), Some("stopped"));
    assert!(!log_since(&c, from).contains("was voided"), "{}", log_since(&c, from));

    // pg_exclusive_backup_void() against a stop, the void holding the lock.
    reload_setting(&c, "pg_exclusive_backup.max_duration", "0");
    set_test_pause(&c, "void_locked:2000");
    start_backup_with(&mut s, "voided by hand", true);
    let mut voider = c.connect();
    let from = log_len(&c);
    let h = thread::spawn(move || {
        voider
            .query_one("SELECT pg_exclusive_backup_void()", &[])
            .map(|r| r.get::<_, String>(0))
    });
    paused_pid(&c, "void_locked", from);
    stop_says_voided(&mut s, "was voided by role \"postgres\"");
    assert_eq!(h.join().unwrap().unwrap(), "voided by hand");
    assert_eq!(last_outcome(&mut s), (Some("voided".into()), Some("postgres".into())));
    set_test_pause(&c, "");
    assert_none_in_place(&c, &mut s, "after the void by hand");
    cycle_works(&c, &mut s, "after the races");
}

/// A void while a start has entered backup mode but not yet put its label
/// in place finds nothing to void, at once; the start then completes.
#[test]
fn a_void_during_a_start_finds_nothing_and_the_start_completes() {
    let (c, mut s) = preloaded_probed(&[]);
    set_test_pause(&c, "worker_committed:2000");
    let from = log_len(&c);
    let mut starter = c.connect();
    let h = thread::spawn(move || start_backup_with(&mut starter, "starting", true));
    paused_pid(&c, "worker_committed", from);
    let e = db_error(s.query_one("SELECT pg_exclusive_backup_void()", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    h.join().unwrap();
    set_test_pause(&c, "");
    assert!(in_backup(&mut s));
    stop_backup(&mut s, false);
    assert_no_backup(&c, &mut s, "after the stop");
}

/// The standing worker serves starts itself (no worker is forked), and
/// keeps doing so across starts, stops, voids and a cancelled start; a
/// start cancelled during its checkpoint is undone without terminating it.
#[test]
fn the_standing_worker_serves_starts_and_survives_a_cancel() {
    let (c, mut s) = preloaded_probed(&[
        "checkpoint_timeout = 30s",
        "checkpoint_completion_target = 0.9",
        "max_wal_size = 1GB",
        "log_checkpoints = on",
    ]);
    let worker = standing_worker_pid(&mut s);
    set_test_pause(&c, "worker_started:1");
    for i in 0..3 {
        let from = log_len(&c);
        start_backup_with(&mut s, &format!("cycle {i}"), true);
        assert_eq!(
            paused_pid(&c, "worker_started", from),
            worker,
            "cycle {i} was not served by it"
        );
        if i == 1 {
            s.query_one("SELECT pg_exclusive_backup_void()", &[]).unwrap();
        } else {
            stop_backup(&mut s, false);
        }
    }
    set_test_pause(&c, "");
    // A spread checkpoint over many dirty buffers: the start waits in it
    // until its caller gives up.
    s.batch_execute("CREATE TABLE dirty AS SELECT g, repeat('d', 500) AS pad FROM generate_series(1, 60000) g")
        .unwrap();
    let mut starter = c.connect();
    let starter_pid = pid_of(&mut starter);
    let from = log_len(&c);
    let h = thread::spawn(move || {
        starter
            .query_one("SELECT pg_start_backup('cancelled', false)", &[])
            .map(|_| ())
    });
    let line = await_log_line(&c, from, "checkpoint starting:");
    assert!(line.ends_with("checkpoint starting: force wait"), "{line}");
    s.query_one("SELECT pg_cancel_backend($1)", &[&starter_pid]).unwrap();
    let e = db_error(h.join().unwrap(), &SqlState::QUERY_CANCELED);
    assert_eq!(e.message(), "canceling statement due to user request");
    assert_eq!(
        standing_worker_pid(&mut s),
        worker,
        "the cancel ended the standing worker"
    );
    assert_none_in_place(&c, &mut s, "after the cancelled start");
    cycle_works(&c, &mut s, "after the cancel");
}

/// The standing worker terminated while it holds a running backup: the
/// postmaster starts it again, the backup runs on, a stop still works, and
/// max_duration still voids the next one (by the server's stop, the new
/// worker not holding it).
#[test]
fn the_standing_worker_killed_is_restarted_and_the_deadline_still_holds() {
    let (c, mut s) = preloaded_probed(&[]);
    let first = standing_worker_pid(&mut s);
    start_backup_with(&mut s, "outlives its worker", true);
    s.query_one("SELECT pg_terminate_backend($1)", &[&first]).unwrap();
    wait_until("a new standing worker", Duration::from_secs(30), || {
        standing_worker_pid(&mut s) != first
    });
    assert!(in_backup(&mut s));
    assert_forced_fpi(&mut s, "the backup runs on");
    stop_backup(&mut s, false);
    assert_no_backup(&c, &mut s, "after the stop without its worker");

    start_backup_with(&mut s, "voided without its worker", true);
    let second = standing_worker_pid(&mut s);
    reload_setting(&c, "pg_exclusive_backup.max_duration", "4s");
    let from = log_len(&c);
    s.query_one("SELECT pg_terminate_backend($1)", &[&second]).unwrap();
    await_log_line(
        &c,
        from,
        "was voided: it ran longer than pg_exclusive_backup.max_duration (4s)",
    );
    assert_ne!(standing_worker_pid(&mut s), second);
    assert_none_in_place(&c, &mut s, "after the void by a new worker");
    stop_says_voided(&mut s, "(4s)");
    c.assert_log_clean_except(&[
        "terminating background worker \"pg_exclusive_backup\" due to administrator command",
        "background worker \"pg_exclusive_backup\" (PID",
        "was voided: it ran longer",
    ]);
}

/// A restart during a backup with a deadline: the postmaster ends it as
/// any restart does, nothing of it is enforced afterwards, and the next
/// backup gets a deadline of its own.
#[test]
fn a_restart_during_a_backup_with_a_deadline_leaves_nothing_stale() {
    let (mut c, mut s) = preloaded_probed(&["pg_exclusive_backup.max_duration = '4s'"]);
    start_backup_with(&mut s, "restarted", true);
    drop(s);
    c.restart();
    let mut s = c.connect();
    standing_worker_pid(&mut s);
    assert!(!in_backup(&mut s));
    assert_eq!(
        last_outcome(&mut s).0.as_deref(),
        Some("interrupted by a server restart")
    );
    let from = log_len(&c);
    start_backup_with(&mut s, "after the restart", true);
    assert_eq!(deadline_after_start(&mut s), Some(4.0));
    await_log_line(&c, from, "exclusive backup \"after the restart\" was voided");
    assert!(
        !log_since(&c, from).contains("\"restarted\""),
        "{}",
        log_since(&c, from)
    );
    assert_none_in_place(&c, &mut s, "after the second void");
}

/// The settings are reloadable and apply to the backup that runs.
#[test]
fn settings_changed_by_reload_apply_to_the_running_backup() {
    let (c, mut s) = preloaded_probed(&["pg_exclusive_backup.max_duration = '1h'"]);
    start_backup_with(&mut s, "reloaded", true);
    assert_eq!(deadline_after_start(&mut s), Some(3600.0));
    reload_setting(&c, "pg_exclusive_backup.max_duration", "0");
    assert_eq!(deadline_after_start(&mut s), None);
    let from = log_len(&c);
    reload_setting(&c, "pg_exclusive_backup.warn_duration", "1s");
    await_log_line(&c, from, "exclusive backup \"reloaded\" has been running for");
    reload_setting(&c, "pg_exclusive_backup.max_duration", "2s");
    await_log_line(&c, from, "exclusive backup \"reloaded\" was voided");
    assert_none_in_place(&c, &mut s, "after the reloaded limit");
}

/// Without preload mode no process enforces the durations: the start says
/// so; pg_exclusive_backup_void() still voids, by the server's stop with a
/// start no backup has.
#[test]
fn without_preload_the_durations_warn_and_the_void_still_works() {
    let (c, mut s) = probed_cluster(&["pg_exclusive_backup.max_duration = '1s'"]);
    let (mut n, notices) = c.connect_with_notices();
    start_backup_with(&mut n, "unwatched", true);
    let seen = notices.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|m| m.contains("max_duration and warn_duration are not enforced without preload mode")),
        "{seen:?}"
    );
    assert_eq!(deadline_after_start(&mut s), None);
    assert_forced_fpi(&mut s, "the backup runs past its max_duration");
    let label: String = s.query_one("SELECT pg_exclusive_backup_void()", &[]).unwrap().get(0);
    assert_eq!(label, "unwatched");
    assert_none_in_place(&c, &mut s, "after the void");
    let history: Vec<String> = fs::read_dir(c.data_dir().join("pg_wal"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".backup"))
        .filter_map(|p| fs::read_to_string(p).ok())
        .filter(|t| t.contains("LABEL: voided: unwatched"))
        .collect();
    assert!(history.len() <= 1, "{history:?}");
    cycle_works(&c, &mut s, "after the void");
}

/// A copy taken during a backup that was then voided, restored with
/// everything the archive holds and recovery.signal, refuses to come up:
/// recovery reaches no end of that backup, whether the worker left backup
/// mode without WAL or a session's stop wrote a record for the shifted
/// start.
#[test]
fn a_copy_taken_during_a_voided_backup_never_comes_up_consistent() {
    let (c, mut s) = preloaded(&[]);
    let worker = standing_worker_pid(&mut s);
    s.batch_execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        .unwrap();
    for shifted in [false, true] {
        let name = if shifted { "by the shifted stop" } else { "without WAL" };
        start_backup_with(&mut s, name, true);
        let copy = Cluster::from_copy(c.data_dir(), &["archive_mode = off"]);
        s.batch_execute("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
            .unwrap();
        if shifted {
            // A new worker does not hold the backup: the session's stop
            // with the shifted start ends it.
            s.query_one("SELECT pg_terminate_backend($1)", &[&worker]).unwrap();
            wait_until("a new standing worker", Duration::from_secs(30), || {
                standing_worker_pid(&mut s) != worker
            });
        }
        let voided: String = s.query_one("SELECT pg_exclusive_backup_void()", &[]).unwrap().get(0);
        assert_eq!(voided, name);
        s.batch_execute("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
            .unwrap();
        let switched: String = s
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .unwrap()
            .get(0);
        let archived = c.root().join("archive");
        wait_until("the archiver to catch up", Duration::from_secs(60), || {
            archived.join(&switched).exists()
        });
        copy.append_conf(&[&format!("restore_command = 'cp {}/%f %p'", archived.display())]);
        copy.write("recovery.signal", b"");
        let out = try_start(&copy);
        let log = copy.log();
        assert!(!out.status.success(), "{name}: the copy came up:\n{log}");
        assert!(log.contains("WAL ends before end of online backup"), "{name}:\n{log}");
        assert!(!log.contains("consistent recovery state reached"), "{name}:\n{log}");
    }
}

/// A stop that posted its errand to a standing worker which is then
/// terminated before taking it: the worker started in its place does not
/// hold the backup and declines (or the stop takes its errand back), the
/// stop ends the backup itself, and the slot is free for the next stop,
/// which the new worker serves.
#[test]
fn an_errand_left_by_a_terminated_worker_is_settled() {
    let (c, mut s) = preloaded_probed(&[]);
    let first = standing_worker_pid(&mut s);
    start_backup_with(&mut s, "its worker goes", true);
    set_test_pause(&c, "errand_posted:4000");
    let from = log_len(&c);
    let mut stopper = c.connect();
    let h = thread::spawn(move || stop_backup(&mut stopper, false));
    paused_pid(&c, "errand_posted", from);
    s.query_one("SELECT pg_terminate_backend($1)", &[&first]).unwrap();
    wait_until("a new standing worker", Duration::from_secs(30), || {
        standing_worker_pid(&mut s) != first
    });
    h.join().unwrap();
    set_test_pause(&c, "");
    assert_no_backup(&c, &mut s, "after the stop without its worker");
    let second = standing_worker_pid(&mut s);
    let from = log_len(&c);
    set_test_pause(&c, "worker_started:1");
    start_backup_with(&mut s, "the new worker's", true);
    assert_eq!(paused_pid(&c, "worker_started", from), second);
    set_test_pause(&c, "");
    stop_backup(&mut s, false);
    assert_no_backup(&c, &mut s, "after the new worker's backup");
}
