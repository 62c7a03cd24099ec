-- pg_exclusive_backup_status(): its columns, who may read it, and what it
-- says through a backup cycle. The notices of preload mode are not the
-- subject here.
SET client_min_messages = warning;

SELECT a.attnum, a.attname, a.atttypid::regtype AS type
  FROM pg_attribute a
 WHERE a.attrelid = 'public.pg_exclusive_backup_status'::regclass AND a.attnum > 0
 ORDER BY a.attnum;

-- The view and the function return the same columns.
SELECT pg_get_function_arguments('pg_catalog.pg_exclusive_backup_status()'::regprocedure)
       = (SELECT string_agg(format('OUT %s %s', attname, format_type(atttypid, atttypmod)), ', ' ORDER BY attnum)
            FROM pg_attribute
           WHERE attrelid = 'public.pg_exclusive_backup_status'::regclass AND attnum > 0)
       AS function_matches_view;

-- pg_monitor and superusers only.
SELECT has_function_privilege('public', 'pg_catalog.pg_exclusive_backup_status()', 'EXECUTE') AS public_may_call,
       has_table_privilege('public', 'public.pg_exclusive_backup_status', 'SELECT') AS public_may_select,
       has_function_privilege('pg_monitor', 'pg_catalog.pg_exclusive_backup_status()', 'EXECUTE') AS monitor_may_call,
       has_table_privilege('pg_monitor', 'public.pg_exclusive_backup_status', 'SELECT') AS monitor_may_select;
CREATE ROLE regress_peb_nobody;
CREATE ROLE regress_peb_watcher IN ROLE pg_monitor;
SET ROLE regress_peb_nobody;
SELECT in_progress FROM pg_exclusive_backup_status;
SELECT in_progress FROM pg_exclusive_backup_status();
SET ROLE regress_peb_watcher;
SELECT in_progress FROM pg_exclusive_backup_status;
SELECT in_progress FROM pg_exclusive_backup_status();
RESET ROLE;

-- A running backup, as the session that started it knows itself.
SELECT pg_start_backup('status: nightly', true) AS start_lsn \gset
SELECT in_progress, label, start_lsn = :'start_lsn' AS start_lsn_matches,
       checkpoint_lsn >= start_lsn AS checkpoint_after_start,
       start_timeline = (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline_matches,
       start_time = pg_backup_start_time() AS start_time_matches,
       duration BETWEEN interval '0' AND clock_timestamp() - start_time AS duration_so_far,
       fast, started_by = session_user AS started_by_me,
       started_from = coalesce(host(inet_client_addr()), 'local') AS started_from_here,
       application_name = current_setting('application_name') AS application_name_matches,
       start_pid = pg_backend_pid() AS start_pid_matches, database = current_database() AS database_matches,
       label_method = CASE WHEN preloaded THEN 'streamed' ELSE 'pg_start_backup' END AS label_method_of_the_mode,
       preloaded = (current_setting('shared_preload_libraries') ~ 'pg_exclusive_backup') AS preloaded_as_configured
  FROM pg_exclusive_backup_status;

-- Another session, connected as another role, sees the same backup.
SET ROLE regress_peb_watcher;
SELECT in_progress, label, started_by FROM pg_exclusive_backup_status;
RESET ROLE;

SELECT lsn AS stop_lsn FROM pg_stop_backup(false) \gset
SELECT in_progress, label, start_lsn, duration, started_by, label_method,
       last_label, last_stop_lsn = :'stop_lsn' AS last_stop_lsn_matches,
       last_end_time BETWEEN now() - interval '1 minute' AND clock_timestamp() AS ended_just_now,
       last_outcome, last_stopped_by = session_user AS stopped_by_me,
       last_completed_time = last_end_time AS completed_is_last
  FROM pg_exclusive_backup_status;

-- The next backup keeps the last one's history until it ends itself.
SELECT pg_start_backup(E'status: \\ weekly', false) IS NOT NULL AS started;
SELECT in_progress, label, fast, last_label, last_outcome FROM pg_exclusive_backup_status;
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(false);
SELECT in_progress, last_label, last_outcome FROM pg_exclusive_backup_status;

-- The metrics query the README gives to exporters.
SELECT in_progress::int AS in_progress,
       coalesce(extract(epoch FROM duration), 0)::float8 AS duration_seconds,
       extract(epoch FROM clock_timestamp() - last_completed_time)::float8 AS last_completed_age_seconds
  FROM pg_exclusive_backup_status \gset
SELECT :in_progress AS in_progress, :duration_seconds AS duration_seconds,
       :last_completed_age_seconds BETWEEN 0 AND 60 AS last_completed_recently;

DROP ROLE regress_peb_nobody;
DROP ROLE regress_peb_watcher;
RESET client_min_messages;
