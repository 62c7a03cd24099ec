//! Throwaway PostgreSQL clusters for the integration tests.
//!
//! The server is the one `PG_CONFIG` names (default: `pg_config` on PATH),
//! the same one the extension was built for and installed into. Each
//! [`Cluster`] lives in its own directory under /tmp (data directory, server
//! log, socket, and whatever else a test needs), listens on its own port on
//! 127.0.0.1, and is stopped (`-m immediate`) and removed when dropped, also
//! when the test panics.
//!
//! initdb runs once per test binary into a template that every cluster
//! copies. As root, initdb, pg_ctl and the servers run as the "postgres"
//! user through runuser. If that user cannot reach the installation (for
//! example a server built under /root, which is mode 0700), the installation
//! is copied to /tmp once per test binary; PostgreSQL installations are
//! relocatable.
#![allow(dead_code)]

pub mod proof;
pub mod volumes;

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use postgres::error::{DbError, SqlState};
use postgres::types::PgLsn;
use postgres::{Client, Config, NoTls};

/// The server installation under test.
pub struct Install {
    /// Where the binaries are run from (a copy when the server user could
    /// not reach the original).
    pub bindir: PathBuf,
    /// Major version (15, 16, ...).
    pub major: u32,
    /// The test runs as root: server programs run as "postgres".
    pub as_root: bool,
    /// uid and gid of the user that owns the clusters.
    pub uid: u32,
    pub gid: u32,
    /// LD_LIBRARY_PATH for the copied installation's client programs.
    ld_library_path: Option<PathBuf>,
}

