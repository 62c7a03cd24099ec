//! Integration tests of pg_exclusive_backup against a real server: the one
//! PG_CONFIG names, into which the extension has been installed
//! (`make USE_PGXS=1 install`). Every test runs its own throwaway cluster;
//! see tests/common/mod.rs.

mod common;

use std::fs;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use postgres::error::SqlState;
use postgres::types::PgLsn;
use postgres::Client;

const NOT_READY: &SqlState = &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE;

fn wait_backend_gone(c: &mut Client, pid: i32) {
    wait_until("the backend to exit", Duration::from_secs(20), || {
        let n: i64 = c
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .unwrap()
            .get(0);
        n == 0
    });
}

/// (WAL file name, offset in it) of an LSN, as the server computes them.
fn wal_file_and_offset(c: &mut Client, at: u64) -> (String, i32) {
    let row = c
        .query_one(
            "SELECT file_name, file_offset FROM pg_walfile_name_offset($1)",
            &[&PgLsn::from(at)],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// The backup history file name the server writes for a backup starting at
/// `start`.
fn history_file_name(c: &mut Client, start: u64) -> String {
    let (file, offset) = wal_file_and_offset(c, start);
    format!("{file}.{offset:08X}.backup")
}

/// "<LSN> (file <name>)" of START/STOP WAL LOCATION.
fn location(text: &str, key: &str) -> (u64, String) {
    let v = field(text, key).unwrap_or_else(|| panic!("no {key} in:\n{text}"));
    let (l, f) = v.split_once(" (file ").unwrap();
    (parse_lsn(l), f.strip_suffix(')').unwrap().to_string())
}

fn line_of<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} line in:\n{text}"))
}

fn assert_no_backup_files(c: &Cluster) {
    assert_eq!(c.names_starting_with("backup_label"), Vec::<String>::new());
    assert_eq!(c.names_starting_with("tablespace_map"), Vec::<String>::new());
}

