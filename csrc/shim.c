/*
 * The few things that must be written in C because they are macros or
 * C-only constructs: the module magic block, PG_TRY/PG_CATCH, ereport, the
 * interrupt holdoff counter, latches and wait events, the background
 * worker's registration and signals. Everything else, the start protocol
 * included, lives in Rust; see src/boundary.rs for how the two halves keep
 * longjmp away from Rust destructors.
 *
 * Nothing here is exported from the shared library: Rust exports
 * Pg_magic_func and the pg_finfo_* records and calls in here.
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogarchive.h"
#include "catalog/pg_control.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/pg_lsn.h"
#include "utils/resowner.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/wait_event.h"

#include "shim.h"

StaticAssertDecl(offsetof(ControlFileData, state) == PEB_CONTROL_STATE_OFFSET,
				 "PEB_CONTROL_STATE_OFFSET is not where pg_control keeps the state");
StaticAssertDecl(sizeof(DBState) == 4 && DB_SHUTDOWNED == PEB_DB_SHUTDOWNED,
				 "PEB_DB_SHUTDOWNED is not pg_control's clean shutdown state");

const Pg_magic_struct *
peb_magic_data(void)
{
#if PG_VERSION_NUM >= 180000
	static const Pg_magic_struct data =
		PG_MODULE_MAGIC_DATA(.name = "pg_exclusive_backup",.version = "1.2.0");
#else
	static const Pg_magic_struct data = PG_MODULE_MAGIC_DATA;
#endif

	return &data;
}

/*
 * Where caught errors are copied: created with a first block of 32 kB that
 * is kept across resets, so that copying an ordinary error in PG_CATCH
 * needs no new allocation (an error raised inside PG_CATCH would longjmp
 * past the Rust frames above). An error larger than that, or one caught
 * before the context exists, still allocates.
 */
static MemoryContext peb_error_copies = NULL;

ErrorData *
peb_try(void (*fn) (void *), void *arg)
{
	MemoryContext caller_context = CurrentMemoryContext;
	volatile uint32 saved_holdoff = InterruptHoldoffCount;
	volatile uint32 saved_cancel_holdoff = QueryCancelHoldoffCount;
	ErrorData  *volatile caught = NULL;

	PG_TRY();
	{
		if (peb_error_copies == NULL)
			peb_error_copies = AllocSetContextCreate(TopMemoryContext,
													 "pg_exclusive_backup error copies",
													 32 * 1024, 32 * 1024, 64 * 1024);
		fn(arg);
	}
	PG_CATCH();
	{
		/*
		 * errfinish() zeroed the holdoff counts before its longjmp; the
		 * caller's holdoff scopes still count on their increments.
		 */
		InterruptHoldoffCount = saved_holdoff;
		QueryCancelHoldoffCount = saved_cancel_holdoff;
		/* NULL only if creating it failed: that is the error caught. */
		MemoryContextSwitchTo(peb_error_copies ? peb_error_copies : caller_context);
		caught = CopyErrorData();
		FlushErrorState();
		MemoryContextSwitchTo(caller_context);
	}
	PG_END_TRY();

	return caught;
}

void
peb_reset_error_copies(void)
{
	if (peb_error_copies != NULL)
		MemoryContextReset(peb_error_copies);
}

void
peb_rethrow(ErrorData *edata)
{
	ReThrowError(edata);
}

