-- Every call PostgreSQL 14 accepted, with positional and named arguments:
-- each resolves to exactly one function, never "is not unique".
SET client_min_messages = warning;

SELECT oid::regprocedure AS function, pg_get_function_result(oid) AS returns, prosecdef
  FROM pg_proc
 WHERE proname IN ('pg_start_backup', 'pg_stop_backup')
 ORDER BY oid::regprocedure::text;

-- Exclusive backups, in a session without a non-exclusive backup.
SELECT pg_start_backup('sig 1') IS NOT NULL AS started;
-- pg_stop_backup() returns the bare LSN, as in 14 and in version 1.0.
SELECT pg_typeof(pg_stop_backup()) AS returns;
SELECT pg_start_backup('sig 2', true) IS NOT NULL AS started;
-- In the target list, as 14's callers wrote it: (lsn,,).
SELECT pg_stop_backup(true, false)::text ~ '^\([0-9A-F]+/[0-9A-F]+,,\)$' AS stopped;
SELECT pg_start_backup('sig 3', true, true) IS NOT NULL AS started;
SELECT lsn IS NOT NULL AS got_lsn, labelfile, spcmapfile FROM pg_stop_backup(true, false);
SELECT pg_start_backup(label => 'sig 4') IS NOT NULL AS started;
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(exclusive => true, wait_for_archive => false);
SELECT pg_start_backup(label => 'sig 5', fast => true) IS NOT NULL AS started;
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(wait_for_archive => false, exclusive => true);
SELECT pg_start_backup(label => 'sig 6', fast => true, exclusive => true) IS NOT NULL AS started;
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(true, wait_for_archive => false);
SELECT pg_start_backup('sig 7', fast => true) IS NOT NULL AS started;
-- The one-argument stop: without a non-exclusive backup in this session,
-- its argument says whether to wait for the archiver, as in version 1.0,
-- whose parameter name it keeps; the row is 14's (lsn,,).
SELECT pg_stop_backup(wait_for_archive => false)::text ~ '^\([0-9A-F]+/[0-9A-F]+,,\)$' AS stopped;
SELECT pg_start_backup(exclusive => true, fast => false, label => 'sig 8') IS NOT NULL AS started;
SELECT lsn IS NOT NULL AS stopped, labelfile, spcmapfile FROM pg_stop_backup(false);
SELECT pg_start_backup('sig 8a', true) IS NOT NULL AS started;
SELECT lsn IS NOT NULL AS stopped, labelfile, spcmapfile FROM pg_stop_backup(true);
SELECT pg_start_backup('sig 8b', true) IS NOT NULL AS started;
SELECT (pg_stop_backup(wait_for_archive => true)).lsn IS NOT NULL AS stopped;
SELECT last_label, last_outcome FROM pg_exclusive_backup_status;

-- Non-exclusive backups of this session, through the server's functions.
SELECT pg_start_backup('sig 9', true, false) IS NOT NULL AS started;
SELECT pg_is_in_backup() AS exclusive_running;
-- Here pg_stop_backup(false) is 14's non-exclusive stop, waiting for the
-- archiver: what pitrery and safe-backup select from it.
SELECT lsn IS NOT NULL AS got_lsn, labelfile ~ 'LABEL: sig 9' AS labelfile_names_it, spcmapfile
  FROM pg_stop_backup(false);