#[test]
fn start_in_one_session_stop_in_another() {
    // An abbreviation that means other offsets elsewhere (Israel, Ireland):
    // the start time must be read back in log_timezone.
    let c = Cluster::with_extension(&[
        "log_timezone = 'Asia/Kolkata'",
        "timezone = 'UTC'",
        // Without archiving the server removes backup history files at once.
        "archive_mode = on",
        "archive_command = '/bin/true'",
    ]);
    let label = "nightly \"full\" backup — it's 100% %s ümlaut 日本語 \\ end  ";

    let mut s1 = c.connect();
    let pid1 = pid_of(&mut s1);
    let start = start_backup(&mut s1, label);
    assert!(in_backup(&mut s1));
    drop(s1);

    let mut s2 = c.connect();
    wait_backend_gone(&mut s2, pid1);
    assert!(
        in_backup(&mut s2),
        "the backup must outlive the session that started it"
    );

    let text = c.read_string("backup_label").expect("backup_label exists");
    let keys: Vec<&str> = text.lines().map(|l| l.split(": ").next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "START WAL LOCATION",
            "CHECKPOINT LOCATION",
            "BACKUP METHOD",
            "BACKUP FROM",
            "START TIME",
            "LABEL",
            "START TIMELINE",
            "START EPOCH"
        ],
        "{text}"
    );
    assert!(text.ends_with('\n'));
    assert_eq!(field(&text, "BACKUP METHOD"), Some("pg_start_backup"));
    assert_eq!(field(&text, "BACKUP FROM"), Some("primary"));
    assert_eq!(line_of(&text, "LABEL"), format!("LABEL: {label}"));
    assert_eq!(field(&text, "START TIMELINE"), Some("1"));
    let (label_start, label_file) = location(&text, "START WAL LOCATION");
    assert_eq!(label_start, start);
    assert_eq!(label_file, wal_file_and_offset(&mut s2, start).0);
    assert!(parse_lsn(field(&text, "CHECKPOINT LOCATION").unwrap()) >= start);
    let start_time_line = line_of(&text, "START TIME").to_string();
    assert!(start_time_line.ends_with(" IST"), "{start_time_line}");
    assert_eq!(
        start_time_in(&mut s2, "Asia/Kolkata").as_deref(),
        Some(&start_time_line["START TIME: ".len()..start_time_line.len() - 4])
    );
    let age: f64 = s2
        .query_one(
            "SELECT abs(extract(epoch FROM now() - pg_backup_start_time()))::float8",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(age < 120.0, "start time is {age} s away from now");
    assert!(!c.exists("tablespace_map"));

    // A third session stops it.
    let (mut s3, notices) = c.connect_with_notices();
    let stop = stop_backup(&mut s3, true);
    assert!(stop > start, "stop {stop:X} <= start {start:X}");
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n == "all required WAL segments have been archived"),
        "{:?}",
        notices.lock().unwrap()
    );
    assert!(!in_backup(&mut s3));
    assert!(!in_backup(&mut s2));
    assert_eq!(start_time_in(&mut s2, "UTC"), None);
    assert_no_backup_files(&c);

    let hist_name = format!("pg_wal/{}", history_file_name(&mut s3, start));
    let hist = c
        .read_string(&hist_name)
        .unwrap_or_else(|| panic!("no backup history file {hist_name}"));
    assert_eq!(line_of(&hist, "LABEL"), format!("LABEL: {label}"));
    assert_eq!(line_of(&hist, "START TIME"), start_time_line);
    assert_eq!(location(&hist, "START WAL LOCATION").0, start);
    assert_eq!(location(&hist, "STOP WAL LOCATION").0, stop);

    let e = db_error(s3.query_one("SELECT pg_stop_backup()", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    c.assert_log_clean();
}

#[test]
fn label_text_is_checked_and_kept_whole() {
    let c = Cluster::with_extension(&["archive_mode = on", "archive_command = '/bin/true'"]);
    let mut s = c.connect();
    for (bad, msg) in [
        ("two\nlines".to_string(), "backup label must not contain a line break"),
        (
            "carriage\rreturn".to_string(),
            "backup label must not contain a line break",
        ),
        ("a".repeat(1024), "backup label too long (max 1023 bytes)"),
        ("é".repeat(512), "backup label too long (max 1023 bytes)"),
    ] {
        let e = db_error(
            s.query_one("SELECT pg_start_backup($1, true)", &[&bad]),
            &SqlState::INVALID_PARAMETER_VALUE,
        );
        assert_eq!(e.message(), msg);
        assert!(!in_backup(&mut s));
        assert_no_backup_files(&c);
    }

    // 1023 bytes, multibyte, is the longest label and is kept whole.
    let longest = format!("{}x", "é".repeat(511));
    assert_eq!(longest.len(), 1023);
    let start = start_backup(&mut s, &longest);
    let text = c.read_string("backup_label").unwrap();
    assert_eq!(line_of(&text, "LABEL"), format!("LABEL: {longest}"));
    stop_backup(&mut s, false);
    let hist = c
        .read_string(&format!("pg_wal/{}", history_file_name(&mut s, start)))
        .unwrap();
    assert_eq!(line_of(&hist, "LABEL"), format!("LABEL: {longest}"));

    // The empty label works too.
    start_backup(&mut s, "");
    assert_eq!(field(&c.read_string("backup_label").unwrap(), "LABEL"), Some(""));
    stop_backup(&mut s, false);

    // Starting and stopping are not transactional.
    s.batch_execute("BEGIN; SELECT pg_start_backup('in a transaction', true); ROLLBACK")
        .unwrap();
    assert!(in_backup(&mut s));
    s.batch_execute("BEGIN; SELECT pg_stop_backup(false); ROLLBACK")
        .unwrap();
    assert!(!in_backup(&mut s));
    assert_no_backup_files(&c);
    c.assert_log_clean();
}

#[test]
fn concurrent_starts_have_exactly_one_winner() {
    const SESSIONS: usize = 8;
    const ROUNDS: usize = 50;
    let c = Cluster::with_extension(&["full_page_writes = off"]);
    let mut watcher = c.connect();
    let postmaster_start: String = watcher
        .query_one("SELECT pg_postmaster_start_time()::text", &[])
        .unwrap()
        .get(0);
    create_fpi_probe(&mut watcher);
    // The measurement can tell: no image without a backup, one with.
    assert_no_forced_fpi(&mut watcher, "before any backup");
    start_backup(&mut watcher, "probe");
    assert_forced_fpi(&mut watcher, "during a backup");
    stop_backup(&mut watcher, false);
    assert_no_forced_fpi(&mut watcher, "after one backup");

    let barrier = Arc::new(Barrier::new(SESSIONS));
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..SESSIONS)
        .map(|t| {
            let mut client = c.connect();
            let barrier = barrier.clone();
            let tx = tx.clone();
            let label_path = c.path("backup_label");
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    barrier.wait();
                    let label = format!("race {round} session {t}");
                    let started = client.query_one("SELECT pg_start_backup($1, true)", &[&label]);
                    // Every session has tried before the winner stops.
                    barrier.wait();
                    let outcome = match started {
                        Ok(_) => {
                            // The winner's label is the one on disk.
                            let on_disk = fs::read_to_string(&label_path).unwrap_or_default();
                            let ok = on_disk.contains(&format!("\nLABEL: {label}\n"));
                            let stopped = client
                                .query_one("SELECT pg_stop_backup(false)", &[])
                                .map(|_| ())
                                .map_err(|e| format!("stop failed: {e:?}"));
                            match (ok, stopped) {
                                (true, Ok(())) => Ok(()),
                                (false, _) => Err(format!("won, but backup_label is:\n{on_disk}")),
                                (_, Err(e)) => Err(e),
                            }
                        }
                        Err(e) => Err(match e.as_db_error() {
                            Some(db) => format!(
                                "{}: {} ({})",
                                db.code().code(),
                                db.message(),
                                db.detail().unwrap_or("-")
                            ),
                            None => format!("{e:?}"),
                        }),
                    };
                    tx.send((round, t, outcome)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for h in handles {
        h.join().unwrap();
    }
    let mut by_round = vec![Vec::new(); ROUNDS];
    for (round, t, outcome) in rx {
        by_round[round].push((t, outcome));
    }
    for (round, outcomes) in by_round.iter().enumerate() {
        assert_eq!(outcomes.len(), SESSIONS);
        let winners: Vec<_> = outcomes.iter().filter(|(_, o)| o.is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        for (t, o) in outcomes {
            if let Err(e) = o {
                assert!(
                    e.starts_with("55000: a backup is already in progress ("),
                    "round {round}, session {t}: {e}"
                );
            }
        }
    }
    // How the losers lost: most see the label before starting; those that
    // get as far as the server's backup mode lose at the exclusive publish.
    let at_publish = by_round
        .iter()
        .flatten()
        .filter(|(_, o)| matches!(o, Err(e) if e.contains("at the same time")))
        .count();
    eprintln!(
        "{at_publish} of {} losers lost at the exclusive publish",
        ROUNDS * (SESSIONS - 1)
    );

    // Still the same postmaster, and the watcher's connection survived.
    let now_start: String = watcher
        .query_one("SELECT pg_postmaster_start_time()::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(now_start, postmaster_start, "the server restarted");
    assert!(!in_backup(&mut watcher));
    assert_no_backup_files(&c);
    assert_no_forced_fpi(&mut watcher, "after the races");
    // Nothing left over: a new backup works.
    start_backup(&mut watcher, "after the races");
    stop_backup(&mut watcher, false);
    c.assert_log_clean();
    let log = c.log();
    assert!(!log.contains("aborting backup"), "{log}");
}

#[test]
fn concurrent_stops_have_exactly_one_winner() {
    const SESSIONS: usize = 8;
    const ROUNDS: usize = 20;
    let c = Cluster::with_extension(&["full_page_writes = off"]);
    let mut starter = c.connect();
    create_fpi_probe(&mut starter);
    let barrier = Arc::new(Barrier::new(SESSIONS + 1));
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..SESSIONS)
        .map(|t| {
            let mut client = c.connect();
            let barrier = barrier.clone();
            let tx = tx.clone();
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    // The starter has started this round's backup.
                    barrier.wait();
                    let outcome = match client.query_one("SELECT lsn FROM pg_stop_backup(false)", &[]) {
                        Ok(row) => Ok(lsn(row.get(0))),
                        Err(e) => Err(match e.as_db_error() {
                            Some(db) => format!("{}: {}", db.code().code(), db.message()),
                            None => format!("{e:?}"),
                        }),
                    };
                    tx.send((round, t, outcome)).unwrap();
                    barrier.wait();
                }
            })
        })
        .collect();
    drop(tx);
    let mut starts = Vec::new();
    for round in 0..ROUNDS {
        starts.push(start_backup(&mut starter, &format!("stop race {round}")));
        barrier.wait();
        barrier.wait();
    }
    for h in handles {
        h.join().unwrap();
    }
    let mut by_round = vec![Vec::new(); ROUNDS];
    for (round, t, outcome) in rx {
        by_round[round].push((t, outcome));
    }
    for (round, outcomes) in by_round.iter().enumerate() {
        assert_eq!(outcomes.len(), SESSIONS);
        let stops: Vec<u64> = outcomes.iter().filter_map(|(_, o)| o.as_ref().ok().copied()).collect();
        assert_eq!(stops.len(), 1, "round {round}: {outcomes:?}");
        assert!(stops[0] > starts[round]);
        for (t, o) in outcomes {
            if let Err(e) = o {
                assert_eq!(
                    e, "55000: exclusive backup not in progress",
                    "round {round}, session {t}"
                );
            }
        }
    }
    assert!(!in_backup(&mut starter));
    assert_no_backup_files(&c);
    assert_eq!(c.names_starting_with("backup_label"), Vec::<String>::new());
    assert_no_forced_fpi(&mut starter, "after the stop races");
    start_backup(&mut starter, "after the races");
    stop_backup(&mut starter, false);
    c.assert_log_clean();
}

#[test]
fn start_without_a_free_worker_slot_fails_cleanly() {
    let c = Cluster::with_extension(&["max_worker_processes = 0", "full_page_writes = off"]);
    let mut s = c.connect();
    create_fpi_probe(&mut s);
    // The wait for a slot can be cancelled...
    s.batch_execute("SET statement_timeout = '1s'").unwrap();
    let t = Instant::now();
    db_error(
        s.query_one("SELECT pg_start_backup('no slot', true)", &[]),
        &SqlState::QUERY_CANCELED,
    );
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    s.batch_execute("RESET statement_timeout").unwrap();
    // ...and gives up after about ten seconds.
    let t = Instant::now();
    let e = db_error(
        s.query_one("SELECT pg_start_backup('no slot', true)", &[]),
        &SqlState::INSUFFICIENT_RESOURCES,
    );
    let waited = t.elapsed();
    assert_eq!(e.message(), "could not start a background worker for pg_start_backup");
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "gave up after {waited:?}"
    );
    assert_no_backup_files(&c);
    assert!(!in_backup(&mut s));
    assert_no_forced_fpi(&mut s, "after the failed starts");
    c.assert_log_clean();
}