void
peb_raise(int sqlerrcode, const char *message, const char *detail,
		  const char *hint)
{
	/* User text only ever travels as an argument of "%s". */
	ereport(ERROR,
			(errcode(sqlerrcode),
			 errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	pg_unreachable();
}

void
peb_log(const char *message)
{
	ereport(LOG, (errmsg_internal("%s", message)));
}

void
peb_report(int level, const char *message, const char *detail, const char *hint)
{
	int			elevel = level == PEB_WARNING ? WARNING : level == PEB_NOTICE ? NOTICE : LOG;

	ereport(elevel,
			(errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

char *
peb_server_text(const char *utf8, int len)
{
	char	   *converted = pg_any_to_server(utf8, len, PG_UTF8);

	/* Unconverted text comes back as the same pointer: it is not ours. */
	return converted == utf8 ? pnstrdup(utf8, len) : converted;
}

char *
peb_utf8_from_database_text(const char *bytes, int len)
{
	char	   *converted;

	if (GetDatabaseEncoding() == PG_SQL_ASCII || !pg_verifymbstr(bytes, len, true))
		return NULL;
	converted = pg_server_to_any(bytes, len, PG_UTF8);
	return converted == bytes ? pnstrdup(bytes, len) : converted;
}

void
peb_hold_interrupts(void)
{
	HOLD_INTERRUPTS();
}

void
peb_resume_interrupts(void)
{
	RESUME_INTERRUPTS();
}

void
peb_check_for_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
}

bool
peb_proc_die_pending(void)
{
	return ProcDiePending;
}

void
peb_forget_query_cancel(void)
{
	QueryCancelPending = false;
}

#if PG_VERSION_NUM >= 160000
static emit_log_hook_type peb_saved_emit_log_hook = NULL;

static void
peb_silence_hook(ErrorData *edata)
{
	if (edata->elevel == WARNING)
	{
		edata->output_to_server = false;
		edata->output_to_client = false;
	}
	else if (peb_saved_emit_log_hook)
		peb_saved_emit_log_hook(edata);
}
#endif

void
peb_abort_session_backup(void)
{
#if PG_VERSION_NUM >= 160000
	/*
	 * From 16 on, do_pg_abort_backup(false) on a session whose backup has
	 * started is the before_shmem_exit path and always warns that the
	 * backend is exiting. Passing true instead would trip its assertion that
	 * the start has not finished. So call it as designed and keep the
	 * misleading warning out of the log; the caller reports what really
	 * happened.
	 */
	peb_saved_emit_log_hook = emit_log_hook;
	emit_log_hook = peb_silence_hook;
	PG_TRY();
	{
		do_pg_abort_backup(0, BoolGetDatum(false));
	}
	PG_FINALLY();
	{
		emit_log_hook = peb_saved_emit_log_hook;
	}
	PG_END_TRY();
#else
	do_pg_abort_backup(0, BoolGetDatum(false));
#endif
}

void *
peb_my_latch(void)
{
	/* A backend's or worker's latch lives in shared memory. */
	return MyLatch;
}

void
peb_set_latch(void *latch)
{
	SetLatch((Latch *) latch);
}

bool
peb_wait_latch(long timeout_ms, bool for_worker)
{
	int			rc;

	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_POSTMASTER_DEATH,
				   timeout_ms,
				   for_worker ? WAIT_EVENT_BGWORKER_SHUTDOWN : PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	return (rc & WL_POSTMASTER_DEATH) != 0;
}

bool
peb_register_start_worker(uint32 handle, BackgroundWorkerHandle **out)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		launched;

	memset(&worker, 0, sizeof(worker));
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_exclusive_backup start for PID %d", MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_exclusive_backup start");
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_exclusive_backup");
	/* Named after the request's layout: see start.rs, Request. */
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "peb_start_backup_worker_3");
	worker.bgw_main_arg = UInt32GetDatum(handle);
	worker.bgw_notify_pid = MyProcPid;

	/* The handle must outlive the transaction: exit callbacks use it. */
	old = MemoryContextSwitchTo(TopMemoryContext);
	launched = RegisterDynamicBackgroundWorker(&worker, out);
	MemoryContextSwitchTo(old);
	return launched;
}

void
peb_worker_signals(void)
{
	/* SIGTERM sets the flag that HOLD_INTERRUPTS can defer, not exit at once. */
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
}

bool
peb_archiving_active(void)
{
	return XLogArchivingActive();
}

void
peb_backup_wait_files(uint64 startpoint, uint64 stoppoint, uint32 tli,
					  char *last_wal_file, char *history_file)
{
	XLogSegNo	segno;

	XLByteToPrevSeg(stoppoint, segno, wal_segment_size);
	XLogFileName(last_wal_file, tli, segno, wal_segment_size);
	XLByteToSeg(startpoint, segno, wal_segment_size);
	BackupHistoryFileName(history_file, tli, segno, startpoint, wal_segment_size);
}

bool
peb_archive_busy(const char *file)
{
	return XLogArchiveIsBusy(file);
}

void
peb_wait_for_archiver(long timeout_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, WAIT_EVENT_BACKUP_WAIT_WAL_ARCHIVE);
	ResetLatch(MyLatch);
}

/*
 * The messages do_pg_backup_stop gives while it waits, word for word (and
 * so translated by the server's own catalog), so that scripts that look
 * for them keep working.
 */
