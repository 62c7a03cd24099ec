//! Backup tools whose last releases target PostgreSQL 14 run unmodified:
//! their exact SQL, in a session held open from the start to the stop, takes
//! a non-exclusive backup whose label comes from the stop, and the copy
//! restored with that label recovers consistently; in plain and in preload
//! mode.

mod common;

use std::fs;
use std::time::Duration;

use common::proof::*;
use common::*;
use postgres::Client;

/// Copies the data directory while pgbench writes, between a start and a
/// stop that `backup` runs in its own held session; returns the copy.
fn copy_under_load(c: &Cluster, name: &str) -> std::path::PathBuf {
    let mut load = Pgbench::start(c, 2, 120);
    let files = c.root().join(name);
    copy_for_backup(c.data_dir(), &files, Duration::from_millis(1));
    assert!(load.running(), "pgbench ended early:\n{}", load.output());
    load.finish();
    files
}

/// Restores `files` with the label (and map) a stop returned: recovery
/// reaches the end of that backup, and pgbench's balances agree.
fn restores_with(c: &Cluster, files: &std::path::Path, labelfile: &str, spcmapfile: &str) {
    let archive = c.root().join("archive");
    let mut restored = Cluster::from_copy(
        files,
        &[
            "archive_mode = off",
            &format!("restore_command = 'cp {}/%f %p'", archive.display()),
        ],
    );
    // Over the exclusive backup's label, if one ran beside it.
    restored.write("backup_label", labelfile.as_bytes());
    if !spcmapfile.is_empty() {
        restored.write("tablespace_map", spcmapfile.as_bytes());
    }
    restored.write("recovery.signal", b"");
    restored.start();
    let mut r = restored.connect();
    wait_recovery_done(&mut r, Duration::from_secs(120));
    let log = restored.log();
    let start = label_lsn(labelfile, "START WAL LOCATION");
    let done = line_with(&log, "completed backup recovery with redo LSN")
        .unwrap_or_else(|| panic!("the end of the backup was never reached:\n{log}"));
    assert_eq!(lsns_in_line(done, &["redo LSN"]), vec![start], "{done}");
    assert_pgbench_balances_agree(&mut r);
    drop(r);
    restored.stop();
}

/// The one row of `sql` sent as psql sends it (the simple query
/// protocol), as text.
fn psql_row(s: &mut Client, sql: &str) -> Vec<Option<String>> {
    let rows: Vec<_> = s
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1, "{sql}");
    rows.into_iter().next().unwrap()
}

fn cluster(preload: bool) -> Cluster {
    // The tools ask for a spread checkpoint at the start; the test does not
    // wait for one.
    let mut settings = vec![
        "wal_level = replica",
        "archive_mode = on",
        "checkpoint_completion_target = 0",
    ];
    if preload {
        settings.push(PRELOAD);
    }
    let (c, _) = archiving(&settings);
    pgbench_init(&c, 1, None);
    c
}

/// pitrery 3.4 (`pitrery backup`), in plain and in preload mode: start and
/// stop in one psql coprocess, the stop's label written into the backup.
#[test]
fn pitrery_takes_a_backup_that_restores() {
    for preload in [false, true] {
        let c = cluster(preload);
        let mut held = c.connect();
        held.batch_execute("select pg_start_backup('pitrery_2026.12.02_03.00.00', true, false);")
            .unwrap();
        // An exclusive backup of another tool runs beside it, untouched.
        let mut other = c.connect();
        start_backup(&mut other, "beside pitrery");
        let files = copy_under_load(&c, "pitrery");
        let row = psql_row(&mut held, "select labelfile, spcmapfile from pg_stop_backup(false);");
        let (labelfile, spcmapfile) = (row[0].clone().unwrap(), row[1].clone().unwrap());
        assert!(
            labelfile.contains("LABEL: pitrery_2026.12.02_03.00.00\n"),
            "preload {preload}: {labelfile}"
        );
        assert!(
            in_backup(&mut other),
            "preload {preload}: the exclusive backup was stopped"
        );
        stop_backup(&mut other, true);
        restores_with(&c, &files, &labelfile, &spcmapfile);
        c.assert_log_clean();
    }
}

/// safe-backup (Laurenz Albe's pre/post-backup scripts, the release before
/// they moved to PostgreSQL 15's functions), in plain and in preload mode:
/// the pre-backup
/// script's session holds the backup and records its state in a table; the
/// post-backup script, in another session, marks it done, and the held
/// session stops it and stores the label in the table.
#[test]
fn safe_backup_takes_a_backup_that_restores() {
    for preload in [false, true] {
        safe_backup(cluster(preload));
    }
}