#[test]
fn tablespace_map_follows_tablespaces() {
    let c = Cluster::with_extension(&[]);
    let mut s = c.connect();

    // No tablespace: a stale map from an earlier backup is removed.
    c.write("tablespace_map", b"16999 /nonexistent/old\n");
    start_backup(&mut s, "no tablespaces");
    assert!(c.exists("backup_label"));
    assert!(!c.exists("tablespace_map"), "stale tablespace_map kept");
    stop_backup(&mut s, false);
    assert_no_backup_files(&c);

    let dir = c.make_dir("ts one");
    s.batch_execute(&format!("CREATE TABLESPACE ts1 LOCATION '{}'", dir.display()))
        .unwrap();
    s.batch_execute("CREATE TABLE in_ts (x int) TABLESPACE ts1").unwrap();
    let oid: postgres::types::Oid = s
        .query_one("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'", &[])
        .unwrap()
        .get(0);
    start_backup(&mut s, "with a tablespace");
    assert_eq!(
        c.read_string("tablespace_map").expect("tablespace_map written"),
        format!("{oid} {}\n", dir.display())
    );
    assert!(c.exists("backup_label"));
    let (mut other, _) = c.connect_with_notices();
    stop_backup(&mut other, false);
    assert_no_backup_files(&c);
    c.assert_log_clean();
}

