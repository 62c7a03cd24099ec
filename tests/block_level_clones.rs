//! Block-level snapshots of a primary in preload mode, taken during an
//! exclusive backup under load on real block devices (ext4 volumes on
//! loop devices, fsfreeze while each image is copied): a clone mounted
//! elsewhere says it is a clone, comes up crash-consistent and warns that
//! it archives as the primary does; told to, such a clone refuses to
//! start, touching nothing, and starts once it archives elsewhere, or
//! recovers from its label with archiving off; the primary's own volume
//! rolled back in place is still the primary; a snapshot of several volumes (data directory, pg_wal, a
//! tablespace) refuses until recovered from its label, with pg_wal and the
//! tablespace pointed at its own volumes. Root only.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::proof::*;
use common::volumes::{self, Volume};
use common::*;
use postgres::Client;

/// A directory for images and mount points, removed when dropped (after
/// the volumes and clusters declared after it).
struct Work(PathBuf);

impl Work {
    fn new(tag: &str) -> Work {
        let d = PathBuf::from(format!("/tmp/peb-vol-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        Work(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A directory the cluster owner can write.
    fn owned_dir(&self, name: &str) -> PathBuf {
        let d = self.path(name);
        fs::create_dir_all(&d).unwrap();
        install().chown(&d);
        d
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const MB: u64 = 256;

/// The primary's archive_command: the form PostgreSQL's documentation
/// gives, which never overwrites a file of the archive.
fn archive_command(archive: &Path) -> String {
    format!("test ! -f {0}/%f && cp %p {0}/%f", archive.display())
}

/// A preloaded primary whose data directory is on `vol`, archiving into
/// `archive`, with pgbench's tables (in tablespace `ts` at `ts_dir`, if
/// given).
fn primary(vol: &Volume, archive: &Path, ts_dir: Option<&Path>) -> Cluster {
    primary_with_wal_on(vol, None, archive, ts_dir)
}

/// [`primary`] with pg_wal on `wal` (a link to `pg_wal` there), if given.
fn primary_with_wal_on(vol: &Volume, wal: Option<&Volume>, archive: &Path, ts_dir: Option<&Path>) -> Cluster {
    let mut c = Cluster::init_at(
        &vol.mount.join("data"),
        &[
            PRELOAD,
            "wal_level = replica",
            "archive_mode = on",
            &format!("archive_command = '{}'", archive_command(archive)),
            "max_wal_size = 64MB",
            "min_wal_size = 32MB",
        ],
    );
    if let Some(w) = wal {
        let moved = w.mount.join("pg_wal");
        copy_tree(&c.path("pg_wal"), &moved);
        fs::remove_dir_all(c.path("pg_wal")).unwrap();
        std::os::unix::fs::symlink(&moved, c.path("pg_wal")).unwrap();
        install().chown(&c.path("pg_wal"));
    }
    c.start();
    c.create_extension();
    if let Some(dir) = ts_dir {
        c.connect()
            .batch_execute(&format!("CREATE TABLESPACE ts LOCATION '{}'", dir.display()))
            .unwrap();
    }
    pgbench_init(&c, 1, ts_dir.map(|_| "ts"));
    c
}

/// Starts backup `label` on `p`, snapshots `vols` into `images` while
/// pgbench writes, and stops the backup (waiting for the archiver):
/// returns the start and stop LSNs.
fn snapshot_during_a_backup(p: &Cluster, label: &str, vols: &[&Volume], images: &[&Path]) -> (u64, u64) {
    let mut s = p.connect();
    let start = start_backup(&mut s, label);
    let mut load = Pgbench::start(p, 2, 120);
    wait_until("pgbench's first 200 transactions", Duration::from_secs(60), || {
        let n: i64 = s.query_one("SELECT count(*) FROM pgbench_history", &[]).unwrap().get(0);
        n >= 200
    });
    volumes::snapshot(vols, images);
    assert!(load.running(), "pgbench ended early:\n{}", load.output());
    load.finish();
    let stop = stop_backup(&mut s, true);
    (start, stop)
}

/// `c`'s recovery from the backup's label, once done: it began at the
/// backup's start and was consistent no earlier than its stop.
#[track_caller]
fn recovered_to_the_backups_end(r: &mut Client, c: &Cluster, start: u64, stop: u64) {
    wait_recovery_done(r, Duration::from_secs(120));
    let log = c.log();
    let done = line_with(&log, "completed backup recovery with redo LSN").unwrap_or_else(|| panic!("{log}"));
    assert_eq!(lsns_in_line(done, &["redo LSN"]), vec![start], "{done}");
    let at = consistent_at(&log).expect("consistent point");
    assert!(at >= stop, "consistent at {at:X}, before the stop at {stop:X}");
}

/// What the status view says of the last backup: (in_progress,
/// last_label, last_outcome).
fn last_backup(s: &mut Client) -> (bool, Option<String>, Option<String>) {
    let r = s
        .query_one(
            "SELECT in_progress, last_label, last_outcome FROM pg_exclusive_backup_status",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// Every file in `dir` with its content.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The consistent data a crash-consistent or recovered image must show.
fn data_holds(c: &Cluster) {
    let mut s = c.connect();
    assert_pgbench_balances_agree(&mut s);
    assert_amcheck_clean(c);
}

const CLONE: &str = "LOG:  pg_exclusive_backup: this data directory is most likely a block-level clone of the \
     primary, taken during the exclusive backup \"one volume\"";
const ARCHIVES: &str = "WARNING:  this clone of the primary archives WAL as the primary does";
const REFUSES: &str = "FATAL:  this data directory is most likely a block-level clone of the primary, and it \
     would archive WAL as the primary does";

#[test]
fn a_clone_of_one_volume_says_it_is_a_clone_and_refuses_to_archive_when_told() {
    let Some(_one_at_a_time) = volumes::exclusive() else {
        return;
    };
    let work = Work::new("one");
    let archive = work.owned_dir("archive");
    let a = Volume::create(&work.path("a.img"), &work.path("a"), MB);
    let mut p = primary(&a, &archive, None);
    let (start, stop) = snapshot_during_a_backup(&p, "one volume", &[&a], &[&work.path("b.img")]);
    for copy in ["c.img", "d.img"] {
        fs::copy(work.path("b.img"), work.path(copy)).unwrap();
    }
    let primary_archive = contents(&archive);

    // Mounted elsewhere and started as it is, with the primary's whole
    // configuration: the label is renamed and the clone comes up
    // crash-consistent, saying what it is and that it archives as the
    // primary does. (Stopped at once: a shutdown would try to archive its
    // own segment of the primary's timeline under the primary's name,
    // which this archive_command refuses, and an overwriting one would
    // not.)
    let b = Volume::attach(&work.path("b.img"), &work.path("b"));
    assert_ne!(b.dev(), a.dev());
    let mut clone = Cluster::over(&b.mount.join("data"), &[]);
    clone.start();
    let log = clone.log();
    eprintln!("the clone logged:\n{log}");
    assert!(log.contains(CLONE), "not called a clone:\n{log}");
    let detail = line_with(&log, "DETAIL:  \"backup_label\" is the primary's own file, but ").unwrap();
    for fact in [
        format!(
            "the data directory is \"{}\", the primary's was \"{}\"",
            b.mount.join("data").display(),
            a.mount.join("data").display()
        ),
        "backup_label is on device ".to_string(),
        "crash-consistent".to_string(),
    ] {
        assert!(detail.contains(&fact), "{fact:?} not in {detail}");
    }
    assert!(!log.contains("not a valid backup"), "{log}");
    assert!(log.contains(ARCHIVES), "no archiving warning:\n{log}");
    let why = line_with(&log, "DETAIL:  It continues the primary's timeline 1").unwrap();
    assert!(
        why.contains(&format!("archive_command '{}'", archive_command(&archive))),
        "{why}"
    );
    assert!(clone.exists("backup_label.old") && !clone.exists("backup_label"));
    let mut s = clone.connect();
    assert_eq!(
        last_backup(&mut s),
        (
            false,
            Some("one volume".into()),
            Some("running on the primary when this server was cloned from it".into())
        )
    );
    let e = db_error(s.query_one("SELECT pg_stop_backup()", &[]), NOT_READY);
    assert!(
        e.detail()
            .unwrap_or("")
            .contains("was running on the primary when this data directory was cloned"),
        "{e:?}"
    );
    data_holds(&clone);
    drop(s);
    stop_mode(&clone, "immediate");

    // The same snapshot with pg_exclusive_backup.refuse_archiving_clone on:
    // it refuses before anything is touched, and nothing is archived.
    let c_vol = Volume::attach(&work.path("c.img"), &work.path("c"));
    let refuse = "pg_exclusive_backup.refuse_archiving_clone = on";
    let mut refusing = Cluster::over(&c_vol.mount.join("data"), &[refuse]);
    let label = refusing.read("backup_label").expect("the snapshot's label");
    let out = try_start(&refusing);
    let log = refusing.log();
    assert!(!out.status.success(), "started:\n{log}");
    assert!(log.contains(REFUSES), "{log}");
    assert!(
        line_with(&log, "DETAIL:  ").unwrap().contains("Nothing was changed."),
        "{log}"
    );
    assert!(
        line_with(&log, "HINT:  ")
            .unwrap()
            .contains("archive_mode = off or an archive_command of its own"),
        "{log}"
    );
    assert_eq!(refusing.read("backup_label"), Some(label));
    assert!(!refusing.exists("backup_label.old"));
    // Its HINT: an archive of its own. It starts as a clone, with no
    // warning about the archive.
    let own_archive = work.owned_dir("clone-archive");
    refusing.append_conf(&[&format!("archive_command = 'cp %p {}/%f'", own_archive.display())]);
    refusing.start();
    let log = refusing.log();
    assert!(log.contains(CLONE), "{log}");
    assert!(!log.contains(ARCHIVES), "{log}");
    data_holds(&refusing);
    refusing.stop();

    // Its HINT, for a recovery to the backup's end: recovery.signal, with
    // archive_mode = off.
    let d_vol = Volume::attach(&work.path("d.img"), &work.path("d"));
    let mut recovered = Cluster::over(
        &d_vol.mount.join("data"),
        &[
            refuse,
            "archive_mode = off",
            &format!("restore_command = 'cp {}/%f %p'", archive.display()),
        ],
    );
    recovered.write("recovery.signal", b"");
    recovered.start();
    let mut r = connect_retry(&recovered, Duration::from_secs(60));
    recovered_to_the_backups_end(&mut r, &recovered, start, stop);
    drop(r);
    data_holds(&recovered);
    recovered.stop();

    // None of the clones wrote into the primary's archive, and the primary
    // ran on untouched.
    assert_eq!(contents(&archive), primary_archive, "the primary's archive changed");
    let mut s = p.connect();
    assert_eq!(
        last_backup(&mut s),
        (false, Some("one volume".into()), Some("stopped".into()))
    );
    assert_pgbench_balances_agree(&mut s);
    drop(s);
    p.stop();
    p.assert_log_clean();
}

#[test]
fn the_primarys_own_volume_rolled_back_in_place_is_still_the_primary() {
    let Some(_one_at_a_time) = volumes::exclusive() else {
        return;
    };
    let work = Work::new("rollback");
    let archive = work.owned_dir("archive");
    let a = Volume::create(&work.path("a.img"), &work.path("a"), MB);
    let mut p = primary(&a, &archive, None);
    snapshot_during_a_backup(&p, "rolled back", &[&a], &[&work.path("snap.img")]);
    stop_mode(&p, "immediate");
    // The snapshot put back onto the same device, mounted where it was.
    a.roll_back_to(&work.path("snap.img"));
    // Stale, as after a reboot: the snapshot was taken while it ran.
    fs::remove_file(p.path("postmaster.pid")).unwrap();
    let from = log_len(&p);
    p.start();
    let log = log_since(&p, from);
    eprintln!("the rolled-back primary logged:\n{log}");
    assert!(
        log.contains("LOG:  pg_exclusive_backup: the exclusive backup \"rolled back\" started at ")
            && log.contains("was ended: the server had not been shut down cleanly"),
        "{log}"
    );
    assert!(!log.contains("clone"), "{log}");
    let mut s = p.connect();
    assert_eq!(
        last_backup(&mut s),
        (
            false,
            Some("rolled back".into()),
            Some("interrupted by a server restart".into())
        )
    );
    drop(s);
    data_holds(&p);
    p.stop();
}

#[test]
fn a_snapshot_of_several_volumes_refuses_until_recovered_on_its_own_volumes() {
    let Some(_one_at_a_time) = volumes::exclusive() else {
        return;
    };
    let work = Work::new("several");
    let archive = work.owned_dir("archive");
    let a = Volume::create(&work.path("a.img"), &work.path("a"), MB);
    let w = Volume::create(&work.path("w.img"), &work.path("w"), MB);
    let t = Volume::create(&work.path("t.img"), &work.path("t"), MB);
    let ts = t.mount.join("ts");
    fs::create_dir(&ts).unwrap();
    install().chown(&ts);
    let mut p = primary_with_wal_on(&a, Some(&w), &archive, Some(&ts));
    let (start, stop) = snapshot_during_a_backup(
        &p,
        "several volumes",
        &[&a, &w, &t],
        &[&work.path("a2.img"), &work.path("w2.img"), &work.path("t2.img")],
    );
    let a2 = Volume::attach(&work.path("a2.img"), &work.path("a2"));
    let w2 = Volume::attach(&work.path("w2.img"), &work.path("w2"));
    let t2 = Volume::attach(&work.path("t2.img"), &work.path("t2"));
    let mut clone = Cluster::over(&a2.mount.join("data"), &["archive_mode = off"]);
    let out = try_start(&clone);
    let log = clone.log();
    eprintln!("the several-volume clone logged:\n{log}");
    assert!(!out.status.success(), "started:\n{log}");
    assert!(
        log.contains(
            "FATAL:  pg_exclusive_backup cannot tell whether \"backup_label\" is this server's own or a restored backup's"
        ),
        "{log}"
    );
    let detail = line_with(&log, "DETAIL:  ").unwrap();
    assert!(
        detail.contains("pg_wal is on another file system than the data directory"),
        "{detail}"
    );
    assert!(detail.contains("even an atomic snapshot of all of them"), "{detail}");
    let hint = line_with(&log, "HINT:  ").unwrap();
    for words in ["recovery.signal", "restore_command", "\"tablespace_map\"", "atomically"] {
        assert!(hint.contains(words), "{words:?} not in {hint}");
    }

    // As the HINT says: recovery.signal, the pg_wal link and tablespace_map
    // pointed at the clone's own volumes.
    let own_wal = w2.mount.join("pg_wal");
    fs::remove_file(clone.path("pg_wal")).unwrap();
    std::os::unix::fs::symlink(&own_wal, clone.path("pg_wal")).unwrap();
    install().chown(&clone.path("pg_wal"));
    let map = clone
        .read_string("tablespace_map")
        .expect("the snapshot's tablespace_map");
    assert!(map.contains(&ts.display().to_string()), "{map}");
    let own_ts = t2.mount.join("ts");
    clone.write(
        "tablespace_map",
        map.replace(&ts.display().to_string(), &own_ts.display().to_string())
            .as_bytes(),
    );
    clone.write("recovery.signal", b"");
    clone.append_conf(&[&format!("restore_command = 'cp {}/%f %p'", archive.display())]);
    clone.start();
    let mut r = connect_retry(&clone, Duration::from_secs(60));
    recovered_to_the_backups_end(&mut r, &clone, start, stop);
    let location: String = r
        .query_one(
            "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(location, own_ts.display().to_string());
    assert_eq!(fs::read_link(clone.path("pg_wal")).unwrap(), own_wal);
    drop(r);
    data_holds(&clone);
    clone.stop();
    let mut s = p.connect();
    assert_pgbench_balances_agree(&mut s);
    drop(s);
    p.stop();
}