void
peb_report_archive_wait(int what, int seconds)
{
	switch (what)
	{
		case 0:
			ereport(NOTICE,
					(errmsg("base backup done, waiting for required WAL segments to be archived")));
			break;
		case 1:
			ereport(WARNING,
					(errmsg("still waiting for all required WAL segments to be archived (%d seconds elapsed)",
							seconds),
#if PG_VERSION_NUM >= 170000
					 errhint("Check that your \"archive_command\" is executing properly.  "
#else
					 errhint("Check that your archive_command is executing properly.  "
#endif
							 "You can safely cancel this backup, "
							 "but the database backup will not be usable without all the WAL segments.")));
			break;
		case 2:
			ereport(NOTICE,
					(errmsg("all required WAL segments have been archived")));
			break;
		default:
			ereport(NOTICE,
					(errmsg("WAL archiving is not enabled; you must ensure that all required WAL segments are copied through other means to complete the backup")));
			break;
	}
}

const char *
peb_guc_value(const char *name)
{
	return GetConfigOption(name, true, false);
}

#ifdef PEB_TEST_HOOKS
void
peb_test_raise(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_RAISE_EXCEPTION),
			 errmsg("error raised by a pg_exclusive_backup test probe")));
}

uint32
peb_interrupt_holdoff(void)
{
	return InterruptHoldoffCount;
}
#endif

/* ---------------------------------------------------------------------
 * Settings and preload mode. The decisions are in src/postmaster.rs; C
 * holds what the server reaches through pointers: the setting variables,
 * the enum table, and the hooks.
 * ---------------------------------------------------------------------
 */
static int	peb_label_method = PEB_METHOD_AUTO;
static bool peb_require_preload = false;
static int	peb_max_duration = 0;
static int	peb_warn_duration = 0;
static bool peb_refuse_archiving_clone = false;

static const struct config_enum_entry peb_label_methods[] = {
	{"auto", PEB_METHOD_AUTO, false},
	{"streamed", PEB_METHOD_STREAMED, false},
	{"pg_start_backup", PEB_METHOD_PG_START_BACKUP, false},
	{NULL, 0, false}
};

#ifdef PEB_TEST_HOOKS
static char *peb_test_pause;
static char *peb_test_panic;
static char *peb_test_clock;
#endif