static INSTALL: OnceLock<Install> = OnceLock::new();
static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Directories to remove when the test binary exits (install copy, template).
static AT_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_at_exit() {
    if let Ok(dirs) = AT_EXIT.lock() {
        for d in dirs.iter() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

fn remove_when_done(dir: &Path) {
    let mut dirs = AT_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    if dirs.is_empty() {
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe { libc::atexit(remove_at_exit) };
    }
    dirs.push(dir.to_path_buf());
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn pg_config_of(pg_config: &Path, arg: &str) -> String {
    let out = run_ok(Command::new(pg_config).arg(arg));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn id_of(flag: &str) -> u32 {
    let out = run_ok(Command::new("id").args([flag, "postgres"]));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("numeric id")
}

/// The installation `PG_CONFIG` names: the one the extension under test
/// was built for.
pub fn install() -> &'static Install {
    INSTALL.get_or_init(|| {
        let pg_config = std::env::var_os("PG_CONFIG").unwrap_or_else(|| "pg_config".into());
        Install::load(Path::new(&pg_config))
    })
}

impl Install {
    /// Another installation, for tests that need two majors (pg_upgrade).
    pub fn load(pg_config_path: &Path) -> Install {
        let pg_config = |arg: &str| pg_config_of(pg_config_path, arg);
        let bindir = PathBuf::from(pg_config("--bindir"));
        let version = pg_config("--version");
        let major: u32 = version
            .strip_prefix("PostgreSQL ")
            .and_then(|v| {
                v.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|m| m.parse().ok())
            })
            .unwrap_or_else(|| panic!("cannot read the major version from {version:?}"));
        // SAFETY: plain libc call.
        let as_root = unsafe { libc::geteuid() } == 0;
        let (uid, gid) = if as_root {
            (id_of("-u"), id_of("-g"))
        } else {
            // SAFETY: plain libc calls.
            unsafe { (libc::geteuid(), libc::getegid()) }
        };
        let mut inst = Install {
            bindir,
            major,
            as_root,
            uid,
            gid,
            ld_library_path: None,
        };
        let share = PathBuf::from(pg_config("--sharedir"));
        if as_root && !inst.reachable_by_server_user(&share) {
            inst.copy_installation(&pg_config);
        }
        inst
    }

    fn reachable_by_server_user(&self, sharedir: &Path) -> bool {
        let share = sharedir.join("postgresql.conf.sample");
        let ok = |args: &[&Path]| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "test"]);
            for a in args {
                c.arg(a);
            }
            c.current_dir("/");
            run(&mut c).status.success()
        };
        ok(&[Path::new("-x"), &self.bindir.join("postgres")]) && ok(&[Path::new("-r"), &share])
    }

    /// Copies bin/, lib/ and share/ of the installation to /tmp, keeping
    /// their relative layout, which is all PostgreSQL needs to find its
    /// files.
    fn copy_installation(&mut self, pg_config: &dyn Fn(&str) -> String) {
        let prefix = self.bindir.parent().expect("bindir has a parent").to_path_buf();
        for (what, dir) in [
            ("sharedir", pg_config("--sharedir")),
            ("pkglibdir", pg_config("--pkglibdir")),
            ("libdir", pg_config("--libdir")),
        ] {
            assert!(
                Path::new(&dir).starts_with(&prefix),
                "the server user cannot read {}, and {what} {dir} is not under {}, so it cannot be copied",
                self.bindir.display(),
                prefix.display()
            );
        }
        let dest = PathBuf::from(format!("/tmp/peb-it-{}-install-{}", std::process::id(), self.major));
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest).unwrap();
        remove_when_done(&dest);
        for sub in ["bin", "lib", "share"] {
            if prefix.join(sub).is_dir() {
                run_ok(Command::new("cp").arg("-a").arg(prefix.join(sub)).arg(&dest));
            }
        }
        run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&dest));
        self.bindir = dest.join(self.bindir.strip_prefix(&prefix).unwrap());
        self.ld_library_path = Some(dest.join(Path::new(&pg_config("--libdir")).strip_prefix(&prefix).unwrap()));
        let share = dest.join(Path::new(&pg_config("--sharedir")).strip_prefix(&prefix).unwrap());
        assert!(
            self.reachable_by_server_user(&share),
            "the copy of the installation in {} is not usable by the server user either",
            dest.display()
        );
    }

    /// A command running program `prog` of the installation as the user
    /// owning the clusters.
    pub fn command(&self, prog: &str) -> Command {
        let bin = self.bindir.join(prog);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "env"]);
            if let Some(lp) = &self.ld_library_path {
                c.arg(format!("LD_LIBRARY_PATH={}", lp.display()));
            }
            c.arg(bin);
            c
        } else {
            let mut c = Command::new(bin);
            if let Some(lp) = &self.ld_library_path {
                c.env("LD_LIBRARY_PATH", lp);
            }
            c
        };
        for (k, _) in std::env::vars() {
            // A backtrace setting of the test run would make a server that
            // catches a panic print one into its log.
            if k.starts_with("PG") || k.starts_with("RUST_") {
                cmd.env_remove(k);
            }
        }
        // The server user may not be able to enter the test's directory.
        cmd.current_dir("/");
        cmd
    }

    /// Gives `path` to the cluster owner (a no-op unless root).
    pub fn chown(&self, path: &Path) {
        if self.as_root {
            lchown(path, Some(self.uid), Some(self.gid)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }
}

/// Copies a directory tree (a data directory, possibly of a running server),
/// keeping modes and symlinks; files that vanish during the copy are
/// skipped. Everything copied is given to the cluster owner.
pub fn copy_tree(from: &Path, to: &Path) {
    copy_walk(from, to, None, Duration::ZERO, &mut 0);
}

/// Copies a data directory as a file-level backup tool would, while the
/// server runs: as [`copy_tree`], but postmaster.pid/.opts and the files of
/// pg_wal are left out. `pause_per_file` stretches the copy so that a load
/// keeps writing while it runs. Returns the number of files copied.
pub fn copy_for_backup(from: &Path, to: &Path, pause_per_file: Duration) -> usize {
    let mut n = 0;
    copy_walk(
        from,
        to,
        Some(Backup {
            top: true,
            in_wal: false,
        }),
        pause_per_file,
        &mut n,
    );
    n
}

/// Where a backup copy is in the tree.
#[derive(Clone, Copy)]
struct Backup {
    top: bool,
    in_wal: bool,
}

fn copy_walk(from: &Path, to: &Path, backup: Option<Backup>, pause: Duration, n: &mut usize) {
    let inst = install();
    let meta = match fs::metadata(from) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => panic!("stat {}: {e}", from.display()),
    };
    fs::create_dir(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777)).unwrap();
    inst.chown(to);
    let entries = match fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => panic!("read_dir {}: {e}", from.display()),
    };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if backup.is_some_and(|b| b.top) && (name == "postmaster.pid" || name == "postmaster.opts") {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        let m = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => panic!("stat {}: {e}", src.display()),
        };
        if m.file_type().is_symlink() {
            symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
            inst.chown(&dst);
        } else if m.is_dir() {
            let inner = backup.map(|b| Backup {
                top: false,
                in_wal: b.in_wal || (b.top && name == "pg_wal"),
            });
            copy_walk(&src, &dst, inner, pause, n);
        } else if !backup.is_some_and(|b| b.in_wal) {
            match fs::copy(&src, &dst) {
                Ok(_) => {
                    inst.chown(&dst);
                    *n += 1;
                    if m.len() > 0 && !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => panic!("copy {}: {e}", src.display()),
            }
        }
    }
}

