//! Helpers of the "proof under fire" tests (tests/proof_*.rs), on top of the
//! cluster harness in tests/common/mod.rs. Each proof file includes both:
//!
//!     mod common;
//!     #[path = "proof/mod.rs"]
//!     mod proof;
//!
//! What the harness does not offer (stopping in a given mode, a start that
//! may fail, data checksums, pgbench load, a backup copy that leaves out
//! pg_wal, the full-page-write probe as these tests define it) lives here.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::types::PgLsn;
use postgres::{Client, Config, NoTls};

use crate::common::{install, parse_lsn, wait_until, Cluster};

pub const NOT_READY: &SqlState = &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE;

/// Major version of the server under test.
pub fn major() -> u32 {
    install().major
}

/// Where the harness's Cluster writes its server log (checked in pg_ctl()).
pub fn log_path(c: &Cluster) -> PathBuf {
    c.root().join("server.log")
}

/// Runs pg_ctl on the cluster's data directory (as the cluster owner), with
/// the harness's log file. `-w` and a timeout of `timeout_s` are added.
pub fn pg_ctl(c: &Cluster, timeout_s: u32, args: &[&str]) -> Output {
    let log = log_path(c);
    let mut cmd = install().command("pg_ctl");
    cmd.arg("-D")
        .arg(c.data_dir())
        .arg("-l")
        .arg(log)
        .args(["-w", "-t", &timeout_s.to_string()])
        .args(args);
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let ours = fs::metadata(log_path(c)).map(|m| m.len()).unwrap_or(0);
    assert!(
        ours == 0 || !c.log().is_empty(),
        "the harness no longer logs to {}; update tests/proof/mod.rs",
        log_path(c).display()
    );
    out
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
    let out = pg_ctl(c, 60, &["stop", "-m", mode]);
    assert_ok(&format!("pg_ctl stop -m {mode}"), &out, c);
    assert!(
        !c.path("postmaster.pid").exists(),
        "postmaster.pid still there after stop -m {mode}"
    );
}

/// `pg_ctl start`, which may fail; returns its output.
pub fn try_start(c: &Cluster) -> Output {
    pg_ctl(c, 60, &["start"])
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

/// Fails if `log` shows an assertion failure, a PANIC or a process killed
/// by a signal (other than the patterns in `allowed`, for a test that kills
/// a process itself).
#[track_caller]
pub fn assert_no_crash(log: &str, allowed: &[&str]) {
    for line in log.lines() {
        for bad in ["TRAP:", "PANIC", "terminated by signal"] {
            if line.contains(bad) && !allowed.iter().any(|a| line.contains(a)) {
                panic!("server log shows {bad:?}:\n{line}\n--- full log ---\n{log}");
            }
        }
    }
}

/// A running server's log must show no crash at all.
#[track_caller]
pub fn assert_log_has_no_crash(c: &Cluster) {
    assert_no_crash(&c.log(), &[]);
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

/// Copies a data directory as a file-level backup tool would, while the
/// server runs: symlinks stay symlinks, files that vanish are skipped,
/// postmaster.pid/.opts and the contents of pg_wal are left out.
/// `pause_per_file` stretches the copy so that the load keeps writing while
/// it runs. Returns the number of files copied.
pub fn copy_for_backup(from: &Path, to: &Path, pause_per_file: Duration) -> usize {
    fn walk(from: &Path, to: &Path, top: bool, in_wal: bool, pause: Duration, n: &mut usize) {
        let meta = match fs::metadata(from) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => panic!("stat {}: {e}", from.display()),
        };
        fs::create_dir(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777)).unwrap();
        install().chown(to);
        let entries = match fs::read_dir(from) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => panic!("read_dir {}: {e}", from.display()),
        };
        for entry in entries {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if top && (name == "postmaster.pid" || name == "postmaster.opts") {
                continue;
            }
            let src = entry.path();
            let dst = to.join(&*name);
            let m = match fs::symlink_metadata(&src) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => panic!("stat {}: {e}", src.display()),
            };
            if m.file_type().is_symlink() {
                symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
                lchown_owner(&dst);
            } else if m.is_dir() {
                let wal = top && name == "pg_wal";
                walk(&src, &dst, false, in_wal || wal, pause, n);
            } else if !in_wal {
                match fs::copy(&src, &dst) {
                    Ok(_) => {
                        install().chown(&dst);
                        *n += 1;
                        if m.len() > 0 && !pause.is_zero() {
                            thread::sleep(pause);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => panic!("copy {}: {e}", src.display()),
                }
            }
        }
    }
    let mut n = 0;
    walk(from, to, true, false, pause_per_file, &mut n);
    n
}

