//! pg_stop_backup(true) waits for the archiver itself: for the same two
//! files as the server (the last WAL segment of the backup and its history
//! file), with the server's messages at the server's moments, but noticing
//! the archiver's completion within milliseconds instead of on the next
//! tick of a one-second clock.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::proof::*;
use common::*;
use postgres::error::{DbError, SqlState};
use postgres::types::PgLsn;
use postgres::{Client, NoTls};

/// (severity, message, hint) of every notice and warning a connection got.
type Heard = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

fn connect_listening(c: &Cluster) -> (Client, Heard) {
    let heard: Heard = Arc::default();
    let sink = heard.clone();
    let client = postgres::Config::new()
        .host("127.0.0.1")
        .port(c.port())
        .user("postgres")
        .dbname("postgres")
        .notice_callback(move |n: DbError| {
            sink.lock().unwrap().push((
                n.severity().to_string(),
                n.message().to_string(),
                n.hint().map(str::to_string),
            ))
        })
        .connect(NoTls)
        .unwrap();
    (client, heard)
}

/// What the session heard, but pg_start_backup's note that preload mode
/// is off (tests/restart_with_preload.rs checks that one).
fn messages(heard: &Heard) -> Vec<String> {
    heard
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, m, _)| m != "pg_exclusive_backup is not in shared_preload_libraries")
        .map(|(s, m, _)| format!("{s}: {m}"))
        .collect()
}

/// The two files the stop waits for: the WAL segment holding the last byte
/// before the stop LSN, and the backup history file.
fn awaited_files(s: &mut Client, start: u64, stop: u64) -> (String, String) {
    let last: String = s
        .query_one("SELECT pg_walfile_name($1)", &[&PgLsn::from(stop - 1)])
        .unwrap()
        .get(0);
    let row = s
        .query_one(
            "SELECT file_name, file_offset FROM pg_walfile_name_offset($1)",
            &[&PgLsn::from(start)],
        )
        .unwrap();
    let (file, offset): (String, i32) = (row.get(0), row.get(1));
    (last, format!("{file}.{offset:08X}.backup"))
}

/// When the archiver marked `file` done (the rename to .done sets ctime).
fn done_at(c: &Cluster, file: &str) -> Option<SystemTime> {
    let m = std::fs::metadata(c.path(&format!("pg_wal/archive_status/{file}.done"))).ok()?;
    Some(UNIX_EPOCH + Duration::new(m.ctime() as u64, m.ctime_nsec() as u32))
}

#[test]
fn stop_returns_as_soon_as_the_archiver_is_done() {
    // A slow archiver: each file takes 0.3 s.
    let (c, archive) = archiving_cluster("sleep 0.3 && cp %p ARCHIVE/%f", "on");
    let (mut s, heard) = connect_listening(&c);
    for round in 0..3 {
        let start = start_backup(&mut s, &format!("round {round}"));
        let t = Instant::now();
        let stop = stop_backup(&mut s, true);
        let returned = SystemTime::now();
        let took = t.elapsed();
        let (last, history) = awaited_files(&mut s, start, stop);
        let done = [done_at(&c, &last), done_at(&c, &history)];
        assert!(
            done.iter().all(Option::is_some),
            "round {round}: pg_stop_backup(true) returned before {last} and {history} were archived"
        );
        assert!(Path::new(&archive).join(&history).exists());
        let latest = done.iter().flatten().max().copied().unwrap();
        let late = returned.duration_since(latest).unwrap_or_default();
        eprintln!("round {round}: stop took {took:?}, returned {late:?} after the archiver finished");
        // The server's own wait would often come up to a second late.
        assert!(
            late < Duration::from_millis(400),
            "round {round}: returned {late:?} after the archiver"
        );
        let m = messages(&heard);
        assert_eq!(
            m.last().map(String::as_str),
            Some("NOTICE: all required WAL segments have been archived")
        );
        assert!(!m.iter().any(|x| x.contains("waiting")), "{m:?}");
        heard.lock().unwrap().clear();
    }
    assert_no_forced_fpi(&mut s, "after the backups");
    c.assert_log_clean();
}

/// CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn stop_waiting_for_a_failing_archiver_reports_like_the_server_and_can_be_cancelled() {
    let (c, _) = archiving_cluster("false", "on");
    let (mut s, heard) = connect_listening(&c);
    let pid: i32 = s.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // 30 seconds of the wait's clock per real second: the 60 s warning
    // after 2 s, the 120 s one after 4 s.
    s.batch_execute("SET pg_exclusive_backup.test_archive_clock_scale = 30")
        .unwrap();
    start_backup(&mut s, "never archived");
    // Only the stop's messages.
    heard.lock().unwrap().clear();
    let mut admin = c.connect();
    let ticks_before = cpu_ticks(pid);
    let h = thread::spawn(move || {
        let r = s.query_one("SELECT pg_stop_backup(true)", &[]).map(|_| ());
        (r, s)
    });
    wait_until("the 120 s warning", Duration::from_secs(20), || {
        messages(&heard).iter().any(|m| m.contains("(120 seconds elapsed)"))
    });
    let event: Option<String> = admin
        .query_one("SELECT wait_event FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap()
        .get(0);
    assert_eq!(event.as_deref(), Some("BackupWaitWalArchive"));
    let ticks = cpu_ticks(pid) - ticks_before;
    // SAFETY: plain libc call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    eprintln!("CPU during {}s of waiting: {} ms", 4, ticks * 1000 / hz);
    assert!(
        ticks * 1000 / hz < 400,
        "the wait burned {} ms of CPU",
        ticks * 1000 / hz
    );
    assert!(admin
        .query_one("SELECT pg_cancel_backend($1)", &[&pid])
        .unwrap()
        .get::<_, bool>(0));
    let (r, _s) = h.join().unwrap();
    let e = db_error(r, &SqlState::QUERY_CANCELED);
    assert_eq!(e.message(), "canceling statement due to user request");

    let got = heard.lock().unwrap().clone();
    let seen: Vec<String> = got.iter().map(|(s, m, _)| format!("{s}: {m}")).collect();
    assert_eq!(
        seen,
        [
            "NOTICE: base backup done, waiting for required WAL segments to be archived",
            "WARNING: still waiting for all required WAL segments to be archived (60 seconds elapsed)",
            "WARNING: still waiting for all required WAL segments to be archived (120 seconds elapsed)",
        ]
    );
    let quoted = if install().major >= 17 {
        "\"archive_command\""
    } else {
        "archive_command"
    };
    assert_eq!(
        got[1].2.as_deref(),
        Some(
            format!(
                "Check that your {quoted} is executing properly.  You can safely cancel this backup, \
                 but the database backup will not be usable without all the WAL segments."
            )
            .as_str()
        )
    );
    // The backup ended before the wait began.
    assert!(!c.exists("backup_label"));
    assert!(!in_backup(&mut admin));
    assert_no_forced_fpi(&mut admin, "after the cancelled wait");
    c.assert_log_clean();
}

#[test]
fn stop_without_archiving_says_so_at_once() {
    let (c, _) = archiving_cluster("false", "off");
    let (mut s, heard) = connect_listening(&c);
    start_backup(&mut s, "no archive");
    let t = Instant::now();
    stop_backup(&mut s, true);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        messages(&heard),
        ["NOTICE: WAL archiving is not enabled; you must ensure that all required WAL segments are copied through other means to complete the backup"]
    );
    assert_no_forced_fpi(&mut s, "after the backup");
    c.assert_log_clean();
}

#[test]
fn archive_mode_always_on_a_primary_waits_as_on() {
    let (c, _) = archiving_cluster("cp %p ARCHIVE/%f", "always");
    let (mut s, heard) = connect_listening(&c);
    let start = start_backup(&mut s, "always");
    let stop = stop_backup(&mut s, true);
    let (last, history) = awaited_files(&mut s, start, stop);
    assert!(done_at(&c, &last).is_some() && done_at(&c, &history).is_some());
    assert_eq!(
        messages(&heard),
        ["NOTICE: all required WAL segments have been archived"]
    );
    assert_no_forced_fpi(&mut s, "after the backup");
    c.assert_log_clean();
}

/// PostgreSQL 14's one-argument stop in a session holding a non-exclusive
/// backup is 14's non-exclusive stop, which waits for the archiver, whatever
/// the argument is called: a slow archiver has archived both files by the
/// time the row comes back.
#[test]
fn fourteen_s_non_exclusive_stop_waits_for_the_archiver() {
    let (c, _) = archiving_cluster("sleep 0.3 && cp %p ARCHIVE/%f", "on");
    let (mut s, heard) = connect_listening(&c);
    for stop_sql in [
        "SELECT lsn, labelfile FROM pg_stop_backup(false)",
        "SELECT lsn, labelfile FROM pg_stop_backup(wait_for_archive => false)",
    ] {
        let start: PgLsn = s
            .query_one("SELECT pg_start_backup('fourteen', true, false)", &[])
            .unwrap()
            .get(0);
        heard.lock().unwrap().clear();
        let row = s.query_one(stop_sql, &[]).unwrap();
        let (stop, label): (PgLsn, String) = (row.get(0), row.get(1));
        let (last, history) = awaited_files(&mut s, u64::from(start), u64::from(stop));
        assert!(
            done_at(&c, &last).is_some() && done_at(&c, &history).is_some(),
            "{stop_sql} returned before {last} and {history} were archived"
        );
        assert!(label.contains("LABEL: fourteen\n"), "{label}");
        assert_eq!(
            messages(&heard),
            ["NOTICE: all required WAL segments have been archived"],
            "{stop_sql}"
        );
    }
    assert_no_forced_fpi(&mut s, "after the backups");
    c.assert_log_clean();
}
