//! The part of the harness that goes beyond the cluster basics in mod.rs: stopping in a given mode, a
//! start that may fail, data checksums, pgbench load, marker rows, crash
//! log reading. A test uses both with `use common::*; use common::proof::*;`.
#![allow(dead_code)]

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::types::PgLsn;
use postgres::{Client, Config, NoTls};

use super::{
    assert_forced_fpi, assert_no_forced_fpi, create_fpi_probe, in_backup, install, parse_lsn, start_backup_with,
    stop_backup, wait_until, Cluster,
};

pub const NOT_READY: &SqlState = &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE;

/// Major version of the server under test.
pub fn major() -> u32 {
    install().major
}

#[track_caller]
fn assert_ok(what: &str, out: &Output, c: &Cluster) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}\n--- server log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
}

/// `pg_ctl stop -m <mode>`; panics if it fails or the server is still up.
#[track_caller]
pub fn stop_mode(c: &Cluster, mode: &str) {
    let out = c.pg_ctl_for(60, &["stop", "-m", mode]);
    assert_ok(&format!("pg_ctl stop -m {mode}"), &out, c);
    assert!(
        !c.path("postmaster.pid").exists(),
        "postmaster.pid still there after stop -m {mode}"
    );
}

/// `pg_ctl start`, which may fail; returns its output.
pub fn try_start(c: &Cluster) -> Output {
    c.pg_ctl_for(60, &["start"])
}

/// Byte length of the server log now, to look only at what comes after.
pub fn log_len(c: &Cluster) -> usize {
    c.log().len()
}

/// The server log from byte `from` on.
pub fn log_since(c: &Cluster, from: usize) -> String {
    let log = c.log();
    log[from.min(log.len())..].to_string()
}

/// SIGKILLs backend `pid` of `c` and waits until the postmaster has gone
/// through its crash restart.
pub fn kill_backend_and_await_restart(c: &Cluster, pid: i32) {
    let from = log_len(c);
    // SAFETY: plain system call, to a backend of the test's own cluster.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    // Up to the postmaster's 60 s before it SIGKILLs a child that missed
    // its SIGQUIT (the archiver ignores it while archive_command runs, as
    // system(3) does), and then the restart.
    wait_until("the crash restart", Duration::from_secs(150), || {
        log_since(c, from).contains("database system is ready to accept connections")
    });
}

/// Client programs (pgbench, pg_amcheck) run as the test user, straight
/// from the installation: they only talk to the server over TCP.
pub fn client(prog: &str) -> Command {
    let mut cmd = Command::new(install().bindir.join(prog));
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir("/");
    cmd
}

fn conn_args(c: &Cluster) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        c.port().to_string(),
        "-U".into(),
        "postgres".into(),
    ]
}