fn lchown_owner(p: &Path) {
    let inst = install();
    if inst.as_root {
        lchown(p, Some(inst.uid), Some(inst.gid)).unwrap();
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

pub fn pid_of(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

pub fn in_backup(c: &mut Client) -> bool {
    c.query_one("SELECT pg_is_in_backup()", &[]).unwrap().get(0)
}

/// pg_start_backup(label, fast); returns the start LSN.
#[track_caller]
pub fn start_backup(c: &mut Client, label: &str, fast: bool) -> u64 {
    let row = c
        .query_one("SELECT pg_start_backup($1, $2)", &[&label, &fast])
        .unwrap_or_else(|e| panic!("pg_start_backup({label:?}, {fast}): {e:?}"));
    u64::from(row.get::<_, PgLsn>(0))
}

/// pg_stop_backup(wait); returns the stop LSN.
#[track_caller]
pub fn stop_backup(c: &mut Client, wait: bool) -> u64 {
    let row = c
        .query_one("SELECT pg_stop_backup($1)", &[&wait])
        .unwrap_or_else(|e| panic!("pg_stop_backup({wait}): {e:?}"));
    u64::from(row.get::<_, PgLsn>(0))
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

/// Names in the data directory that a backup may leave behind.
pub fn backup_files(c: &Cluster) -> Vec<String> {
    let mut v = c.names_starting_with("backup_label");
    v.extend(c.names_starting_with("tablespace_map"));
    v
}

/// "pg_exclusive_backup start" workers listed in pg_stat_activity. The
/// worker never connects to a database, so the server does not list it
/// there at all (contrary to the README): this count is always 0 and
/// proves nothing on its own; see [`start_workers_of`].
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

pub fn start_workers_in_activity(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_exclusive_backup start'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// PIDs of live processes titled "pg_exclusive_backup start for PID
/// <backend>", the worker pg_start_backup in backend `backend` launched.
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

// ---------------------------------------------------------------------------
// Full-page-write probe.
//
// With full_page_writes = off, the first change to a page after a
// checkpoint writes a full-page image only while the server forces page
// writes, that is, while a backup is running. So, right after a CHECKPOINT,
// updating one row of a small table (whose page is ~6 kB full) writes more
// than 4000 bytes of WAL while a backup runs and a few hundred otherwise.
// The measurement is taken in one session; the clusters run with
// autovacuum off and nothing else writing.

pub fn create_fpi_probe(c: &mut Client) {
    c.batch_execute(
        "CREATE TABLE proof_fpi (id int, v int, pad text) WITH (fillfactor = 90, autovacuum_enabled = off);
         INSERT INTO proof_fpi SELECT g, 0, repeat('p', 200) FROM generate_series(1, 25) g;",
    )
    .unwrap();
    c.batch_execute("VACUUM proof_fpi").unwrap();
}

/// WAL bytes written by updating one probe row right after a checkpoint.
///
/// Each backend keeps its own copy of "full-page writes are forced", and
/// refreshes it only when it writes WAL; PostgreSQL deliberately lets the
/// first record after the copy went stale keep its full-page image. So a
/// session that wrote WAL during a backup that another session then
/// stopped would show one image too many (seen on 18, where data
/// checksums make the scan's hint-bit update the first record). A tiny
/// record without any page first brings the copy up to date; the
/// measurement then shows the server's state.
pub fn wal_bytes_of_one_update(c: &mut Client) -> i64 {
    c.batch_execute("SELECT pg_logical_emit_message(false, 'proof_fpi', 'refresh')")
        .unwrap();
    c.batch_execute("CHECKPOINT").unwrap();
    let before: PgLsn = c.query_one("SELECT pg_current_wal_insert_lsn()", &[]).unwrap().get(0);
    c.execute("UPDATE proof_fpi SET v = v + 1 WHERE id = 1", &[]).unwrap();
    let row = c
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)::int8",
            &[&before],
        )
        .unwrap();
    row.get(0)
}

/// The server forces full-page writes (a backup is running).
#[track_caller]
pub fn assert_fpi_forced(c: &mut Client, when: &str) {
    let bytes = wal_bytes_of_one_update(c);
    assert!(
        bytes > 4000,
        "{when}: updating one row after a checkpoint wrote only {bytes} bytes of WAL: no full-page image, \
         so the server is not in backup mode"
    );
}

/// The server does not force full-page writes (no backup is running).
#[track_caller]
pub fn assert_fpi_not_forced(c: &mut Client, when: &str) {
    let bytes = wal_bytes_of_one_update(c);
    assert!(
        bytes < 2000,
        "{when}: updating one row after a checkpoint wrote {bytes} bytes of WAL: a full-page image, \
         so the server is still in backup mode"
    );
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
