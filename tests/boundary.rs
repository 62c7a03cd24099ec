//! The boundary between Rust and the server: errors and panics inside
//! server calls come back as errors, a panic becomes an ERROR and the
//! backend lives on, and what a panic interrupted is undone.

mod common;

use common::proof::*;
use common::*;
use postgres::error::SqlState;

/// Issue 10.8: the boundary keeps the interrupt holdoff count of a scope
/// across a caught server error, and turns a panic inside a guarded call
/// into an ERROR with the backend alive.
#[test]
fn boundary_survives_errors_and_panics_inside_guarded_calls() {
    let c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    s.batch_execute(
        "CREATE FUNCTION pg_temp.holdoff() RETURNS boolean
           AS '$libdir/pg_exclusive_backup', 'peb_test_holdoff_survives_error' LANGUAGE C;
         CREATE FUNCTION pg_temp.guarded_panic() RETURNS void
           AS '$libdir/pg_exclusive_backup', 'peb_test_panic_in_guarded_call' LANGUAGE C;",
    )
    .unwrap();
    let kept: bool = s.query_one("SELECT pg_temp.holdoff()", &[]).unwrap().get(0);
    assert!(kept, "a caught error lost the interrupt holdoff count");
    let pid = pid_of(&mut s);
    let e = db_error(
        s.query_one("SELECT pg_temp.guarded_panic()", &[]),
        &SqlState::INTERNAL_ERROR,
    );
    assert_eq!(
        e.message(),
        "pg_exclusive_backup internal error: panic inside a guarded server call"
    );
    assert_eq!(pid_of(&mut s), pid, "the backend survived");
    c.assert_log_clean();
}

/// Issue 10.8: a panic after a step with side effects is undone by that
/// step's guard: in the worker after entering backup mode, in the worker
/// after linking the label, in the stop after taking the label away.
#[test]
fn panics_after_side_effects_are_undone() {
    let (c, mut s) = probed_cluster(&[]);
    for point in ["worker_started", "worker_linked"] {
        reload_setting(&c, "pg_exclusive_backup.test_panic", point);
        let e = db_error(
            s.query_one("SELECT pg_start_backup('panics', true)", &[]),
            &SqlState::INTERNAL_ERROR,
        );
        assert_eq!(
            e.message(),
            format!("pg_exclusive_backup internal error: test panic at {point}")
        );
        assert_quiet(&c, &mut s, point);
    }
    reload_setting(&c, "pg_exclusive_backup.test_panic", "");
    start_backup(&mut s, "stop panics");
    let mut stopper = c.connect();
    stopper
        .batch_execute("SET pg_exclusive_backup.test_panic = 'stop_renamed'")
        .unwrap();
    let e = db_error(
        stopper.query_one("SELECT pg_stop_backup(false)", &[]),
        &SqlState::INTERNAL_ERROR,
    );
    assert_eq!(
        e.message(),
        "pg_exclusive_backup internal error: test panic at stop_renamed"
    );
    assert!(c.exists("backup_label"), "the label was put back");
    assert!(in_backup(&mut s));
    stopper.batch_execute("RESET pg_exclusive_backup.test_panic").unwrap();
    stop_backup(&mut stopper, false);
    assert_quiet(&c, &mut s, "after the stop");
}

#[test]
fn rust_panic_is_reported_as_an_error() {
    let c = Cluster::with_extension(&[]);
    let mut s = c.connect();
    s.batch_execute(
        "CREATE FUNCTION peb_test_panic() RETURNS void
           AS '$libdir/pg_exclusive_backup', 'peb_test_panic' LANGUAGE C",
    )
    .unwrap();
    for _ in 0..2 {
        let e = db_error(s.query("SELECT peb_test_panic()", &[]), &SqlState::INTERNAL_ERROR);
        assert!(
            e.message().starts_with("pg_exclusive_backup internal error: "),
            "{}",
            e.message()
        );
        s.batch_execute("SELECT 1").unwrap();
    }
    start_backup(&mut s, "after a panic");
    stop_backup(&mut s, false);
    c.assert_log_clean();
}