#[test]
fn unwritable_tablespace_map_fails_the_start_cleanly() {
    let c = Cluster::with_extension(&["full_page_writes = off"]);
    let mut s = c.connect();
    create_fpi_probe(&mut s);
    assert_no_forced_fpi(&mut s, "before");

    // A non-empty directory named tablespace_map is refused at once.
    let blocker = c.path("tablespace_map");
    let block = || {
        fs::create_dir(&blocker).unwrap();
        install().chown(&blocker);
        c.write("tablespace_map/keep", b"x");
    };
    block();
    let e = db_error(
        s.query_one("SELECT pg_start_backup('blocked', true)", &[]),
        &SqlState::WRONG_OBJECT_TYPE,
    );
    assert_eq!(
        e.message(),
        "\"tablespace_map\" in the data directory is not a regular file"
    );
    assert_eq!(
        e.detail(),
        Some("It is a directory; pg_exclusive_backup only ever writes regular files there.")
    );
    assert!(!in_backup(&mut s));
    fs::remove_dir_all(&blocker).unwrap();

    // Put there while the worker is in backup mode, it makes the worker's
    // last step fail: without tablespaces the start must remove a stale map,
    // and cannot; the worker undoes the start.
    set_test_pause(&c, "worker_started:1500");
    let blocked = std::thread::scope(|scope| {
        let starter = scope.spawn(|| {
            let mut s = c.connect();
            s.query_one("SELECT pg_start_backup('blocked', true)", &[]).map(|_| ())
        });
        wait_until("the worker's pause", Duration::from_secs(20), || {
            c.log().contains("test pause at worker_started")
        });
        block();
        starter.join().unwrap()
    });
    let e = db_error(blocked, &SqlState::WRONG_OBJECT_TYPE);
    assert!(
        e.message().starts_with("could not remove file \"tablespace_map\""),
        "{}",
        e.message()
    );
    assert_eq!(c.names_starting_with("backup_label"), Vec::<String>::new());
    assert_eq!(c.names_starting_with("tablespace_map"), ["tablespace_map"]);
    assert!(!in_backup(&mut s));
    assert_no_forced_fpi(&mut s, "after a failed start without tablespaces");
    fs::remove_dir_all(&blocker).unwrap();

    // With a tablespace the map cannot be renamed into place.
    let dir = c.make_dir("ts");
    s.batch_execute(&format!("CREATE TABLESPACE ts LOCATION '{}'", dir.display()))
        .unwrap();
    let log_from = c.log().len();
    let blocked = std::thread::scope(|scope| {
        let starter = scope.spawn(|| {
            let mut s = c.connect();
            s.query_one("SELECT pg_start_backup('blocked', true)", &[]).map(|_| ())
        });
        wait_until("the worker's pause", Duration::from_secs(20), || {
            c.log()[log_from..].contains("test pause at worker_started")
        });
        block();
        starter.join().unwrap()
    });
    let e = db_error(blocked, &SqlState::WRONG_OBJECT_TYPE);
    assert!(
        e.message().starts_with("could not rename file \"tablespace_map\""),
        "{}",
        e.message()
    );
    assert_eq!(c.names_starting_with("backup_label"), Vec::<String>::new());
    assert_eq!(c.names_starting_with("tablespace_map"), ["tablespace_map"]);
    assert!(!in_backup(&mut s));
    s.batch_execute("SELECT 1").unwrap();
    assert_no_forced_fpi(&mut s, "after a failed start with a tablespace");
    set_test_pause(&c, "");

    // Out of the way, the same session starts and stops a backup.
    fs::remove_dir_all(&blocker).unwrap();
    start_backup(&mut s, "unblocked");
    assert!(c
        .read_string("tablespace_map")
        .unwrap()
        .ends_with(&format!(" {}\n", dir.display())));
    assert_forced_fpi(&mut s, "during the backup");
    stop_backup(&mut s, false);
    assert_no_backup_files(&c);
    assert_no_forced_fpi(&mut s, "after the backup");
    c.assert_log_clean();
}

/// A cluster archiving into `<root>/archive`; archiving sleeps 3 s per file
/// while `<root>/slow` exists.
fn archiving_cluster() -> (Cluster, std::path::PathBuf, std::path::PathBuf) {
    let mut c = Cluster::init(&[]);
    let archive = c.make_dir("archive");
    let slow = c.root().join("slow");
    c.append_conf(&[
        "archive_mode = on",
        &format!(
            "archive_command = 'if [ -f \"{}\" ]; then sleep 3; fi; cp %p \"{}/%f\"'",
            slow.display(),
            archive.display()
        ),
    ]);
    c.start();
    c.create_extension();
    (c, archive, slow)
}

