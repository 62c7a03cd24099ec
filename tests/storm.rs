//! A storm of racing calls: 20 sessions for PEB_STORM_SECONDS (default
//! 60) seconds. Starters with tiny statement_timeouts, stoppers, monitors
//! and a canceller that cancels random starters. Afterwards the invariant
//! holds (backup_label present exactly when pg_is_in_backup() says so, and
//! after a last stop no full-page writes are forced), and the server log
//! shows no assertion failure, PANIC or process killed by a signal.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

type Tally = Arc<Mutex<BTreeMap<String, u64>>>;

fn count(tally: &Tally, what: String) {
    *tally.lock().unwrap().entry(what).or_default() += 1;
}

fn outcome(r: Result<u64, postgres::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => match e.as_db_error() {
            Some(db) => format!("{} {}", db.code().code(), db.message()),
            None => format!("client error: {e}"),
        },
    }
}

/// A small deterministic generator, so that the storm needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn storm_of_starts_stops_cancels_and_monitors() {
    let seconds: u64 = std::env::var("PEB_STORM_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let c = Cluster::with_extension(&[
        "full_page_writes = off",
        "max_connections = 40",
        "max_worker_processes = 16",
        "checkpoint_timeout = 30s",
    ]);
    let mut admin = c.connect();
    create_fpi_probe(&mut admin);
    assert_no_forced_fpi(&mut admin, "before the storm");

    let stop = Arc::new(AtomicBool::new(false));
    let tally: Tally = Arc::default();
    let starter_pids: Arc<Mutex<Vec<i32>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // Every loop is bounded by the deadline and by a count.
    let max_rounds = 200_000;
    thread::scope(|scope| {
        for i in 0..8u64 {
            let (c, tally, stop, pids) = (&c, tally.clone(), stop.clone(), starter_pids.clone());
            scope.spawn(move || {
                let mut s = c.connect();
                let pid: i32 = s.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
                pids.lock().unwrap().push(pid);
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i + 1));
                for _ in 0..max_rounds {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let timeout = 1 + rng.next(300);
                    // A cancel or the previous timeout may hit the SET itself.
                    if s.batch_execute(&format!("SET statement_timeout = {timeout}")).is_err() {
                        count(&tally, "set: cancelled".into());
                    }
                    let r = s
                        .query_one("SELECT pg_start_backup('storm', $1)", &[&(rng.next(2) == 0)])
                        .map(|r| lsn(r.get(0)));
                    count(&tally, format!("start: {}", outcome(r)));
                }
            });
        }
        for i in 0..6u64 {
            let (c, tally, stop) = (&c, tally.clone(), stop.clone());
            scope.spawn(move || {
                let mut s = c.connect();
                let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (i + 1));
                for _ in 0..max_rounds {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let timeout = if rng.next(3) == 0 { 1 + rng.next(50) } else { 0 };
                    // A cancel or the previous timeout may hit the SET itself.
                    if s.batch_execute(&format!("SET statement_timeout = {timeout}")).is_err() {
                        count(&tally, "set: cancelled".into());
                    }
                    let r = s
                        .query_one("SELECT lsn FROM pg_stop_backup(false)", &[])
                        .map(|r| lsn(r.get(0)));
                    count(&tally, format!("stop: {}", outcome(r)));
                    thread::sleep(Duration::from_millis(rng.next(30)));
                }
            });
        }
        for _ in 0..5 {
            let (c, tally, stop) = (&c, tally.clone(), stop.clone());
            scope.spawn(move || {
                let mut s = c.connect();
                for _ in 0..max_rounds {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let r = s
                        .query_one("SELECT pg_is_in_backup(), pg_backup_start_time() IS NOT NULL", &[])
                        .map(|_| 0);
                    count(&tally, format!("monitor: {}", outcome(r)));
                }
            });
        }
        {
            let (c, tally, stop, pids) = (&c, tally.clone(), stop.clone(), starter_pids.clone());
            scope.spawn(move || {
                let mut s = c.connect();
                let mut rng = Rng(0xA076_1D64_78BD_642F);
                for _ in 0..max_rounds {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let target = {
                        let p = pids.lock().unwrap();
                        if p.is_empty() {
                            None
                        } else {
                            Some(p[rng.next(p.len() as u64) as usize])
                        }
                    };
                    if let Some(pid) = target {
                        let r = s.query_one("SELECT pg_cancel_backend($1)", &[&pid]).map(|_| 0);
                        count(&tally, format!("cancel: {}", outcome(r)));
                    }
                    thread::sleep(Duration::from_millis(1 + rng.next(20)));
                }
            });
        }
    });
    stop.store(true, Ordering::Relaxed);

    // The storm is over. The label and the server agree.
    let label = c.exists("backup_label");
    assert_eq!(
        label,
        in_backup(&mut admin),
        "label present {label} but pg_is_in_backup() disagrees"
    );
    if label {
        stop_backup(&mut admin, false);
    }
    assert!(!c.exists("backup_label"));
    assert!(!in_backup(&mut admin));
    assert_eq!(c.names_starting_with("backup_label"), Vec::<String>::new(), "leftovers");
    assert_no_forced_fpi(&mut admin, "after the storm and a last stop");
    // Shut down cleanly and look at the whole log.
    drop(admin);
    let log = c.log();
    for bad in ["TRAP:", "PANIC:", "terminated by signal"] {
        assert!(!log.contains(bad), "the server log shows {bad:?}");
    }
    c.assert_log_clean();
    let tally = tally.lock().unwrap();
    eprintln!("storm of {seconds} s on PostgreSQL {}:", install().major);
    for (what, n) in tally.iter() {
        eprintln!("  {n:>8}  {what}");
    }
    let started = tally.get("start: ok").copied().unwrap_or(0);
    let stopped = tally.get("stop: ok").copied().unwrap_or(0);
    eprintln!(
        "  started {started}, stopped {stopped} + {} at the end",
        u64::from(label)
    );
    assert!(
        started > 0 && stopped > 0,
        "the storm started {started} and stopped {stopped} backups"
    );
    // No count of starts against stops: a statement timeout that fires
    // after a call returned, before the statement ends, turns a success
    // into an error on the client's side. The server's own count is the
    // one that matters, and the full-page-write probe above shows it is
    // back to zero.
}
