-- The four functions, one full backup cycle, and the server's own
-- non-exclusive functions working side by side.
CREATE EXTENSION pg_exclusive_backup;

SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments,
       p.prorettype::regtype AS returns, p.provolatile, p.proparallel,
       p.proisstrict, p.proacl IS NOT NULL AS restricted
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_exclusive_backup')
   AND p.proname <> 'pg_exclusive_backup_status' -- its columns: status.sql
 ORDER BY 1, 2;

-- The built-in non-exclusive functions are still there.
SELECT to_regprocedure('pg_catalog.pg_backup_start(text, boolean)') IS NOT NULL AS builtin_start_kept,
       to_regprocedure('pg_catalog.pg_backup_stop(boolean)') IS NOT NULL AS builtin_stop_kept;

-- Nothing in progress yet.
SELECT pg_is_in_backup(), pg_backup_start_time() IS NULL AS no_start_time;
SELECT pg_stop_backup();

-- A label with quotes, repeated spaces and multibyte characters.
SELECT pg_start_backup('regress: it''s a "label"  with  spaces, ümlaut, 日本語', true) AS start_lsn \gset
SELECT :'start_lsn'::pg_lsn > '0/0' AS got_start_lsn;
SELECT pg_is_in_backup();
SELECT pg_backup_start_time() BETWEEN now() - interval '1 minute' AND clock_timestamp() AS start_time_is_now;

-- What a restore will read.
SELECT line
  FROM regexp_split_to_table(pg_read_file('backup_label'), E'\n') WITH ORDINALITY AS l(line, n)
 WHERE line ~ '^(BACKUP METHOD|BACKUP FROM|LABEL): '
 ORDER BY n;
SELECT substring(pg_read_file('backup_label') FROM 'START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) ')::pg_lsn
       = :'start_lsn'::pg_lsn AS label_names_start_lsn;

-- Exclusive: a second start fails, and leaves the first backup alone.
SELECT pg_start_backup('second');
SELECT pg_is_in_backup();
SELECT pg_read_file('backup_label') LIKE '%LABEL: regress: it''s a%' AS first_label_kept;

-- The other sessions see it too.
\c
SELECT pg_is_in_backup();

SELECT pg_stop_backup() AS stop_lsn \gset
SELECT :'stop_lsn'::pg_lsn > :'start_lsn'::pg_lsn AS stop_after_start;
SELECT pg_is_in_backup(), pg_backup_start_time() IS NULL AS no_start_time;
SELECT count(*) AS label_files_left FROM pg_ls_dir('.') AS f WHERE f IN ('backup_label', 'tablespace_map');
SELECT pg_stop_backup();

-- A new backup can start once the last one stopped; fast defaults to false.
SELECT pg_start_backup('again') IS NOT NULL AS started;

-- The session that started the exclusive backup has no backup of its own:
-- the built-in stop says so (PostgreSQL 15's original extension crashed the
-- backend here), and a non-exclusive backup can run beside the exclusive one.
SELECT pg_backup_stop();
SELECT pg_backup_start('non-exclusive beside it', true) IS NOT NULL AS nonexclusive_started;
-- The exclusive stop would reset this session's non-exclusive backup; refused.
SELECT pg_stop_backup();
SELECT * FROM pg_stop_backup(true);
-- pg_stop_backup(false) is PostgreSQL 14's stop of this session's
-- non-exclusive backup: it returns that backup's label.
SELECT labelfile LIKE '%LABEL: non-exclusive beside it%' AS nonexclusive_label,
       spcmapfile = '' AS no_tablespaces
  FROM pg_stop_backup(false);
SELECT pg_is_in_backup() AS exclusive_still_running;
-- With none running here, false means what it meant in version 1.0: the
-- exclusive stop, without waiting for the archiver.
SELECT lsn IS NOT NULL AS stopped_without_waiting, labelfile IS NULL AS no_label FROM pg_stop_backup(false);
SELECT pg_backup_stop();

-- Settings. Without preload mode, labels say pg_start_backup unless asked;
-- a streamed label without preload mode is written, with a warning.
SHOW pg_exclusive_backup.label_method;
SHOW pg_exclusive_backup.require_preload;
SET pg_exclusive_backup.label_method = streamed;
SELECT pg_start_backup('streamed without preload', true) IS NOT NULL AS started;
SELECT pg_read_file('backup_label') LIKE '%BACKUP METHOD: streamed%START EPOCH: %' AS streamed_label;
SELECT pg_is_in_backup();
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(false);
RESET pg_exclusive_backup.label_method;
SET pg_exclusive_backup.label_method = 'somehow';
-- Only the configuration file sets require_preload.
SET pg_exclusive_backup.require_preload = on;
-- The prefix is reserved: a misspelt setting is an error, not a placeholder.
SET pg_exclusive_backup.label_methd = streamed;
