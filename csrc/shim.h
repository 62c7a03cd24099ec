/*
 * The C half of the FFI boundary; see src/boundary.rs for the design.
 * Only what C macros or C-only constructs force into C lives here; the
 * logic (the start protocol included) is in Rust.
 */
#ifndef PEB_SHIM_H
#define PEB_SHIM_H

#include "postgres.h"
#include "fmgr.h"
#include "access/xlogdefs.h"

extern const Pg_magic_struct *peb_magic_data(void);

/*
 * Runs fn(arg) under PG_TRY. Returns NULL when fn returned normally, or the
 * error it raised: the interrupt holdoff counts are put back to what they
 * were before the call, and the error is copied into a memory context
 * kept for that purpose, with the error state flushed. The caller
 * re-throws it (peb_rethrow) once its own cleanup is done.
 */
extern ErrorData *peb_try(void (*fn) (void *), void *arg);
/* Frees the error copies of earlier calls; at the start of an entry point. */
extern void peb_reset_error_copies(void);

extern void peb_rethrow(ErrorData *edata) __attribute__((noreturn));
extern void peb_raise(int sqlerrcode, const char *message, const char *detail,
					  const char *hint) __attribute__((noreturn));
extern void peb_log(const char *message);

/* Levels for peb_report, which never raises an ERROR. */
#define PEB_LOG 0
#define PEB_WARNING 1
#define PEB_NOTICE 2
extern void peb_report(int level, const char *message, const char *detail, const char *hint);

/* A palloc'd copy of UTF-8 text, converted to the database encoding. */
extern char *peb_server_text(const char *utf8, int len);

/*
 * Bytes in the database encoding (a label) as palloc'd UTF-8, or NULL when
 * they are not valid in that encoding (or the encoding is SQL_ASCII, which
 * says nothing about them).
 */
extern char *peb_utf8_from_database_text(const char *bytes, int len);

extern void peb_hold_interrupts(void);
extern void peb_resume_interrupts(void);
extern void peb_check_for_interrupts(void);
extern bool peb_proc_die_pending(void);
/* Drops a query cancel (or statement timeout) that is pending. */
extern void peb_forget_query_cancel(void);

/*
 * Takes the server out of the backup mode this session's do_pg_backup_start
 * entered, without the server's "backend exiting" warning, which would be
 * false here.
 */
extern void peb_abort_session_backup(void);

/* Latches and waits (the wait events are macros or generated enums). */
extern void *peb_my_latch(void);
extern void peb_set_latch(void *latch);
/*
 * Waits on this process's latch for at most timeout_ms; true if the
 * postmaster has died (the caller decides what to do: this may run in an
 * exit callback, where exiting again is not an option).
 */
extern bool peb_wait_latch(long timeout_ms, bool for_worker);

/*
 * Registers the start worker for the request in dynamic shared memory
 * segment `handle`; false when no background worker slot is free.
 */
extern bool peb_register_start_worker(uint32 handle, struct BackgroundWorkerHandle **out);
/* In the worker: SIGTERM sets the interrupt flag instead of exiting. */
extern void peb_worker_signals(void);

/*
 * Waiting for the archiver at the end of a backup, as do_pg_backup_stop
 * does (the loop itself is in src/archive.rs).
 */
extern bool peb_archiving_active(void);
/* The last WAL file a backup needs and its history file; both MAXFNAMELEN. */
extern void peb_backup_wait_files(uint64 startpoint, uint64 stoppoint, uint32 tli,
								  char *last_wal_file, char *history_file);
extern bool peb_archive_busy(const char *file);
/* Sleeps on the latch with the server's archive-wait wait event. */
extern void peb_wait_for_archiver(long timeout_ms);
/* The server's own messages: 0 waiting, 1 still waiting, 2 done, 3 off. */
extern void peb_report_archive_wait(int what, int seconds);

/* Settings (values of pg_exclusive_backup.label_method below). */
#define PEB_METHOD_AUTO 0
#define PEB_METHOD_STREAMED 1
#define PEB_METHOD_PG_START_BACKUP 2
extern void peb_define_settings(void);
extern int	peb_label_method_setting(void);
extern bool peb_require_preload_setting(void);
extern int	peb_max_duration_setting(void);
extern int	peb_warn_duration_setting(void);
extern bool peb_refuse_archiving_clone_setting(void);

/* Preload mode's standing worker. */
extern void peb_register_standing_worker(void);
extern void peb_standing_worker_init(uint32 *cancel_word);
extern void peb_standing_worker_round(void);
extern void peb_standing_worker_serving(uint32 handle);
extern void peb_reload_config_if_asked(void);
extern int	peb_my_pid(void);

/*
 * Where global/pg_control keeps the cluster's state, and the state after a
 * clean shutdown: what the postmaster reads to say why a backup ended at a
 * first start. shim.c checks both against catalog/pg_control.h.
 */
#define PEB_CONTROL_STATE_OFFSET 16
#define PEB_DB_SHUTDOWNED 1

/* Preload mode: whether _PG_init runs from shared_preload_libraries. */
extern bool peb_preload_in_progress(void);
extern bool peb_creating_extension(void);
/* Installs the shared memory hooks; see src/postmaster.rs. */
extern void peb_install_preload_hooks(void);

/*
 * The calling session, for the status view: session_user and the current
 * database's name (empty when unknown), and the client's numeric address,
 * "local" for a Unix socket. Returns false, with `from` empty, for a
 * process without a client connection. May raise an ERROR.
 */
extern bool peb_session_info(char *user, char *db, char *from, size_t len);
extern const char *peb_application_name(void);

/* Whether bytes are valid text in the database encoding. */
extern bool peb_valid_in_database(const char *bytes, int len);
/* Datums of a row; each may raise an ERROR. */
extern Datum peb_text_datum(const char *bytes, int len);
extern Datum peb_interval_datum(int64 usec);
/*
 * The function's one-row result, after checking that its declared columns
 * are `natts` of the types `types`. May raise an ERROR.
 */
/* PostgreSQL 14's record-returning stops (materialize mode). */
extern void peb_prepare_stop_row(FunctionCallInfo fcinfo);
extern void peb_return_exclusive_stop(FunctionCallInfo fcinfo, XLogRecPtr lsn);
extern void peb_return_session_stop(FunctionCallInfo fcinfo, bool wait_for_archive);
extern Datum peb_row(FunctionCallInfo fcinfo, const Oid *types, int natts,
					 Datum *values, bool *nulls);
/* The timeline WAL is written on; only outside recovery. */
extern uint32 peb_insert_timeline(void);

/* A GUC's current value, NULL if it is not set. */
extern const char *peb_guc_value(const char *name);

#ifdef PEB_TEST_HOOKS
/* Test probes of the boundary (src/probes.rs). */
extern void peb_test_raise(void);
extern uint32 peb_interrupt_holdoff(void);
#endif

#endif
