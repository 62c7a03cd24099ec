-- pg_exclusive_backup 1.1 -> 1.2
\echo Use "ALTER EXTENSION pg_exclusive_backup UPDATE TO '1.2'" to load this file. \quit

-- Nothing a running backup depends on changes: the update can run during
-- one.

-- pg_stop_backup(boolean) becomes PostgreSQL 14's one-argument stop, which
-- returns (lsn, labelfile, spcmapfile), and gives up its default to the new
-- pg_stop_backup() below. CREATE OR REPLACE cannot change a result type, and
-- DROP would take the function's grants with it (granting them again here
-- would record them as the extension's own privileges, which pg_dump leaves
-- out). So its catalog row is changed in place: it keeps its OID, its
-- grants and whatever depends on it. Every type it names is built in, so
-- no dependency changes; the values are those pg_exclusive_backup--1.2.sql
-- creates it with.
UPDATE pg_catalog.pg_proc
   SET prorettype = 'pg_catalog.record'::pg_catalog.regtype,
       proretset = true,
       prorows = 1,
       proallargtypes = ARRAY['pg_catalog.bool'::pg_catalog.regtype, 'pg_catalog.pg_lsn'::pg_catalog.regtype,
                              'pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.text'::pg_catalog.regtype]::pg_catalog.oid[],
       proargmodes = ARRAY['i', 'o', 'o', 'o']::pg_catalog."char"[],
       proargnames = ARRAY['wait_for_archive', 'lsn', 'labelfile', 'spcmapfile']::pg_catalog.text[],
       pronargdefaults = 0,
       proargdefaults = NULL,
       prosrc = 'peb_stop_backup_fourteen'
 WHERE oid = 'pg_catalog.pg_stop_backup(boolean)'::pg_catalog.regprocedure;

-- The exclusive stop, waiting for the archiver, as in PostgreSQL 14.
CREATE FUNCTION pg_catalog.pg_stop_backup()
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'peb_stop_backup'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_stop_backup() FROM PUBLIC;

-- Whoever could run pg_stop_backup() through 1.1's default still can.
DO $$
DECLARE
  g record;
BEGIN
  FOR g IN
    SELECT a.grantee, a.is_grantable
      FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
     WHERE p.oid = 'pg_catalog.pg_stop_backup(boolean)'::pg_catalog.regprocedure
       AND a.privilege_type = 'EXECUTE'
       AND a.grantee <> p.proowner
  LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION pg_catalog.pg_stop_backup() TO %s%s',
                              CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                                   ELSE g.grantee::pg_catalog.regrole::pg_catalog.text END,
                              CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
  END LOOP;
END
$$;

-- PostgreSQL 14's two-argument stop: the same C function as the one-argument
-- one, which reaches the server's pg_backup_stop() itself. CREATE OR REPLACE
-- keeps its grants.
CREATE OR REPLACE FUNCTION pg_catalog.pg_stop_backup(exclusive boolean, wait_for_archive boolean,
                                                     OUT lsn pg_lsn, OUT labelfile text, OUT spcmapfile text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'peb_stop_backup_fourteen'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE ROWS 1;

-- The status gains its last column, deadline: changed in place as above,
-- which keeps the function's and the view's grants; the view is then
-- defined again over the longer row.
UPDATE pg_catalog.pg_proc
   SET proallargtypes = proallargtypes || 'pg_catalog.timestamptz'::pg_catalog.regtype::pg_catalog.oid,
       proargmodes = proargmodes || 'o'::pg_catalog."char",
       proargnames = proargnames || 'deadline'::pg_catalog.text
 WHERE oid = 'pg_catalog.pg_exclusive_backup_status()'::pg_catalog.regprocedure
   AND pg_catalog.array_length(proallargtypes, 1) = 21;

CREATE OR REPLACE VIEW public.pg_exclusive_backup_status AS
  SELECT * FROM pg_catalog.pg_exclusive_backup_status();

-- Ends the running exclusive backup as void (see pg_exclusive_backup--1.2.sql).
CREATE FUNCTION pg_catalog.pg_exclusive_backup_void()
RETURNS text
AS 'MODULE_PATHNAME', 'peb_void_backup'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_exclusive_backup_void() FROM PUBLIC;
