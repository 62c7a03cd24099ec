/*
 * The C half of the FFI boundary; see src/boundary.rs for the design.
 */
#ifndef PEB_SHIM_H
#define PEB_SHIM_H

#include "postgres.h"
#include "fmgr.h"
#include "port/atomics.h"

extern const Pg_magic_struct *peb_magic_data(void);

/*
 * Runs fn(arg) under PG_TRY. Returns NULL when fn returned normally, or the
 * error it raised, copied into the caller's memory context, with the error
 * state flushed. The caller must re-throw it (peb_rethrow) once its own
 * cleanup is done.
 */
extern ErrorData *peb_try(void (*fn) (void *), void *arg);

extern void peb_rethrow(ErrorData *edata) __attribute__((noreturn));
extern void peb_raise(int sqlerrcode, const char *message, const char *detail,
					  const char *hint) __attribute__((noreturn));
extern void peb_log(const char *message);
extern char *peb_pstrdup(const char *text);

extern void peb_hold_interrupts(void);
extern void peb_resume_interrupts(void);

/*
 * Takes the server out of the backup mode this session's do_pg_backup_start
 * entered, without the server's "backend exiting" warning, which would be
 * false here.
 */
extern void peb_abort_session_backup(void);

/*
 * pg_start_backup runs the server's do_pg_backup_start in a background
 * worker (see src/worker.rs for why). The caller and the worker share one
 * of these in a dynamic shared memory segment.
 */
typedef enum PebStartOutcome
{
	PEB_PENDING = 0,			/* the worker is still at it */
	PEB_STARTED = 1,			/* backup started, backup_label written */
	PEB_FAILED = 2,				/* not started; the error is below */
	PEB_ABANDONED = 3			/* the caller gave up (cancel, exit) */
} PebStartOutcome;

typedef struct PebStartRequest
{
	pg_atomic_uint32 outcome;	/* PebStartOutcome; changes once, by CAS */
	struct Latch *caller_latch; /* set by the worker once it has decided */
	bool		fast;
	char		label[MAXPGPATH + 1];
	uint64		start_lsn;
	int			sqlerrcode;
	char		message[1024];
	char		detail[1024];
	char		hint[512];
} PebStartRequest;

/* Caller side. */
extern PebStartRequest *peb_request_create(void);
extern bool peb_request_launch(void);
extern int	peb_request_wait(void);
extern void peb_request_release(void);
extern void peb_wait_a_moment(long milliseconds);

/* Worker side. */
extern PebStartRequest *peb_worker_attach(Datum main_arg);
extern bool peb_request_finish(PebStartRequest *request, uint32 outcome);
extern uint32 peb_request_outcome(PebStartRequest *request);

#endif
