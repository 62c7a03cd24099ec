//! pg_exclusive_backup: the exclusive low-level backup API
//! (pg_start_backup / pg_stop_backup) for PostgreSQL 15 and later.
//!
//! This file holds only what the server reaches by name: the magic block,
//! one `pg_finfo_*` record and entry point per SQL function, `_PG_init`,
//! the start worker's main function, and the functions the C shim calls
//! back (build.rs writes their C declarations from this file). Every one
//! of them runs its body through the boundary (server/boundary.rs).
//! docs/architecture.md maps the modules.
#![deny(unsafe_op_in_unsafe_fn)]
// The unit-test build leaves out the server-facing modules, and with them
// the callers of some items of the pure ones.
#![cfg_attr(test, allow(dead_code))]

mod disk;
mod duration;
mod error;
mod files;
mod hooks;
mod label;
mod place;
mod record;
mod refusal;
mod shared;
mod verdict;

// PostgreSQL 15's label helpers are pure; built for their unit tests here
// (the server build reaches them through server/backup15.rs).
#[cfg(test)]
#[path = "server/label15.rs"]
mod label15;

// The modules below call the server, which only the server process
// provides; the unit-test binary is built without them.
#[cfg(not(test))]
mod archive;
#[cfg(not(test))]
mod errand;
#[cfg(not(test))]
mod mode;
#[cfg(not(test))]
mod monitor;
#[cfg(not(test))]
mod postmaster;
#[cfg(not(test))]
mod server;
#[cfg(not(test))]
mod sql;
#[cfg(not(test))]
mod standing;
#[cfg(not(test))]
mod start;
#[cfg(not(test))]
mod status;
#[cfg(not(test))]
mod stop;
#[cfg(not(test))]
mod void;

#[cfg(not(test))]
mod exports {
    use std::ffi::{c_char, c_void};

    use crate::server::boundary::{callback, entry, init_entry};
    use crate::server::{Datum, FunctionCallInfo, Pg_finfo_record, Pg_magic_struct};
    use crate::sql;

    #[no_mangle]
    pub extern "C" fn Pg_magic_func() -> *const Pg_magic_struct {
        crate::server::magic()
    }

    /// Defines the settings and, from shared_preload_libraries, installs
    /// preload mode's hooks (mode.rs).
    #[no_mangle]
    pub extern "C" fn _PG_init() {
        init_entry(crate::mode::init);
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
    sql_function!(peb_void_backup, pg_finfo_peb_void_backup, sql::void_backup);

    /// The background worker forked to enter backup mode for one
    /// pg_start_backup (see start/); the postmaster looks it up by this
    /// name in the library file as it is now. The suffix is the version of
    /// the request layout: a backend still running an older library asks
    /// for another name, and its start fails cleanly instead of meeting a
    /// worker that reads its request at other offsets.
    #[no_mangle]
    pub extern "C" fn peb_start_backup_worker_3(main_arg: Datum) {
        // worker_main reports its own errors and panics.
        callback(|| crate::start::worker_main(main_arg as u32), |_| ());
    }

    /// Preload mode's standing worker (standing/). The suffix is the
    /// version of its shared memory protocol, for the same reason.
    #[no_mangle]
    pub extern "C" fn peb_standing_worker_1(_main_arg: Datum) {
        // main reports its own errors; a panic ends it with 1, and the
        // postmaster starts it again.
        let code = callback(crate::standing::main, |_| 1);
        crate::server::worker::exit(code);
    }

    // Not part of the SQL script: the tests declare it by hand to prove that
    // a panic becomes an ERROR and the backend lives on.
    sql_function!(peb_test_panic, pg_finfo_peb_test_panic, sql::test_panic);

    // Probes of the test build only (server/probes.rs).
    #[cfg(feature = "test-hooks")]
    sql_function!(
        peb_test_holdoff_survives_error,
        pg_finfo_peb_test_holdoff_survives_error,
        crate::server::probes::holdoff_survives_error
    );
    #[cfg(feature = "test-hooks")]
    sql_function!(
        peb_test_panic_in_guarded_call,
        pg_finfo_peb_test_panic_in_guarded_call,
        crate::server::probes::panic_in_guarded_call
    );

    // Called back by the C shim's preload hooks (csrc/shim.c includes the
    // declarations build.rs writes from what follows).

    /// How much shared memory preload mode asks for.
    #[no_mangle]
    pub extern "C" fn peb_shared_size() -> usize {
        crate::shared::size()
    }

    /// Hands over preload mode's shared memory (`found`: another process
    /// initialised it already).
    #[no_mangle]
    pub extern "C" fn peb_shared_attached(shared: *mut c_void, found: bool) {
        // SAFETY: ShmemInitStruct returned at least peb_shared_size()
        // MAXALIGNed bytes, mapped for the life of the process, initialised
        // by another process only when `found`.
        callback(
            || unsafe { crate::shared::attach(shared as *mut crate::shared::Shared, found) },
            |_| (),
        );
    }

    /// What the judgement before the startup process came to: `None`, go
    /// on; else the FATAL to raise. By default (what a panic while
    /// reporting a panic gives), refuse.
    struct Judged(Option<crate::refusal::Texts>);

    impl Default for Judged {
        fn default() -> Judged {
            Judged(Some(crate::refusal::Texts {
                message: "pg_exclusive_backup failed while checking backup_label".into(),
                detail: "An internal error of pg_exclusive_backup stopped the check.".into(),
                hint: "If this data directory is a restored backup, create recovery.signal in it; if it is the \
                       primary that was running an exclusive backup, rename backup_label to backup_label.old. \
                       Then start the server again, and report the error."
                    .into(),
            }))
        }
    }

    /// The judgement right before the startup process, in the postmaster
    /// or a single-user backend. `false`: the caller raises FATAL with the
    /// texts written into the three buffers of `len` bytes each.
    #[no_mangle]
    pub extern "C" fn peb_postmaster_starting(
        message: *mut c_char,
        detail: *mut c_char,
        hint: *mut c_char,
        len: usize,
    ) -> bool {
        let judged = callback(
            || Judged(crate::postmaster::starting().err()),
            |_| Judged(Some(crate::postmaster::refused(&crate::refusal::Refusal::Internal))),
        );
        let Some(t) = judged.0 else { return true };
        copy_out(&t.message, message, len);
        copy_out(&t.detail, detail, len);
        copy_out(&t.hint, hint, len);
        false
    }

    /// The postmaster's exit callback.
    #[no_mangle]
    pub extern "C" fn peb_postmaster_exiting() {
        callback(crate::postmaster::exiting, |_| ());
    }

    fn copy_out(text: &str, buf: *mut c_char, len: usize) {
        if buf.is_null() || len == 0 {
            return;
        }
        let mut n = text.len().min(len - 1);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: `buf` has room for `len` bytes, of which we write n + 1.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, n);
            *buf.add(n) = 0;
        }
    }
}
