//! Preload mode (the library in shared_preload_libraries): whatever ends
//! the server during an exclusive backup, the primary starts again by
//! itself and its pg_control stays clean; a copy of the data directory is
//! recovered as a pg_basebackup copy is; and when the postmaster cannot
//! tell the primary's own label from a copy's, it refuses to start and
//! says what to do.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::proof::*;
use common::*;
use postgres::Client;

#[derive(Clone, Copy, Debug)]
enum Ending {
    BackendKilled,
    Immediate,
    Fast,
    Smart,
    PostmasterKilled,
}

/// Ends the server as `how` says and brings it back; a new session.
fn end_and_restart(c: &mut Cluster, s: Client, how: Ending) -> Client {
    match how {
        Ending::BackendKilled => {
            let mut victim = c.connect();
            let pid = pid_of(&mut victim);
            kill_backend_and_await_restart(c, pid);
            drop((s, victim));
        }
        Ending::Immediate | Ending::Fast | Ending::Smart => {
            drop(s);
            let mode = format!("{how:?}").to_lowercase();
            stop_mode(c, &mode);
            c.start();
        }
        Ending::PostmasterKilled => {
            drop(s);
            kill_all_server_processes(c);
            c.start();
        }
    }
    connect_retry(c, Duration::from_secs(60))
}

/// Makes checkpoints recycle the WAL file the backup started in.
fn recycle_start_segment(c: &Cluster, s: &mut Client, start_file: &str) {
    s.batch_execute("CREATE TABLE IF NOT EXISTS filler (x text)").unwrap();
    wait_until("the start segment to be recycled", Duration::from_secs(120), || {
        s.batch_execute(
            "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000);
             SELECT pg_switch_wal(); CHECKPOINT",
        )
        .unwrap();
        !c.exists(&format!("pg_wal/{start_file}"))
    });
}

/// Archive recovery of the data directory (recovery.signal, WAL from the
/// archive, then promotion): what PITR or a rebuilt standby does later. A
/// backup start left in pg_control would stop it with "WAL ends before end
/// of online backup".
fn archive_recovery(c: &mut Cluster) -> Client {
    stop_mode(c, "fast");
    c.write("recovery.signal", b"");
    let from = log_len(c);
    c.start();
    let mut s = connect_retry(c, Duration::from_secs(60));
    wait_recovery_done(&mut s, Duration::from_secs(60));
    let log = log_since(c, from);
    assert!(log.contains("archive recovery complete"), "{log}");
    assert!(!log.contains("WAL ends before end of online backup"), "{log}");
    assert!(!log.contains("backup recovery"), "{log}");
    assert_no_backup_in_pg_control(c, "after archive recovery");
    s
}

/// Every way the server can go down during a backup, with the start
/// checkpoint's WAL still there and recycled: the primary comes back by
/// itself, the label is backup_label.old, pg_control has no backup start,
/// pg_stop_backup reports the restart, and a later archive recovery of the
/// data directory works.
#[test]
fn the_primary_restarts_by_itself_whatever_ends_the_server() {
    let (mut c, mut s) = preloaded(&[]);
    let mut outcomes = Vec::new();
    for how in [
        Ending::BackendKilled,
        Ending::Immediate,
        Ending::Fast,
        Ending::Smart,
        Ending::PostmasterKilled,
    ] {
        for recycled in [false, true] {
            let t = Instant::now();
            let label = format!("{how:?}, recycled: {recycled}");
            start_backup(&mut s, &label);
            let text = c.read_string("backup_label").unwrap();
            assert!(text.contains("\nBACKUP METHOD: streamed\n"), "{text}");
            let start_file = walfile_of(&mut s, label_lsn(&text, "START WAL LOCATION"));
            if recycled {
                recycle_start_segment(&c, &mut s, &start_file);
            }
            let from = log_len(&c);
            s = end_and_restart(&mut c, s, how);
            let log = log_since(&c, from);
            assert!(log.contains("LOG:  online backup mode canceled"), "{label}:\n{log}");
            assert!(
                log.contains("DETAIL:  File \"backup_label\" was renamed to \"backup_label.old\"."),
                "{label}:\n{log}"
            );
            assert!(log.contains(&format!("\"{label}\" started at")), "{label}:\n{log}");
            for bad in [
                "backup recovery",
                "WAL ends before end of online backup",
                "could not locate required checkpoint record",
                "startup process",
            ] {
                assert!(!log.contains(bad), "{label}: {bad}\n{log}");
            }
            assert!(!c.exists("backup_label"), "{label}");
            assert_eq!(
                c.read_string("backup_label.old").as_deref(),
                Some(text.as_str()),
                "{label}"
            );
            assert_no_backup_in_pg_control(&c, &label);
            assert!(!in_backup(&mut s), "{label}");
            let e = db_error(s.query_one("SELECT pg_stop_backup()", &[]), NOT_READY);
            assert_eq!(e.message(), "exclusive backup not in progress");
            let detail = e.detail().unwrap_or_default().to_string();
            assert!(
                detail.contains(&format!("\"{label}\" started at")) && detail.contains("ended by a server restart"),
                "{label}: {detail}"
            );
            s = archive_recovery(&mut c);
            assert_log_has_no_crash_but_kills(&c);
            outcomes.push(format!(
                "{label}: restarted, label renamed, archive recovery ok ({:.1} s)",
                secs(t)
            ));
        }
    }
    for o in outcomes {
        eprintln!("{o}");
    }
}

