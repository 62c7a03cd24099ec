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

-- The server's own pg_backup_start() and pg_backup_stop() stay: the
-- exclusive backup is started by a background worker, so no session's
-- backup state is touched and both kinds of backup can be used side by side.

-- Starting and stopping backups changes server state: superusers only,
-- unless EXECUTE is granted.
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_start_backup(text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_stop_backup(boolean) FROM PUBLIC;