void
peb_define_settings(void)
{
	DefineCustomEnumVariable("pg_exclusive_backup.label_method",
							 "BACKUP METHOD that pg_start_backup writes into backup_label.",
							 "auto means streamed when the library is in shared_preload_libraries, pg_start_backup otherwise.",
							 &peb_label_method, PEB_METHOD_AUTO, peb_label_methods,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("pg_exclusive_backup.require_preload",
							 "Makes pg_start_backup refuse unless the library is in shared_preload_libraries.",
							 NULL, &peb_require_preload, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_exclusive_backup.max_duration",
							"Voids an exclusive backup that runs longer (preload mode); 0 turns it off.",
							"Voided, the backup ends without the end-of-backup record, so a copy taken during it is never consistent.",
							&peb_max_duration, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_exclusive_backup.warn_duration",
							"Logs a WARNING each time a running exclusive backup passes another multiple of it (preload mode); 0 turns it off.",
							NULL,
							&peb_warn_duration, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomBoolVariable("pg_exclusive_backup.refuse_archiving_clone",
							 "Makes a block-level clone of the primary, taken during an exclusive backup, refuse to start while it archives WAL (preload mode).",
							 "Off, such a clone starts with a WARNING: it would archive WAL under the primary's names.",
							 &peb_refuse_archiving_clone, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
#ifdef PEB_TEST_HOOKS
	DefineCustomStringVariable("pg_exclusive_backup.test_pause", "Test builds only.", NULL,
							   &peb_test_pause, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("pg_exclusive_backup.test_panic", "Test builds only.", NULL,
							   &peb_test_panic, "", PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("pg_exclusive_backup.test_archive_clock_scale", "Test builds only.", NULL,
							   &peb_test_clock, "", PGC_SUSET, 0, NULL, NULL, NULL);
#endif
	MarkGUCPrefixReserved("pg_exclusive_backup");
}

int
peb_label_method_setting(void)
{
	return peb_label_method;
}

bool
peb_require_preload_setting(void)
{
	return peb_require_preload;
}

int
peb_max_duration_setting(void)
{
	return peb_max_duration;
}

int
peb_warn_duration_setting(void)
{
	return peb_warn_duration;
}

bool
peb_refuse_archiving_clone_setting(void)
{
	return peb_refuse_archiving_clone;
}

/*
 * Preload mode's standing worker: one, registered from _PG_init, started
 * once recovery has finished and restarted by the postmaster a second
 * after it exits. It serves pg_start_backup without a fork per start and
 * enforces the durations (see src/standing.rs).
 */
void
peb_register_standing_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_exclusive_backup");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_exclusive_backup");
	/* Connected to no database, but shown in pg_stat_activity. */
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_exclusive_backup");
	/* Named after its shared memory protocol: see lib.rs. */
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "peb_standing_worker_1");
	RegisterBackgroundWorker(&worker);
}

/*
 * The standing worker's cancel: SIGINT cancels the start it serves only if
 * a caller asked for exactly that start (the word in shared memory names
 * it, see src/shared.rs), so that a signal sent late never cancels the next
 * request. A cancel becomes an ERROR at the server's next interrupt check,
 * as a backend's does: the checkpoint wait of a start is one.
 */
static volatile uint32 *peb_cancel_word = NULL;
static volatile uint32 peb_serving = 0;

static void
peb_standing_sigint(SIGNAL_ARGS)
{
	/* Before 17 the server does not keep errno for its signal handlers. */
	int			save_errno = errno;

	if (peb_cancel_word != NULL && peb_serving != 0 && *peb_cancel_word == peb_serving)
	{
		QueryCancelPending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Where the standing worker's requests are worked on, reset after each. */
static MemoryContext peb_worker_context = NULL;

void
peb_standing_worker_init(uint32 *cancel_word)
{
	peb_cancel_word = cancel_word;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, peb_standing_sigint);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	/*
	 * After the connection, whose transaction leaves no owner behind: the
	 * server's start and stop expect one.
	 */
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "pg_exclusive_backup");
	peb_worker_context = AllocSetContextCreate(TopMemoryContext,
											   "pg_exclusive_backup standing worker",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(peb_worker_context);
}

/*
 * Between two rounds of work: releases what an error caught in the last one
 * may have left held (as the server's own background workers do when they
 * recover from an error; nothing is held across rounds), and frees what it
 * allocated and its error copies.
 */
void
peb_standing_worker_round(void)
{
	LWLockReleaseAll();
	ConditionVariableCancelSleep();
	pgstat_report_wait_end();
	AtEOXact_Files(false);
	MemoryContextSwitchTo(peb_worker_context);
	MemoryContextReset(peb_worker_context);
	peb_reset_error_copies();
}

/* Which start request the worker serves now (0: none); see the SIGINT handler. */
void
peb_standing_worker_serving(uint32 handle)
{
	peb_serving = handle;
}

/* Rereads the configuration file when the postmaster asked for it. */
void
peb_reload_config_if_asked(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

int
peb_my_pid(void)
{
	return MyProcPid;
}

bool
peb_preload_in_progress(void)
{
	return process_shared_preload_libraries_in_progress;
}

bool
peb_creating_extension(void)
{
	return creating_extension;
}

/*
 * The Rust functions called back below, declared from their Rust
 * signatures by build.rs (not in shim.h, so that bindgen leaves them
 * alone).
 */
#include "peb_exports.h"

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool exit_callback_registered = false;

static void
peb_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(peb_shared_size());
}

static void
peb_exit_callback(int code, Datum arg)
{
	/* Children reset the exit callbacks they inherit; this is belt and braces. */
	if (MyProcPid == DatumGetInt32(arg))
		peb_postmaster_exiting();
}

/*
 * Runs in the postmaster (or a single-user backend) right before the
 * startup process is forked (or, single-user, run): at the first start and
 * after every crash of a child. Also in EXEC_BACKEND children, which only
 * attach.
 */
static void
peb_shmem_startup(void)
{
	bool		found;
	void	   *shared;
	/* Room for a label of 1023 bytes written as \xNN escapes, and more. */
	char		message[8192];
	char		detail[8192];
	char		hint[8192];

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pg_exclusive_backup", peb_shared_size(), &found);
	LWLockRelease(AddinShmemInitLock);
	peb_shared_attached(shared, found);
	if (IsUnderPostmaster)
		return;
	if (!peb_postmaster_starting(message, detail, hint, sizeof(message)))
		ereport(FATAL,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg_internal("%s", message),
				 detail[0] ? errdetail_internal("%s", detail) : 0,
				 hint[0] ? errhint("%s", hint) : 0));
	/*
	 * Registered here rather than in _PG_init: by now this process owns
	 * the data directory (postmaster.pid) and has judged what is in it.
	 */
	if (!exit_callback_registered)
	{
		on_proc_exit(peb_exit_callback, Int32GetDatum(MyProcPid));
		exit_callback_registered = true;
	}
}

void
peb_install_preload_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = peb_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = peb_shmem_startup;
}

bool
peb_session_info(char *user, char *db, char *from, size_t len)
{
	const char *name = GetUserNameFromId(GetSessionUserId(), true);
	const char *dbname = OidIsValid(MyDatabaseId) ? get_database_name(MyDatabaseId) : NULL;

	snprintf(user, len, "%s", name ? name : "");
	snprintf(db, len, "%s", dbname ? dbname : "");
	from[0] = '\0';
	if (MyProcPort == NULL)
		return false;
	/* The server's own inet_client_addr(): NULL over a Unix socket. */
	{
		LOCAL_FCINFO(call, 0);
		Datum		addr;

		InitFunctionCallInfoData(*call, NULL, 0, InvalidOid, NULL, NULL);
		addr = inet_client_addr(call);
		if (call->isnull)
			snprintf(from, len, "%s", "local");
		else
			snprintf(from, len, "%s", DatumGetCString(DirectFunctionCall1(inet_out, addr)));
	}
	return true;
}

const char *
peb_application_name(void)
{
	return application_name ? application_name : "";
}

bool
peb_valid_in_database(const char *bytes, int len)
{
	return pg_verifymbstr(bytes, len, true);
}

Datum
peb_text_datum(const char *bytes, int len)
{
	return PointerGetDatum(cstring_to_text_with_len(bytes, len));
}

Datum
peb_interval_datum(int64 usec)
{
	Interval   *interval = palloc0(sizeof(Interval));

	interval->time = usec;
	return IntervalPGetDatum(interval);
}

Datum
peb_row(FunctionCallInfo fcinfo, const Oid *types, int natts, Datum *values, bool *nulls)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	/*
	 * An SQL definition from another version of the extension: an older
	 * one has the first columns of the newer, and gets those.
	 */
	if (tupdesc->natts > natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the SQL definition of this function does not match the pg_exclusive_backup library"),
				 errdetail("It returns %d columns, the library %d.", tupdesc->natts, natts),
				 errhint("Install the pg_exclusive_backup library of the extension's version.")));
	for (int i = 0; i < tupdesc->natts; i++)
		if (TupleDescAttr(tupdesc, i)->atttypid != types[i])
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the SQL definition of this function does not match the pg_exclusive_backup library"),
					 errdetail("Column %d has another type.", i + 1),
					 errhint("Run ALTER EXTENSION pg_exclusive_backup UPDATE.")));
	tupdesc = BlessTupleDesc(tupdesc);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * PostgreSQL 14's record-returning stops return their one row in
 * materialize mode. Set up before anything is stopped, so that a call
 * from where no set can be returned fails while the backup still runs.
 */
