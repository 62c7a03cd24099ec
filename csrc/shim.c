/*
 * The few things that must be written in C because they are macros:
 * the module magic block, PG_TRY/PG_CATCH, ereport and the interrupt
 * holdoff counter. Everything else lives in Rust; see src/boundary.rs for
 * how the two halves keep longjmp away from Rust destructors.
 *
 * Nothing here is exported from the shared library: Rust exports
 * Pg_magic_func and the pg_finfo_* records and calls in here.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "shim.h"

const Pg_magic_struct *
peb_magic_data(void)
{
#if PG_VERSION_NUM >= 180000
	static const Pg_magic_struct data =
		PG_MODULE_MAGIC_DATA(.name = "pg_exclusive_backup",.version = "1.0.0");
#else
	static const Pg_magic_struct data = PG_MODULE_MAGIC_DATA;
#endif

	return &data;
}

ErrorData *
peb_try(void (*fn) (void *), void *arg)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ErrorData  *volatile caught = NULL;

	PG_TRY();
	{
		fn(arg);
	}
	PG_CATCH();
	{
		/* CopyErrorData refuses to run in ErrorContext. */
		MemoryContextSwitchTo(caller_context);
		caught = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();

	return caught;
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

char *
peb_pstrdup(const char *text)
{
	return pstrdup(text);
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

/*
 * The caller's side of a start request. One at a time per backend: a
 * backend runs one SQL function at a time.
 */
static dsm_segment *peb_request_segment = NULL;
static BackgroundWorkerHandle *peb_worker_handle = NULL;

/*
 * Runs when the caller lets go of the request: normally after reading the
 * outcome, but also when the transaction aborts (cancel, statement_timeout)
 * or the backend exits (terminate). If the worker has not finished, the
 * request is marked abandoned, so that the worker undoes whatever it did,
 * and the worker is asked to stop; then we wait for it, so that whoever
 * looks next sees a settled state: backup started and label written, or
 * neither.
 */
static void
peb_request_detached(dsm_segment *seg, Datum arg)
{
	PebStartRequest *request = (PebStartRequest *) dsm_segment_address(seg);
	uint32		expected = PEB_PENDING;

	if (peb_worker_handle != NULL &&
		pg_atomic_compare_exchange_u32(&request->outcome, &expected, PEB_ABANDONED))
	{
		int			waited_ms = 0;

		TerminateBackgroundWorker(peb_worker_handle);
		/* The worker's cleanup is quick; bound the wait all the same. */
		while (waited_ms < 60000)
		{
			pid_t		pid;
			BgwHandleStatus status = GetBackgroundWorkerPid(peb_worker_handle, &pid);
			int			rc;

			if (status == BGWH_STOPPED || status == BGWH_POSTMASTER_DIED)
				break;
			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_POSTMASTER_DEATH,
						   10, PG_WAIT_EXTENSION);
			if (rc & WL_POSTMASTER_DEATH)
				break;
			ResetLatch(MyLatch);
			waited_ms += 10;
		}
	}
	if (peb_worker_handle != NULL)
		pfree(peb_worker_handle);
	peb_worker_handle = NULL;
	peb_request_segment = NULL;
}

PebStartRequest *
peb_request_create(void)
{
	dsm_segment *seg;
	PebStartRequest *request;

	if (peb_request_segment != NULL)
		dsm_detach(peb_request_segment);
	seg = dsm_create(sizeof(PebStartRequest), 0);
	request = (PebStartRequest *) dsm_segment_address(seg);
	memset(request, 0, sizeof(PebStartRequest));
	pg_atomic_init_u32(&request->outcome, PEB_PENDING);
	/* A backend's latch lives in shared memory, mapped alike everywhere. */
	request->caller_latch = MyLatch;
	on_dsm_detach(seg, peb_request_detached, (Datum) 0);
	peb_request_segment = seg;
	return request;
}

bool
peb_request_launch(void)
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
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "peb_start_backup_worker");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(peb_request_segment));
	worker.bgw_notify_pid = MyProcPid;

	/* A retry replaces the handle of a worker that has exited. */
	if (peb_worker_handle != NULL)
	{
		pfree(peb_worker_handle);
		peb_worker_handle = NULL;
	}
	/* The handle must outlive the transaction's memory for the callback. */
	old = MemoryContextSwitchTo(TopMemoryContext);
	launched = RegisterDynamicBackgroundWorker(&worker, &peb_worker_handle);
	MemoryContextSwitchTo(old);
	return launched;
}

/*
 * Waits until the worker has started the backup (it sets our latch right
 * after its compare-and-swap; its own exit no longer matters then) or has
 * exited. A failed start is reported only once the worker is gone, so that
 * nothing of the attempt is left when the error reaches the client.
 * Returns BGWH_STARTED for a started backup, else the worker's status.
 */
int
peb_request_wait(void)
{
	PebStartRequest *request = (PebStartRequest *) dsm_segment_address(peb_request_segment);

	for (;;)
	{
		pid_t		pid;
		BgwHandleStatus status;

		CHECK_FOR_INTERRUPTS();
		if (pg_atomic_read_u32(&request->outcome) == PEB_STARTED)
			return (int) BGWH_STARTED;
		status = GetBackgroundWorkerPid(peb_worker_handle, &pid);
		if (status == BGWH_STOPPED || status == BGWH_POSTMASTER_DIED)
			return (int) status;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, 0,
						 WAIT_EVENT_BGWORKER_SHUTDOWN);
		ResetLatch(MyLatch);
	}
}

void
peb_request_release(void)
{
	if (peb_request_segment != NULL)
		dsm_detach(peb_request_segment);
}

void
peb_wait_a_moment(long milliseconds)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 milliseconds, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

PebStartRequest *
peb_worker_attach(Datum main_arg)
{
	dsm_segment *seg;

	/* Let SIGTERM set the flag HOLD_INTERRUPTS can defer, not exit at once. */
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		return NULL;
	return (PebStartRequest *) dsm_segment_address(seg);
}

bool
peb_request_finish(PebStartRequest *request, uint32 outcome)
{
	uint32		expected = PEB_PENDING;

	if (!pg_atomic_compare_exchange_u32(&request->outcome, &expected, outcome))
		return false;
	/* The caller need not wait for this process to exit. */
	SetLatch(request->caller_latch);
	return true;
}

uint32
peb_request_outcome(PebStartRequest *request)
{
	return pg_atomic_read_u32(&request->outcome);
}
