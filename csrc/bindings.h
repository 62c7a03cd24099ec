/*
 * The server headers bindgen reads. Only the allowlist in build.rs reaches
 * Rust; this list just has to make those declarations visible.
 */
#include "postgres.h"
#include "fmgr.h"
#include "access/xlog.h"
#if PG_VERSION_NUM >= 160000
#include "access/xlogbackup.h"
#endif
#include "lib/stringinfo.h"
#include "pgtime.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/elog.h"
#include "utils/timestamp.h"
#include "shim.h"
