//! Without preload mode, the server crashed, killed or shut down during a
//! backup: what it does at its next start (it takes the label for a
//! restored backup's), what pg_stop_backup() then says, and when the
//! label must be moved by hand.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use std::time::{Duration, Instant};

use common::proof::*;
use common::*;
use postgres::Client;

/// A running cluster with full_page_writes = off (for the full-page-write
/// probe), the extension, the probe table, a table "kept" and, if asked, a
/// tablespace "ts" holding table "kept_ts".
fn crash_cluster(settings: &[&str], tablespace: bool) -> (Cluster, Client) {
    let (c, mut s) = probed_cluster(settings);
    s.batch_execute("CREATE TABLE kept (note text)").unwrap();
    if tablespace {
        let dir = dir_of(&c, "tblspc");
        s.batch_execute(&format!("CREATE TABLESPACE ts LOCATION '{}'", dir.display()))
            .unwrap();
        s.batch_execute(
            "CREATE TABLE kept_ts (note text) TABLESPACE ts;
             INSERT INTO kept_ts VALUES ('in the tablespace')",
        )
        .unwrap();
    }
    (c, s)
}

/// What the data directory held while the backup ran.
struct Running {
    label_name: String,
    label: String,
    map: Option<String>,
}

fn running_backup(c: &Cluster, s: &mut Client, name: &str) -> Running {
    start_backup_with(s, name, true);
    s.batch_execute(&format!("INSERT INTO kept VALUES ('during {name}')"))
        .unwrap();
    Running {
        label_name: name.to_string(),
        label: c.read_string("backup_label").expect("backup_label"),
        map: c.read_string("tablespace_map"),
    }
}