/// The only process deaths in the log are the ones the test caused.
fn assert_log_has_no_crash_but_kills(c: &Cluster) {
    // An immediate shutdown ends a running archive_command with SIGQUIT.
    assert_no_crash(
        &c.log(),
        &[
            "was terminated by signal 9: Killed",
            "archive command was terminated by signal 3",
        ],
    );
}

/// A copy taken during the backup is judged at the backup's end: with
/// recovery.signal, with recovery_target = 'immediate', as a hot standby
/// (which refuses connections until then), and started without any of it
/// (which refuses to come up), while the primary runs on.
#[test]
fn copies_are_consistent_only_at_the_end_of_the_backup() {
    let (c, mut s) = preloaded(&[]);
    s.batch_execute("CREATE TABLE marks (n int); INSERT INTO marks VALUES (0)")
        .unwrap();
    start_backup(&mut s, "for the copies");
    s.batch_execute("INSERT INTO marks VALUES (1)").unwrap();
    // A file-level copy of everything, pg_wal included.
    let image = c.root().join("image");
    copy_tree(c.data_dir(), &image);
    s.batch_execute("INSERT INTO marks VALUES (2)").unwrap();

    // A hot standby of the copy, started before the backup ends.
    let standby = Cluster::from_image(&image, &["hot_standby = on"]);
    standby.write("standby.signal", b"");
    let out = standby.pg_ctl_for(10, &["start", "-W"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // It has replayed all the WAL the copy holds once it logs where that
    // WAL ends; it waits for more from there.
    wait_until("the standby to replay the copy's WAL", Duration::from_secs(60), || {
        let log = standby.log();
        log.contains("redo starts at")
            && [
                "invalid record length at",
                "invalid magic number",
                "incorrect prev-link",
            ]
            .iter()
            .any(|end| log.contains(end))
    });
    let refused = postgres::Config::new()
        .host("127.0.0.1")
        .port(standby.port())
        .user("postgres")
        .dbname("postgres")
        .connect(postgres::NoTls);
    let e = refused
        .err()
        .expect("the standby of an unfinished copy accepts connections");
    assert_eq!(
        e.as_db_error().map(|d| d.code().clone()),
        Some(postgres::error::SqlState::CANNOT_CONNECT_NOW),
        "{e}"
    );
    assert!(consistent_at(&standby.log()).is_none(), "{}", standby.log());

    let stop_lsn = stop_backup(&mut s, true);
    s.batch_execute("SELECT pg_switch_wal()").unwrap();
    let mut hs = connect_retry(&standby, Duration::from_secs(90));
    let at = consistent_at(&standby.log()).expect("consistent point of the standby");
    assert!(
        at >= stop_lsn,
        "standby consistent at {at:X}, before the stop at {stop_lsn:X}"
    );
    let n: i64 = hs.query_one("SELECT count(*) FROM marks", &[]).unwrap().get(0);
    assert_eq!(n, 3);
    drop(hs);
    eprintln!("hot standby: refused connections, then consistent at {at:X} (stop at {stop_lsn:X})");

    // recovery.signal: consistent at the stop, then on to the archive's end.
    let mut pitr = Cluster::from_image(&image, &[]);
    pitr.write("recovery.signal", b"");
    pitr.start();
    let mut p = connect_retry(&pitr, Duration::from_secs(60));
    wait_recovery_done(&mut p, Duration::from_secs(60));
    let at = consistent_at(&pitr.log()).expect("consistent point");
    assert!(at >= stop_lsn, "consistent at {at:X}, before the stop at {stop_lsn:X}");
    eprintln!("recovery.signal: consistent at {at:X} (stop at {stop_lsn:X})");

    // recovery_target = 'immediate': stops at the consistent point, which
    // is the backup's end, and promotes.
    let mut imm = Cluster::from_image(
        &image,
        &["recovery_target = 'immediate'", "recovery_target_action = 'promote'"],
    );
    imm.write("recovery.signal", b"");
    imm.start();
    let mut i = connect_retry(&imm, Duration::from_secs(60));
    wait_recovery_done(&mut i, Duration::from_secs(60));
    let log = imm.log();
    assert!(log.contains("recovery stopping after reaching consistency"), "{log}");
    let at = consistent_at(&log).expect("consistent point");
    assert!(
        at >= stop_lsn,
        "immediate target at {at:X}, before the stop at {stop_lsn:X}"
    );
    let n: i64 = i.query_one("SELECT count(*) FROM marks", &[]).unwrap().get(0);
    assert_eq!(n, 3, "rows written before the stop");
    eprintln!("recovery_target = 'immediate': promoted at {at:X} (stop at {stop_lsn:X})");

    // No recovery configuration: the server refuses rather than come up
    // inconsistent, and the postmaster has not touched the copy's label.
    let bare = Cluster::from_image(&image, &[]);
    let out = try_start(&bare);
    assert!(!out.status.success(), "a copy without recovery configuration started");
    let log = bare.log();
    assert!(log.contains("WAL ends before end of online backup"), "{log}");
    assert!(log.contains("is a copy of the label"), "{log}");
    assert!(!log.contains("online backup mode canceled"), "{log}");
    eprintln!("no signal file: refused with \"WAL ends before end of online backup\"");

    // The primary ran on through all of it.
    let n: i64 = s.query_one("SELECT count(*) FROM marks", &[]).unwrap().get(0);
    assert_eq!(n, 3);
    c.assert_log_clean();
}

/// Creates `target` with `content`, trying first to give it inode number
/// `ino` (freed just before): files are created in `near` (a directory in
/// the same block group, where ext4 looks for free inodes first) until one
/// gets it, and that one is renamed into place. Returns whether it did.
fn create_reusing_inode(near: &Path, target: &Path, content: &[u8], ino: u64) -> bool {
    fs::create_dir_all(near).unwrap();
    let mut probes = Vec::new();
    let mut got = None;
    for n in 0..5000 {
        let p = near.join(format!("probe.{n}"));
        fs::write(&p, b"").unwrap();
        if fs::metadata(&p).unwrap().ino() == ino {
            got = Some(p);
            break;
        }
        probes.push(p);
    }
    for p in probes {
        fs::remove_file(p).unwrap();
    }
    let reused = got.is_some();
    let file = got.unwrap_or_else(|| near.join("probe.label"));
    fs::write(&file, content).unwrap();
    fs::rename(&file, target).unwrap();
    reused
}

/// A copy restored into a fresh directory on the same file system right
/// after pg_stop_backup, its label with the inode number the primary's
/// label had (taken if the file system hands it out again, else written
/// into the copied record): still a copy, by its birth time, and recovered
/// as such.
#[test]
fn a_restore_reusing_the_labels_inode_number_is_still_a_copy() {
    let (c, mut s) = preloaded(&[]);
    start_backup(&mut s, "inode reuse");
    let ino = fs::metadata(c.path("backup_label")).unwrap().ino();
    let image = c.root().join("image");
    copy_tree(c.data_dir(), &image);
    stop_backup(&mut s, false);
    assert!(!c.exists("backup_label"));

    // The restore: the label first, then everything else moved in from a
    // staging copy on the same file system.
    let fresh = Cluster::init(&[]);
    let data = fresh.data_dir().to_path_buf();
    fs::remove_dir_all(&data).unwrap();
    fs::create_dir(&data).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
    c.install().chown(&data);
    let label = fs::read(image.join("backup_label")).unwrap();
    let reused = create_reusing_inode(&c.root().join("probes"), &data.join("backup_label"), &label, ino);
    c.install().chown(&data.join("backup_label"));
    let staging = fresh.root().join("staging");
    copy_tree(&image, &staging);
    for e in fs::read_dir(&staging).unwrap().flatten() {
        let name = e.file_name();
        if name != "backup_label" && name != "postmaster.pid" {
            fs::rename(e.path(), data.join(&name)).unwrap();
        }
    }
    if !reused {
        // ext4 holds back inodes freed in the last minute or so. Where the
        // restore did not get the number, make the copied record name the
        // restored label's inode number, as if it had: only the birth time
        // then tells the two files apart.
        let now = fs::metadata(data.join("backup_label")).unwrap().ino();
        let state = fs::read_to_string(data.join("pg_exclusive_backup.state")).unwrap();
        let patched = state.replacen(&format!(" inode {ino} "), &format!(" inode {now} "), 1);
        assert_ne!(patched, state, "{state}");
        fs::write(data.join("pg_exclusive_backup.state"), patched).unwrap();
    }
    fresh.append_conf(&[
        &format!("port = {}", fresh.port()),
        &format!("unix_socket_directories = '{}'", fresh.root().display()),
    ]);
    eprintln!("label inode {ino} reused by the restore: {reused} (else the record was made to match)");
    let out = try_start(&fresh);
    assert!(!out.status.success(), "a copy without recovery configuration started");
    let log = fresh.log();
    assert!(log.contains("is a copy of the label"), "{log}");
    assert!(log.contains("WAL ends before end of online backup"), "{log}");
    assert!(!log.contains("online backup mode canceled"), "{log}");
}

use std::os::unix::fs::PermissionsExt;

/// Whether another process holds the lock file (a start or stop is
/// changing backup_label).
fn lock_held(c: &Cluster) -> bool {
    use std::os::unix::io::AsRawFd;
    let Ok(f) = fs::File::open(c.path("pg_exclusive_backup.lock")) else {
        return false;
    };
    // SAFETY: plain system calls on a descriptor we own.
    let got = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    if got {
        // SAFETY: as above.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
    }
    !got
}

/// The postmaster and all its children killed at each step of a start and
/// of a stop, held there by a delay point: whichever side of the step it
/// was, the server starts by itself, with no label in place, and pg_control
/// is clean.
#[test]
fn the_server_killed_in_the_middle_of_a_start_or_a_stop_restarts_cleanly() {
    let (mut c, mut s) = preloaded(&[]);
    // (point, what shows it is reached, whether the label was in place)
    let steps: [(&str, fn(&Cluster) -> bool, bool); 4] = [
        // The record written, the label not yet linked.
        (
            "worker_recorded",
            |c| {
                let recorded = c.read("pg_exclusive_backup.state").unwrap_or_default();
                !c.exists("backup_label") && String::from_utf8_lossy(&recorded).contains("killed at worker_recorded")
            },
            false,
        ),
        // The label in place, the caller not yet told.
        ("worker_published", |c| c.exists("backup_label") && !lock_held(c), true),
        // The stop holding the lock, the label still there.
        ("stop_locked", |c| lock_held(c), true),
        // The label claimed, the server's stop not yet run.
        ("stop_claimed", |c| !c.exists("backup_label"), false),
    ];
    for (point, reached, label_in_place) in steps {
        let stopping = point.starts_with("stop");
        if stopping {
            start_backup(&mut s, &format!("killed at {point}"));
        }
        set_test_pause(&c, &format!("{point}:600000"));
        let mut caller = c.connect();
        let sql = if stopping {
            "SELECT pg_stop_backup(false)::text".to_string()
        } else {
            format!("SELECT pg_start_backup('killed at {point}', true)::text")
        };
        let h = std::thread::spawn(move || caller.query_one(sql.as_str(), &[]).map(|_| ()));
        wait_until(&format!("{point} to be reached"), Duration::from_secs(60), || {
            reached(&c)
        });
        eprintln!("{point}: label in place when killed: {}", c.exists("backup_label"));
        drop(s);
        kill_all_server_processes(&c);
        assert!(h.join().unwrap().is_err(), "{point}: the call returned");
        c.append_conf(&["pg_exclusive_backup.test_pause = ''"]);
        let from = log_len(&c);
        c.start();
        s = c.connect();
        let log = log_since(&c, from);
        assert_eq!(
            log.contains("online backup mode canceled"),
            label_in_place,
            "{point}:\n{log}"
        );
        assert!(!log.contains("backup recovery"), "{point}:\n{log}");
        assert!(!c.exists("backup_label"), "{point}");
        assert_no_backup_in_pg_control(&c, point);
        assert!(!in_backup(&mut s), "{point}");
        // And the next backup runs.
        start_backup(&mut s, "after");
        stop_backup(&mut s, false);
    }
}

/// The postmaster was killed during the backup and the record that tells
/// the primary's label from a copy's is gone: the start stops in the
/// postmaster with instructions, before the startup process could touch
/// pg_control; following them, the server starts.
#[test]
fn an_undecidable_label_stops_the_start_with_instructions() {
    let (mut c, mut s) = preloaded(&[]);
    start_backup(&mut s, "undecidable");
    drop(s);
    kill_all_server_processes(&c);
    fs::remove_file(c.path("pg_exclusive_backup.state")).unwrap();
    let from = log_len(&c);
    let out = try_start(&c);
    assert!(!out.status.success(), "started without deciding");
    let log = log_since(&c, from);
    assert!(
        log.contains(
            "FATAL:  pg_exclusive_backup cannot tell whether \"backup_label\" is this server's own or a restored backup's"
        ),
        "{log}"
    );
    assert!(
        log.contains("HINT:  If this data directory is a restored backup or a snapshot, create \"recovery.signal\""),
        "{log}"
    );
    assert!(!log.contains("backup recovery"), "{log}");
    assert!(c.exists("backup_label"), "the label must stay for the DBA to decide");
    assert_no_backup_in_pg_control(&c, "after the refused start");
    // The hint, for the primary.
    fs::rename(c.path("backup_label"), c.path("backup_label.old")).unwrap();
    c.start();
    let mut s = c.connect();
    assert!(!in_backup(&mut s));
    assert_no_backup_in_pg_control(&c, "after the start");
    // And a recovery.signal in place means "a restore": never touched.
    start_backup(&mut s, "restore");
    drop(s);
    kill_all_server_processes(&c);
    c.write("recovery.signal", b"");
    c.write("pg_exclusive_backup.state", b"garbage");
    let from = log_len(&c);
    let _ = try_start(&c);
    let log = log_since(&c, from);
    assert!(!log.contains("pg_exclusive_backup cannot tell"), "{log}");
    assert!(!log.contains("online backup mode canceled"), "{log}");
    assert!(log.contains("starting backup recovery"), "{log}");
}

/// postgres --single (which pg_rewind runs on a target that was not shut
/// down cleanly) on a preloaded cluster whose postmaster was killed during
/// a backup: the label is renamed before the standalone backend recovers.
#[test]
fn single_user_mode_renames_the_primarys_label_first() {
    let (mut c, mut s) = preloaded(&[]);
    start_backup(&mut s, "single user");
    let start_file = {
        let text = c.read_string("backup_label").unwrap();
        walfile_of(&mut s, label_lsn(&text, "START WAL LOCATION"))
    };
    recycle_start_segment(&c, &mut s, &start_file);
    drop(s);
    kill_all_server_processes(&c);
    let out = run(c
        .install()
        .command("postgres")
        .args(["--single", "-D"])
        .arg(c.data_dir())
        .args(["-c", "log_min_messages=log", "postgres"])
        .stdin(std::process::Stdio::null()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("online backup mode canceled"), "{err}");
    assert!(!err.contains("backup recovery"), "{err}");
    assert!(c.exists("backup_label.old") && !c.exists("backup_label"));
    assert_no_backup_in_pg_control(&c, "after single-user mode");
    c.start();
    let mut s = c.connect();
    let e = db_error(s.query_one("SELECT pg_stop_backup()", &[]), NOT_READY);
    assert!(e.detail().unwrap_or_default().contains("ended by a server restart"));
}

/// In preload mode monitoring reads shared memory: with backup_label
/// moved away behind the server's back it still answers, and a
/// label_method setting still decides the label's method.
#[test]
fn monitoring_answers_from_shared_memory() {
    let (c, mut s) = preloaded(&[]);
    assert!(!in_backup(&mut s));
    s.batch_execute("SET pg_exclusive_backup.label_method = pg_start_backup")
        .unwrap();
    start_backup(&mut s, "monitored");
    let text = c.read_string("backup_label").unwrap();
    assert!(text.contains("\nBACKUP METHOD: pg_start_backup\n"), "{text}");
    let t0 = start_time_in(&mut s, "UTC");
    fs::rename(c.path("backup_label"), c.root().join("aside")).unwrap();
    let mut other = c.connect();
    assert!(in_backup(&mut other), "answered from the file system");
    assert_eq!(start_time_in(&mut other, "UTC"), t0);
    // A stop that finds no label tells monitoring so.
    let e = db_error(s.query_one("SELECT pg_stop_backup(false)", &[]), NOT_READY);
    assert_eq!(e.message(), "exclusive backup not in progress");
    assert!(!in_backup(&mut other), "shared memory kept a vanished backup");
    fs::rename(c.root().join("aside"), c.path("backup_label")).unwrap();
    stop_backup(&mut s, false);
    assert!(!in_backup(&mut other));
    assert_eq!(start_time_in(&mut other, "UTC"), None);
}

/// A dangling recovery.signal symlink is no signal file for the server,
/// and none for the postmaster's judgement either: the primary's label is
/// renamed and the server starts as the primary.
#[test]
fn a_dangling_signal_file_link_is_no_signal_file() {
    let (mut c, mut s) = preloaded(&[]);
    start_backup(&mut s, "dangling signal");
    drop(s);
    kill_all_server_processes(&c);
    std::os::unix::fs::symlink("/nonexistent/recovery.signal", c.path("recovery.signal")).unwrap();
    let from = log_len(&c);
    c.start();
    let log = log_since(&c, from);
    assert!(log.contains("online backup mode canceled"), "{log}");
    assert!(!log.contains("backup recovery"), "{log}");
    let mut s = c.connect();
    let in_recovery: bool = s.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get(0);
    assert!(!in_recovery);
    assert_no_backup_in_pg_control(&c, "after the start");
}

/// Without preload mode: CREATE EXTENSION warns and each pg_start_backup
/// notes what preload mode adds; require_preload makes the start refuse.
#[test]
fn without_preload_mode_the_start_says_what_it_would_add() {
    let mut c = Cluster::init(&[]);
    c.start();
    let (mut s, notices) = c.connect_with_notices();
    s.batch_execute("CREATE EXTENSION pg_exclusive_backup").unwrap();
    start_backup(&mut s, "plain");
    stop_backup(&mut s, false);
    let seen = notices.lock().unwrap().clone();
    let ours = seen
        .iter()
        .filter(|m| *m == "pg_exclusive_backup is not in shared_preload_libraries")
        .count();
    assert_eq!(
        ours, 2,
        "one warning at CREATE EXTENSION, one notice at the start: {seen:?}"
    );
    // The warning reaches the server log too, with its hint.
    let log = c.log();
    assert!(
        log.contains("WARNING:  pg_exclusive_backup is not in shared_preload_libraries"),
        "{log}"
    );
    assert!(
        log.contains("HINT:  Add pg_exclusive_backup to shared_preload_libraries"),
        "{log}"
    );
    reload_setting(&c, "pg_exclusive_backup.require_preload", "on");
    let e = db_error(s.query_one("SELECT pg_start_backup('refused')", &[]), NOT_READY);
    assert!(e.message().contains("shared_preload_libraries"), "{}", e.message());
    assert!(!c.exists("backup_label"));
}

/// The same without preload mode, for the README's comparison: a copy
/// started without recovery configuration comes up, declared consistent at
/// the backup's start; a crash during a backup leaves the backup's start
/// in pg_control, and a later archive recovery of that data directory
/// fails.
#[test]
fn without_preload_mode_copies_come_up_early_and_a_crash_marks_pg_control() {
    let (mut c, mut s) = archiving(&["wal_level = replica", "archive_mode = on"]);
    s.batch_execute("CREATE TABLE marks (n int)").unwrap();
    let start_lsn = start_backup(&mut s, "without preload");
    let image = c.root().join("image");
    copy_tree(c.data_dir(), &image);
    s.batch_execute("INSERT INTO marks VALUES (1)").unwrap();
    let stop_lsn = stop_backup(&mut s, false);

    let mut bare = Cluster::from_image(&image, &[]);
    bare.start();
    let at = consistent_at(&bare.log()).expect("consistent point");
    assert!(
        at < stop_lsn,
        "consistent at {at:X}, not before the stop at {stop_lsn:X}"
    );
    eprintln!("without preload, a copy with no signal file came up, consistent at {at:X} (start {start_lsn:X}, stop {stop_lsn:X})");
    drop(bare);

    start_backup(&mut s, "crashed without preload");
    drop(s);
    stop_mode(&c, "immediate");
    c.start();
    let cd = controldata(&c);
    let start = cd
        .lines()
        .find_map(|l| l.strip_prefix("Backup start location:"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(parse_lsn(&start), 0, "{cd}");
    stop_mode(&c, "fast");
    c.write("recovery.signal", b"");
    let from = log_len(&c);
    // pg_ctl may report success: the server accepts read-only connections
    // before recovery reaches the end of the WAL and gives up.
    let _ = try_start(&c);
    wait_until("archive recovery to end or fail", Duration::from_secs(60), || {
        let log = log_since(&c, from);
        log.contains("WAL ends before end of online backup") || log.contains("archive recovery complete")
    });
    let log = log_since(&c, from);
    assert!(log.contains("WAL ends before end of online backup"), "{log}");
    eprintln!("without preload, a crash left backup start {start} in pg_control; archive recovery then failed");
}

/// pg_rewind of an old primary that was killed during a backup, after its
/// standby took over: pg_rewind first runs the target in single-user mode
/// to finish its crash recovery, where the preloaded library renames the
/// label (a streamed label would otherwise stop that recovery with "WAL
/// ends before end of online backup"); the rewound server then follows the
/// new primary.
#[test]
fn pg_rewind_of_a_primary_killed_during_a_backup() {
    let (a, mut s) = preloaded(&["wal_log_hints = on"]);
    let b = Cluster::standby_of(&a, &[]);
    s.batch_execute("CREATE TABLE before_failover (n int); INSERT INTO before_failover VALUES (1)")
        .unwrap();
    let mut bs = b.connect();
    wait_until("the standby to catch up", Duration::from_secs(60), || {
        bs.query_one("SELECT to_regclass('before_failover') IS NOT NULL", &[])
            .unwrap()
            .get::<_, bool>(0)
    });
    drop(bs);
    start_backup(&mut s, "before the failover");
    // pg_rewind reads the target's WAL back to the last common checkpoint,
    // from the archive where the target no longer has it.
    wait_until(
        "every finished WAL file to be archived",
        Duration::from_secs(60),
        || {
            fs::read_dir(a.path("pg_wal/archive_status"))
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".ready"))
        },
    );
    drop(s);
    kill_all_server_processes(&a);
    run_ok(
        b.install()
            .command("pg_ctl")
            .arg("-D")
            .arg(b.data_dir())
            .args(["promote", "-w"]),
    );
    let mut bs = connect_retry(&b, Duration::from_secs(60));
    bs.batch_execute("CREATE TABLE after_failover (n int); INSERT INTO after_failover VALUES (2); CHECKPOINT")
        .unwrap();

    let out = run(a
        .install()
        .command("pg_rewind")
        .arg("--target-pgdata")
        .arg(a.data_dir())
        .arg("--restore-target-wal")
        .arg(format!(
            "--source-server=host=127.0.0.1 port={} user=postgres dbname=postgres",
            b.port()
        )));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pg_rewind failed:\n{said}");
    assert!(
        said.contains("crash recovery"),
        "pg_rewind did not run single-user mode:\n{said}"
    );
    let label = a.read_string("backup_label").unwrap_or_default();
    assert!(label.contains("BACKUP METHOD: pg_rewind"), "{label}");

    a.write("standby.signal", b"");
    // pg_rewind copied the standby's postgresql.auto.conf, whose
    // primary_conninfo (written by pg_basebackup -R) names this server.
    a.write(
        "postgresql.auto.conf",
        format!("primary_conninfo = 'host=127.0.0.1 port={} user=postgres'\n", b.port()).as_bytes(),
    );
    let mut a = a;
    a.start();
    let mut as_ = connect_retry(&a, Duration::from_secs(60));
    wait_until("the rewound server to follow", Duration::from_secs(60), || {
        as_.query_one("SELECT to_regclass('after_failover') IS NOT NULL", &[])
            .unwrap()
            .get::<_, bool>(0)
    });
    assert!(!a.log().contains("WAL ends before end of online backup"));
}

/// A tablespace on another file system (here /dev/shm, a tmpfs): a backend
/// crash and a clean shutdown still end the backup by themselves, with
/// both files renamed; but after the postmaster was killed, the first
/// start refuses to decide, since a set of snapshots of the two file
/// systems taken one after the other would look just the same.
#[test]
fn over_several_file_systems_a_killed_postmaster_makes_the_start_refuse() {
    let (mut c, mut s) = preloaded(&[]);
    let ts = Path::new("/dev/shm").join(format!("peb-ts-{}-{}", std::process::id(), c.port()));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(ts.clone());
    fs::create_dir_all(&ts).unwrap();
    c.install().chown(&ts);
    assert_ne!(
        fs::metadata(&ts).unwrap().dev(),
        fs::metadata(c.data_dir()).unwrap().dev(),
        "/dev/shm is not another file system here"
    );
    s.batch_execute(&format!("CREATE TABLESPACE elsewhere LOCATION '{}'", ts.display()))
        .unwrap();
    s.batch_execute("CREATE TABLE t_elsewhere (n int) TABLESPACE elsewhere")
        .unwrap();

    for how in [Ending::BackendKilled, Ending::Fast] {
        start_backup(&mut s, &format!("{how:?} with a tablespace elsewhere"));
        assert!(c.exists("tablespace_map"));
        let from = log_len(&c);
        s = end_and_restart(&mut c, s, how);
        let log = log_since(&c, from);
        assert!(
            log.contains(
                "DETAIL:  Files \"backup_label\" and \"tablespace_map\" were renamed to \"backup_label.old\" and \"tablespace_map.old\", respectively."
            ),
            "{how:?}:\n{log}"
        );
        assert!(!c.exists("backup_label") && !c.exists("tablespace_map"));
        assert_no_backup_in_pg_control(&c, &format!("{how:?}"));
    }

    start_backup(&mut s, "postmaster killed, tablespace elsewhere");
    drop(s);
    kill_all_server_processes(&c);
    let from = log_len(&c);
    assert!(!try_start(&c).status.success(), "started without deciding");
    let log = log_since(&c, from);
    assert!(log.contains("FATAL:  pg_exclusive_backup cannot tell"), "{log}");
    assert!(
        log.contains("is on another file system than the data directory"),
        "{log}"
    );
    assert!(c.exists("backup_label") && c.exists("tablespace_map"));
    assert_no_backup_in_pg_control(&c, "after the refused start");
    fs::rename(c.path("backup_label"), c.path("backup_label.old")).unwrap();
    fs::rename(c.path("tablespace_map"), c.path("tablespace_map.old")).unwrap();
    c.start();
    let mut s = c.connect();
    assert!(!in_backup(&mut s));
    s.batch_execute("INSERT INTO t_elsewhere VALUES (1)").unwrap();
}
