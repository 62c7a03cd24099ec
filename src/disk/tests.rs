//! The transactions on a data directory of the test's own: what each puts
//! in place or takes away, and what it leaves when it fails.

use std::cell::Cell;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::files::{use_data_dir, BACKUP_LABEL_OLD, CONTROL_FILE, TABLESPACE_MAP_OLD};
use crate::record::{Outcome, Record, Session};

const LABEL: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
CHECKPOINT LOCATION: 0/2000060\n\
BACKUP METHOD: streamed\n\
BACKUP FROM: primary\n\
START TIME: 2026-11-25 03:05:06 UTC\n\
LABEL: nightly\n\
START TIMELINE: 1\n\
START EPOCH: 1795575906\n";

/// A fresh data directory for this test's thread, with a pg_control.
fn data_directory(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("peb-disk-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("global")).unwrap();
    fs::write(d.join(CONTROL_FILE), [0u8; 64]).unwrap();
    use_data_dir(&d);
    d
}

fn names(d: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "global")
        .collect();
    v.sort();
    v
}

fn session() -> Session {
    Session {
        started_by: "ops".into(),
        started_from: None,
        application_name: String::new(),
        pid: 1,
        database: "postgres".into(),
        fast: true,
    }
}

fn no_wait() -> crate::error::Result<()> {
    Ok(())
}

/// Publishes LABEL (and `map`), with `undo` as the caller's undo step.
fn start(map: &[u8], undone: &'static std::sync::atomic::AtomicBool) -> Result<()> {
    let left = Cell::new(false);
    let mut txn = Transaction::new(&left);
    txn.on_undo(move || undone.store(true, std::sync::atomic::Ordering::SeqCst));
    let files = prepare(LABEL.as_bytes(), map)?;
    let record = Record::running(
        files.label_file,
        files.control_file,
        session(),
        LABEL.as_bytes().to_vec(),
        crate::place::here(crate::files::data_dir(), "off".into()),
    );
    let r = publish(
        txn,
        Publication {
            files,
            record,
            start_time: 1,
            in_recovery: false,
            timeline: Some(1),
        },
        &mut no_wait,
    );
    assert!(!left.get());
    r
}

