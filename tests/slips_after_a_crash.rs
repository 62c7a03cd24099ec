//! Preload mode, the postmaster killed during a backup, and then what a DBA
//! may do to the files by mistake: the label edited in place, moved out and
//! copied back, the state or lock file damaged, backup_label.old in the
//! way, a backup copied over the data directory in place. Whatever it is,
//! the primary either starts by itself or refuses with a FATAL whose HINT,
//! once followed, lets it start with a clean pg_control; and the restored
//! copies each rule must not take for the primary are still recovered as
//! copies, consistent at the backup's end.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::proof::*;
use common::*;

/// A file-level copy of the data directory taken during a backup under
/// pgbench load, the backup stopped after it.
struct Taken {
    files: PathBuf,
    stop_lsn: u64,
}

/// A preloaded primary with pgbench tables, and a copy taken from it.
fn primary_with_a_copy() -> (Cluster, Taken) {
    let (c, mut s) = preloaded(&[]);
    pgbench_init(&c, 1, None);
    let mut load = Pgbench::start(&c, 2, 120);
    start_backup(&mut s, "the copy");
    let files = c.root().join("copy");
    copy_for_backup(c.data_dir(), &files, Duration::from_millis(1));
    assert!(load.running(), "pgbench ended early:\n{}", load.output());
    load.finish();
    let stop_lsn = stop_backup(&mut s, true);
    (c, Taken { files, stop_lsn })
}

/// A cluster (not started) on `files`, reading WAL from `primary`'s archive.
fn restored(primary: &Cluster, files: &Path) -> Cluster {
    let settings = restore_settings(primary);
    Cluster::from_copy(files, &settings.iter().map(String::as_str).collect::<Vec<_>>())
}

fn restore_settings(primary: &Cluster) -> Vec<String> {
    vec![
        "archive_mode = off".into(),
        format!(
            "restore_command = 'cp {}/%f %p'",
            primary.root().join("archive").display()
        ),
    ]
}

/// Started without a signal file, `copy` is judged a copy (its label left
/// to the startup process, which cannot recover it without the archive);
/// with recovery.signal, recovery reaches the backup's end and pgbench's
/// balances agree.
fn recovers_as_a_copy(copy: &mut Cluster, taken: &Taken) {
    let from = log_len(copy);
    let out = try_start(copy);
    let log = log_since(copy, from);
    assert!(!out.status.success(), "a copy without a signal file came up:\n{log}");
    assert!(
        log.contains("is a copy of the label of the exclusive backup \"the copy\""),
        "{log}"
    );
    assert!(!log.contains("online backup mode canceled"), "{log}");
    assert!(copy.exists("backup_label"), "{log}");
    copy.write("recovery.signal", b"");
    let from = log_len(copy);
    copy.start();
    let mut r = copy.connect();
    wait_recovery_done(&mut r, Duration::from_secs(120));
    let log = log_since(copy, from);
    let done = line_with(&log, "completed backup recovery with redo LSN")
        .unwrap_or_else(|| panic!("the end of the backup was never reached:\n{log}"));
    assert_eq!(lsns_in_line(done, &["end LSN"]), vec![taken.stop_lsn], "{done}");
    assert_pgbench_balances_agree(&mut r);
    drop(r);
    copy.stop();
}

/// Starts a backup and kills the whole server, as the OOM killer would.
fn killed_during_a_backup(c: &Cluster, label: &str) {
    let mut s = c.connect();
    start_backup(&mut s, label);
    drop(s);
    kill_all_server_processes(c);
}

/// The start refuses with `fatal`, a DETAIL containing `detail` and a HINT
/// containing `hint`, before the startup process ran: pg_control is clean.
#[track_caller]
fn refuses(c: &Cluster, fatal: &str, detail: &str, hint: &str) {
    let from = log_len(c);
    let out = try_start(c);
    let log = log_since(c, from);
    assert!(!out.status.success(), "started:\n{log}");
    assert!(log.contains(&format!("FATAL:  {fatal}\n")), "{log}");
    let line = |key: &str| {
        line_with(&log, key)
            .unwrap_or_else(|| panic!("no {key}:\n{log}"))
            .to_string()
    };
    assert!(line("DETAIL:  ").contains(detail), "{log}");
    assert!(line("HINT:  ").contains(hint), "{log}");
    // The startup process never ran.
    assert!(!log.contains("database system was"), "{log}");
    assert_no_backup_in_pg_control(c, fatal);
    eprintln!("refused: {}\n        {}", line("FATAL:  "), line("DETAIL:  "));
}