/// An initdb'd data directory that every cluster of this test binary copies.
fn template() -> &'static Path {
    TEMPLATE.get_or_init(|| {
        let inst = install();
        let root = PathBuf::from(format!("/tmp/peb-it-{}-template", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        remove_when_done(&root);
        inst.chown(&root);
        let data = root.join("data");
        run_ok(inst.command("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ]));
        data
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Notices a connection received, in order.
pub type Notices = Arc<Mutex<Vec<String>>>;

pub struct Cluster {
    /// The installation whose programs run this cluster.
    inst: &'static Install,
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    running: bool,
}

impl Cluster {
    fn new_root() -> PathBuf {
        let inst = install();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = PathBuf::from(format!("/tmp/peb-it-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        inst.chown(&root);
        root
    }

    fn with_root(root: PathBuf, settings: &[&str]) -> Cluster {
        Cluster::with_root_of(install(), root, settings)
    }

    fn with_root_of(inst: &'static Install, root: PathBuf, settings: &[&str]) -> Cluster {
        let data = root.join("data");
        Cluster::with_data_of(inst, root, data, settings)
    }

    fn with_data_of(inst: &'static Install, root: PathBuf, data: PathBuf, settings: &[&str]) -> Cluster {
        let c = Cluster {
            inst,
            data,
            log: root.join("server.log"),
            root,
            port: free_port(),
            running: false,
        };
        let mut base = vec![
            format!("port = {}", c.port),
            "listen_addresses = '127.0.0.1'".to_string(),
            format!("unix_socket_directories = '{}'", c.root.display()),
            "fsync = off".to_string(),
            "log_checkpoints = off".to_string(),
            "max_connections = 30".to_string(),
            // Nothing but the tests writes WAL (see wal_bytes_of_one_update).
            "autovacuum = off".to_string(),
        ];
        base.extend(settings.iter().map(|s| s.to_string()));
        c.append_conf(&base.iter().map(String::as_str).collect::<Vec<_>>());
        c
    }

    /// A fresh cluster (not started) with `settings` added to
    /// postgresql.conf.
    pub fn init(settings: &[&str]) -> Cluster {
        let root = Cluster::new_root();
        copy_tree(template(), &root.join("data"));
        Cluster::with_root(root, settings)
    }

    /// A fresh cluster (not started) whose data directory is `data`, made
    /// there from the template (on a volume of the test's own, see
    /// volumes.rs); the log and socket stay in a directory under /tmp.
    pub fn init_at(data: &Path, settings: &[&str]) -> Cluster {
        copy_tree(template(), data);
        Cluster::with_data_of(install(), Cluster::new_root(), data.to_path_buf(), settings)
    }

    /// A cluster (not started) over the data directory `data` as it is (a
    /// block-level image of another cluster's), `settings` appended: a
    /// port and socket of its own, the log in a directory under /tmp.
    pub fn over(data: &Path, settings: &[&str]) -> Cluster {
        let _ = fs::remove_file(data.join("postmaster.pid"));
        Cluster::with_data_of(install(), Cluster::new_root(), data.to_path_buf(), settings)
    }

    /// A fresh cluster (not started) of installation `inst`, made by its own
    /// initdb with `initdb_args` added (no template: for tests that need a
    /// second installation or particular initdb options).
    pub fn initdb_of(inst: &'static Install, initdb_args: &[&str], settings: &[&str]) -> Cluster {
        let root = Cluster::new_root();
        run_ok(
            inst.command("initdb")
                .arg("-D")
                .arg(root.join("data"))
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "-N"])
                .args(initdb_args),
        );
        Cluster::with_root_of(inst, root, settings)
    }

    /// The installation that runs this cluster.
    pub fn install(&self) -> &'static Install {
        self.inst
    }

    /// A fresh, running cluster with the extension created in database
    /// "postgres".
    pub fn with_extension(settings: &[&str]) -> Cluster {
        let mut c = Cluster::init(settings);
        c.start();
        c.create_extension();
        c
    }

    /// CREATE EXTENSION pg_exclusive_backup in database "postgres".
    pub fn create_extension(&self) {
        self.connect()
            .batch_execute("CREATE EXTENSION pg_exclusive_backup")
            .expect("CREATE EXTENSION");
    }

    /// A cluster (not started) whose data directory is a copy of `files`,
    /// for instance a backup taken with pg_start_backup: postmaster.pid and
    /// the contents of pg_wal are left out.
    pub fn from_copy(files: &Path, settings: &[&str]) -> Cluster {
        let root = Cluster::new_root();
        copy_for_backup(files, &root.join("data"), Duration::ZERO);
        Cluster::with_root(root, settings)
    }

    /// A cluster (not started) whose data directory is a copy of all of
    /// `files` but postmaster.pid (pg_wal included, as a file-level copy of
    /// a data directory holds it).
    pub fn from_image(files: &Path, settings: &[&str]) -> Cluster {
        let root = Cluster::new_root();
        copy_tree(files, &root.join("data"));
        let _ = fs::remove_file(root.join("data/postmaster.pid"));
        Cluster::with_root(root, settings)
    }

    /// A running hot standby of `primary`, made with pg_basebackup -R.
    pub fn standby_of(primary: &Cluster, settings: &[&str]) -> Cluster {
        let root = Cluster::new_root();
        let data = root.join("data");
        run_ok(
            install()
                .command("pg_basebackup")
                .arg("-D")
                .arg(&data)
                .args(["-R", "-X", "stream", "-c", "fast", "-N", "-h", "127.0.0.1"])
                .arg("-p")
                .arg(primary.port.to_string())
                .args(["-U", "postgres"]),
        );
        let mut c = Cluster::with_root(root, settings);
        c.start();
        c
    }

    pub fn append_conf(&self, settings: &[&str]) {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .unwrap();
        writeln!(f, "\n# added by the integration tests").unwrap();
        for s in settings {
            writeln!(f, "{s}").unwrap();
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.pg_ctl_for(120, args)
    }

    /// pg_ctl on this cluster (as its owner, logging to its server log),
    /// waiting at most `timeout_s` seconds; whatever it did, its output.
    pub fn pg_ctl_for(&self, timeout_s: u32, args: &[&str]) -> Output {
        run(self
            .inst
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", &timeout_s.to_string()])
            .args(args))
    }

    pub fn start(&mut self) {
        for attempt in 0.. {
            let log_before = self.log().len();
            let out = self.pg_ctl(&["start"]);
            if out.status.success() {
                self.running = true;
                return;
            }
            let log = self.log();
            let new_log = &log[log_before.min(log.len())..];
            if attempt < 3 && new_log.contains("could not bind") {
                // Someone took the port in between; take another.
                self.port = free_port();
                self.append_conf(&[&format!("port = {}", self.port)]);
                continue;
            }
            panic!(
                "pg_ctl start failed: {}\n{}\nserver log:\n{new_log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Stops the server cleanly (fast mode).
    pub fn stop(&mut self) {
        let out = self.pg_ctl(&["stop", "-m", "fast"]);
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = false;
    }

    pub fn restart(&mut self) {
        let out = self.pg_ctl(&["restart", "-m", "fast"]);
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.running = true;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test's own directory (holds the data directory and the log).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    fn config(&self, user: &str, db: &str) -> Config {
        let mut cfg = Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(db)
            .connect_timeout(Duration::from_secs(20));
        cfg
    }

    pub fn connect(&self) -> Client {
        self.connect_as("postgres", "postgres")
    }

    pub fn connect_as(&self, user: &str, db: &str) -> Client {
        self.config(user, db)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connect as {user} to {db}: {e}"))
    }

    /// A connection whose notices are collected.
    pub fn connect_with_notices(&self) -> (Client, Notices) {
        let notices: Notices = Arc::default();
        let sink = notices.clone();
        let client = self
            .config("postgres", "postgres")
            .notice_callback(move |n: DbError| sink.lock().unwrap().push(n.message().to_string()))
            .connect(NoTls)
            .expect("connect");
        (client, notices)
    }

    /// A file or directory of the data directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.data.join(name)
    }

    /// The bytes of a file of the data directory, `None` if it is missing.
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        match fs::read(self.data.join(name)) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => panic!("read {name}: {e}"),
        }
    }

    pub fn read_string(&self, name: &str) -> Option<String> {
        self.read(name).map(|b| String::from_utf8(b).expect("UTF-8 file"))
    }

    pub fn exists(&self, name: &str) -> bool {
        fs::symlink_metadata(self.data.join(name)).is_ok()
    }

    /// Writes a file into the data directory, owned by the server user.
    pub fn write(&self, name: &str, content: &[u8]) {
        let p = self.data.join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        install().chown(&p);
    }

    /// A new directory beside the data directory, owned by the server user.
    pub fn make_dir(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
        install().chown(&p);
        p
    }

    /// Names in the data directory (top level) starting with `prefix`.
    pub fn names_starting_with(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.data)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect();
        v.sort();
        v
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Fails if the server log shows a crash, a PANIC, an assertion failure
    /// or a crash recovery.
    pub fn assert_log_clean(&self) {
        self.assert_log_clean_except(&[]);
    }

    /// [`Cluster::assert_log_clean`], allowing the patterns in `expected`
    /// (for instance a restored backup's "database system was interrupted").
    pub fn assert_log_clean_except(&self, expected: &[&str]) {
        let patterns: Vec<&str> = UNCLEAN.iter().copied().filter(|p| !expected.contains(p)).collect();
        assert_log_without(&self.log(), &patterns, &[]);
    }
}

/// What a server log must not show in a test that crashes nothing.
const UNCLEAN: &[&str] = &[
    "terminated by signal",
    "was terminated by exception",
    "server process (pid",
    "trap:",
    "assert",
    "panic:",
    "terminating any other active server processes",
    "all server processes terminated",
    "database system was interrupted",
];

/// What a server log must not show even in a test that crashes a process
/// on purpose: an assertion failure, a PANIC, a process killed by a signal.
const CRASHED: &[&str] = &["trap:", "panic", "terminated by signal"];

/// The one log check: fails on the first line of `log` holding one of
/// `patterns` (compared without case) unless it holds one of `allowed`.
#[track_caller]
pub fn assert_log_without(log: &str, patterns: &[&str], allowed: &[&str]) {
    for line in log.lines() {
        let lower = line.to_lowercase();
        for bad in patterns {
            if lower.contains(bad) && !allowed.iter().any(|a| line.contains(a)) {
                panic!("server log shows {bad:?}:\n{line}\n--- full log ---\n{log}");
            }
        }
    }
}

/// Fails if `log` shows an assertion failure, a PANIC or a process killed
/// by a signal, other than lines holding one of `allowed` (for a test that
/// kills a process itself).
#[track_caller]
pub fn assert_no_crash(log: &str, allowed: &[&str]) {
    assert_log_without(log, CRASHED, allowed);
}

/// A running server's log must show no crash at all.
#[track_caller]
pub fn assert_log_has_no_crash(c: &Cluster) {
    assert_no_crash(&c.log(), &[]);
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running || self.data.join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the server log of {} ---", self.root.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Polls `cond` every 50 ms until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The database error of a failed call; panics if it succeeded or failed
/// otherwise, or if its SQLSTATE is not `code`.
#[track_caller]
pub fn db_error<T: std::fmt::Debug>(r: Result<T, postgres::Error>, code: &SqlState) -> DbError {
    match r {
        Ok(v) => panic!("expected error {}, got success: {v:?}", code.code()),
        Err(e) => {
            let db = e
                .as_db_error()
                .unwrap_or_else(|| panic!("expected error {}, got {e}", code.code()))
                .clone();
            assert_eq!(
                db.code(),
                code,
                "expected SQLSTATE {}, got {}: {}",
                code.code(),
                db.code().code(),
                db.message()
            );
            db
        }
    }
}

/// Parses "X/Y" as the server prints an LSN.
pub fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap_or_else(|| panic!("not an LSN: {s:?}"));
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

pub fn lsn(v: PgLsn) -> u64 {
    u64::from(v)
}

/// Starts an exclusive backup (fast checkpoint) and returns its start LSN.
#[track_caller]
pub fn start_backup(c: &mut Client, label: &str) -> u64 {
    start_backup_with(c, label, true)
}

/// pg_start_backup(label, fast); returns the start LSN.
#[track_caller]
pub fn start_backup_with(c: &mut Client, label: &str, fast: bool) -> u64 {
    let row = c
        .query_one("SELECT pg_start_backup($1, $2)", &[&label, &fast])
        .unwrap_or_else(|e| panic!("pg_start_backup({label:?}, {fast}): {e:?}"));
    lsn(row.get(0))
}

/// Stops the exclusive backup and returns its stop LSN.
#[track_caller]
pub fn stop_backup(c: &mut Client, wait_for_archive: bool) -> u64 {
    let row = c
        .query_one("SELECT lsn FROM pg_stop_backup($1)", &[&wait_for_archive])
        .unwrap_or_else(|e| panic!("pg_stop_backup({wait_for_archive}): {e:?}"));
    lsn(row.get(0))
}

pub fn in_backup(c: &mut Client) -> bool {
    c.query_one("SELECT pg_is_in_backup()", &[]).unwrap().get(0)
}

/// The START TIME-derived backup start, as text in `zone`, or None.
pub fn start_time_in(c: &mut Client, zone: &str) -> Option<String> {
    c.query_one(
        "SELECT to_char(pg_backup_start_time() AT TIME ZONE $1, 'YYYY-MM-DD HH24:MI:SS')",
        &[&zone],
    )
    .unwrap()
    .get(0)
}

/// The value of `KEY: value` in a label or history file.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
}

// The full-page-write probe.
//
// With full_page_writes = off, the first change to a page after a
// checkpoint writes a full-page image only while the server forces page
// writes, that is, while a backup is running. So, right after a CHECKPOINT,
// updating one row of a small table (whose page is ~6 kB full) writes more
// than 4000 bytes of WAL while a backup runs and a few hundred otherwise.
// The measurement is taken in one session; the clusters run with
// autovacuum off and nothing else writing.

/// A running cluster with full_page_writes = off (and `settings`), the
/// extension, and the probe's table.
pub fn probed_cluster(settings: &[&str]) -> (Cluster, Client) {
    let mut all = vec!["full_page_writes = off"];
    all.extend_from_slice(settings);
    let c = Cluster::with_extension(&all);
    let mut s = c.connect();
    create_fpi_probe(&mut s);
    assert_no_forced_fpi(&mut s, "before the test");
    (c, s)
}

/// The backend pid of a connection.
pub fn pid_of(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// Creates the probe's table.
pub fn create_fpi_probe(c: &mut Client) {
    c.batch_execute(
        "CREATE TABLE fpi_probe (id int, v int, pad text) WITH (fillfactor = 90, autovacuum_enabled = off);
         INSERT INTO fpi_probe SELECT g, 0, repeat('p', 200) FROM generate_series(1, 25) g;",
    )
    .unwrap();
    c.batch_execute("VACUUM fpi_probe").unwrap();
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
pub fn wal_bytes_of_one_update(c: &mut Client) -> u64 {
    c.batch_execute("SELECT pg_logical_emit_message(false, 'fpi_probe', 'refresh')")
        .unwrap();
    c.batch_execute("CHECKPOINT").unwrap();
    let before: PgLsn = c.query_one("SELECT pg_current_wal_insert_lsn()", &[]).unwrap().get(0);
    c.execute("UPDATE fpi_probe SET v = v + 1 WHERE id = 1", &[]).unwrap();
    let after: PgLsn = c.query_one("SELECT pg_current_wal_insert_lsn()", &[]).unwrap().get(0);
    lsn(after) - lsn(before)
}

/// The server does not force full-page writes (no backup is running;
/// needs a cluster with full_page_writes = off and the probe table).
#[track_caller]
pub fn assert_no_forced_fpi(c: &mut Client, when: &str) {
    let bytes = wal_bytes_of_one_update(c);
    assert!(
        bytes < 2000,
        "{when}: updating one row after a checkpoint wrote {bytes} bytes of WAL: a full-page image, \
         so the server is still in backup mode"
    );
}

/// The server forces full-page writes (a backup is running).
#[track_caller]
pub fn assert_forced_fpi(c: &mut Client, when: &str) {
    let bytes = wal_bytes_of_one_update(c);
    assert!(
        bytes > 4000,
        "{when}: updating one row after a checkpoint wrote only {bytes} bytes of WAL: no full-page image, \
         so the server is not in backup mode"
    );
}

/// Sets `name` to `value` in postgresql.conf, reloads, and waits until a
/// new session sees it, that is, until the postmaster has it (so every
/// process it starts from now on has it, the start worker included).
pub fn reload_setting(c: &Cluster, name: &str, value: &str) {
    c.append_conf(&[&format!("{name} = '{value}'")]);
    c.connect().batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_until(&format!("the reload of {name}"), Duration::from_secs(20), || {
        let v: Option<String> = c
            .connect()
            .query_one("SELECT current_setting($1, true)", &[&name])
            .unwrap()
            .get(0);
        v.unwrap_or_default() == value
    });
}

/// Sets the delay points of the extension's test build (src/hooks.rs) for
/// every process of the cluster.
pub fn set_test_pause(c: &Cluster, value: &str) {
    reload_setting(c, "pg_exclusive_backup.test_pause", value);
}

/// Whether the server was built with assertions.
pub fn debug_assertions(c: &mut Client) -> bool {
    let v: String = c.query_one("SHOW debug_assertions", &[]).unwrap().get(0);
    v == "on"
}