fn wait_archiver_idle(c: &Cluster) {
    let status = c.path("pg_wal/archive_status");
    wait_until("the archiver to catch up", Duration::from_secs(60), || {
        !fs::read_dir(&status)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".ready"))
    });
}

#[test]
fn stop_archives_history_file_and_waits_only_when_asked() {
    let (c, archive, slow) = archiving_cluster();
    let (mut s, notices) = c.connect_with_notices();
    let done = "all required WAL segments have been archived";

    // Waiting: the history file and the last segment are archived on return.
    let start = start_backup(&mut s, "archived 'one'");
    let stop = stop_backup(&mut s, true);
    assert!(notices.lock().unwrap().iter().any(|n| n == done));
    let hist_name = history_file_name(&mut s, start);
    let hist = fs::read_to_string(archive.join(&hist_name)).unwrap_or_else(|e| panic!("{hist_name} not archived: {e}"));
    assert_eq!(line_of(&hist, "LABEL"), "LABEL: archived 'one'");
    assert_eq!(location(&hist, "STOP WAL LOCATION").0, stop);
    let last_segment: String = s
        .query_one("SELECT pg_walfile_name($1)", &[&PgLsn::from(stop)])
        .unwrap()
        .get(0);
    assert!(archive.join(&last_segment).exists(), "{last_segment} not archived");

    // Not waiting returns at once, however slow archiving is.
    wait_archiver_idle(&c);
    fs::write(&slow, b"").unwrap();
    start_backup(&mut s, "no wait");
    notices.lock().unwrap().clear();
    let t = Instant::now();
    stop_backup(&mut s, false);
    let quick = t.elapsed();
    assert!(
        quick < Duration::from_millis(1500),
        "pg_stop_backup(false) took {quick:?}"
    );
    assert!(!notices.lock().unwrap().iter().any(|n| n == done));

    // Waiting with slow archiving takes as long as archiving does.
    fs::remove_file(&slow).unwrap();
    wait_archiver_idle(&c);
    let start = start_backup(&mut s, "wait for it");
    wait_archiver_idle(&c);
    fs::write(&slow, b"").unwrap();
    notices.lock().unwrap().clear();
    let t = Instant::now();
    stop_backup(&mut s, true);
    let slow_stop = t.elapsed();
    assert!(
        slow_stop >= Duration::from_millis(2500),
        "pg_stop_backup(true) took only {slow_stop:?}"
    );
    assert!(notices.lock().unwrap().iter().any(|n| n == done));
    let hist_name = history_file_name(&mut s, start);
    let hist = fs::read_to_string(archive.join(&hist_name))
        .unwrap_or_else(|e| panic!("{hist_name} not archived when pg_stop_backup(true) returned: {e}"));
    assert_eq!(line_of(&hist, "LABEL"), "LABEL: wait for it");
    fs::remove_file(&slow).unwrap();

    let failed: i64 = s
        .query_one("SELECT failed_count FROM pg_stat_archiver", &[])
        .unwrap()
        .get(0);
    assert_eq!(failed, 0);
    c.assert_log_clean();
}