/// The hint for the primary: backup_label (and tablespace_map) to `.old`.
fn rename_label(c: &Cluster) {
    fs::rename(c.path("backup_label"), c.path("backup_label.old")).unwrap();
    if c.exists("tablespace_map") {
        fs::rename(c.path("tablespace_map"), c.path("tablespace_map.old")).unwrap();
    }
}

/// The server starts with no backup in pg_control, and the next backup
/// runs. Returns the start's log.
#[track_caller]
fn starts_cleanly(c: &mut Cluster) -> String {
    let from = log_len(c);
    c.start();
    let log = log_since(c, from);
    assert!(!log.contains("backup recovery"), "{log}");
    assert_no_backup_in_pg_control(c, "after the start");
    let mut s = c.connect();
    assert!(!in_backup(&mut s));
    start_backup(&mut s, "the next one");
    stop_backup(&mut s, false);
    log
}

const CHANGED: &str = "this server's own \"backup_label\" has been changed since pg_start_backup() wrote it";
const RENAME_IT: &str =
    "the backup is void: rename \"backup_label\" to \"backup_label.old\" (and \"tablespace_map\" to \"tablespace_map.old\", if there is one) and start the server again";

/// The primary's own label file edited in place: never handed to the
/// startup process, whatever was done to it.
#[test]
fn the_primarys_own_label_edited_in_place_refuses_until_renamed() {
    let (mut c, taken) = primary_with_a_copy();
    type Edit = fn(&Path, u64) -> String;
    let edits: [(&str, Edit); 5] = [
        ("a line appended", |p, _| {
            let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
            std::io::Write::write_all(&mut f, b"\n").unwrap();
            "1 byte has been added to its end".into()
        }),
        ("padded to 200 MB", |p, len| {
            fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(200 << 20)
                .unwrap();
            format!("{} bytes have been added to its end", (200 << 20) - len)
        }),
        ("one byte changed", |p, len| {
            let mut b = fs::read(p).unwrap();
            let at = b.iter().rposition(|&x| x == b'd').unwrap();
            b[at] = b'D';
            fs::write(p, b).unwrap();
            format!("1 of its {len} bytes has been changed")
        }),
        ("emptied", |p, _| {
            fs::OpenOptions::new().write(true).open(p).unwrap().set_len(0).unwrap();
            "it has been emptied".into()
        }),
        ("truncated to half", |p, len| {
            fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
            format!("it has been cut from {len} to {} bytes", len / 2)
        }),
    ];
    for (what, edit) in edits {
        killed_during_a_backup(&c, &format!("edited: {what}"));
        let ino = fs::metadata(c.path("backup_label")).unwrap().ino();
        let len = fs::metadata(c.path("backup_label")).unwrap().len();
        let change = edit(&c.path("backup_label"), len);
        assert_eq!(
            fs::metadata(c.path("backup_label")).unwrap().ino(),
            ino,
            "{what}: not in place"
        );
        refuses(&c, CHANGED, &format!("; {change} since."), RENAME_IT);
        assert!(c.exists("backup_label"), "{what}: the label must stay for the DBA");
        rename_label(&c);
        starts_cleanly(&mut c);
    }
    // The copy's files rsync'ed over the crashed primary: plain rsync skips
    // an unchanged label and replaces a changed pg_control through a
    // temporary file. The label is the primary's own, pg_control is not:
    // refused, and renaming the label is not the advice.
    killed_during_a_backup(&c, "rsync over it");
    let control = c.path("global/pg_control");
    let staged = c.path("global/.pg_control.rsync");
    fs::copy(taken.files.join("global/pg_control"), &staged).unwrap();
    c.install().chown(&staged);
    fs::rename(&staged, &control).unwrap();
    refuses(
        &c,
        "this server's own \"backup_label\" lies beside another \"global/pg_control\"",
        "a backup was copied over this data directory in place",
        "restore the backup into an empty directory instead",
    );
    assert!(c.exists("backup_label"));
    // As the hint says: the copy restored into an empty directory is a
    // copy, and is recovered as one.
    let mut copy = restored(&c, &taken.files);
    recovers_as_a_copy(&mut copy, &taken);
}