fn safe_backup(c: Cluster) {
    let mut pre = c.connect();
    pre.batch_execute(
        "SET client_min_messages = error;
         DO $$BEGIN
             CREATE TYPE backup_state
                 AS ENUM ('running', 'done', 'complete', 'failed');
         EXCEPTION
             WHEN duplicate_object
             THEN NULL;
         END;$$;
         CREATE TABLE IF NOT EXISTS backup (
             id integer CONSTRAINT backup_pkey PRIMARY KEY DEFAULT 1,
             state backup_state NOT NULL,
             pid integer,
             backup_label text,
             tablespace_map text
         );
         CREATE UNIQUE INDEX IF NOT EXISTS backup_unique ON backup ((1));",
    )
    .unwrap();
    psql_row(
        &mut pre,
        "SELECT count(pg_terminate_backend(pid))
         FROM backup
         WHERE state = 'running'::backup_state;",
    );
    psql_row(&mut pre, "SELECT pg_start_backup('2026-12-02 03:00:00', FALSE, FALSE);");
    pre.batch_execute(
        "INSERT INTO backup (state, pid, backup_label, tablespace_map)
             VALUES ('running'::backup_state, pg_backend_pid(), NULL, NULL)
             ON CONFLICT ON CONSTRAINT backup_pkey DO UPDATE
             SET state = 'running'::backup_state, pid = pg_backend_pid(),
                 backup_label = NULL, tablespace_map = NULL;",
    )
    .unwrap();
    let files = copy_under_load(&c, "safe-backup");
    // The post-backup script, from another session.
    let mut post = c.connect();
    post.batch_execute("UPDATE backup SET state = 'done'::backup_state;")
        .unwrap();
    let state: String = pre
        .query_one("SELECT state::text FROM backup WHERE pid = pg_backend_pid();", &[])
        .unwrap()
        .get(0);
    assert_eq!(state, "done");
    pre.simple_query(
        "UPDATE backup SET
             (state, backup_label, tablespace_map) =
             (SELECT 'complete'::backup_state, labelfile, spcmapfile
                 FROM pg_stop_backup(FALSE));",
    )
    .unwrap();
    let row = post
        .query_one("SELECT state::text, backup_label, tablespace_map FROM backup", &[])
        .unwrap();
    let (state, labelfile, spcmapfile): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(state, "complete");
    assert!(labelfile.contains("LABEL: 2026-12-02 03:00:00\n"), "{labelfile}");
    restores_with(&c, &files, &labelfile, &spcmapfile);
    c.assert_log_clean();
}

/// The stop queries of other tools' PostgreSQL 14 code paths (barman,
/// WAL-G, pg_probackup), each in a session holding a non-exclusive backup.
#[test]
fn other_tools_stop_queries_return_the_label() {
    let c = cluster(false);
    let queries = [
        // barman
        "SELECT end_row.lsn AS location, \
         (SELECT CASE WHEN pg_is_in_recovery() \
         THEN min_recovery_end_timeline ELSE timeline_id END \
         FROM pg_control_checkpoint(), pg_control_recovery()\
         ) AS timeline, \
         end_row.labelfile AS backup_label, \
         now() AS timestamp FROM pg_stop_backup(FALSE) AS end_row",
        // WAL-G
        "SELECT labelfile, spcmapfile, lsn FROM pg_stop_backup(false)",
        // pg_probackup
        "SELECT txid_snapshot_xmax(txid_current_snapshot()), current_timestamp(0)::timestamptz, \
         lsn, labelfile, spcmapfile FROM pg_stop_backup(false)",
        // pghoard's local-tar mode
        "SELECT labelfile FROM pg_stop_backup(false)",
    ];
    for (n, q) in queries.iter().enumerate() {
        let mut s: Client = c.connect();
        s.batch_execute(&format!("SELECT pg_start_backup('tool {n}', true, false)"))
            .unwrap();
        let row = s.query_one(*q, &[]).unwrap_or_else(|e| panic!("{q}: {e:?}"));
        let labelfile: String = row
            .columns()
            .iter()
            .position(|col| col.name() == "labelfile" || col.name() == "backup_label")
            .map(|i| row.get(i))
            .unwrap();
        assert!(labelfile.contains(&format!("LABEL: tool {n}\n")), "{q}: {labelfile}");
        // That stopped the session's backup: a second non-exclusive stop
        // says so, as on 14.
        let e = db_error(s.query_one("SELECT * FROM pg_stop_backup(false, true)", &[]), NOT_READY);
        assert_eq!(e.message(), "backup is not in progress");
    }
    assert!(fs::read_dir(c.data_dir())
        .unwrap()
        .all(|e| e.unwrap().file_name() != "backup_label"));
    c.assert_log_clean();
}
