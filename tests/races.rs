//! Starts, stops and cancels racing each other: exactly one winner, the
//! server's backup count and the files agreeing throughout, and a storm of
//! all of them at once (PEB_STORM_SECONDS long, 60 by default).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::proof::*;
use common::*;
use postgres::error::SqlState;

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
fn concurrent_starts_have_exactly_one_winner() {
    const SESSIONS: usize = 8;
    const ROUNDS: usize = 50;
    let c = Cluster::with_extension(&["full_page_writes = off"]);
    let mut watcher = c.connect();
    let postmaster_start: String = watcher
        .query_one("SELECT pg_postmaster_start_time()::text", &[])
        .unwrap()
        .get(0);
    create_fpi_probe(&mut watcher);
    // The measurement can tell: no image without a backup, one with.
    assert_no_forced_fpi(&mut watcher, "before any backup");
    start_backup(&mut watcher, "probe");
    assert_forced_fpi(&mut watcher, "during a backup");
    stop_backup(&mut watcher, false);
    assert_no_forced_fpi(&mut watcher, "after one backup");

    let barrier = Arc::new(Barrier::new(SESSIONS));
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..SESSIONS)
        .map(|t| {
            let mut client = c.connect();
            let barrier = barrier.clone();
            let tx = tx.clone();
            let label_path = c.path("backup_label");
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    barrier.wait();
                    let label = format!("race {round} session {t}");
                    let started = client.query_one("SELECT pg_start_backup($1, true)", &[&label]);
                    // Every session has tried before the winner stops.
                    barrier.wait();
                    let outcome = match started {
                        Ok(_) => {
                            // The winner's label is the one on disk.
                            let on_disk = fs::read_to_string(&label_path).unwrap_or_default();
                            let ok = on_disk.contains(&format!("\nLABEL: {label}\n"));
                            let stopped = client
                                .query_one("SELECT pg_stop_backup(false)", &[])
                                .map(|_| ())
                                .map_err(|e| format!("stop failed: {e:?}"));
                            match (ok, stopped) {
                                (true, Ok(())) => Ok(()),
                                (false, _) => Err(format!("won, but backup_label is:\n{on_disk}")),
                                (_, Err(e)) => Err(e),
                            }
                        }
                        Err(e) => Err(match e.as_db_error() {
                            Some(db) => format!(
                                "{}: {} ({})",
                                db.code().code(),
                                db.message(),
                                db.detail().unwrap_or("-")
                            ),
                            None => format!("{e:?}"),
                        }),
                    };
                    tx.send((round, t, outcome)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for h in handles {
        h.join().unwrap();
    }
    let mut by_round = vec![Vec::new(); ROUNDS];
    for (round, t, outcome) in rx {
        by_round[round].push((t, outcome));
    }
    for (round, outcomes) in by_round.iter().enumerate() {
        assert_eq!(outcomes.len(), SESSIONS);
        let winners: Vec<_> = outcomes.iter().filter(|(_, o)| o.is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        for (t, o) in outcomes {
            if let Err(e) = o {
                assert!(
                    e.starts_with("55000: a backup is already in progress ("),
                    "round {round}, session {t}: {e}"
                );
            }
        }
    }
    // How the losers lost: most see the label before starting; those that
    // get as far as the server's backup mode lose at the exclusive publish.
    let at_publish = by_round
        .iter()
        .flatten()
        .filter(|(_, o)| matches!(o, Err(e) if e.contains("at the same time")))
        .count();
    eprintln!(
        "{at_publish} of {} losers lost at the exclusive publish",
        ROUNDS * (SESSIONS - 1)
    );

    // Still the same postmaster, and the watcher's connection survived.
    let now_start: String = watcher
        .query_one("SELECT pg_postmaster_start_time()::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(now_start, postmaster_start, "the server restarted");
    assert!(!in_backup(&mut watcher));
    assert_eq!(backup_files(&c), Vec::<String>::new());
    assert_no_forced_fpi(&mut watcher, "after the races");
    // Nothing left over: a new backup works.
    start_backup(&mut watcher, "after the races");
    stop_backup(&mut watcher, false);
    c.assert_log_clean();
    let log = c.log();
    assert!(!log.contains("aborting backup"), "{log}");
}

#[test]
fn concurrent_stops_have_exactly_one_winner() {
    const SESSIONS: usize = 8;
    const ROUNDS: usize = 20;
    let c = Cluster::with_extension(&["full_page_writes = off"]);
    let mut starter = c.connect();
    create_fpi_probe(&mut starter);
    let barrier = Arc::new(Barrier::new(SESSIONS + 1));
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..SESSIONS)
        .map(|t| {
            let mut client = c.connect();
            let barrier = barrier.clone();
            let tx = tx.clone();
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    // The starter has started this round's backup.
                    barrier.wait();
                    let outcome = match client.query_one("SELECT lsn FROM pg_stop_backup(false)", &[]) {
                        Ok(row) => Ok(lsn(row.get(0))),
                        Err(e) => Err(match e.as_db_error() {
                            Some(db) => format!("{}: {}", db.code().code(), db.message()),
                            None => format!("{e:?}"),
                        }),
                    };
                    tx.send((round, t, outcome)).unwrap();
                    barrier.wait();
                }
            })
        })
        .collect();
    drop(tx);
    let mut starts = Vec::new();
    for round in 0..ROUNDS {
        starts.push(start_backup(&mut starter, &format!("stop race {round}")));
        barrier.wait();
        barrier.wait();
    }
    for h in handles {
        h.join().unwrap();
    }
    let mut by_round = vec![Vec::new(); ROUNDS];
    for (round, t, outcome) in rx {
        by_round[round].push((t, outcome));
    }
    for (round, outcomes) in by_round.iter().enumerate() {
        assert_eq!(outcomes.len(), SESSIONS);
        let stops: Vec<u64> = outcomes.iter().filter_map(|(_, o)| o.as_ref().ok().copied()).collect();
        assert_eq!(stops.len(), 1, "round {round}: {outcomes:?}");
        assert!(stops[0] > starts[round]);
        for (t, o) in outcomes {
            if let Err(e) = o {
                assert_eq!(
                    e, "55000: exclusive backup not in progress",
                    "round {round}, session {t}"
                );
            }
        }
    }
    assert!(!in_backup(&mut starter));
    assert_eq!(backup_files(&c), Vec::<String>::new());
    assert_eq!(c.names_starting_with("backup_label"), Vec::<String>::new());
    assert_no_forced_fpi(&mut starter, "after the stop races");
    start_backup(&mut starter, "after the races");
    stop_backup(&mut starter, false);
    c.assert_log_clean();
}