/// Moved out of the data directory and copied back (or moved back across
/// file systems): a new file beside this primary's own pg_control, which
/// refuses; and so does a backup copied over the data directory in place.
/// Restored into an empty directory, at another path or at the same one,
/// the copy is recovered as a copy.
#[test]
fn a_label_copied_back_or_a_backup_copied_over_in_place_refuses() {
    let (mut c, taken) = primary_with_a_copy();
    let aside = c.root().join("aside");
    let shm = PathBuf::from(format!("/dev/shm/peb-label-{}-{}", std::process::id(), c.port()));
    assert_ne!(
        fs::metadata("/dev/shm").unwrap().dev(),
        fs::metadata(c.data_dir()).unwrap().dev(),
        "/dev/shm is not another file system here"
    );
    let ways: [(&str, &Path); 2] = [("cp", &aside), ("mv", &shm)];
    for (how, there) in ways {
        killed_during_a_backup(&c, &format!("put back with {how}"));
        let label = c.path("backup_label");
        let ok = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
        if how == "cp" {
            ok(Command::new("cp").arg(&label).arg(there));
            fs::remove_file(&label).unwrap();
            ok(Command::new("cp").arg(there).arg(&label));
            c.install().chown(&label);
        } else {
            ok(Command::new("mv").arg(&label).arg(there));
            ok(Command::new("mv").arg(there).arg(&label));
        }
        refuses(
            &c,
            "\"backup_label\" is a new file in this server's own data directory",
            "which this server published as another file, and \"global/pg_control\" is still this server's own: \
             the label was moved out and copied back",
            RENAME_IT,
        );
        rename_label(&c);
        starts_cleanly(&mut c);
    }

    // At another path: a copy.
    let mut elsewhere = restored(&c, &taken.files);
    recovers_as_a_copy(&mut elsewhere, &taken);

    // The copy's files copied over the crashed primary's, in place: its
    // pg_control is rewritten in place, and keeps the primary's identity.
    kill_all_server_processes(&c);
    let from = format!("{}/.", taken.files.display());
    assert!(Command::new("cp")
        .args(["-a", &from])
        .arg(c.data_dir())
        .status()
        .unwrap()
        .success());
    refuses(
        &c,
        "\"backup_label\" is a new file in this server's own data directory",
        "or a backup was copied over this data directory in place",
        "restore the backup into an empty directory instead",
    );

    // Which, at the same path after the old directory was removed, is a
    // copy, even where both freed inode numbers are handed out again: made
    // certain by giving the copied record the restored files' numbers, so
    // that only birth times tell the files apart.
    let data = c.data_dir().to_path_buf();
    fs::remove_dir_all(&data).unwrap();
    copy_for_backup(&taken.files, &data, Duration::ZERO);
    let state = fs::read_to_string(data.join("pg_exclusive_backup.state")).unwrap();
    let mut patched = state.clone();
    for (key, file) in [("label file", "backup_label"), ("control file", "global/pg_control")] {
        let ino = fs::metadata(data.join(file)).unwrap().ino();
        let line = state.lines().find(|l| l.starts_with(key)).unwrap();
        let words: Vec<&str> = line.split(' ').collect();
        let old_ino = words[words.iter().position(|w| *w == "inode").unwrap() + 1];
        patched = patched.replace(
            line,
            &line.replace(&format!(" inode {old_ino} "), &format!(" inode {ino} ")),
        );
    }
    assert_ne!(patched, state);
    fs::write(data.join("pg_exclusive_backup.state"), patched).unwrap();
    c.append_conf(&restore_settings(&c).iter().map(String::as_str).collect::<Vec<_>>());
    recovers_as_a_copy(&mut c, &taken);
}

