//! The backup's start time, as pg_backup_start_time() and the label say
//! it: exact in every log_timezone, unmoved by later settings, with any
//! zone abbreviation the server writes.

mod common;

use std::time::Duration;

use common::proof::*;
use common::Cluster;
use common::*;
use postgres::Client;

fn set_log_timezone(c: &Cluster, zone: &str) {
    reload_setting(c, "log_timezone", zone);
}

fn start_epoch_now(s: &mut Client) -> f64 {
    s.query_one("SELECT extract(epoch FROM pg_backup_start_time())::float8", &[])
        .unwrap()
        .get(0)
}

#[test]
fn start_time_is_exact_in_every_log_timezone() {
    let mut c = Cluster::init(&["timezone = 'UTC'", "archive_mode = on"]);
    let archive = c.make_dir("archive");
    c.append_conf(&[&format!("archive_command = 'cp %p {}/%f'", archive.display())]);
    c.start();
    c.create_extension();
    let mut db = c.connect();

    for zone in [
        "Asia/Kolkata",
        "America/Sao_Paulo",
        "Australia/Lord_Howe",
        "Europe/Berlin",
        "Pacific/Chatham",
        "UTC",
    ] {
        db.batch_execute(&format!("ALTER SYSTEM SET log_timezone = '{zone}'"))
            .unwrap();
        db.batch_execute("SELECT pg_reload_conf()").unwrap();
        // The reload reaches the backends asynchronously.
        wait_until(&format!("log_timezone {zone}"), Duration::from_secs(5), || {
            db.query_one("SHOW log_timezone", &[]).unwrap().get::<_, String>(0) == zone
        });

        db.execute("SELECT pg_start_backup($1, true)", &[&format!("tz {zone}")])
            .unwrap();
        let label = c.read_string("backup_label").expect("backup_label");
        let label_time = label
            .lines()
            .find_map(|l| l.strip_prefix("START TIME: "))
            .expect("START TIME line")
            .to_string();
        // Seconds between the label's start time and now, and the same
        // instant read back with the server's own parser in that zone, via
        // an explicit offset (never via the abbreviation).
        let row = db
            .query_one(
                "SELECT extract(epoch FROM clock_timestamp() - pg_backup_start_time())::float8,
                        to_char(pg_backup_start_time() AT TIME ZONE $1, 'YYYY-MM-DD HH24:MI:SS')",
                &[&zone],
            )
            .unwrap();
        let age: f64 = row.get(0);
        let local: String = row.get(1);
        assert!(
            (0.0..30.0).contains(&age),
            "{zone}: start time {label_time:?} is {age} s away from now"
        );
        assert!(
            label_time.starts_with(&local),
            "{zone}: label says {label_time:?}, pg_backup_start_time() is {local} there"
        );

        db.execute("SELECT pg_stop_backup()", &[]).unwrap();
        // The history file in the archive carries the same START TIME line.
        let history = std::fs::read_dir(&archive)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".backup"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .find(|h| h.contains(&format!("LABEL: tz {zone}\n")))
            .unwrap_or_else(|| panic!("{zone}: no history file in the archive"));
        assert!(
            history.contains(&format!("START TIME: {label_time}\n")),
            "{zone}: history file:\n{history}\nlabel START TIME: {label_time}"
        );
    }
}

/// Issue 10.4: pg_backup_start_time() must not move when log_timezone,
/// timezone or timezone_abbreviations change after the start.
#[test]
fn start_time_does_not_move_with_later_settings() {
    let (c, mut s) = probed_cluster(&["log_timezone = 'UTC'"]);
    let before: f64 = s
        .query_one("SELECT extract(epoch FROM now())::float8", &[])
        .unwrap()
        .get(0);
    start_backup(&mut s, "exact");
    let exact = start_epoch_now(&mut s);
    assert!((exact - before).abs() < 30.0, "start {exact} vs now {before}");
    for zone in ["America/New_York", "Asia/Kolkata", "Pacific/Chatham"] {
        set_log_timezone(&c, zone);
        let mut fresh = c.connect();
        assert_eq!(start_epoch_now(&mut fresh), exact, "after log_timezone = {zone}");
        fresh
            .batch_execute("SET timezone = 'Australia/Lord_Howe'; SET timezone_abbreviations = 'India'")
            .unwrap();
        assert_eq!(start_epoch_now(&mut fresh), exact, "with other session settings");
    }
    stop_backup(&mut s, false);
    assert_quiet(&c, &mut s, "after the backup");
}

/// Issue 10.5: a zone abbreviation longer than any in the tz database,
/// which the server writes as it is, must be accepted.
#[test]
fn long_zone_abbreviation_is_accepted() {
    let (c, mut s) = probed_cluster(&["log_timezone = '<ABCDEFGHIJKLMNOPQRSTUVWXYZ>-3'"]);
    let now: f64 = s
        .query_one("SELECT extract(epoch FROM now())::float8", &[])
        .unwrap()
        .get(0);
    start_backup(&mut s, "long zone");
    let label = c.read_string("backup_label").unwrap();
    let line = label.lines().find(|l| l.starts_with("START TIME: ")).unwrap();
    assert!(line.ends_with(" ABCDEFGHIJKLMNOPQRSTUVWXYZ"), "{line}");
    let start = start_epoch_now(&mut s);
    assert!((start - now).abs() < 30.0, "start {start} vs now {now}");
    stop_backup(&mut s, false);
    assert_quiet(&c, &mut s, "after the backup");
}