void
peb_prepare_stop_row(FunctionCallInfo fcinfo)
{
	static const Oid types[3] = {PG_LSNOID, TEXTOID, TEXTOID};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != 3)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the SQL definition of this function does not match the pg_exclusive_backup library"),
				 errdetail("It returns %d columns, the library 3.", rsinfo->setDesc->natts),
				 errhint("Run ALTER EXTENSION pg_exclusive_backup UPDATE.")));
	for (int i = 0; i < 3; i++)
		if (TupleDescAttr(rsinfo->setDesc, i)->atttypid != types[i])
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the SQL definition of this function does not match the pg_exclusive_backup library"),
					 errdetail("Column %d has another type.", i + 1),
					 errhint("Run ALTER EXTENSION pg_exclusive_backup UPDATE.")));
}

/* The exclusive stop's row: its LSN, no label and no map, as 14 returned. */
void
peb_return_exclusive_stop(FunctionCallInfo fcinfo, XLogRecPtr lsn)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[3] = {LSNGetDatum(lsn), (Datum) 0, (Datum) 0};
	bool		nulls[3] = {false, true, true};

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * Stops this session's non-exclusive backup with the server's own
 * pg_backup_stop(), called through the function manager so that it finds
 * its result type, and returns its row: what 14's pg_stop_backup(false)
 * did. Both rows are (pg_lsn, text, text) on every supported major.
 */
void
peb_return_session_stop(FunctionCallInfo fcinfo, bool wait_for_archive)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		row = OidFunctionCall1(F_PG_BACKUP_STOP, BoolGetDatum(wait_for_archive));
	HeapTupleHeader header = DatumGetHeapTupleHeader(row);
	HeapTupleData tuple;
	Datum		values[3];
	bool		nulls[3];

	if (HeapTupleHeaderGetNatts(header) != 3)
		elog(ERROR, "pg_backup_stop() returned %d columns, not 3", HeapTupleHeaderGetNatts(header));
	tuple.t_len = HeapTupleHeaderGetDatumLength(header);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = header;
	heap_deform_tuple(&tuple, rsinfo->setDesc, values, nulls);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

uint32
peb_insert_timeline(void)
{
	return GetWALInsertionTimeLine();
}