/// The state file damaged: named as what is damaged; the primary starts
/// once its label is renamed as the HINT says, and a copy whose state file
/// is damaged recovers once it has recovery.signal, as the HINT says.
#[test]
fn a_damaged_state_file_is_named_and_the_hint_starts_the_server() {
    let (mut c, taken) = primary_with_a_copy();
    const STATE: &str = "pg_exclusive_backup.state";
    type Damage = fn(&Cluster);
    let damages: [(&str, Damage, &str); 5] = [
        (
            "padded to 200 MB",
            |c| {
                let f = fs::OpenOptions::new().write(true).open(c.path(STATE)).unwrap();
                f.set_len(200 << 20).unwrap();
            },
            "is larger than 16384 bytes",
        ),
        (
            "garbage",
            |c| c.write(STATE, b"garbage\n"),
            "is not valid: it does not start with the expected header",
        ),
        (
            "truncated to half",
            |c| {
                let len = fs::metadata(c.path(STATE)).unwrap().len();
                fs::OpenOptions::new()
                    .write(true)
                    .open(c.path(STATE))
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            },
            "is not valid",
        ),
        (
            "a directory",
            |c| {
                fs::remove_file(c.path(STATE)).unwrap();
                fs::create_dir(c.path(STATE)).unwrap();
                c.install().chown(&c.path(STATE));
            },
            "is a directory",
        ),
        (
            "unreadable",
            |c| fs::set_permissions(c.path(STATE), fs::Permissions::from_mode(0)).unwrap(),
            "Permission denied",
        ),
    ];
    for (what, damage, why) in damages {
        killed_during_a_backup(&c, &format!("state file {what}"));
        damage(&c);
        refuses(
            &c,
            "pg_exclusive_backup cannot tell whether \"backup_label\" is this server's own or a restored backup's",
            &format!("; \"{STATE}\", which tells whether it is this server's own, "),
            RENAME_IT,
        );
        let log = c.log();
        let detail = log.lines().rev().find(|l| l.contains("DETAIL:  ")).unwrap();
        assert!(detail.contains(why), "{what}: {detail}");
        assert!(!detail.contains("has changed"), "{what}: {detail}");
        rename_label(&c);
        if what == "a directory" {
            let hint = log.lines().rev().find(|l| l.contains("HINT:  ")).unwrap();
            assert!(
                hint.contains(&format!("move \"{STATE}\" out of the data directory")),
                "{hint}"
            );
            fs::remove_dir(c.path(STATE)).unwrap();
        }
        starts_cleanly(&mut c);
    }
    // A copy with a damaged state file: refused, and recovered as a copy
    // once it has recovery.signal.
    let mut copy = restored(&c, &taken.files);
    copy.write(STATE, b"garbage\n");
    refuses(
        &copy,
        "pg_exclusive_backup cannot tell whether \"backup_label\" is this server's own or a restored backup's",
        "is not valid",
        "If this data directory is a restored backup or a snapshot, create \"recovery.signal\"",
    );
    copy.write("recovery.signal", b"");
    let from = log_len(&copy);
    copy.start();
    let mut r = copy.connect();
    wait_recovery_done(&mut r, Duration::from_secs(120));
    let log = log_since(&copy, from);
    let done = line_with(&log, "completed backup recovery with redo LSN").unwrap_or_else(|| panic!("{log}"));
    assert_eq!(lsns_in_line(done, &["end LSN"]), vec![taken.stop_lsn], "{done}");
    assert_pgbench_balances_agree(&mut r);
}

