-- pg_exclusive_backup 1.2
\echo Use "CREATE EXTENSION pg_exclusive_backup" to load this file. \quit

CREATE FUNCTION pg_catalog.pg_start_backup(label text, fast boolean DEFAULT false)
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'peb_start_backup'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- The exclusive stop, waiting for the archiver, as in PostgreSQL 14.
CREATE FUNCTION pg_catalog.pg_stop_backup()
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'peb_stop_backup'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- PostgreSQL 14's pg_stop_backup(false) stopped the session's
-- non-exclusive backup and returned its label: in a session with one
-- running, false does that here too; otherwise the argument says whether
-- the exclusive stop waits for the archiver, as in version 1.0 (whose name
-- for it named calls keep using). No default: pg_stop_backup() is the one
-- above.
CREATE FUNCTION pg_catalog.pg_stop_backup(wait_for_archive boolean,
                                          OUT lsn pg_lsn, OUT labelfile text, OUT spcmapfile text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'peb_stop_backup_fourteen'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE ROWS 1;

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
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_stop_backup() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_stop_backup(boolean) FROM PUBLIC;

-- PostgreSQL 14's other two signatures. Neither has defaults: with one,
-- pg_start_backup('l') or pg_stop_backup(false) would match two functions
-- and be ambiguous. Each does all that its PostgreSQL 14 namesake did with
-- only its own EXECUTE right: the start runs as its owner (the superuser who
-- created the extension) to reach pg_backup_start(); the stop reaches the
-- server's pg_backup_stop() from C.
CREATE FUNCTION pg_catalog.pg_start_backup(label text, fast boolean, exclusive boolean)
RETURNS pg_lsn
LANGUAGE plpgsql STRICT VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF exclusive THEN
    RETURN pg_catalog.pg_start_backup(label, fast);
  END IF;
  -- The session's own non-exclusive backup, as 14's exclusive => false.
  RETURN pg_catalog.pg_backup_start(label, fast);
END
$$;

CREATE FUNCTION pg_catalog.pg_stop_backup(exclusive boolean, wait_for_archive boolean,
                                          OUT lsn pg_lsn, OUT labelfile text, OUT spcmapfile text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'peb_stop_backup_fourteen'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE ROWS 1;

REVOKE EXECUTE ON FUNCTION pg_catalog.pg_start_backup(text, boolean, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_stop_backup(boolean, boolean) FROM PUBLIC;

-- Which exclusive backup runs, started by whom, and how the last one ended.
CREATE FUNCTION pg_catalog.pg_exclusive_backup_status(
    OUT in_progress boolean,
    OUT label text,
    OUT start_lsn pg_lsn,
    OUT checkpoint_lsn pg_lsn,
    OUT start_timeline integer,
    OUT start_time timestamptz,
    OUT duration interval,
    OUT fast boolean,
    OUT started_by text,
    OUT started_from text,
    OUT application_name text,
    OUT start_pid integer,
    OUT database text,
    OUT label_method text,
    OUT preloaded boolean,
    OUT last_label text,
    OUT last_stop_lsn pg_lsn,
    OUT last_end_time timestamptz,
    OUT last_outcome text,
    OUT last_stopped_by text,
    OUT last_completed_time timestamptz,
    OUT deadline timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'peb_status'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

-- Relations cannot be created in pg_catalog, where the functions must be.
CREATE VIEW public.pg_exclusive_backup_status AS
  SELECT * FROM pg_catalog.pg_exclusive_backup_status();

-- Monitoring roles may look; others may not (client addresses, roles).
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_exclusive_backup_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_exclusive_backup_status() TO pg_monitor;
REVOKE ALL ON public.pg_exclusive_backup_status FROM PUBLIC;
GRANT SELECT ON public.pg_exclusive_backup_status TO pg_monitor;

-- Ends the running exclusive backup as void, for a tool that knows its copy
-- failed: the server leaves backup mode with no end-of-backup record for
-- it, so that the copy can never be taken for a complete backup. Returns
-- the backup's label.
CREATE FUNCTION pg_catalog.pg_exclusive_backup_void()
RETURNS text
AS 'MODULE_PATHNAME', 'peb_void_backup'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_exclusive_backup_void() FROM PUBLIC;
