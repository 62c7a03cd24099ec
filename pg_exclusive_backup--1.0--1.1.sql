-- pg_exclusive_backup 1.0 -> 1.1
\echo Use "ALTER EXTENSION pg_exclusive_backup UPDATE TO '1.1'" to load this file. \quit

-- Only new objects: nothing a running backup depends on changes, so the
-- update can run during one.

-- PostgreSQL 14's other two signatures. Neither has defaults: with one,
-- pg_start_backup('l') or pg_stop_backup(false) would match two functions
-- and be ambiguous. They run as their owner (the superuser who created the
-- extension), as 14's built-in functions needed only their own EXECUTE
-- right: granting these two grants what 14's granted.
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
LANGUAGE plpgsql STRICT VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF exclusive THEN
    lsn := pg_catalog.pg_stop_backup(wait_for_archive);
    RETURN NEXT;
  ELSE
    RETURN QUERY SELECT s.lsn, s.labelfile, s.spcmapfile FROM pg_catalog.pg_backup_stop(wait_for_archive) AS s;
  END IF;
END
$$;

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
    OUT last_completed_time timestamptz)
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
