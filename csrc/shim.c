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
#include "utils/elog.h"

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
peb_raise_notice(const char *message)
{
	ereport(NOTICE, (errmsg_internal("%s", message)));
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
