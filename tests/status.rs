//! pg_exclusive_backup_status() across sessions, databases, restarts and
//! copies; the metrics query of the README; and ALTER EXTENSION UPDATE
//! from 1.0 and 1.1 with a backup running.

mod common;

use std::collections::HashMap;
use std::fs;
use std::time::Duration;

use common::proof::*;
use common::*;
use postgres::types::PgLsn;
use postgres::Client;

/// Every column of the status view, as text (NULL as `None`).
fn status(c: &mut Client) -> HashMap<String, Option<String>> {
    c.query(
        "SELECT key, value FROM pg_exclusive_backup_status s, json_each_text(row_to_json(s))",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn col<'a>(s: &'a HashMap<String, Option<String>>, name: &str) -> Option<&'a str> {
    s.get(name).unwrap_or_else(|| panic!("no column {name}")).as_deref()
}

/// The columns about the running backup, all NULL when none runs.
const CURRENT: [&str; 13] = [
    "label",
    "start_lsn",
    "checkpoint_lsn",
    "start_timeline",
    "start_time",
    "duration",
    "fast",
    "started_by",
    "started_from",
    "application_name",
    "start_pid",
    "database",
    "label_method",
];

fn assert_none_running(s: &HashMap<String, Option<String>>) {
    assert_eq!(col(s, "in_progress"), Some("false"), "{s:?}");
    for name in CURRENT {
        assert_eq!(col(s, name), None, "{name} in {s:?}");
    }
}

fn last(s: &HashMap<String, Option<String>>) -> (Option<&str>, Option<&str>) {
    (col(s, "last_label"), col(s, "last_outcome"))
}