/// After the server came back from going down during backup `b`: it
/// recovered from the label's checkpoint and took the label over; the
/// backup is over and says why; nothing forces full-page writes; data
/// committed before is there; a new backup works. `log_from` is where the
/// server log of this start begins.
fn assert_backup_interrupted(c: &Cluster, s: &mut Client, b: &Running, log_from: usize) {
    let log = log_since(c, log_from);
    let line = line_with(&log, "starting backup recovery with redo LSN")
        .unwrap_or_else(|| panic!("the restart did not recover from backup_label:\n{log}"));
    assert_eq!(
        lsns_in_line(line, &["redo LSN", "checkpoint LSN"]),
        vec![
            label_lsn(&b.label, "START WAL LOCATION"),
            label_lsn(&b.label, "CHECKPOINT LOCATION")
        ],
        "{line}"
    );
    assert!(line.ends_with("on timeline ID 1"), "{line}");

    assert!(!c.exists("backup_label"));
    assert_eq!(c.read_string("backup_label.old").as_deref(), Some(b.label.as_str()));
    match &b.map {
        Some(map) => {
            assert!(!c.exists("tablespace_map"));
            assert_eq!(c.read_string("tablespace_map.old").as_deref(), Some(map.as_str()));
            let n: String = s.query_one("SELECT note FROM kept_ts", &[]).unwrap().get(0);
            assert_eq!(n, "in the tablespace");
        }
        None => assert!(!c.exists("tablespace_map")),
    }

    assert!(!in_backup(s));
    let t: Option<std::time::SystemTime> = s.query_one("SELECT pg_backup_start_time()", &[]).unwrap().get(0);
    assert_eq!(t, None);
    let e = db_error(s.query_one("SELECT pg_stop_backup()", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    let detail = e.detail().unwrap_or_default();
    assert!(
        detail.contains(&format!("\"{}\"", b.label_name))
            && detail.contains("was interrupted when the server restarted")
            && detail.contains("backup_label.old"),
        "DETAIL: {detail:?}"
    );
    assert_no_forced_fpi(s, "after the restart");

    let notes: Vec<String> = s
        .query("SELECT note FROM kept ORDER BY note", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(notes.contains(&format!("during {}", b.label_name)), "{notes:?}");

    start_backup_with(s, "after the restart", true);
    assert_forced_fpi(s, "new backup after the restart");
    stop_backup(s, false);
    assert_eq!(backup_files(c).iter().filter(|n| !n.ends_with(".old")).count(), 0);
    assert_no_forced_fpi(s, "after the new backup");
}

fn shutdown_during_backup(mode: &str) {
    let (mut c, mut s) = crash_cluster(&[], true);
    let b = running_backup(&c, &mut s, &format!("{mode} shutdown"));
    assert_forced_fpi(&mut s, "during the backup");
    // A smart shutdown waits for every session to end.
    drop(s);
    let t = Instant::now();
    stop_mode(&c, mode);
    eprintln!("pg_ctl stop -m {mode} took {:.2}s", secs(t));
    assert!(t.elapsed() < Duration::from_secs(20));
    // No shutdown mode touches the label on 15 and later.
    assert_eq!(c.read_string("backup_label").as_deref(), Some(b.label.as_str()));
    let from = log_len(&c);
    c.start();
    let mut s = c.connect();
    let log = log_since(&c, from);
    assert!(log.contains("database system was shut down at"), "{log}");
    assert_backup_interrupted(&c, &mut s, &b, from);
    assert_log_has_no_crash(&c);
}

/// 2(a): `pg_ctl stop -m immediate` right after pg_start_backup.
#[test]
fn crash_soon_after_start() {
    let (mut c, mut s) = crash_cluster(&[], true);
    let b = running_backup(&c, &mut s, "crashed soon");
    assert!(b.map.is_some());
    drop(s);
    stop_mode(&c, "immediate");
    let from = log_len(&c);
    c.start();
    let mut s = c.connect();
    assert_backup_interrupted(&c, &mut s, &b, from);
    let log = log_since(&c, from);
    assert!(log.contains("database system was interrupted"), "{log}");
    assert_log_has_no_crash(&c);
}

/// 2(b): the WAL segment holding the backup's start checkpoint has been
/// recycled when the server crashes: it cannot start while backup_label
/// is there; moved away (on the primary only!), it starts.
#[test]
fn crash_after_start_wal_recycled() {
    let (mut c, mut s) = crash_cluster(
        &[
            "wal_keep_size = 0",
            "min_wal_size = 32MB",
            "max_wal_size = 32MB",
            "checkpoint_timeout = 1h",
        ],
        false,
    );
    let b = running_backup(&c, &mut s, "crashed late");
    // The segment backup_label names on its START WAL LOCATION line.
    let start_seg = field(&b.label, "START WAL LOCATION")
        .and_then(|v| v.split_once("(file "))
        .and_then(|(_, f)| f.strip_suffix(')'))
        .expect("START WAL LOCATION names its file")
        .to_string();
    assert_eq!(start_seg, walfile_of(&mut s, label_lsn(&b.label, "START WAL LOCATION")));
    let ckpt_seg = walfile_of(&mut s, label_lsn(&b.label, "CHECKPOINT LOCATION"));
    let gone = |name: &str| !c.path(&format!("pg_wal/{name}")).exists();
    assert!(!gone(&start_seg), "{start_seg} missing right after the start");
    let mut rounds = 0;
    while !(gone(&start_seg) && gone(&ckpt_seg)) {
        rounds += 1;
        assert!(rounds <= 10, "{start_seg} still in pg_wal after {rounds} rounds");
        s.batch_execute(
            "INSERT INTO kept SELECT 'filler ' || g FROM generate_series(1, 1000) g;
             SELECT pg_switch_wal();
             CHECKPOINT;",
        )
        .unwrap();
    }
    eprintln!("{start_seg} recycled after {rounds} rounds of pg_switch_wal() + CHECKPOINT");
    assert!(in_backup(&mut s));
    drop(s);
    stop_mode(&c, "immediate");

    let from = log_len(&c);
    let out = try_start(&c);
    assert!(
        !out.status.success(),
        "the server started although the checkpoint backup_label names is gone:\n{}",
        log_since(&c, from)
    );
    let log = log_since(&c, from);
    let ckpt = label_lsn(&b.label, "CHECKPOINT LOCATION");
    let fatal = line_with(&log, "FATAL:").unwrap_or_else(|| panic!("no FATAL in the log of the failed start:\n{log}"));
    eprintln!("failed start: {fatal}");
    // Newer minors (18.x, 17.11; not 16.15 or 15.20) name the record's LSN:
    // a change of a minor release, so the wording decides, not the major.
    let names_lsn = fatal.contains("could not locate required checkpoint record at ");
    assert!(names_lsn || major() < 18, "{fatal}");
    if names_lsn {
        assert_eq!(lsns_in_line(fatal, &["record at"]), vec![ckpt], "{fatal}");
    } else {
        assert!(
            fatal.ends_with("FATAL:  could not locate required checkpoint record"),
            "{fatal}"
        );
    }
    let hint = format!(
        "If you are not restoring from a backup, try removing the file \"{}/backup_label\".",
        c.data_dir().display()
    );
    assert!(log.contains(&hint), "no hint {hint:?} in:\n{log}");
    assert!(
        line_with(&log, "starting backup recovery with redo LSN").is_some(),
        "{log}"
    );
    assert!(c.exists("backup_label"), "the failed start removed backup_label");
    assert!(!c.path("postmaster.pid").exists());
    assert_no_crash(&log, &[]);

    // What the README tells a DBA to do on the primary.
    let moved = c.root().join("backup_label.moved");
    fs::rename(c.path("backup_label"), &moved).unwrap();
    let from = log_len(&c);
    c.start();
    let mut s = c.connect();
    let log = log_since(&c, from);
    assert!(line_with(&log, "starting backup recovery").is_none(), "{log}");
    assert!(!in_backup(&mut s));
    let e = db_error(s.query_one("SELECT pg_stop_backup()", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    assert_eq!(e.detail(), None, "nothing was renamed by the server, so no DETAIL");
    assert_no_forced_fpi(&mut s, "after moving backup_label away");
    let n: i64 = s
        .query_one("SELECT count(*) FROM kept WHERE note = 'during crashed late'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let fillers: i64 = s
        .query_one("SELECT count(*) FROM kept WHERE note LIKE 'filler %'", &[])
        .unwrap()
        .get(0);
    assert_eq!(fillers, 1000 * rounds);
    start_backup_with(&mut s, "after the failed start", true);
    assert_forced_fpi(&mut s, "new backup");
    stop_backup(&mut s, false);
    assert_no_forced_fpi(&mut s, "after the new backup");
    assert_log_has_no_crash(&c);
}

/// 2(c): a backend is killed with SIGKILL during the backup; the postmaster
/// resets every process and runs crash recovery, which finds backup_label.
#[test]
fn backend_killed_during_backup() {
    let (c, mut s) = crash_cluster(&[], true);
    let b = running_backup(&c, &mut s, "killed backend");
    assert_forced_fpi(&mut s, "during the backup");
    let mut idle = c.connect();
    let victim = pid_of(&mut idle);
    let from = log_len(&c);
    kill_backend_and_await_restart(&c, victim);
    drop((s, idle));
    let mut s = connect_retry(&c, Duration::from_secs(30));
    let log = log_since(&c, from);
    // 18 and later name the process by its type.
    let who = if major() >= 18 {
        "client backend"
    } else {
        "server process"
    };
    let killed = format!("{who} (PID {victim}) was terminated by signal 9: Killed");
    assert!(log.contains(&killed), "{log}");
    assert!(log.contains("all server processes terminated; reinitializing"), "{log}");
    assert_backup_interrupted(&c, &mut s, &b, from);
    assert_no_crash(&c.log(), &[&killed]);
}

/// 3: clean shutdown, fast mode.
#[test]
fn fast_shutdown_during_backup() {
    shutdown_during_backup("fast");
}

/// 3: clean shutdown, smart mode (no session left connected).
#[test]
fn smart_shutdown_during_backup() {
    shutdown_during_backup("smart");
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
    // The extension tells a later change of the data directory from the
    // rename by its mtime, 50 ms after the renamed label's ctime at the
    // latest: the next backup must come later than that.
    let renamed = fs::symlink_metadata(c.path("backup_label.old")).unwrap();
    let renamed_ns = renamed.ctime() as i128 * 1_000_000_000 + renamed.ctime_nsec() as i128;
    wait_until("the clock to pass the rename by 100 ms", Duration::from_secs(5), || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        now.as_nanos() as i128 > renamed_ns + 100_000_000
    });
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