/// The lock file damaged or held: named as such (not "cannot tell"), and
/// the server starts once it is moved away or let go; a copy needs no lock.
#[test]
fn a_damaged_or_held_lock_file_is_named_and_the_hint_starts_the_server() {
    let (mut c, taken) = primary_with_a_copy();
    const LOCK: &str = "pg_exclusive_backup.lock";
    type Damage = fn(&Cluster) -> Option<fs::File>;
    let damages: [(&str, Damage, &str, &str); 4] = [
        (
            "a directory",
            |c| {
                fs::remove_file(c.path(LOCK)).unwrap();
                fs::create_dir(c.path(LOCK)).unwrap();
                None
            },
            "\"pg_exclusive_backup.lock\" in the data directory is a directory.",
            "Move \"pg_exclusive_backup.lock\" out of the data directory",
        ),
        (
            "a symbolic link",
            |c| {
                fs::remove_file(c.path(LOCK)).unwrap();
                std::os::unix::fs::symlink(c.root().join("elsewhere"), c.path(LOCK)).unwrap();
                None
            },
            "\"pg_exclusive_backup.lock\" in the data directory is a symbolic link.",
            "Move \"pg_exclusive_backup.lock\" out of the data directory",
        ),
        (
            "unreadable",
            |c| {
                fs::set_permissions(c.path(LOCK), fs::Permissions::from_mode(0)).unwrap();
                None
            },
            "Permission denied.",
            "Move \"pg_exclusive_backup.lock\" out of the data directory",
        ),
        (
            "held by another process",
            |c| {
                use std::os::unix::io::AsRawFd;
                let f = fs::File::open(c.path(LOCK)).unwrap();
                // SAFETY: plain system call on a descriptor we own.
                assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
                Some(f)
            },
            "and another process holds it.",
            "Stop the process that holds \"pg_exclusive_backup.lock\"",
        ),
    ];
    for (what, damage, detail, hint) in damages {
        killed_during_a_backup(&c, &format!("lock file {what}"));
        let holder = damage(&c);
        refuses(
            &c,
            "could not lock \"pg_exclusive_backup.lock\" to rename this server's own \"backup_label\"",
            detail,
            hint,
        );
        assert!(!c.log().contains("cannot tell"), "{what}");
        match holder {
            Some(f) => drop(f),
            None => {
                let p = c.path(LOCK);
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    fs::remove_dir(&p).unwrap();
                } else {
                    fs::remove_file(&p).unwrap();
                }
            }
        }
        let log = starts_cleanly(&mut c);
        assert!(log.contains("online backup mode canceled"), "{what}:\n{log}");
    }
    // A copy whose lock file is a directory is judged, and recovered, as a
    // copy: judging a copy takes no lock.
    let mut copy = restored(&c, &taken.files);
    fs::remove_file(copy.path(LOCK)).unwrap();
    fs::create_dir(copy.path(LOCK)).unwrap();
    recovers_as_a_copy(&mut copy, &taken);
}

/// backup_label.old a directory: the rename names it and says to move it;
/// at a clean shutdown the backup stays, and the next start, with the
/// directory gone, says the server was shut down during the backup.
#[test]
fn backup_label_old_in_the_way_is_named() {
    let (mut c, mut s) = preloaded(&[]);
    start_backup(&mut s, "blocked at a start");
    drop(s);
    kill_all_server_processes(&c);
    fs::create_dir(c.path("backup_label.old")).unwrap();
    refuses(
        &c,
        "could not rename file \"backup_label\" to \"backup_label.old\": Is a directory",
        "\"backup_label.old\" in the data directory is a directory.",
        "Move \"backup_label.old\" out of the data directory and start the server again.",
    );
    fs::remove_dir(c.path("backup_label.old")).unwrap();
    let log = starts_cleanly(&mut c);
    assert!(log.contains("the server had not been shut down cleanly"), "{log}");

    let mut s = c.connect();
    start_backup(&mut s, "blocked at a shutdown");
    drop(s);
    fs::remove_file(c.path("backup_label.old")).unwrap();
    fs::create_dir(c.path("backup_label.old")).unwrap();
    let from = log_len(&c);
    stop_mode(&c, "fast");
    let log = log_since(&c, from);
    assert!(
        log.contains("WARNING:  could not rename file \"backup_label\" to \"backup_label.old\": Is a directory"),
        "{log}"
    );
    assert!(
        log.contains(
            "DETAIL:  Online backup mode was not canceled. \"backup_label.old\" in the data directory is a directory."
        ),
        "{log}"
    );
    assert!(c.exists("backup_label"));
    fs::remove_dir(c.path("backup_label.old")).unwrap();
    let log = starts_cleanly(&mut c);
    assert!(
        log.contains("\"blocked at a shutdown\" started at")
            && log.contains("was ended: the server was shut down during it"),
        "{log}"
    );
    assert!(!log.contains("not been shut down cleanly"), "{log}");
}