SELECT pg_start_backup('sig 9a', true, false) IS NOT NULL AS started;
SELECT labelfile ~ 'LABEL: sig 9a' AS labelfile_names_it FROM pg_stop_backup(wait_for_archive => false);
-- The exclusive stop would reset this session's backup: refused, in every
-- form, and the backup still runs.
SELECT pg_backup_start('sig 9b', true) IS NOT NULL AS started;
SELECT pg_stop_backup();
SELECT * FROM pg_stop_backup(true);
SELECT * FROM pg_stop_backup(wait_for_archive => true);
SELECT * FROM pg_stop_backup(true, true);
SELECT * FROM pg_stop_backup(exclusive => true, wait_for_archive => false);
SELECT * FROM pg_stop_backup(wait_for_archive => true, exclusive => true);
SELECT * FROM pg_stop_backup(true, wait_for_archive => false);
-- A second non-exclusive start is the server's to refuse, as on 14.
SELECT pg_start_backup('sig 9c', true, false);
SELECT pg_start_backup(label => 'sig 9c', fast => true, exclusive => false);
-- Unlike on 14, an exclusive start is not refused here: the exclusive
-- backup belongs to the server; this session stops it once its own has
-- ended.
SELECT pg_start_backup('sig 9d', true, true) IS NOT NULL AS started;
SELECT pg_start_backup('sig 9e', true);
SELECT pg_stop_backup();
SELECT labelfile ~ 'LABEL: sig 9b' AS labelfile_names_it FROM pg_stop_backup(false, false);
SELECT lsn IS NOT NULL AS stopped, labelfile FROM pg_stop_backup(true);
SELECT pg_start_backup('sig 10', fast => true, exclusive => false) IS NOT NULL AS started;
SELECT labelfile ~ 'LABEL: sig 10' AS labelfile_names_it
  FROM pg_stop_backup(exclusive => false, wait_for_archive => false);
SELECT pg_start_backup('sig 11', true, exclusive => false) IS NOT NULL AS started;
SELECT labelfile ~ 'BACKUP METHOD: streamed' AS server_label FROM pg_stop_backup(false, wait_for_archive => false);
-- As in 14: a non-exclusive stop without a start in this session, in
-- every form.
SELECT * FROM pg_stop_backup(false, false);
SELECT * FROM pg_stop_backup(false, true);
SELECT * FROM pg_stop_backup(exclusive => false, wait_for_archive => false);
SELECT * FROM pg_stop_backup(wait_for_archive => true, exclusive => false);
SELECT * FROM pg_stop_backup(false, wait_for_archive => false);

-- NULLs: strict, as in 14.
SELECT pg_start_backup(NULL, true, true) IS NULL AS null_result;
SELECT count(*) AS no_rows FROM pg_stop_backup(NULL, true);
SELECT count(*) AS no_rows FROM pg_stop_backup(NULL);

-- 14 accepted these through its defaults, which here would make the calls
-- above ambiguous: they name the function that does not exist. (Terse:
-- the DETAIL and HINT differ between majors.) 14's one-argument stop
-- called by its name for the argument is one of them: the one-argument
-- stop keeps version 1.0's name, wait_for_archive.
\set VERBOSITY terse
SELECT pg_start_backup(label => 'sig x', exclusive => false);
SELECT pg_start_backup('sig x', exclusive => true);
SELECT * FROM pg_stop_backup(exclusive => false);
\set VERBOSITY default
SELECT pg_is_in_backup();

-- A role granted just 14's two forms can take both kinds of backup, as a
-- role granted 14's functions could.
CREATE ROLE regress_peb_fourteen;
GRANT EXECUTE ON FUNCTION pg_start_backup(text, boolean, boolean), pg_stop_backup(boolean, boolean)
  TO regress_peb_fourteen;
SET ROLE regress_peb_fourteen;
SELECT pg_start_backup('sig 12', true, true) IS NOT NULL AS started;
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(true, false);
SELECT pg_start_backup('sig 13', true, false) IS NOT NULL AS started;
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(false, false);
-- The 1.0 forms still need their own grant.
SELECT pg_start_backup('sig 14', true);
SELECT * FROM pg_stop_backup(false);
RESET ROLE;
-- With the one-argument stop granted too, pitrery's sequence runs.
GRANT EXECUTE ON FUNCTION pg_stop_backup(boolean) TO regress_peb_fourteen;
SET ROLE regress_peb_fourteen;
SELECT pg_start_backup('sig 15', true, false) IS NOT NULL AS started;
SELECT labelfile ~ 'LABEL: sig 15' AS labelfile_names_it, spcmapfile FROM pg_stop_backup(false);
RESET ROLE;
DROP OWNED BY regress_peb_fourteen;
DROP ROLE regress_peb_fourteen;
RESET client_min_messages;