/// Issue 10.1: the caller of pg_start_backup is cancelled while its worker
/// has just put backup_label in place, and another session stops that
/// backup meanwhile. The backup is started exactly once and stopped
/// exactly once: the server's backup counter is back to zero (no forced
/// full-page writes), and the caller hears that its start succeeded.
#[test]
fn cancelled_start_and_concurrent_stop_keep_the_count() {
    let (c, mut s) = probed_cluster(&[]);
    set_test_pause(&c, "worker_published:3000");
    let from = c.log().len();
    let mut starter = c.connect();
    let starter_pid = pid_of(&mut starter);
    let h = thread::spawn(move || {
        starter
            .query_one("SELECT pg_start_backup('raced', true)", &[])
            .map(|_| ())
    });
    paused_pid(&c, "worker_published", from);
    assert!(c.exists("backup_label"), "the label is in place during the pause");
    let cancelled: bool = s
        .query_one("SELECT pg_cancel_backend($1)", &[&starter_pid])
        .unwrap()
        .get(0);
    assert!(cancelled);
    // The label is visible and owned by the running backup: stoppable.
    stop_backup(&mut s, false);
    let started = h.join().unwrap();
    assert!(
        started.is_ok(),
        "the start was committed, so it reports success: {started:?}"
    );
    set_test_pause(&c, "");
    assert_quiet(&c, &mut s, "after the raced start and stop");
    let b = start_backup(&mut s, "afterwards");
    assert!(b > 0);
    stop_backup(&mut s, false);
    assert_quiet(&c, &mut s, "after one more cycle");
}

/// Issue 10.1, the other side: cancelled while the worker is still in the
/// checkpoint part of the start (before anything is published), the start
/// is abandoned and undone.
#[test]
fn cancel_before_the_commit_abandons_the_start() {
    let (c, mut s) = probed_cluster(&[]);
    set_test_pause(&c, "worker_started:2000");
    let from = c.log().len();
    let mut starter = c.connect();
    let starter_pid = pid_of(&mut starter);
    let h = thread::spawn(move || {
        starter
            .query_one("SELECT pg_start_backup('abandoned', true)", &[])
            .map(|_| ())
    });
    paused_pid(&c, "worker_started", from);
    let _: bool = s
        .query_one("SELECT pg_cancel_backend($1)", &[&starter_pid])
        .unwrap()
        .get(0);
    let e = db_error(h.join().unwrap(), &SqlState::QUERY_CANCELED);
    assert_eq!(e.message(), "canceling statement due to user request");
    // The caller returned only once the worker had undone the start.
    assert_eq!(c.names_starting_with("backup_label"), Vec::<String>::new());
    set_test_pause(&c, "");
    assert_quiet(&c, &mut s, "after the abandoned start");
}

/// Issue 10.2: a stop held just after it took the label away, while a new
/// backup starts (with a tablespace, so with a map): the stop must not
/// delete the new backup's tablespace_map.
#[test]
fn stop_leaves_a_newer_backups_tablespace_map_alone() {
    let (c, mut s) = probed_cluster(&[]);
    let dir = c.make_dir("ts");
    s.batch_execute(&format!("CREATE TABLESPACE ts LOCATION '{}'", dir.display()))
        .unwrap();
    start_backup(&mut s, "first");
    let first_map = c.read_string("tablespace_map").expect("a map");
    let mut stopper = c.connect();
    stopper
        .batch_execute("SET pg_exclusive_backup.test_pause = 'stop_claimed:3000'")
        .unwrap();
    let from = c.log().len();
    let h = thread::spawn(move || stopper.query_one("SELECT pg_stop_backup(false)", &[]).map(|_| ()));
    paused_pid(&c, "stop_claimed", from);
    assert!(!c.exists("backup_label"));
    assert!(
        !c.exists("tablespace_map"),
        "the stop removes the map together with the label"
    );
    let mut other = c.connect();
    start_backup(&mut other, "second");
    h.join().unwrap().expect("the first backup stops");
    let label = c.read_string("backup_label").expect("the second backup's label");
    assert!(label.contains("LABEL: second\n"), "{label}");
    assert_eq!(
        c.read_string("tablespace_map"),
        Some(first_map),
        "the second backup's map"
    );
    assert!(in_backup(&mut s));
    stop_backup(&mut s, false);
    assert!(!c.exists("tablespace_map"));
    assert_quiet(&c, &mut s, "after both backups");
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
