/*
 * The C half of the FFI boundary; see src/boundary.rs for the design.
 */
#ifndef PEB_SHIM_H
#define PEB_SHIM_H

#include "postgres.h"
#include "fmgr.h"

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
extern void peb_raise_notice(const char *message);
extern char *peb_pstrdup(const char *text);

extern void peb_hold_interrupts(void);
extern void peb_resume_interrupts(void);

/*
 * Takes the server out of the backup mode this session's do_pg_backup_start
 * entered, without the server's "backend exiting" warning, which would be
 * false here.
 */
extern void peb_abort_session_backup(void);

#endif
