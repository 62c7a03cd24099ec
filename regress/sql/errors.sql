-- Bad input gets a clear error with the right SQLSTATE, and never leaves a
-- backup behind.
CREATE FUNCTION pg_temp.outcome(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE query;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- STRICT: NULL in, NULL (or no row) out, nothing started or stopped.
SELECT pg_start_backup(NULL) IS NULL AS null_label;
SELECT pg_start_backup('x', NULL) IS NULL AS null_fast;
SELECT count(*) AS no_rows FROM pg_stop_backup(NULL);
SELECT pg_is_in_backup();

-- A line break would corrupt backup_label.
SELECT pg_start_backup(E'two\nlines');
SELECT pg_temp.outcome($q$SELECT pg_start_backup(E'carriage\rreturn')$q$);
SELECT pg_temp.outcome($q$SELECT pg_start_backup(E'trailing newline\n')$q$);

-- Longer than the server's startup code reads back.
SELECT pg_start_backup(repeat('x', 1024));
SELECT pg_temp.outcome($q$SELECT pg_start_backup(repeat('é', 512))$q$);
SELECT pg_is_in_backup();

-- The longest label that fits, and the empty one.
SELECT pg_start_backup(repeat('x', 1023), true) IS NOT NULL AS longest_label;
SELECT length(substring(pg_read_file('backup_label') FROM E'LABEL: (x*)\n')) AS label_length;
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(false);
SELECT pg_start_backup('', true) IS NOT NULL AS empty_label;
SELECT pg_read_file('backup_label') LIKE E'%\nLABEL: \n%' AS empty_label_line;
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(false);

-- A void needs a running backup; it ends the longest label too, and the
-- stop that comes after finds nothing to stop.
SELECT pg_temp.outcome('SELECT pg_exclusive_backup_void()');
SELECT pg_start_backup(repeat('x', 1023), true) IS NOT NULL AS started;
SELECT length(pg_exclusive_backup_void()) AS voided_label_length;
SELECT pg_is_in_backup();
SELECT pg_temp.outcome($q$SELECT pg_stop_backup()$q$);

-- Errors inside a subtransaction leave things consistent.
SELECT pg_temp.outcome($q$SELECT pg_stop_backup()$q$);
SELECT pg_start_backup('in a transaction', true) IS NOT NULL AS started;
SELECT pg_temp.outcome($q$SELECT pg_start_backup('nested')$q$);
SELECT pg_is_in_backup();
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(false);
SELECT pg_is_in_backup();

-- A Rust panic is an ERROR, not a crashed backend.
CREATE FUNCTION pg_temp.peb_panic() RETURNS void
  AS '$libdir/pg_exclusive_backup', 'peb_test_panic' LANGUAGE C;
SELECT pg_temp.peb_panic();
SELECT pg_temp.outcome('SELECT pg_temp.peb_panic()');
SELECT 'backend still here' AS alive;
