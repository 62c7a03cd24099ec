//! pg_backup_start_time() and the backup history file must give the exact
//! instant the backup started, whatever log_timezone the server writes the
//! label's START TIME in: including zones whose abbreviation means another
//! offset elsewhere (IST is India here, Israel in the server's default
//! abbreviation table) and zones with numeric abbreviations.

mod common;

use common::Cluster;

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
        let mut shown = String::new();
        for _ in 0..100 {
            shown = db.query_one("SHOW log_timezone", &[]).unwrap().get(0);
            if shown == zone {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(shown, zone);

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