#[test]
fn the_backup_is_seen_from_every_database_after_its_session_is_gone() {
    let c = Cluster::with_extension(&[]);
    let mut admin = c.connect();
    admin.batch_execute("CREATE DATABASE app").unwrap();
    admin
        .batch_execute(
            "CREATE ROLE watcher LOGIN IN ROLE pg_monitor;
             CREATE ROLE nobody LOGIN;
             CREATE ROLE operator LOGIN;
             GRANT EXECUTE ON FUNCTION pg_stop_backup(boolean) TO operator",
        )
        .unwrap();
    c.connect_as("postgres", "app")
        .batch_execute("CREATE EXTENSION pg_exclusive_backup")
        .unwrap();
    let mut watcher = c.connect_as("watcher", "postgres");
    assert_none_running(&status(&mut watcher));
    assert_eq!(last(&status(&mut watcher)), (None, None));
    let mut nobody = c.connect_as("nobody", "postgres");
    db_error(
        nobody.query("SELECT * FROM pg_exclusive_backup_status", &[]),
        &postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
    );

    // Started from database "app" over TCP by a script, which then goes away.
    let mut script = c.connect_as("postgres", "app");
    script.batch_execute("SET application_name = 'snapshot.sh'").unwrap();
    let row = script
        .query_one("SELECT pg_backend_pid(), host(inet_client_addr())", &[])
        .unwrap();
    let (pid, addr): (i32, String) = (row.get(0), row.get(1));
    let start = start_backup_with(&mut script, "cross-session", true);
    admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    wait_until("the script's backend to exit", Duration::from_secs(20), || {
        admin
            .query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .unwrap()
            .is_empty()
    });
    drop(script);

    let s = status(&mut watcher);
    eprintln!("during: {s:?}");
    assert_eq!(col(&s, "in_progress"), Some("true"));
    assert_eq!(col(&s, "label"), Some("cross-session"));
    assert_eq!(col(&s, "start_lsn").map(parse_lsn), Some(start));
    assert_eq!(col(&s, "fast"), Some("true"));
    assert_eq!(col(&s, "started_by"), Some("postgres"));
    assert_eq!(col(&s, "started_from"), Some(addr.as_str()));
    assert_eq!(col(&s, "application_name"), Some("snapshot.sh"));
    assert_eq!(col(&s, "start_pid"), Some(pid.to_string().as_str()));
    assert_eq!(col(&s, "database"), Some("app"));
    assert_eq!(col(&s, "label_method"), Some("pg_start_backup"));
    assert_eq!(col(&s, "preloaded"), Some("false"));
    assert!(col(&s, "checkpoint_lsn").map(parse_lsn) >= Some(start));
    let agrees: bool = watcher
        .query_one(
            "SELECT start_time = pg_backup_start_time() AND duration > interval '0'
               FROM pg_exclusive_backup_status",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(agrees);

    // Stopped by another role from yet another session.
    let mut op = c.connect_as("operator", "postgres");
    let stop = stop_backup(&mut op, false);
    let s = status(&mut watcher);
    eprintln!("after: {s:?}");
    assert_none_running(&s);
    assert_eq!(last(&s), (Some("cross-session"), Some("stopped")));
    assert_eq!(col(&s, "last_stop_lsn").map(parse_lsn), Some(stop));
    assert_eq!(col(&s, "last_stopped_by"), Some("operator"));
    assert_eq!(col(&s, "last_completed_time"), col(&s, "last_end_time"));
    assert!(col(&s, "last_end_time").is_some());
    // The same from database "app".
    let mut other_db = c.connect_as("postgres", "app");
    assert_eq!(last(&status(&mut other_db)), (Some("cross-session"), Some("stopped")));
    c.assert_log_clean_except(&["terminating connection due to administrator command"]);
}

#[test]
fn restarts_and_removed_labels_are_named_and_kept_in_the_history() {
    let mut c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    start_backup(&mut s, "first");
    let first_stop = stop_backup(&mut s, false);

    // A restart without preload: the server's startup renames the label.
    start_backup(&mut s, "restarted");
    drop(s);
    c.restart();
    let mut s = c.connect();
    let st = status(&mut s);
    eprintln!("after the restart: {st:?}");
    assert_none_running(&st);
    assert_eq!(last(&st), (Some("restarted"), Some("interrupted by a server restart")));
    assert_eq!(col(&st, "last_stop_lsn"), None);
    assert_eq!(col(&st, "last_stopped_by"), None);
    assert!(col(&st, "last_end_time").is_some());
    // The last completed backup is still the first one.
    let completed_first: bool = s
        .query_one(
            "SELECT last_completed_time < last_end_time FROM pg_exclusive_backup_status",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(completed_first);

    // The next backup shows the interrupted one as the last one that ended.
    start_backup(&mut s, "removed");
    let st = status(&mut s);
    assert_eq!(col(&st, "label"), Some("removed"));
    assert_eq!(last(&st), (Some("restarted"), Some("interrupted by a server restart")));
    // Its label removed by hand: abandoned.
    fs::remove_file(c.path("backup_label")).unwrap();
    let st = status(&mut s);
    assert_none_running(&st);
    assert_eq!(last(&st), (Some("removed"), Some("abandoned")));
    assert_eq!(col(&st, "last_end_time"), None);
    // And so it stays once the next backup has started and stopped.
    start_backup(&mut s, "next");
    assert_eq!(last(&status(&mut s)), (Some("removed"), Some("abandoned")));
    let next_stop = stop_backup(&mut s, false);
    let st = status(&mut s);
    assert_eq!(last(&st), (Some("next"), Some("stopped")));
    assert_eq!(col(&st, "last_stop_lsn").map(parse_lsn), Some(next_stop));
    assert!(next_stop > first_stop);
}

#[test]
fn in_preload_mode_a_crash_is_named_and_the_record_outlives_it() {
    let c = Cluster::with_extension(&[PRELOAD]);
    let mut s = c.connect();
    assert_eq!(col(&status(&mut s), "preloaded"), Some("true"));
    start_backup(&mut s, "crashed");
    let st = status(&mut s);
    assert_eq!(col(&st, "label_method"), Some("streamed"));
    assert_eq!(col(&st, "started_by"), Some("postgres"));
    let mut victim = c.connect();
    let pid = pid_of(&mut victim);
    kill_backend_and_await_restart(&c, pid);
    drop((s, victim));
    let mut s = c.connect();
    let st = status(&mut s);
    eprintln!("after the crash: {st:?}");
    assert_none_running(&st);
    assert_eq!(last(&st), (Some("crashed"), Some("interrupted by a server restart")));
    assert!(col(&st, "last_end_time").is_some());
    assert!(c.exists("backup_label.old"));
}

#[test]
fn a_copy_is_not_in_progress_and_keeps_the_history_before_it() {
    let c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    start_backup(&mut s, "before the copy");
    stop_backup(&mut s, false);
    start_backup(&mut s, "copied");
    // Its WAL up to the stop comes from the primary's pg_wal, as it would
    // from an archive.
    let restore = format!("restore_command = 'cp {}/pg_wal/%f %p'", c.data_dir().display());
    let copy = Cluster::from_image(c.data_dir(), &["hot_standby = on", &restore]);
    let mut plain = Cluster::from_image(c.data_dir(), &[]);
    stop_backup(&mut s, false);
    s.batch_execute("SELECT pg_switch_wal()").unwrap();
    let mut copy = copy;
    copy.write("standby.signal", b"");
    copy.start();
    let mut r = copy.connect();
    wait_until("the copy to replay the stop", Duration::from_secs(60), || {
        copy.log().contains("consistent recovery state reached")
    });
    let in_recovery: bool = r.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get(0);
    assert!(in_recovery);
    let st = status(&mut r);
    eprintln!("standby copy: {st:?}");
    assert_none_running(&st);
    assert_eq!(last(&st), (Some("before the copy"), Some("stopped")));
    // Promoted: a new timeline; the copied backup did not end here.
    run_ok(
        copy.install()
            .command("pg_ctl")
            .arg("-D")
            .arg(copy.data_dir())
            .args(["-w", "promote"]),
    );
    let st = status(&mut r);
    eprintln!("promoted copy: {st:?}");
    assert_none_running(&st);
    assert_eq!(last(&st), (Some("before the copy"), Some("stopped")));
    // The same copy started without a signal file: crash recovery from
    // its label, which it renames, on the backup's timeline. Its label
    // is another file than the primary's: still a copy.
    plain.start();
    let mut p = plain.connect();
    let st = status(&mut p);
    eprintln!("copy started without a signal file: {st:?}");
    assert!(plain.exists("backup_label.old"));
    assert_none_running(&st);
    assert_eq!(last(&st), (Some("before the copy"), Some("stopped")));
    // The primary has it right.
    let st = status(&mut s);
    assert_eq!(last(&st), (Some("copied"), Some("stopped")));
    drop(c);
}

/// The query of the README's "Metrics" section, run as a collector would.
fn metrics_query() -> String {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split_once("<!-- metrics query: tests/status.rs runs this block -->")
        .expect("README marks its metrics query")
        .1;
    let block = after.split_once("```sql\n").unwrap().1;
    block.split_once("```").unwrap().0.to_string()
}

fn metrics(c: &mut Client) -> (i32, f64, Option<f64>) {
    let q = metrics_query();
    let row = c.query_one(q.trim().trim_end_matches(';'), &[]).unwrap();
    (
        row.get("in_progress"),
        row.get("duration_seconds"),
        row.get("last_completed_age_seconds"),
    )
}

#[test]
fn the_readme_metrics_query_reads_the_status() {
    let c = Cluster::with_extension(&[]);
    let mut admin = c.connect();
    admin
        .batch_execute("CREATE ROLE collector LOGIN IN ROLE pg_monitor")
        .unwrap();
    let mut m = c.connect_as("collector", "postgres");
    assert_eq!(metrics(&mut m), (0, 0.0, None));
    start_backup(&mut admin, "metrics");
    // The duration grows with the clock.
    wait_until("a second of backup", Duration::from_secs(30), || {
        metrics(&mut m).1 >= 1.0
    });
    let (running, duration, age) = metrics(&mut m);
    assert_eq!((running, age), (1, None));
    assert!((1.0..60.0).contains(&duration), "{duration}");
    stop_backup(&mut admin, false);
    wait_until("the stop to age", Duration::from_secs(30), || {
        metrics(&mut m).2.is_some_and(|a| a >= 0.4)
    });
    let (running, duration, age) = metrics(&mut m);
    assert_eq!((running, duration), (0, 0.0));
    assert!(age.is_some_and(|a| (0.4..60.0).contains(&a)), "{age:?}");
    // An interrupted backup does not count as completed.
    let before = age.unwrap();
    start_backup(&mut admin, "interrupted");
    drop(admin);
    drop(m);
    let mut c = c;
    c.restart();
    let mut m = c.connect_as("collector", "postgres");
    let (_, _, age) = metrics(&mut m);
    assert!(age.is_some_and(|a| a >= before), "{age:?}");
}

/// The extension's objects in the current database, with their
/// definitions and privileges.
fn objects(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT p.oid::regprocedure::text || ' (' || pg_get_function_arguments(p.oid)
                || ') RETURNS ' || pg_get_function_result(p.oid)
                || ' ' || p.provolatile::text || p.proparallel::text || p.proisstrict::text || p.prosecdef::text
                || ' ' || (SELECT lanname FROM pg_language l WHERE l.oid = p.prolang) || ' ' || p.procost::text || ' ' || p.prorows::text
                || ' ' || p.prokind::text || p.proleakproof::text
                || ' ' || coalesce(array_to_string(p.proconfig, ','), '')
                || ' ACL ' || coalesce(p.proacl::text, 'default') || ' ' || md5(p.prosrc || coalesce(p.probin, ''))
           FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
          WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_exclusive_backup')
         UNION ALL
         SELECT r.oid::regclass::text || ' ' || r.relkind::text || ' ACL ' || coalesce(r.relacl::text, 'default')
                || ' ' || pg_get_viewdef(r.oid)
           FROM pg_class r JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = r.oid
          WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_exclusive_backup')
         ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// ALTER EXTENSION ... UPDATE from 1.0 and from 1.1, during a backup
/// started by a role granted the old stop: the backup runs on, the role's
/// grant now covers PostgreSQL 14's one-argument stop and pg_stop_backup(),
/// and apart from that grant the database has what a fresh install has.
#[test]
fn update_from_1_0_and_1_1_during_a_backup_matches_a_fresh_install() {
    let c = Cluster::with_extension(&[]);
    let mut admin = c.connect();
    admin
        .batch_execute(
            "CREATE ROLE backup_op LOGIN;
             CREATE ROLE watcher LOGIN IN ROLE pg_monitor",
        )
        .unwrap();
    let fresh = objects(&mut admin);
    let version = |c: &mut Client| -> String {
        c.query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_exclusive_backup'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(version(&mut admin), "1.2", "CREATE EXTENSION installs 1.2");

    for from in ["1.0", "1.1"] {
        let db = format!("old_{}", from.replace('.', "_"));
        admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
        let mut old = c.connect_as("postgres", &db);
        old.batch_execute(&format!(
            "CREATE EXTENSION pg_exclusive_backup VERSION '{from}';
             GRANT EXECUTE ON FUNCTION pg_start_backup(text, boolean), pg_stop_backup(boolean) TO backup_op"
        ))
        .unwrap();
        // 1.1 added PostgreSQL 14's three-argument start and two-argument
        // stop; 1.2 replaces the stop's body (PL/pgSQL by C).
        let fourteen = "pg_start_backup(text, boolean, boolean), pg_stop_backup(boolean, boolean)";
        if from == "1.1" {
            old.batch_execute(&format!("GRANT EXECUTE ON FUNCTION {fourteen} TO backup_op"))
                .unwrap();
        }
        let stop_oid: u32 = old
            .query_one("SELECT 'pg_stop_backup(boolean)'::regprocedure::oid", &[])
            .unwrap()
            .get(0);
        let mut op = c.connect_as("backup_op", &db);
        let start = start_backup(&mut op, &format!("across the update from {from}"));
        // A second session updates while the backup runs.
        let mut updater = c.connect_as("postgres", &db);
        updater
            .batch_execute("ALTER EXTENSION pg_exclusive_backup UPDATE")
            .unwrap();
        assert_eq!(version(&mut updater), "1.2");
        let mut watcher = c.connect_as("watcher", &db);
        let st = status(&mut watcher);
        assert_eq!(col(&st, "in_progress"), Some("true"));
        assert_eq!(col(&st, "start_lsn").map(parse_lsn), Some(start));
        assert_eq!(col(&st, "started_by"), Some("backup_op"));
        // The grant made under the old version still works, in the same
        // session, for the one-argument stop (the same function, changed in
        // place) and for pg_stop_backup(), which it used to cover.
        let same_oid: u32 = updater
            .query_one("SELECT 'pg_stop_backup(boolean)'::regprocedure::oid", &[])
            .unwrap()
            .get(0);
        assert_eq!(same_oid, stop_oid);
        let row = op
            .query_one("SELECT lsn, labelfile, spcmapfile FROM pg_stop_backup(false)", &[])
            .unwrap();
        let stop = lsn(row.get(0));
        assert_eq!(
            (row.get::<_, Option<String>>(1), row.get::<_, Option<String>>(2)),
            (None, None)
        );
        let st = status(&mut watcher);
        assert_eq!(
            last(&st),
            (Some(format!("across the update from {from}").as_str()), Some("stopped"))
        );
        assert_eq!(col(&st, "last_stop_lsn").map(parse_lsn), Some(stop));
        assert_eq!(col(&st, "last_stopped_by"), Some("backup_op"));
        start_backup(&mut op, "stopped by pg_stop_backup()");
        let bare: PgLsn = op.query_one("SELECT pg_stop_backup()", &[]).unwrap().get(0);
        assert!(lsn(bare) > stop);
        if from == "1.1" {
            // The grants on 14's forms survive the new body: both kinds of
            // backup, in the same session that held the backup.
            let started: PgLsn = op
                .query_one("SELECT pg_start_backup('fourteen, exclusive', true, true)", &[])
                .unwrap()
                .get(0);
            let row = op
                .query_one("SELECT lsn, labelfile FROM pg_stop_backup(true, false)", &[])
                .unwrap();
            assert!(lsn(row.get(0)) > lsn(started));
            assert_eq!(row.get::<_, Option<String>>(1), None);
            op.query_one("SELECT pg_start_backup('fourteen, non-exclusive', true, false)", &[])
                .unwrap();
            let row = op
                .query_one("SELECT labelfile FROM pg_stop_backup(false, false)", &[])
                .unwrap();
            let label: String = row.get(0);
            assert!(label.contains("LABEL: fourteen, non-exclusive"), "{label}");
        }

        // Apart from that grant, the updated database has what a fresh
        // install has.
        updater
            .batch_execute(
                "REVOKE EXECUTE ON FUNCTION pg_start_backup(text, boolean), pg_stop_backup(boolean), pg_stop_backup()
                   FROM backup_op",
            )
            .unwrap();
        if from == "1.1" {
            updater
                .batch_execute(&format!("REVOKE EXECUTE ON FUNCTION {fourteen} FROM backup_op"))
                .unwrap();
        }
        assert_eq!(objects(&mut updater), fresh, "updated from {from}");
    }
    c.assert_log_clean();
}

#[test]
fn status_waits_out_a_start_between_its_record_and_its_label() {
    let c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    start_backup(&mut s, "before");
    stop_backup(&mut s, false);
    let record_before = c.read("pg_exclusive_backup.state").unwrap();

    // Held with the record written and the label not yet linked (for
    // 700 ms, well within the 2 s the status waits for the lock): the
    // status does not call the backup "abandoned".
    set_test_pause(&c, "worker_recorded:700");
    let from = log_len(&c);
    let mut caller = c.connect();
    let h = std::thread::spawn(move || start_backup(&mut caller, "racing"));
    wait_until("the racing start to pause", Duration::from_secs(30), || {
        log_since(&c, from).contains("test pause at worker_recorded")
    });
    assert!(!c.exists("backup_label"));
    let mut watcher = c.connect();
    let st = status(&mut watcher);
    eprintln!("during the race: {st:?}");
    assert_eq!(col(&st, "in_progress"), Some("true"));
    assert_eq!(col(&st, "label"), Some("racing"));
    assert_eq!(last(&st), (Some("before"), Some("stopped")));
    h.join().unwrap();
    stop_backup(&mut s, false);

    // A start that fails after writing its record puts the old one back.
    let record_before_failure = c.read("pg_exclusive_backup.state").unwrap();
    assert_ne!(record_before_failure, record_before);
    set_test_pause(&c, "worker_recorded:5000");
    let mut caller = c.connect();
    let h = std::thread::spawn(move || {
        caller
            .query_one("SELECT pg_start_backup('doomed', true)::text", &[])
            .map(|_| ())
    });
    wait_until("the record of the doomed start", Duration::from_secs(30), || {
        c.read_string("pg_exclusive_backup.state")
            .is_some_and(|r| r.contains("LABEL: doomed"))
    });
    // Someone else's label appears before the worker links its own.
    c.write("backup_label", b"not ours\n");
    let e = db_error(h.join().unwrap(), NOT_READY);
    eprintln!("doomed start: {} / {:?}", e.message(), e.detail());
    assert_eq!(c.read("pg_exclusive_backup.state").unwrap(), record_before_failure);
    fs::remove_file(c.path("backup_label")).unwrap();
    set_test_pause(&c, "");
    let st = status(&mut s);
    assert_none_running(&st);
    assert_eq!(last(&st), (Some("racing"), Some("stopped")));
}

#[test]
fn a_stop_killed_before_the_server_ended_the_backup_is_not_completed() {
    let mut c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    start_backup(&mut s, "completed");
    stop_backup(&mut s, false);
    let completed = col(&status(&mut s), "last_completed_time").unwrap().to_string();
    start_backup(&mut s, "killed while stopping");
    set_test_pause(&c, "stop_claimed:600000");
    let mut stopper = c.connect();
    let h = std::thread::spawn(move || stopper.query_one("SELECT pg_stop_backup(false)::text", &[]).map(|_| ()));
    wait_until(
        "the stop to claim the label and record it",
        Duration::from_secs(60),
        || {
            !c.exists("backup_label")
                && c.read_string("pg_exclusive_backup.state")
                    .is_some_and(|r| r.contains("outcome: stopped at"))
        },
    );
    drop(s);
    kill_all_server_processes(&c);
    assert!(h.join().unwrap().is_err());
    set_test_pause_in_file(&c);
    c.start();
    let mut s = c.connect();
    let st = status(&mut s);
    eprintln!("after the killed stop: {st:?}");
    assert_none_running(&st);
    assert_eq!(last(&st), (Some("killed while stopping"), Some("stopped")));
    assert_eq!(col(&st, "last_stop_lsn"), None, "the server never ended it");
    assert_eq!(col(&st, "last_completed_time"), Some(completed.as_str()));
}

/// Clears the delay points in postgresql.conf of a cluster that is down.
fn set_test_pause_in_file(c: &Cluster) {
    c.append_conf(&["pg_exclusive_backup.test_pause = ''"]);
}

#[test]
fn a_stop_that_cannot_write_the_record_still_stops() {
    let c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    start_backup(&mut s, "unrecorded");
    let (mut stopper, notices) = c.connect_with_notices();
    let pid = pid_of(&mut stopper);
    // The stop's temporary file for the record cannot be created while it
    // claims the label; it can again by the time the server has ended the
    // backup, when the stop LSN is recorded.
    let blocker = c.path(&format!("pg_exclusive_backup.state.tmp.{pid}"));
    fs::create_dir(&blocker).unwrap();
    set_test_pause(&c, "stop_claimed:1000");
    let from = log_len(&c);
    let h = std::thread::spawn(move || {
        let lsn = stop_backup(&mut stopper, false);
        (lsn, notices.lock().unwrap().join("\n"))
    });
    wait_until("the stop to claim the label", Duration::from_secs(30), || {
        log_since(&c, from).contains("test pause at stop_claimed")
    });
    fs::remove_dir(&blocker).unwrap();
    let (stop, said) = h.join().unwrap();
    eprintln!("{said}");
    assert!(
        said.contains("could not record the stop of the exclusive backup"),
        "{said}"
    );
    assert!(!in_backup(&mut s));
    assert!(!c.exists("backup_label"));
    // The stop LSN's record makes up for it.
    let st = status(&mut s);
    assert_eq!(last(&st), (Some("unrecorded"), Some("stopped")));
    assert_eq!(col(&st, "last_stop_lsn").map(parse_lsn), Some(stop));
    assert!(col(&st, "last_completed_time").is_some());
    set_test_pause(&c, "");

    // Neither write possible: the stop still succeeds, with two warnings.
    start_backup(&mut s, "never recorded");
    let (mut stopper, notices) = c.connect_with_notices();
    let pid = pid_of(&mut stopper);
    let blocker = c.path(&format!("pg_exclusive_backup.state.tmp.{pid}"));
    fs::create_dir(&blocker).unwrap();
    stop_backup(&mut stopper, false);
    let said = notices.lock().unwrap().join("\n");
    assert!(said.contains("could not record the stop LSN"), "{said}");
    assert!(!in_backup(&mut s));
    fs::remove_dir(blocker).unwrap();
    // The next backup runs as usual.
    start_backup(&mut s, "next");
    stop_backup(&mut s, false);
    assert_eq!(last(&status(&mut s)), (Some("next"), Some("stopped")));
}
