//! pg_exclusive_backup: the exclusive low-level backup API
//! (pg_start_backup / pg_stop_backup) for PostgreSQL 15 and later.
//!
//! Module map:
//! - `label`: the backup_label format (pure Rust, unit-tested)
//! - `files`: durable, race-free file handling (pure Rust, unit-tested)
//! - `state`: the record of the published label and what became of the
//!   backup it names (pure Rust, unit-tested)
//! - `verdict`: the postmaster's verdict on a label it finds, and the words
//!   of its refusals (pure Rust, unit-tested)
//! - `error`: errors with their SQLSTATEs
//! - `boundary`: the longjmp/panic boundary between Rust and the server
//! - `server`: safe wrappers over the server calls, one module per backup
//!   API generation (`server/pg15.rs`, `server/pg16.rs`)
//! - `sql`: what each SQL function does
//! - `status`: pg_exclusive_backup_status()
//! - `archive`: pg_stop_backup's wait for the archiver
//! - `start`: the start protocol, both the caller's and the background
//!   worker's side
//! - `postmaster`: preload mode (the postmaster's handling of backup_label
//!   at start, crash restart and exit; shared memory; the settings)
//! - `hooks`: delay points for race tests (empty unless built with the
//!   `test-hooks` feature)
//!
//! This file holds only what the server's loader looks up by name: the
//! magic block and one `pg_finfo_*` record plus entry point per function.
#![deny(unsafe_op_in_unsafe_fn)]
// The unit-test build leaves out the server-facing modules, and with them
// the callers of some items of the pure ones.
#![cfg_attr(test, allow(dead_code))]

mod error;
mod files;
mod label;
mod state;
mod verdict;

// The modules below refer to server symbols, which only the server process
// provides; the unit-test binary is built without them.
#[cfg(not(test))]
mod archive;
#[cfg(not(test))]
mod bindings;
#[cfg(not(test))]
mod boundary;
#[cfg(not(test))]
mod hooks;
#[cfg(not(test))]
mod postmaster;
#[cfg(all(not(test), feature = "test-hooks"))]
mod probes;
#[cfg(not(test))]
mod server;
#[cfg(not(test))]
mod sql;
#[cfg(not(test))]
mod start;
#[cfg(not(test))]
mod status;

#[cfg(not(test))]
mod exports {
    use crate::bindings::{Pg_finfo_record, Pg_magic_struct};
    use crate::boundary::{entry, Datum, FunctionCallInfo};
    use crate::sql;

    #[no_mangle]
    pub extern "C" fn Pg_magic_func() -> *const Pg_magic_struct {
        // SAFETY: returns a pointer to static data built by the C shim.
        unsafe { crate::bindings::peb_magic_data() }
    }

    /// Defines the settings and, from shared_preload_libraries, installs
    /// preload mode's hooks (postmaster.rs).
    #[no_mangle]
    pub extern "C" fn _PG_init() {
        crate::boundary::init_entry(crate::postmaster::init);
    }

    static FINFO_V1: Pg_finfo_record = Pg_finfo_record { api_version: 1 };

    /// Declares one SQL-callable function: `pg_finfo_<name>` says it uses the
    /// version-1 calling convention, `<name>` runs `body` through the boundary.
    macro_rules! sql_function {
        ($name:ident, $finfo:ident, $body:path) => {
            #[no_mangle]
            pub extern "C" fn $finfo() -> *const Pg_finfo_record {
                &FINFO_V1
            }

            #[no_mangle]
            pub extern "C" fn $name(fcinfo: FunctionCallInfo) -> Datum {
                entry(fcinfo, $body)
            }
        };
    }

    sql_function!(peb_start_backup, pg_finfo_peb_start_backup, sql::start_backup);
    sql_function!(peb_stop_backup, pg_finfo_peb_stop_backup, sql::stop_backup);
    sql_function!(
        peb_stop_backup_fourteen,
        pg_finfo_peb_stop_backup_fourteen,
        sql::stop_backup_fourteen
    );
    sql_function!(peb_is_in_backup, pg_finfo_peb_is_in_backup, sql::is_in_backup);
    sql_function!(
        peb_backup_start_time,
        pg_finfo_peb_backup_start_time,
        sql::backup_start_time
    );
    sql_function!(peb_status, pg_finfo_peb_status, crate::status::status);
    /// The background worker that enters backup mode for pg_start_backup
    /// (see start.rs); the postmaster looks it up by this name in the
    /// library file as it is now. The suffix is the version of the request
    /// layout: a backend still running an older library asks for another
    /// name, and its start fails cleanly instead of meeting a worker that
    /// reads its request at other offsets.
    #[no_mangle]
    pub extern "C" fn peb_start_backup_worker_2(main_arg: Datum) {
        // worker_main reports its own errors and panics; this only keeps a
        // panic in the reporting itself from unwinding into C.
        let _ = std::panic::catch_unwind(|| crate::start::worker_main(main_arg));
    }

    // Not part of the SQL script: the tests declare it by hand to prove that
    // a panic becomes an ERROR and the backend lives on.
    sql_function!(peb_test_panic, pg_finfo_peb_test_panic, sql::test_panic);

    // Probes of the test build only (src/probes.rs).
    #[cfg(feature = "test-hooks")]
    sql_function!(
        peb_test_holdoff_survives_error,
        pg_finfo_peb_test_holdoff_survives_error,
        crate::probes::holdoff_survives_error
    );
    #[cfg(feature = "test-hooks")]
    sql_function!(
        peb_test_panic_in_guarded_call,
        pg_finfo_peb_test_panic_in_guarded_call,
        crate::probes::panic_in_guarded_call
    );
}
