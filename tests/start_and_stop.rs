//! Starting in one session and stopping in another: the label, the map,
//! the history file and the WAL switch, what the functions return and
//! refuse (recovery, wal_level, privileges), and how exclusive backups live
//! beside the server's own non-exclusive ones.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::proof::*;
use common::*;
use postgres::error::SqlState;
use postgres::types::PgLsn;
use postgres::Client;

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
    assert_eq!(backup_files(&c), Vec::<String>::new());

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
        assert_eq!(backup_files(&c), Vec::<String>::new());
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
    assert_eq!(backup_files(&c), Vec::<String>::new());
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
    assert_eq!(backup_files(&c), Vec::<String>::new());
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
    assert_eq!(backup_files(&c), Vec::<String>::new());

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
    assert_eq!(backup_files(&c), Vec::<String>::new());
    c.assert_log_clean();
}

#[test]
fn stop_archives_history_file_and_waits_only_when_asked() {
    let (c, archive) = archiving_cluster("if [ -f \"ROOT/slow\" ]; then sleep 3; fi; cp %p \"ARCHIVE/%f\"", "on");
    let slow = c.root().join("slow");
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
        assert_eq!(backup_files(&c), Vec::<String>::new());
        assert!(!in_backup(&mut s));
    }
    let e = db_error(s.query_one("SELECT pg_stop_backup(false)", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    s.batch_execute("SELECT 1").unwrap();
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
    assert_eq!(backup_files(&c), Vec::<String>::new());
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
    assert_eq!(backup_files(&c), Vec::<String>::new());
    assert_no_forced_fpi(&mut s2, "at the end");
    c.assert_log_clean();
}

/// Issue 10.7: label text in pg_stop_backup's DETAIL after a restart ended
/// the backup reaches the client intact: as the database reads it when it
/// is valid in its encoding, escaped byte by byte where it is not.
#[test]
fn label_text_in_messages_follows_the_database_encoding() {
    let (mut c, _) = probed_cluster(&[]);
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