/// Data checksums on or off, whatever initdb's default is (18 turns them on
/// by default). The cluster must be shut down.
pub fn set_checksums(c: &Cluster, on: bool) {
    let out = install()
        .command("pg_controldata")
        .arg(c.data_dir())
        .output()
        .expect("pg_controldata");
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Data page checksum version:"))
        .unwrap_or_else(|| panic!("no checksum version in pg_controldata output:\n{text}"))
        .trim()
        .to_string();
    if (version != "0") == on {
        return;
    }
    let out = install()
        .command("pg_checksums")
        .arg(if on { "--enable" } else { "--disable" })
        .arg("-D")
        .arg(c.data_dir())
        .output()
        .expect("pg_checksums");
    assert!(
        out.status.success(),
        "pg_checksums failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pgbench -i -s <scale>`, tables and indexes in `tablespace` if given.
pub fn pgbench_init(c: &Cluster, scale: u32, tablespace: Option<&str>) {
    let mut cmd = client("pgbench");
    cmd.args(["-i", "-q", "-s", &scale.to_string()]);
    if let Some(ts) = tablespace {
        cmd.arg(format!("--tablespace={ts}"))
            .arg(format!("--index-tablespace={ts}"));
    }
    cmd.args(conn_args(c)).arg("postgres");
    let out = cmd.output().expect("pgbench -i");
    assert_ok("pgbench -i", &out, c);
}

/// A pgbench run in the background; killed when finished or dropped.
pub struct Pgbench {
    child: Option<Child>,
    out: PathBuf,
}

impl Pgbench {
    /// `pgbench -n -c <clients> -T <secs>`; its output goes to a file in the
    /// cluster's directory.
    pub fn start(c: &Cluster, clients: u32, secs: u32) -> Pgbench {
        let out = c.root().join(format!("pgbench-{}.out", c.port()));
        let f = File::create(&out).unwrap();
        let child = client("pgbench")
            .args(["-n", "-c", &clients.to_string(), "-T", &secs.to_string()])
            .args(conn_args(c))
            .arg("postgres")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("spawn pgbench");
        Pgbench {
            child: Some(child),
            out,
        }
    }

    /// Whether pgbench is still running (it must be, while it is the load).
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Ends the run (kills pgbench, which this test started).
    pub fn finish(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pgbench {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Fails unless pgbench's tables hold as many accounts as scale 1 makes
/// and the balances of accounts, branches and tellers each add up to the
/// history's deltas: what any consistent state of a pgbench run shows.
#[track_caller]
pub fn assert_pgbench_balances_agree(c: &mut Client) {
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM pgbench_accounts),
                    (SELECT sum(abalance) FROM pgbench_accounts)::int8,
                    (SELECT sum(bbalance) FROM pgbench_branches)::int8,
                    (SELECT sum(tbalance) FROM pgbench_tellers)::int8,
                    (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8,
                    (SELECT count(*) FROM pgbench_history)",
            &[],
        )
        .unwrap();
    let (accounts, a, b, t, h, n): (i64, i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
    assert_eq!(accounts, 100_000);
    assert!(n > 0, "no pgbench transaction in the copy");
    assert_eq!((a, b, t), (h, h, h), "pgbench balances disagree");
}

/// pg_amcheck finds nothing wrong in any table or index of any database
/// (every page's checksum too, with data checksums).
#[track_caller]
pub fn assert_amcheck_clean(c: &Cluster) {
    let out = client("pg_amcheck")
        .args(["--all", "--install-missing", "--heapallindexed", "-h", "127.0.0.1"])
        .arg("-p")
        .arg(c.port().to_string())
        .args(["-U", "postgres"])
        .output()
        .expect("pg_amcheck");
    assert!(
        out.status.success(),
        "pg_amcheck found problems ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `log` says a recovery's consistent point was.
pub fn consistent_at(log: &str) -> Option<u64> {
    let line = line_with(log, "consistent recovery state reached at ")?;
    let lsn = line.split("consistent recovery state reached at ").nth(1)?;
    Some(parse_lsn(lsn.trim().trim_end_matches('.')))
}

/// Rows inserted one transaction each, with ids 1, 2, 3, ... by a thread of
/// its own, until stopped.
pub struct Marker {
    stop: Arc<AtomicBool>,
    last: Arc<AtomicI64>,
    handle: Option<JoinHandle<Result<i64, String>>>,
}

/// count(*), max(id) and md5 of the rows of "marker" with id <= `upto`
/// (all of them when None), in one statement.
pub fn marker_state(c: &mut Client, upto: Option<i64>) -> (i64, i64, String) {
    let row = c
        .query_one(
            "SELECT count(*), coalesce(max(id), 0)::int8,
                    coalesce(md5(string_agg(id || ':' || payload, ',' ORDER BY id)), '')
               FROM marker WHERE $1::int8 IS NULL OR id <= $1",
            &[&upto],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

impl Marker {
    /// Creates table "marker" (in `tablespace` if given) and starts
    /// inserting.
    pub fn start(c: &Cluster, tablespace: Option<&str>) -> Marker {
        let mut s = c.connect();
        let ts = tablespace.map(|t| format!(" TABLESPACE {t}")).unwrap_or_default();
        s.batch_execute(&format!(
            "CREATE TABLE marker (id int8 PRIMARY KEY, payload text NOT NULL){ts}"
        ))
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(AtomicI64::new(0));
        let (stop2, last2) = (stop.clone(), last.clone());
        let handle = thread::spawn(move || {
            let mut id = 0i64;
            while !stop2.load(Ordering::SeqCst) {
                id += 1;
                s.execute(
                    "INSERT INTO marker VALUES ($1::int8, md5($1::int8::text) || repeat('m', ($1::int8 % 100)::int))",
                    &[&id],
                )
                .map_err(|e| format!("marker insert {id}: {e}"))?;
                last2.store(id, Ordering::SeqCst);
            }
            Ok(id)
        });
        Marker {
            stop,
            last,
            handle: Some(handle),
        }
    }

    /// The id of the last row known committed.
    pub fn last(&self) -> i64 {
        self.last.load(Ordering::SeqCst)
    }

    /// Stops inserting; returns the last id inserted.
    pub fn finish(&mut self) -> i64 {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take() {
            Some(h) => h.join().expect("marker thread panicked").expect("marker inserts"),
            None => self.last(),
        }
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A directory beside the cluster's data directory, owned by the server
/// user (the harness's make_dir).
pub fn dir_of(c: &Cluster, name: &str) -> PathBuf {
    c.make_dir(name)
}

/// Connects, retrying for up to `timeout` (after a crash restart).
pub fn connect_retry(c: &Cluster, timeout: Duration) -> Client {
    let start = Instant::now();
    loop {
        let mut cfg = Config::new();
        cfg.host("127.0.0.1")
            .port(c.port())
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5));
        match cfg.connect(NoTls) {
            Ok(mut cl) => {
                if cl.batch_execute("SELECT 1").is_ok() {
                    return cl;
                }
            }
            Err(e) => assert!(start.elapsed() < timeout, "cannot connect: {e}"),
        }
        assert!(start.elapsed() < timeout, "cannot connect");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The LSN of a label's "START WAL LOCATION" or "CHECKPOINT LOCATION".
pub fn label_lsn(label: &str, key: &str) -> u64 {
    let v = label
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {key} in label:\n{label}"));
    parse_lsn(v.split_whitespace().next().unwrap())
}

/// The WAL file name holding `lsn` on the current timeline.
pub fn walfile_of(c: &mut Client, lsn: u64) -> String {
    c.query_one("SELECT pg_walfile_name($1)", &[&PgLsn::from(lsn)])
        .unwrap()
        .get(0)
}

/// No backup left behind, by any measure: no file a backup leaves, none
/// counted, no full-page writes forced.
#[track_caller]
pub fn assert_no_backup(c: &Cluster, s: &mut Client, when: &str) {
    assert_eq!(backup_files(c), Vec::<String>::new(), "{when}");
    assert!(!in_backup(s), "{when}: pg_is_in_backup() is true");
    assert_no_forced_fpi(s, when);
}

/// The invariant once nothing runs: no label in place (a renamed one may
/// be there), no backup counted, no full-page writes forced, no crash or
/// unclean line in the log.
#[track_caller]
pub fn assert_quiet(c: &Cluster, s: &mut Client, when: &str) {
    assert_not_running(c, s, when);
    c.assert_log_clean();
}

/// No label in place (a renamed one may be there), no backup counted, no
/// full-page writes forced.
#[track_caller]
fn assert_not_running(c: &Cluster, s: &mut Client, when: &str) {
    assert!(!c.exists("backup_label"), "{when}: backup_label is there");
    assert!(!in_backup(s), "{when}: pg_is_in_backup() is true");
    assert_no_forced_fpi(s, when);
}

/// As after a void or a restart: neither label nor map in place (renamed
/// ones may be there), no backup counted, no full-page writes forced.
#[track_caller]
pub fn assert_none_in_place(c: &Cluster, s: &mut Client, when: &str) {
    assert_not_running(c, s, when);
    assert!(!c.exists("tablespace_map"), "{when}: tablespace_map is there");
}

/// The probe sees full-page images during a backup and none outside one.
pub fn probe_works(s: &mut Client) {
    assert_no_forced_fpi(s, "before any backup");
    start_backup_with(s, "probe", true);
    assert_forced_fpi(s, "during a backup");
    stop_backup(s, false);
    assert_no_forced_fpi(s, "after a backup");
}

/// A start and a stop still work, and leave no backup behind.
#[track_caller]
pub fn backup_works(c: &Cluster, s: &mut Client, label: &str) {
    cycle_works(c, s, label);
    assert_no_backup(c, s, &format!("after backup {label:?}"));
}

/// A start and a stop still work, and leave nothing in place (labels
/// renamed before, by a void or a restart, may stay).
#[track_caller]
pub fn cycle_works(c: &Cluster, s: &mut Client, label: &str) {
    start_backup_with(s, label, true);
    assert!(in_backup(s));
    stop_backup(s, false);
    assert_none_in_place(c, s, &format!("after backup {label:?}"));
}

/// Waits until backend `pid` has left pg_stat_activity.
pub fn wait_backend_gone(c: &mut Client, pid: i32) {
    wait_until("the backend to exit", Duration::from_secs(20), || {
        let n: i64 = c
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .unwrap()
            .get(0);
        n == 0
    });
}

/// The pid in the log line that announces a test pause at `point` (after
/// byte `from` of the log), once it is there.
pub fn paused_pid(c: &Cluster, point: &str, from: usize) -> i32 {
    let line = await_log_line(c, from, &format!("test pause at {point}"));
    let pid = line
        .split('[')
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert!(pid > 0, "no pid in the pause line: {line}");
    pid
}

/// A running cluster with the extension, the probe, `archive_mode = mode`
/// and `command` as archive_command, in which ARCHIVE names `archive/`
/// beside the data directory (returned) and ROOT that directory's parent.
pub fn archiving_cluster(command: &str, mode: &str) -> (Cluster, PathBuf) {
    let (c, mut s, archive) = archived(
        &["full_page_writes = off", &format!("archive_mode = {mode}")],
        command,
        false,
    );
    create_fpi_probe(&mut s);
    (c, archive)
}

/// The one builder of archiving clusters: started, with `settings`, the
/// extension, `command` as archive_command (ARCHIVE: `archive/` beside the
/// data directory, returned; ROOT: that directory's parent) and, if asked,
/// a restore_command reading that archive.
fn archived(settings: &[&str], command: &str, restore: bool) -> (Cluster, Client, PathBuf) {
    let mut c = Cluster::init(settings);
    let archive = c.make_dir("archive");
    let command = command
        .replace("ARCHIVE", &archive.display().to_string())
        .replace("ROOT", &c.root().display().to_string());
    c.append_conf(&[&format!("archive_command = '{command}'")]);
    if restore {
        c.append_conf(&[&format!("restore_command = 'cp {}/%f %p'", archive.display())]);
    }
    c.start();
    c.create_extension();
    let s = c.connect();
    (c, s, archive)
}

/// Names in the data directory that a backup may leave behind.
pub fn backup_files(c: &Cluster) -> Vec<String> {
    let mut v = c.names_starting_with("backup_label");
    v.extend(c.names_starting_with("tablespace_map"));
    v
}

/// The name pg_stat_activity shows for a wait event that was renamed when
/// 17 began generating the names ("BgWorkerShutdown" became
/// "BgworkerShutdown").
pub fn bgworker_shutdown_event() -> &'static str {
    if major() >= 17 {
        "BgworkerShutdown"
    } else {
        "BgWorkerShutdown"
    }
}

/// PIDs of live processes titled "pg_exclusive_backup start for PID
/// <backend>", the worker pg_start_backup in backend `backend` launched.
/// (pg_stat_activity does not list the worker: it never connects to a
/// database.)
pub fn start_workers_of(backend: i32) -> Vec<i32> {
    let wanted = format!("pg_exclusive_backup start for PID {backend}");
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmd).contains(&wanted).then_some(pid)
        })
        .collect()
}

/// "<key>:  <n> kB" of /proc/<pid>/status, in kB.
pub fn proc_status_kb(pid: i32, key: &str) -> i64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// The LSNs a log line carries after each of `keys`, e.g. for
/// "starting backup recovery with redo LSN 0/2000028, checkpoint LSN ...".
pub fn lsns_in_line(line: &str, keys: &[&str]) -> Vec<u64> {
    keys.iter()
        .map(|k| {
            let at = line.find(k).unwrap_or_else(|| panic!("no {k:?} in {line:?}"));
            let rest = &line[at + k.len()..];
            let tok: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '/')
                .collect();
            parse_lsn(&tok)
        })
        .collect()
}

/// The first line of `log` containing `needle`.
pub fn line_with<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    log.lines().find(|l| l.contains(needle))
}

/// Waits until the server has left recovery.
pub fn wait_recovery_done(c: &mut Client, timeout: Duration) {
    wait_until("recovery to end", timeout, || {
        !c.query_one("SELECT pg_is_in_recovery()", &[])
            .unwrap()
            .get::<_, bool>(0)
    });
}

/// Restores the data directory's mode when dropped (for a test that takes
/// write permission away from the server).
pub struct ModeGuard {
    path: PathBuf,
    mode: u32,
}

impl ModeGuard {
    pub fn set(path: &Path, mode: u32) -> ModeGuard {
        let old = fs::metadata(path).unwrap().mode() & 0o7777;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        ModeGuard {
            path: path.to_path_buf(),
            mode: old,
        }
    }
}

impl Drop for ModeGuard {
    fn drop(&mut self) {
        let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(self.mode));
    }
}

/// Elapsed time, for the timing lines the tests print.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// `shared_preload_libraries` for preload mode.
pub const PRELOAD: &str = "shared_preload_libraries = 'pg_exclusive_backup'";

/// A running preloaded cluster ([`archiving`]) with a WAL size small
/// enough for checkpoints to recycle segments.
pub fn preloaded(extra: &[&str]) -> (Cluster, Client) {
    let mut settings = vec![
        PRELOAD,
        "wal_level = replica",
        "archive_mode = on",
        "max_wal_size = 32MB",
        "min_wal_size = 32MB",
        "wal_keep_size = 0",
    ];
    settings.extend_from_slice(extra);
    archiving(&settings)
}

/// A running cluster with `settings`, the extension, and WAL archived
/// into `archive/` beside the data directory, which restore_command reads.
pub fn archiving(settings: &[&str]) -> (Cluster, Client) {
    let (c, s, _) = archived(settings, "cp %p ARCHIVE/%f", true);
    (c, s)
}

/// Kills the postmaster and every process of the cluster with SIGKILL, as
/// the OOM killer or a power loss would, and waits until they are gone.
pub fn kill_all_server_processes(c: &Cluster) {
    let pid_file = c.read_string("postmaster.pid").expect("postmaster.pid");
    let postmaster: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
    let children = children_of(postmaster);
    // Frozen first, all of them: a child that outlived the postmaster even
    // briefly would see it die (PR_SET_PDEATHSIG) and carry on.
    for pid in children.iter().chain(std::iter::once(&postmaster)) {
        // SAFETY: plain system call.
        unsafe { libc::kill(*pid, libc::SIGSTOP) };
    }
    for pid in std::iter::once(&postmaster).chain(children.iter()) {
        // SAFETY: as above.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    // Gone, not just dead: a new postmaster takes a zombie with the pid of
    // postmaster.pid for a running one.
    wait_until("the killed server's processes to go", Duration::from_secs(60), || {
        std::iter::once(&postmaster)
            .chain(children.iter())
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
    });
}

/// The pids whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let after = stat.rsplit(')').next().unwrap_or("");
            let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(parent) {
                v.push(pid);
            }
        }
    }
    v
}

/// pg_controldata's output for the cluster (stopped or running).
pub fn controldata(c: &Cluster) -> String {
    let out = super::run_ok(c.install().command("pg_controldata").arg(c.data_dir()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails unless pg_control records no backup being restored.
#[track_caller]
pub fn assert_no_backup_in_pg_control(c: &Cluster, when: &str) {
    let cd = controldata(c);
    let value = |key: &str| {
        cd.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in pg_controldata:\n{cd}"))
            .trim()
            .to_string()
    };
    // 19 writes LSNs as %X/%08X.
    for key in ["Backup start location:", "Backup end location:"] {
        assert_eq!(parse_lsn(&value(key)), 0, "{when}: pg_control's {key}\n{cd}");
    }
    assert_eq!(value("End-of-backup record required:"), "no", "{when}\n{cd}");
}

/// The pid of preload mode's standing worker, once it runs.
pub fn standing_worker_pid(s: &mut Client) -> i32 {
    let mut pid = 0;
    wait_until("the standing worker to run", Duration::from_secs(30), || {
        pid = s
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_exclusive_backup'",
                &[],
            )
            .unwrap()
            .map_or(0, |r| r.get(0));
        pid != 0
    });
    pid
}

/// A running preloaded cluster with full_page_writes = off and the probe's
/// table (see [`create_fpi_probe`]), and its standing worker running.
pub fn preloaded_probed(extra: &[&str]) -> (Cluster, Client) {
    let mut settings = vec!["full_page_writes = off"];
    settings.extend_from_slice(extra);
    let (c, mut s) = preloaded(&settings);
    create_fpi_probe(&mut s);
    standing_worker_pid(&mut s);
    (c, s)
}

/// Waits until the log, after byte `from`, has a line containing `needle`;
/// returns that line.
pub fn await_log_line(c: &Cluster, from: usize, needle: &str) -> String {
    let mut line = String::new();
    wait_until(
        &format!("the log line {needle:?}"),
        Duration::from_secs(60),
        || match log_since(c, from).lines().find(|l| l.contains(needle)) {
            Some(l) => {
                line = l.to_string();
                true
            }
            None => false,
        },
    );
    line
}
