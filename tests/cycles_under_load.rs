//! Many start/stop cycles under load: every one completes, and a
//! backend's memory stays flat.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::proof::*;
use common::*;

const CYCLES: usize = 500;

/// 500 start/stop cycles under pgbench load, starting in one session and
/// stopping in the other, alternating the roles.
#[test]
fn soak_start_stop_cycles_under_load() {
    let c = Cluster::with_extension(&[]);
    pgbench_init(&c, 1, None);
    let mut load = Pgbench::start(&c, 2, 900);
    let mut a = c.connect();
    let mut b = c.connect();
    let history =
        |s: &mut postgres::Client| -> i64 { s.query_one("SELECT count(*) FROM pgbench_history", &[]).unwrap().get(0) };
    wait_until("the load to commit", Duration::from_secs(30), || history(&mut a) > 0);
    let tx_before = history(&mut a);
    let t = Instant::now();
    let mut last_stop = 0u64;
    for i in 0..CYCLES {
        let (starter, stopper) = if i % 2 == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
        let start = start_backup_with(starter, &format!("soak {i}"), true);
        assert!(
            start > last_stop,
            "cycle {i}: start {start:X} not after the last stop {last_stop:X}"
        );
        // wait_for_archive true and false alternate (archiving is off, so
        // neither waits).
        let stop = stop_backup(stopper, i % 4 < 2);
        assert!(stop > start, "cycle {i}");
        last_stop = stop;
        if i % 50 == 49 {
            assert_eq!(backup_files(&c), Vec::<String>::new(), "after cycle {i}");
            assert!(!in_backup(stopper), "after cycle {i}");
            assert!(load.running(), "pgbench ended early:\n{}", load.output());
        }
    }
    let took = t.elapsed();
    let tx = history(&mut a) - tx_before;
    eprintln!(
        "{CYCLES} start/stop cycles under pgbench -c 2 in {:.1}s ({:.0} ms per cycle); {tx} pgbench transactions meanwhile",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / CYCLES as f64
    );
    assert!(load.running(), "pgbench ended early:\n{}", load.output());
    load.finish();
    assert!(tx > 100, "pgbench did not run alongside");
    assert_eq!(backup_files(&c), Vec::<String>::new());
    assert!(!in_backup(&mut a));

    let log = c.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARNING") && l.to_lowercase().contains("backup"))
        // CREATE EXTENSION's note that preload mode is off.
        .filter(|l| !l.contains("is not in shared_preload_libraries"))
        .collect();
    assert!(
        warnings.is_empty(),
        "backup warnings in the server log:\n{}",
        warnings.join("\n")
    );
    // The extension logs when a start worker exits without a result and
    // is retried ("should not happen"); 500 starts must not need that.
    let retries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pg_exclusive_backup: the start worker"))
        .collect();
    assert!(retries.is_empty(), "start worker trouble:\n{}", retries.join("\n"));
    assert_log_has_no_crash(&c);
}

/// One backend calls pg_is_in_backup() and pg_backup_start_time() 200,000
/// times each while a backup runs; its peak and resident memory must not
/// grow by 8 MB.
#[test]
fn backend_memory_stays_flat() {
    let c = Cluster::with_extension(&[]);
    let mut admin = c.connect();
    start_backup_with(&mut admin, "memory", true);
    let started: SystemTime = admin.query_one("SELECT pg_backup_start_time()", &[]).unwrap().get(0);
    let mut m = c.connect();
    let pid = pid_of(&mut m);
    // Warm up: the library is loaded and the 200,000-row function scan has
    // had its memory once, so only growth from the calls is measured.
    m.batch_execute(
        "SELECT count(pg_is_in_backup()) FROM generate_series(1, 20000);
         SELECT count(pg_backup_start_time()) FROM generate_series(1, 20000);
         SELECT count(g) FROM generate_series(1, 200000) g;",
    )
    .unwrap();
    let (hwm0, rss0) = (proc_status_kb(pid, "VmHWM"), proc_status_kb(pid, "VmRSS"));
    let t = Instant::now();
    let n: i64 = m
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_is_in_backup()) FROM generate_series(1, 200000)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 200_000);
    let t1 = t.elapsed();
    let n: i64 = m
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_backup_start_time() = $1) FROM generate_series(1, 200000)",
            &[&started],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 200_000);
    let t2 = t.elapsed() - t1;
    let (hwm1, rss1) = (proc_status_kb(pid, "VmHWM"), proc_status_kb(pid, "VmRSS"));
    eprintln!(
        "backend {pid}: VmHWM {hwm0} kB -> {hwm1} kB, VmRSS {rss0} kB -> {rss1} kB \
         (200,000 pg_is_in_backup() in {:.2}s, 200,000 pg_backup_start_time() in {:.2}s)",
        t1.as_secs_f64(),
        t2.as_secs_f64()
    );
    assert!(hwm1 - hwm0 < 8 * 1024, "VmHWM grew by {} kB", hwm1 - hwm0);
    assert!(rss1 - rss0 < 8 * 1024, "VmRSS grew by {} kB", rss1 - rss0);
    stop_backup(&mut admin, false);
    assert_log_has_no_crash(&c);
}
