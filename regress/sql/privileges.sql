-- Starting and stopping backups needs superuser or a grant; watching does not.
CREATE ROLE regress_peb_user;
SET ROLE regress_peb_user;
SELECT pg_start_backup('not allowed');
SELECT pg_stop_backup();
SELECT pg_is_in_backup();
SELECT pg_backup_start_time() IS NULL AS no_start_time;
RESET ROLE;

GRANT EXECUTE ON FUNCTION pg_start_backup(text, boolean), pg_stop_backup(boolean) TO regress_peb_user;
SET ROLE regress_peb_user;
SELECT pg_start_backup('granted', true) IS NOT NULL AS started;
SELECT pg_is_in_backup();
SELECT lsn IS NOT NULL AS stopped FROM pg_stop_backup(false);
-- pg_stop_backup() is a function of its own, as in PostgreSQL 14, with
-- its own grant.
SELECT pg_start_backup('granted', true) IS NOT NULL AS started;
SELECT pg_stop_backup();
RESET ROLE;
GRANT EXECUTE ON FUNCTION pg_stop_backup() TO regress_peb_user;
SET ROLE regress_peb_user;
SELECT pg_stop_backup() IS NOT NULL AS stopped;
RESET ROLE;

-- Voiding a backup needs superuser or a grant too.
SELECT pg_start_backup('to be voided', true) IS NOT NULL AS started;
SET ROLE regress_peb_user;
SELECT pg_exclusive_backup_void();
RESET ROLE;
GRANT EXECUTE ON FUNCTION pg_exclusive_backup_void() TO regress_peb_user;
SET ROLE regress_peb_user;
SELECT pg_exclusive_backup_void();
SELECT pg_is_in_backup();
RESET ROLE;

REVOKE EXECUTE ON FUNCTION pg_start_backup(text, boolean), pg_stop_backup(boolean), pg_stop_backup(),
  pg_exclusive_backup_void() FROM regress_peb_user;
DROP ROLE regress_peb_user;