#[test]
fn copied_data_directory_restores_from_the_archive() {
    let (c, archive, _) = archiving_cluster();
    let mut s = c.connect();
    s.batch_execute("CREATE TABLE t (note text); INSERT INTO t VALUES ('before')")
        .unwrap();
    start_backup(&mut s, "file copy");
    s.batch_execute("INSERT INTO t VALUES ('during, before the copy')")
        .unwrap();
    let mut restored = Cluster::from_copy(
        c.data_dir(),
        &[
            "archive_mode = off",
            &format!("restore_command = 'cp \"{}/%f\" %p'", archive.display()),
        ],
    );
    s.batch_execute("INSERT INTO t VALUES ('during, after the copy')")
        .unwrap();
    let (mut stopper, _) = c.connect_with_notices();
    stop_backup(&mut stopper, true);

    restored.write("recovery.signal", b"");
    restored.start();
    let mut r = restored.connect();
    wait_until(
        "the restored cluster to finish recovery",
        Duration::from_secs(60),
        || {
            !r.query_one("SELECT pg_is_in_recovery()", &[])
                .unwrap()
                .get::<_, bool>(0)
        },
    );
    let notes: Vec<String> = r
        .query("SELECT note FROM t ORDER BY note", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(notes, ["before", "during, after the copy", "during, before the copy"]);
    assert!(!restored.exists("backup_label"));
    let old = restored.read_string("backup_label.old").expect("backup_label.old");
    assert_eq!(field(&old, "LABEL"), Some("file copy"));
    assert!(!in_backup(&mut r));
    r.batch_execute("INSERT INTO t VALUES ('writable')").unwrap();
    // The copy was taken from a running server: its pg_control says so.
    restored.assert_log_clean_except(&["database system was interrupted"]);
    c.assert_log_clean();
}

#[test]
fn functions_refuse_during_recovery() {
    let primary = Cluster::with_extension(&[]);
    let standby = Cluster::standby_of(&primary, &[]);
    let mut s = standby.connect();
    assert!(s
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get::<_, bool>(0));

    for sql in [
        "SELECT pg_start_backup('on a standby', true)",
        "SELECT pg_stop_backup(false)",
    ] {
        let e = db_error(s.query_one(sql, &[]), NOT_READY);
        assert_eq!(e.message(), "recovery is in progress", "{sql}");
        assert_eq!(
            e.hint(),
            Some("WAL control functions cannot be executed during recovery."),
            "{sql}"
        );
    }
    assert!(!in_backup(&mut s));
    assert_eq!(start_time_in(&mut s, "UTC"), None);
    assert!(!standby.exists("backup_label"));

    // A label lying in a standby's data directory is not a running backup.
    standby.write("backup_label", b"not a label\n");
    assert!(!in_backup(&mut s));
    assert_eq!(start_time_in(&mut s, "UTC"), None);
    let e = db_error(s.query_one("SELECT pg_stop_backup()", &[]), NOT_READY);
    assert_eq!(e.message(), "recovery is in progress");
    assert_eq!(standby.read("backup_label").unwrap(), b"not a label\n");
    fs::remove_file(standby.path("backup_label")).unwrap();

    // The primary is unaffected.
    let mut p = primary.connect();
    start_backup(&mut p, "primary");
    stop_backup(&mut p, false);
    // A base backup's first start says so.
    standby.assert_log_clean_except(&["database system was interrupted"]);
    primary.assert_log_clean();
}

#[test]
fn wal_level_minimal_refuses_start() {
    let c = Cluster::with_extension(&["wal_level = minimal", "max_wal_senders = 0", "archive_mode = off"]);
    let mut s = c.connect();
    for _ in 0..2 {
        let e = db_error(s.query_one("SELECT pg_start_backup('minimal', true)", &[]), NOT_READY);
        assert_eq!(e.message(), "WAL level not sufficient for making an online backup");
        assert_no_backup_files(&c);
        assert!(!in_backup(&mut s));
    }
    let e = db_error(s.query_one("SELECT pg_stop_backup(false)", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    s.batch_execute("SELECT 1").unwrap();
    c.assert_log_clean();
}

#[test]
fn corrupt_backup_label_is_reported_and_left_alone() {
    let c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    // A real label to mutilate.
    start_backup(&mut s, "the real one");
    let good = c.read_string("backup_label").unwrap();
    stop_backup(&mut s, false);
    assert_no_backup_files(&c);

    let without = |key: &str| -> Vec<u8> {
        good.lines()
            .filter(|l| !l.starts_with(&format!("{key}: ")))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let mut cut = good.len() / 2;
    while good.as_bytes()[cut - 1] == b'\n' {
        cut -= 1;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good.as_bytes()[..cut].to_vec(), "truncated"),
        ("no START TIME", without("START TIME"), "START TIME"),
        ("garbage", b"\x00\xff\xfe garbage \x01\n".to_vec(), "START WAL LOCATION"),
        (
            // A pg_basebackup label: streamed, and no START EPOCH line.
            "streamed",
            String::from_utf8(without("START EPOCH"))
                .unwrap()
                .replace("BACKUP METHOD: pg_start_backup", "BACKUP METHOD: streamed")
                .into_bytes(),
            "streamed",
        ),
        ("empty", Vec::new(), "empty"),
        ("huge", vec![b'x'; 20000], "bytes long"),
    ];
    let map = b"16999 /somewhere\n";
    for (what, bytes, detail) in &cases {
        c.write("backup_label", bytes);
        c.write("tablespace_map", map);
        for sql in [
            "SELECT pg_is_in_backup()::text",
            "SELECT pg_backup_start_time()::text",
            "SELECT pg_stop_backup(false)::text",
            "SELECT pg_stop_backup(true)::text",
        ] {
            let e = db_error(s.query_one(sql, &[]), NOT_READY);
            assert_eq!(e.message(), "invalid data in file \"backup_label\"", "{what}: {sql}");
            let d = e.detail().unwrap_or_default();
            assert!(d.contains(detail), "{what}: {sql}: detail {d:?}");
            assert_eq!(
                c.read("backup_label").as_ref(),
                Some(bytes),
                "{what}: {sql} changed the label"
            );
            assert_eq!(
                c.read("tablespace_map").as_deref(),
                Some(&map[..]),
                "{what}: {sql} touched the map"
            );
            // The backend survives.
            s.batch_execute("SELECT 1").unwrap();
        }
        let e = db_error(s.query_one("SELECT pg_start_backup('over it', true)", &[]), NOT_READY);
        assert_eq!(e.message(), "a backup is already in progress", "{what}");
        assert_eq!(
            c.read("backup_label").as_ref(),
            Some(bytes),
            "{what}: start changed the label"
        );
        assert_eq!(
            c.names_starting_with("backup_label"),
            ["backup_label"],
            "{what}: files left behind"
        );
        assert_eq!(c.names_starting_with("tablespace_map"), ["tablespace_map"]);
    }

    // A good state again: everything works.
    fs::remove_file(c.path("backup_label")).unwrap();
    assert!(!in_backup(&mut s));
    start_backup(&mut s, "after the cleanup");
    assert!(!c.exists("tablespace_map"), "start keeps a stale map");
    assert!(in_backup(&mut s));
    stop_backup(&mut s, false);
    assert_no_backup_files(&c);
    c.assert_log_clean();
}

#[test]
fn start_and_stop_need_execute_privilege() {
    let c = Cluster::with_extension(&[]);
    let mut su = c.connect();
    su.batch_execute("CREATE ROLE alice LOGIN").unwrap();
    let mut alice = c.connect_as("alice", "postgres");

    for (sql, func) in [
        ("SELECT pg_start_backup('by alice', true)", "pg_start_backup"),
        ("SELECT pg_stop_backup(false)", "pg_stop_backup"),
    ] {
        let e = db_error(alice.query_one(sql, &[]), &SqlState::INSUFFICIENT_PRIVILEGE);
        assert_eq!(e.message(), format!("permission denied for function {func}"));
    }
    assert!(!in_backup(&mut alice));
    assert_eq!(start_time_in(&mut alice, "UTC"), None);

    start_backup(&mut su, "by the superuser");
    assert!(in_backup(&mut alice));
    assert!(start_time_in(&mut alice, "UTC").is_some());
    db_error(
        alice.query_one("SELECT pg_stop_backup(false)", &[]),
        &SqlState::INSUFFICIENT_PRIVILEGE,
    );
    assert!(in_backup(&mut alice));
    stop_backup(&mut su, false);

    su.batch_execute("GRANT EXECUTE ON FUNCTION pg_start_backup(text, boolean), pg_stop_backup(boolean) TO alice")
        .unwrap();
    start_backup(&mut alice, "by alice");
    assert_eq!(
        field(&c.read_string("backup_label").unwrap(), "LABEL"),
        Some("by alice")
    );
    stop_backup(&mut alice, false);
    assert!(!in_backup(&mut su));
    c.assert_log_clean();
}

#[test]
fn builtin_non_exclusive_backups_work_side_by_side() {
    let c = Cluster::with_extension(&["full_page_writes = off"]);
    let mut s = c.connect();
    create_fpi_probe(&mut s);
    let present: bool = s
        .query_one(
            "SELECT to_regprocedure('pg_backup_start(text,boolean)') IS NOT NULL
                AND to_regprocedure('pg_backup_stop(boolean)') IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(present, "the built-ins must stay in the extension's database");

    // A non-exclusive backup alone: no label, not an exclusive backup.
    s.query_one("SELECT pg_backup_start('non-exclusive', true)", &[])
        .unwrap();
    assert!(!in_backup(&mut s));
    assert!(!c.exists("backup_label"));
    let labelfile: String = s
        .query_one("SELECT labelfile FROM pg_backup_stop(false)", &[])
        .unwrap()
        .get(0);
    assert_eq!(field(&labelfile, "LABEL"), Some("non-exclusive"));
    assert_eq!(field(&labelfile, "BACKUP METHOD"), Some("streamed"));
    assert_no_forced_fpi(&mut s, "after the non-exclusive backup");

    // The built-in stop in a session that started an exclusive backup: the
    // session has no backup of its own, so a clean error, no crash.
    start_backup(&mut s, "exclusive");
    let e = db_error(s.query("SELECT * FROM pg_backup_stop(false)", &[]), NOT_READY);
    assert_eq!(e.message(), "backup is not in progress");
    assert!(in_backup(&mut s), "the built-in stop ended the exclusive backup");
    // And a non-exclusive backup in that very session.
    s.query_one("SELECT pg_backup_start('nx in the same session', true)", &[])
        .unwrap();
    // The exclusive stop would reset this session's non-exclusive backup.
    let e = db_error(s.query_one("SELECT pg_stop_backup()", &[]), NOT_READY);
    assert_eq!(e.message(), "a non-exclusive backup is in progress in this session");
    let e = db_error(s.query("SELECT * FROM pg_stop_backup(true)", &[]), NOT_READY);
    assert_eq!(e.message(), "a non-exclusive backup is in progress in this session");
    assert!(in_backup(&mut s));
    assert!(c.exists("backup_label"));
    let labelfile: String = s
        .query_one("SELECT labelfile FROM pg_backup_stop(false)", &[])
        .unwrap()
        .get(0);
    assert_eq!(field(&labelfile, "LABEL"), Some("nx in the same session"));
    assert!(in_backup(&mut s), "the non-exclusive stop ended the exclusive backup");
    assert_forced_fpi(&mut s, "while the exclusive backup still runs");

    // In the other order: the exclusive one ends first.
    let mut o = c.connect();
    o.query_one("SELECT pg_backup_start('nx other session', true)", &[])
        .unwrap();
    stop_backup(&mut s, false);
    assert!(!in_backup(&mut s));
    assert_forced_fpi(&mut s, "while the non-exclusive backup still runs");
    // A new exclusive backup while the non-exclusive one runs, started in
    // the session that runs it.
    start_backup(&mut o, "exclusive 2");
    o.query_one("SELECT labelfile FROM pg_backup_stop(false)", &[]).unwrap();
    assert!(in_backup(&mut o));
    stop_backup(&mut o, false);
    assert_no_backup_files(&c);
    assert_no_forced_fpi(&mut s, "after all backups");

    // A database without the extension has only the built-ins.
    s.batch_execute("CREATE DATABASE other").unwrap();
    let mut other = c.connect_as("postgres", "other");
    db_error(
        other.query("SELECT pg_start_backup('x', true)", &[]),
        &SqlState::UNDEFINED_FUNCTION,
    );
    other
        .query_one("SELECT pg_backup_start('in other', true)", &[])
        .unwrap();
    other
        .query_one("SELECT labelfile FROM pg_backup_stop(false)", &[])
        .unwrap();
    assert_no_forced_fpi(&mut s, "at the end");
    c.assert_log_clean();
}

#[test]
fn session_whose_backup_was_stopped_elsewhere() {
    let c = Cluster::with_extension(&["full_page_writes = off"]);
    let mut s1 = c.connect();
    let mut s2 = c.connect();
    create_fpi_probe(&mut s2);
    start_backup(&mut s1, "first");
    stop_backup(&mut s2, false);
    assert!(!in_backup(&mut s1));
    assert_no_forced_fpi(&mut s2, "after stopping from another session");

    // The session that started the stopped backup starts and stops again,
    // and its failed starts leave nothing behind either.
    start_backup(&mut s1, "second");
    assert_eq!(field(&c.read_string("backup_label").unwrap(), "LABEL"), Some("second"));
    let e = db_error(s1.query_one("SELECT pg_start_backup('third', true)", &[]), NOT_READY);
    assert_eq!(e.message(), "a backup is already in progress");
    stop_backup(&mut s1, false);
    assert_no_forced_fpi(&mut s2, "after the second backup");
    // Its own session state is untouched: a non-exclusive backup works.
    s1.query_one("SELECT pg_backup_start('nx', true)", &[]).unwrap();
    s1.query_one("SELECT labelfile FROM pg_backup_stop(false)", &[])
        .unwrap();

    // The first session's exit changes nothing; a new session works.
    start_backup(&mut s1, "left running");
    let pid1 = pid_of(&mut s1);
    drop(s1);
    wait_backend_gone(&mut s2, pid1);
    assert!(in_backup(&mut s2));
    assert_forced_fpi(&mut s2, "after the starting session exited");
    stop_backup(&mut s2, false);
    let mut s3 = c.connect();
    start_backup(&mut s3, "third");
    stop_backup(&mut s2, false);
    assert_no_backup_files(&c);
    assert_no_forced_fpi(&mut s2, "at the end");
    c.assert_log_clean();
}

/// PIDs of the background workers pg_start_backup started for backend
/// `pid` that are still alive.
fn start_workers_of(pid: i32) -> Vec<String> {
    let wanted = format!("pg_exclusive_backup start for PID {pid}");
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let cmd = fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmd).contains(&wanted).then_some(name)
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interrupt {
    Cancel,
    StatementTimeout,
    Terminate,
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
        // Let the worker get into the checkpoint.
        thread::sleep(Duration::from_millis(500));
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
            assert_eq!(
                start_workers_of(pid),
                Vec::<String>::new(),
                "{how:?}: worker still alive"
            );
            victim.batch_execute("RESET statement_timeout; SELECT 1").unwrap();
            assert!(!in_backup(&mut victim));
        }
        wait_until("the worker to exit", Duration::from_secs(20), || {
            start_workers_of(pid).is_empty()
        });
        assert_no_backup_files(&c);
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

#[test]
fn restart_interrupts_the_backup() {
    let mut c = Cluster::with_extension(&["full_page_writes = off"]);
    let mut s = c.connect();
    create_fpi_probe(&mut s);
    start_backup(&mut s, "cut short");
    drop(s);
    c.restart();
    let mut s = c.connect();
    // The server took the label over at startup, as if restoring a backup.
    assert!(!c.exists("backup_label"));
    assert_eq!(
        field(&c.read_string("backup_label.old").expect("backup_label.old"), "LABEL"),
        Some("cut short")
    );
    assert!(!in_backup(&mut s));
    assert_eq!(start_time_in(&mut s, "UTC"), None);
    let e = db_error(s.query_one("SELECT pg_stop_backup(false)", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    let d = e.detail().unwrap_or_default();
    assert!(
        d.contains("\"cut short\"") && d.contains("backup_label.old"),
        "detail: {d:?}"
    );
    assert_no_forced_fpi(&mut s, "after the restart");
    // The extension tells later changes apart by the data directory's
    // mtime, to the second, with one second of slack.
    thread::sleep(Duration::from_millis(2100));
    start_backup(&mut s, "after the restart");
    stop_backup(&mut s, false);
    // Once another backup ran, the old label no longer explains anything.
    let e = db_error(s.query_one("SELECT pg_stop_backup(false)", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    assert_eq!(e.detail(), None);
    assert_eq!(c.names_starting_with("backup_label"), ["backup_label.old"]);
    assert!(!c.exists("tablespace_map"));
    c.assert_log_clean();
}

#[test]
fn rust_panic_is_reported_as_an_error() {
    let c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    s.batch_execute(
        "CREATE FUNCTION peb_test_panic() RETURNS void
           AS '$libdir/pg_exclusive_backup', 'peb_test_panic' LANGUAGE C",
    )
    .unwrap();
    for _ in 0..2 {
        let e = db_error(s.query("SELECT peb_test_panic()", &[]), &SqlState::INTERNAL_ERROR);
        assert!(
            e.message().starts_with("pg_exclusive_backup internal error: "),
            "{}",
            e.message()
        );
        s.batch_execute("SELECT 1").unwrap();
    }
    start_backup(&mut s, "after a panic");
    stop_backup(&mut s, false);
    c.assert_log_clean();
}
