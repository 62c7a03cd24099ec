//! Hostile and broken files where backup_label and tablespace_map belong
//! (symlinks, directories, FIFOs, corrupt labels, files that cannot be
//! written): a clear error with the right SQLSTATE at once, nothing
//! followed, waited on or left half done.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::proof::*;
use common::*;
use postgres::error::SqlState;

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
    let (c, mut s) = probed_cluster(&[]);
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

/// The lock that serialises start and stop is a file of the extension's
/// own: a script that holds `flock $PGDATA` around its calls (a common
/// idiom) cannot block them.
#[test]
fn flock_on_the_data_directory_blocks_nothing() {
    use std::os::unix::io::AsRawFd;
    let (c, mut s) = probed_cluster(&[]);
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
    assert_eq!(backup_files(&c), Vec::<String>::new());
    assert_no_forced_fpi(&mut s, "after the backup");
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
    assert_eq!(backup_files(&c), Vec::<String>::new());

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
    assert_eq!(backup_files(&c), Vec::<String>::new());
    c.assert_log_clean();
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
