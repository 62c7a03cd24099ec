-- pg_exclusive_backup 1.0
\echo Use "CREATE EXTENSION pg_exclusive_backup" to load this file. \quit

CREATE FUNCTION pg_catalog.pg_start_backup(label text, fast boolean DEFAULT false)
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'peb_start_backup'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION pg_catalog.pg_stop_backup(wait_for_archive boolean DEFAULT true)
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'peb_stop_backup'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION pg_catalog.pg_is_in_backup()
RETURNS boolean
AS 'MODULE_PATHNAME', 'peb_is_in_backup'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE FUNCTION pg_catalog.pg_backup_start_time()
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'peb_backup_start_time'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- The server's non-exclusive pg_backup_stop() dereferences state that only
-- its own pg_backup_start() sets up, so calling it in a session that ran
-- pg_start_backup() crashes the backend and with it every session. The
-- built-ins are pinned (DROP FUNCTION refuses them), so they are removed
-- from this database's catalog directly. See README, "Built-in backup
-- functions", for how to bring them back after DROP EXTENSION.
DELETE FROM pg_catalog.pg_description
 WHERE classoid = 'pg_catalog.pg_proc'::regclass
   AND objoid IN (SELECT oid FROM pg_catalog.pg_proc
                   WHERE oid IN (pg_catalog.to_regprocedure('pg_catalog.pg_backup_start(text, boolean)'),
                                 pg_catalog.to_regprocedure('pg_catalog.pg_backup_stop(boolean)')));
DELETE FROM pg_catalog.pg_init_privs
 WHERE classoid = 'pg_catalog.pg_proc'::regclass
   AND objoid IN (SELECT oid FROM pg_catalog.pg_proc
                   WHERE oid IN (pg_catalog.to_regprocedure('pg_catalog.pg_backup_start(text, boolean)'),
                                 pg_catalog.to_regprocedure('pg_catalog.pg_backup_stop(boolean)')));
DELETE FROM pg_catalog.pg_proc
 WHERE oid IN (pg_catalog.to_regprocedure('pg_catalog.pg_backup_start(text, boolean)'),
               pg_catalog.to_regprocedure('pg_catalog.pg_backup_stop(boolean)'));

-- Starting and stopping backups changes server state: superusers only,
-- unless EXECUTE is granted.
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_start_backup(text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_stop_backup(boolean) FROM PUBLIC;