#[test]
fn a_start_puts_label_map_and_record_in_place_or_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static UNDONE: AtomicBool = AtomicBool::new(false);
    let d = data_directory("start");
    start(b"16384 /ts\n", &UNDONE).unwrap();
    assert!(!UNDONE.load(Ordering::SeqCst));
    assert_eq!(names(&d), ["backup_label", LOCK_FILE, STATE_FILE, "tablespace_map"]);
    let record = record().unwrap();
    assert_eq!(record.outcome, Outcome::Running);
    assert_eq!(record.label, LABEL.as_bytes());
    assert_eq!(label().unwrap().unwrap().0, LABEL.as_bytes());
    let before = fs::read(d.join(STATE_FILE)).unwrap();

    // A second start finds the label: refused, its own step undone, the
    // files as they were.
    let e = start(b"", &UNDONE).unwrap_err();
    assert_eq!(e.to_string(), "a backup is already in progress");
    assert!(UNDONE.load(Ordering::SeqCst));
    assert_eq!(fs::read(d.join(STATE_FILE)).unwrap(), before);
    assert_eq!(names(&d), ["backup_label", LOCK_FILE, STATE_FILE, "tablespace_map"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_start_that_fails_after_its_link_takes_it_all_back() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static UNDONE: AtomicBool = AtomicBool::new(false);
    let d = data_directory("undo");
    fs::write(d.join(STATE_FILE), b"the record before").unwrap();
    // The map cannot be renamed into place over a directory.
    fs::create_dir(d.join("tablespace_map")).unwrap();
    let e = start(b"16384 /ts\n", &UNDONE).unwrap_err();
    assert!(
        e.to_string().starts_with("could not rename file \"tablespace_map\""),
        "{e}"
    );
    assert!(UNDONE.load(Ordering::SeqCst));
    assert_eq!(fs::read(d.join(STATE_FILE)).unwrap(), b"the record before");
    assert_eq!(names(&d), [LOCK_FILE, STATE_FILE, "tablespace_map"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_claim_takes_label_and_map_and_records_the_stop() {
    use std::sync::atomic::AtomicBool;
    static UNDONE: AtomicBool = AtomicBool::new(false);
    let d = data_directory("claim");
    start(b"16384 /ts\n", &UNDONE).unwrap();
    let other = LABEL.replace("nightly", "weekly");
    let (c, held) = claim(other.as_bytes(), "backup_label.stopping.1", "ops", &mut no_wait, || 7).unwrap();
    assert!(matches!(c, Claim::Changed) && held == 7);
    let (c, _) = claim(LABEL.as_bytes(), "backup_label.stopping.1", "ops", &mut no_wait, || ()).unwrap();
    assert!(matches!(c, Claim::Taken(None)));
    assert_eq!(names(&d), [LOCK_FILE, STATE_FILE]);
    assert!(matches!(
        record().unwrap().outcome,
        Outcome::Stopped { stop_lsn: None, .. }
    ));
    record_stop_lsn(LABEL.as_bytes(), 0x3000100, "ops", &mut no_wait).unwrap();
    assert!(matches!(
        record().unwrap().outcome,
        Outcome::Stopped {
            stop_lsn: Some(0x3000100),
            ..
        }
    ));
    let (c, _) = claim(LABEL.as_bytes(), "backup_label.stopping.1", "ops", &mut no_wait, || ()).unwrap();
    assert!(matches!(c, Claim::Gone));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_postmaster_voids_the_primarys_own_label_under_the_lock() {
    use std::sync::atomic::AtomicBool;
    static UNDONE: AtomicBool = AtomicBool::new(false);
    let d = data_directory("void");
    start(b"16384 /ts\n", &UNDONE).unwrap();
    // Held by another process (here: another descriptor): refused.
    let held = crate::files::DirLock::try_acquire(&d).unwrap().unwrap();
    match settle_at_postmaster(false, Duration::from_millis(20), &mut no_wait, None) {
        AtPostmaster::Refused(crate::refusal::Refusal::Unlocked { held: true, .. }) => {}
        _ => panic!("not refused"),
    }
    drop(held);
    match settle_at_postmaster(false, Duration::from_millis(20), &mut no_wait, None) {
        AtPostmaster::Voided(v) => {
            assert_eq!(v.label.label, b"nightly");
            assert!(matches!(v.map, Some(Ok(()))) && v.unrecorded.is_none());
        }
        _ => panic!("not voided"),
    }
    assert_eq!(names(&d), [BACKUP_LABEL_OLD, LOCK_FILE, STATE_FILE, TABLESPACE_MAP_OLD]);
    let r = record().unwrap();
    assert!(matches!(r.outcome, Outcome::EndedByRestart { .. }));
    assert_eq!(r.session, Some(session()));
    // Nothing left to do.
    assert!(matches!(
        settle_at_postmaster(false, Duration::ZERO, &mut no_wait, None),
        AtPostmaster::Untouched
    ));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_void_renames_label_and_map_and_records_who() {
    use std::sync::atomic::AtomicBool;
    static UNDONE: AtomicBool = AtomicBool::new(false);
    let d = data_directory("voiding");
    start(b"16384 /ts\n", &UNDONE).unwrap();
    // Another label than the one judged: nothing happens.
    let other = LABEL.replace("nightly", "weekly");
    let by = crate::record::Voider::Limit { seconds: 7200 };
    let (taken, held) = void(Some(other.as_bytes()), by.clone(), &mut no_wait, || 3).unwrap();
    assert!(taken.is_none() && held == 3);
    assert_eq!(names(&d), ["backup_label", LOCK_FILE, STATE_FILE, "tablespace_map"]);

    let (taken, _) = void(Some(LABEL.as_bytes()), by.clone(), &mut no_wait, || ()).unwrap();
    let taken = taken.expect("voided");
    assert_eq!(taken.label.label, b"nightly");
    assert_eq!(taken.session, Some(session()));
    assert!(taken.unrecorded.is_none());
    assert_eq!(names(&d), [BACKUP_LABEL_OLD, LOCK_FILE, STATE_FILE, TABLESPACE_MAP_OLD]);
    let r = record().unwrap();
    assert!(matches!(r.outcome, Outcome::Voided { by: ref b, .. } if *b == by));
    assert_eq!(r.session, Some(session()));
    // Nothing left to void, nor to stop.
    assert!(void(None, by, &mut no_wait, || ()).unwrap().0.is_none());
    let (c, _) = claim(LABEL.as_bytes(), "backup_label.stopping.1", "ops", &mut no_wait, || ()).unwrap();
    assert!(matches!(c, Claim::Gone));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_primarys_own_label_found_elsewhere_is_taken_for_a_clone() {
    use std::sync::atomic::AtomicBool;
    static UNDONE: AtomicBool = AtomicBool::new(false);
    let d = data_directory("clone");
    start(b"", &UNDONE).unwrap();
    // The record says the primary lived at another path: as a clone of it
    // mounted elsewhere finds it.
    let mut r = record().unwrap();
    let primary = r.place.clone().expect("the start records its place");
    assert_eq!(primary, crate::place::here(&d, "off".into()));
    r.place = Some(crate::place::Place {
        data_directory: "/srv/primary/data".into(),
        ..primary
    });
    fs::write(d.join(STATE_FILE), r.to_bytes()).unwrap();
    // Not archiving here.
    let off = Clones {
        archiving: None,
        refuse_archiving: true,
    };
    match settle_at_postmaster(false, Duration::ZERO, &mut no_wait, Some(&off)) {
        AtPostmaster::Voided(v) => {
            let clone = v.clone.expect("taken for a clone");
            assert!(!clone.archives_as_primary);
            let differences = clone.differences;
            assert_eq!(differences.len(), 1, "{differences:?}");
            assert!(
                differences[0].contains("the primary's was \"/srv/primary/data\""),
                "{differences:?}"
            );
        }
        _ => panic!("not voided"),
    }
    assert_eq!(names(&d), [BACKUP_LABEL_OLD, LOCK_FILE, STATE_FILE]);
    let after = record().unwrap();
    assert!(matches!(after.outcome, Outcome::Cloned { .. }));
    assert_eq!(after.session, Some(session()));
    assert_eq!(after.place, r.place);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_archiving_clone_refuses_when_told_to_and_nothing_changes() {
    use std::sync::atomic::AtomicBool;
    static UNDONE: AtomicBool = AtomicBool::new(false);
    let d = data_directory("archiving-clone");
    start(b"", &UNDONE).unwrap();
    let mut r = record().unwrap();
    const OTHER_HOST: &str = "another-primary.invalid";
    const ARCHIVING: &str = "archive_command 'cp %p /a/%f' (archive_mode = on)";
    r.place = Some(crate::place::Place {
        host: OTHER_HOST.into(),
        archiving: ARCHIVING.into(),
        ..r.place.clone().unwrap()
    });
    fs::write(d.join(STATE_FILE), r.to_bytes()).unwrap();
    let before = fs::read(d.join(STATE_FILE)).unwrap();
    let refuse = |archiving| Clones {
        archiving,
        refuse_archiving: true,
    };
    match settle_at_postmaster(false, Duration::ZERO, &mut no_wait, Some(&refuse(Some(ARCHIVING)))) {
        AtPostmaster::Refused(crate::refusal::Refusal::ArchivingClone {
            differences, archiving, ..
        }) => {
            assert_eq!(archiving, ARCHIVING);
            assert!(
                differences[0].contains(&format!("the primary's was \"{OTHER_HOST}\"")),
                "{differences:?}"
            );
        }
        _ => panic!("not refused"),
    }
    assert_eq!(names(&d), [BACKUP_LABEL, LOCK_FILE, STATE_FILE]);
    assert_eq!(fs::read(d.join(STATE_FILE)).unwrap(), before);
    // Archiving elsewhere, the same clone is voided as a clone that does
    // not archive as the primary did.
    match settle_at_postmaster(
        false,
        Duration::ZERO,
        &mut no_wait,
        Some(&refuse(Some("archive_command 'cp %p /clone/%f' (archive_mode = on)"))),
    ) {
        AtPostmaster::Voided(v) => assert_eq!(v.clone.map(|c| c.archives_as_primary), Some(false)),
        _ => panic!("not voided"),
    }
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_primary_in_its_own_place_is_not_a_clone() {
    use std::sync::atomic::AtomicBool;
    static UNDONE: AtomicBool = AtomicBool::new(false);
    let d = data_directory("same-place");
    start(b"", &UNDONE).unwrap();
    let clones = Clones {
        archiving: Some("archive_command 'cp %p /a/%f' (archive_mode = on)"),
        refuse_archiving: true,
    };
    match settle_at_postmaster(false, Duration::ZERO, &mut no_wait, Some(&clones)) {
        AtPostmaster::Voided(v) => assert_eq!(v.clone, None),
        _ => panic!("not voided"),
    }
    assert!(matches!(record().unwrap().outcome, Outcome::EndedByRestart { .. }));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_crash_restart_looks_for_no_clone() {
    use std::sync::atomic::AtomicBool;
    static UNDONE: AtomicBool = AtomicBool::new(false);
    let d = data_directory("crash-restart");
    start(b"", &UNDONE).unwrap();
    let mut r = record().unwrap();
    r.place = Some(crate::place::Place {
        host: "another-primary.invalid".into(),
        ..r.place.clone().unwrap()
    });
    fs::write(d.join(STATE_FILE), r.to_bytes()).unwrap();
    match settle_at_postmaster(false, Duration::ZERO, &mut no_wait, None) {
        AtPostmaster::Voided(v) => assert_eq!(v.clone, None),
        _ => panic!("not voided"),
    }
    assert!(matches!(record().unwrap().outcome, Outcome::EndedByRestart { .. }));
    fs::remove_dir_all(&d).unwrap();
}
