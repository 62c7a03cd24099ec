//! pg_upgrade of a cluster that has the extension installed, from the
//! installation PEB_UPGRADE_FROM names (its pg_config) to the one PG_CONFIG
//! names. The extension must be installed into both;
//! `tools/upgrade-test.sh OLD_PG_CONFIG NEW_PG_CONFIG` does that and runs
//! these tests, which are ignored by a plain `cargo test` since they need
//! two installations.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

use common::*;

fn old_install() -> &'static Install {
    static OLD: OnceLock<Install> = OnceLock::new();
    OLD.get_or_init(|| {
        let p = std::env::var_os("PEB_UPGRADE_FROM")
            .expect("PEB_UPGRADE_FROM must name the pg_config of the installation to upgrade from");
        Install::load(Path::new(&p))
    })
}

const DATABASES: [&str; 3] = ["postgres", "template1", "app"];

/// Both clusters get data checksums: pg_upgrade needs them to agree, and
/// initdb's default differs between majors (on from 18).
const INITDB: &[&str] = &["-k"];

/// A running old cluster with the extension in every database of
/// DATABASES and EXECUTE granted to a backup role.
fn prepared_old() -> Cluster {
    let mut old = Cluster::initdb_of(old_install(), INITDB, &[]);
    old.start();
    let mut c = old.connect();
    c.batch_execute("CREATE DATABASE app").unwrap();
    c.batch_execute("CREATE ROLE backup_op LOGIN").unwrap();
    for db in DATABASES {
        old.connect_as("postgres", db)
            .batch_execute(
                "CREATE EXTENSION pg_exclusive_backup;
                 GRANT EXECUTE ON FUNCTION pg_start_backup(text, boolean), pg_stop_backup(boolean),
                       pg_is_in_backup(), pg_backup_start_time() TO backup_op",
            )
            .unwrap_or_else(|e| panic!("set up {db}: {e:?}"));
    }
    old
}

/// What a database shows of the extension: each function's signature,
/// result type and privileges, and the extension's version; plus the
/// server's own non-exclusive backup functions.
fn surface(c: &Cluster, db: &str) -> Vec<String> {
    let mut client = c.connect_as("postgres", db);
    let mut rows: Vec<String> = client
        .query(
            "SELECT p.oid::regprocedure::text || ' RETURNS ' || pg_get_function_result(p.oid)
                    || ' ACL ' || coalesce(p.proacl::text, 'default')
                    || ' EXTENSION ' || e.extname || ' ' || e.extversion
               FROM pg_extension e
               JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                               AND d.classid = 'pg_proc'::regclass
               JOIN pg_proc p ON p.oid = d.objid
              WHERE e.extname = 'pg_exclusive_backup'
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let builtins: Vec<String> = client
        .query(
            "SELECT oid::regprocedure::text FROM pg_proc
              WHERE proname IN ('pg_backup_start', 'pg_backup_stop')
                AND pronamespace = 'pg_catalog'::regnamespace ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        builtins,
        ["pg_backup_start(text,boolean)", "pg_backup_stop(boolean)"],
        "in {db}"
    );
    rows.extend(builtins);
    rows
}

fn pg_upgrade(old: &Cluster, new: &Cluster, mode: &str) -> Output {
    let mut cmd = new.install().command("pg_upgrade");
    // pg_upgrade writes its logs and scripts into the current directory.
    cmd.current_dir(new.root())
        .arg("-b")
        .arg(&old.install().bindir)
        .arg("-B")
        .arg(&new.install().bindir)
        .arg("-d")
        .arg(old.data_dir())
        .arg("-D")
        .arg(new.data_dir())
        .arg("-p")
        .arg(old.port().to_string())
        .arg("-P")
        .arg(new.port().to_string())
        .arg("-s")
        .arg(new.root())
        .args(["-U", "postgres", mode]);
    run(&mut cmd)
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One exclusive backup on `c` by the backup role: started in "app",
/// stopped from "postgres".
fn backup_cycle(c: &Cluster) {
    let mut starter = c.connect_as("backup_op", "app");
    let start = start_backup(&mut starter, "after pg_upgrade");
    assert!(c.exists("backup_label"));
    let mut monitor = c.connect_as("backup_op", "template1");
    assert!(in_backup(&mut monitor));
    let mut stopper = c.connect_as("backup_op", "postgres");
    let stop = stop_backup(&mut stopper, false);
    assert!(stop > start);
    assert!(!c.exists("backup_label"));
    assert!(!in_backup(&mut monitor));
}

fn upgrade_keeps_the_extension(mode: &str) {
    let mut old = prepared_old();
    backup_cycle(&old);
    let before: Vec<Vec<String>> = DATABASES.iter().map(|db| surface(&old, db)).collect();
    assert!(before[0].iter().any(|r| r.contains("backup_op=X/")), "{before:?}");
    old.stop();

    let mut new = Cluster::initdb_of(install(), INITDB, &[]);
    let out = pg_upgrade(&old, &new, mode);
    assert!(out.status.success(), "pg_upgrade {mode} failed:\n{}", text(&out));
    new.start();
    for (db, was) in DATABASES.iter().zip(&before) {
        assert_eq!(&surface(&new, db), was, "database {db} after pg_upgrade {mode}");
    }
    backup_cycle(&new);
    new.assert_log_clean();
    eprintln!(
        "pg_upgrade {mode} from {} to {}: functions, privileges and a backup cycle checked in {DATABASES:?}",
        old.install().major,
        new.install().major
    );
}

#[test]
#[ignore = "needs two installations: run by tools/upgrade-test.sh"]
fn upgrade_in_copy_mode_keeps_functions_and_grants() {
    upgrade_keeps_the_extension("--copy");
}

#[test]
#[ignore = "needs two installations: run by tools/upgrade-test.sh"]
fn upgrade_in_link_mode_keeps_functions_and_grants() {
    upgrade_keeps_the_extension("--link");
}

/// pg_upgrade of a cluster that was shut down while an exclusive backup ran:
/// pg_upgrade starts the old server itself, whose startup (as at any
/// restart during an exclusive backup) takes backup_label for a restored
/// backup's and renames it backup_label.old. So the backup ends there, and
/// nothing of it reaches the new cluster: no label, no tablespace_map, no
/// backup counted; pg_stop_backup there says so, and a new backup works.
#[test]
#[ignore = "needs two installations: run by tools/upgrade-test.sh"]
fn upgrade_during_an_exclusive_backup_carries_no_label() {
    let mut old = prepared_old();
    let mut s = old.connect_as("backup_op", "app");
    start_backup(&mut s, "running during pg_upgrade");
    drop(s);
    old.stop();
    assert!(old.exists("backup_label"), "a fast shutdown leaves the label in place");

    let mut new = Cluster::initdb_of(install(), INITDB, &[]);
    let out = pg_upgrade(&old, &new, "--copy");
    assert!(out.status.success(), "pg_upgrade failed:\n{}", text(&out));
    assert_eq!(old.names_starting_with("backup_label"), ["backup_label.old"]);
    assert!(!old.exists("tablespace_map"));
    for f in [
        "backup_label",
        "backup_label.old",
        "tablespace_map",
        "tablespace_map.old",
    ] {
        assert!(!new.exists(f), "pg_upgrade carried {f} into the new cluster");
    }
    new.start();
    let mut c = new.connect_as("backup_op", "postgres");
    assert!(!in_backup(&mut c));
    let e = db_error(
        c.query_one("SELECT pg_stop_backup(false)", &[]),
        &postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
    );
    assert_eq!(e.message(), "exclusive backup not in progress");
    backup_cycle(&new);
    new.assert_log_clean();
}
