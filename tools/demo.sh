#!/usr/bin/env bash
# tools/demo.sh: install pg_exclusive_backup and watch one exclusive backup.
#
# For a Debian 12 machine, run as root from anywhere:
#
#   tools/demo.sh
#
# 1. installs what the build needs from Debian (server headers, libclang,
#    a C compiler), skipping what is already there;
# 2. checks for a Rust toolchain (it does not download one);
# 3. builds and installs the extension with PGXS;
# 4. on a throwaway cluster in a temporary directory (unix socket only, WAL
#    archiving into a directory beside it) takes an exclusive backup: start
#    in one session, copy the data directory, stop from another session;
# 5. removes the cluster again, also when something fails.
#
# Environment:
#   PG_CONFIG  pg_config of the server to build for and run
#              (default /usr/lib/postgresql/15/bin/pg_config)
#   PGPORT     port of the throwaway cluster (default 54329; it listens on
#              a unix socket in its own directory only, so any port works)
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PORT=${PGPORT:-54329}
RUST_MIN=1.77
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

heading() { printf '\n=== %s ===\n' "$*"; }
die() { echo "demo.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root (I install packages and run the cluster as user postgres)"
id postgres >/dev/null 2>&1 || die "there is no user 'postgres'; install the PostgreSQL server package (postgresql-15) first"

# The major version: from Debian's path layout, else from pg_config itself.
if [[ $PG_CONFIG =~ ^/usr/lib/postgresql/([0-9]+)/bin/pg_config$ ]]; then
  MAJOR=${BASH_REMATCH[1]}
  debian_layout=yes
elif [ -x "$PG_CONFIG" ]; then
  MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
  debian_layout=no
else
  die "PG_CONFIG=$PG_CONFIG does not exist"
fi

heading "1. Build dependencies (Debian packages)"
wanted=(libclang-dev build-essential)
if [ "$debian_layout" = yes ]; then
  wanted=("postgresql-$MAJOR" "postgresql-server-dev-$MAJOR" "${wanted[@]}")
fi
missing=()
for p in "${wanted[@]}"; do
  if dpkg -s "$p" >/dev/null 2>&1; then
    echo "already installed: $p"
  else
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${missing[@]}"
fi
[ -x "$PG_CONFIG" ] || die "$PG_CONFIG still does not exist after installing the packages"
echo "server: $("$PG_CONFIG" --version) ($PG_CONFIG)"

heading "2. Rust toolchain"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
  cat >&2 <<EOF
demo.sh: no Rust toolchain found (cargo and rustc on PATH or in ~/.cargo/bin).
Install Rust $RUST_MIN or later, for example with rustup (see https://rustup.rs),
then run this script again. Debian 12's own rustc package is too old.
EOF
  exit 1
fi
rust_version=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$RUST_MIN" "$rust_version" | sort -V | head -n1)" != "$RUST_MIN" ]; then
  die "rustc $rust_version is too old; pg_exclusive_backup needs $RUST_MIN or later (rustup update)"
fi
echo "$(rustc --version), $(cargo --version)"

heading "3. Build and install (make USE_PGXS=1 install)"
make -C "$SRC" USE_PGXS=1 PG_CONFIG="$PG_CONFIG" install

BINDIR=$("$PG_CONFIG" --bindir)
TMP=$(mktemp -d /tmp/peb-demo.XXXXXX)
DATA=$TMP/data
ARCHIVE=$TMP/archive
COPY=$TMP/copy
LOG=$TMP/server.log

cleanup() {
  local status=$?
  trap - EXIT
  if [ "$status" -ne 0 ] && [ -f "$LOG" ]; then
    echo "demo.sh: failed; last lines of the server log:" >&2
    tail -n 20 "$LOG" >&2 || true
  fi
  if [ -f "$DATA/postmaster.pid" ]; then
    runuser -u postgres -- "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_pg() { runuser -u postgres -- "$@"; }
# One call is one session: psql connects, runs, disconnects.
sql() {
  echo "demo=# $1"
  as_pg "$BINDIR/psql" -X -q -h "$TMP" -p "$PORT" -d demo -v ON_ERROR_STOP=1 -P footer=off -c "$1" 2>&1
}

heading "4. Throwaway cluster in $TMP (archiving into $ARCHIVE)"
mkdir -p "$ARCHIVE" "$COPY"
chown -R postgres:postgres "$TMP"
as_pg "$BINDIR/initdb" -D "$DATA" -U postgres -A trust --no-sync --no-instructions >/dev/null
cat >>"$DATA/postgresql.conf" <<EOF

# pg_exclusive_backup demo, in preload mode (see README)
shared_preload_libraries = 'pg_exclusive_backup'
port = $PORT
listen_addresses = ''
unix_socket_directories = '$TMP'
wal_level = replica
archive_mode = on
archive_command = 'test ! -f $ARCHIVE/%f && cp %p $ARCHIVE/%f'
EOF
as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w start >/dev/null
as_pg "$BINDIR/createdb" -h "$TMP" -p "$PORT" demo
echo "server running, database \"demo\" created"

heading "5. CREATE EXTENSION"
sql "CREATE EXTENSION pg_exclusive_backup;"
sql "SELECT f AS function, to_regproc('pg_catalog.' || f) IS NOT NULL AS present
       FROM unnest(ARRAY['pg_start_backup', 'pg_stop_backup', 'pg_is_in_backup',
                         'pg_backup_start_time', 'pg_exclusive_backup_status',
                         'pg_backup_start', 'pg_backup_stop']) AS f;"
builtins=$(as_pg "$BINDIR/psql" -X -q -tA -h "$TMP" -p "$PORT" -d demo -v ON_ERROR_STOP=1 -c \
  "SELECT count(*) FROM unnest(ARRAY['pg_backup_start', 'pg_backup_stop']) AS f
    WHERE to_regproc('pg_catalog.' || f) IS NOT NULL;")
if [ "$builtins" = 0 ]; then
  echo "(the built-in pg_backup_start and pg_backup_stop are gone from this database;"
  echo " see README, \"Built-in backup functions\")"
else
  echo "(the built-in non-exclusive pg_backup_start and pg_backup_stop are still available)"
fi

heading "6. Session 1: start the backup"
sql "SELECT pg_backend_pid() AS session, pg_start_backup('demo backup', true) AS start_lsn;"
sql "SELECT pg_is_in_backup(), pg_backup_start_time();"
echo "(any session, in any database, as a member of pg_monitor:)"
sql "SELECT in_progress, label, start_lsn, started_by, started_from, start_pid, database, label_method
       FROM pg_exclusive_backup_status;"

heading "7. backup_label in the live data directory"
echo "(preload mode: \"BACKUP METHOD: streamed\", so that a restore of the copy is"
echo " consistent only at the end of the backup, as a pg_basebackup copy is)"
cat "$DATA/backup_label"

heading "8. Copy the data directory while in backup mode"
echo "tar, leaving out postmaster.pid, postmaster.opts and the contents of pg_wal"
rc=0
tar -C "$DATA" --exclude=./postmaster.pid --exclude=./postmaster.opts --exclude='./pg_wal/*' \
    --warning=no-file-changed --warning=no-file-removed -cf - . \
  | tar -C "$COPY" -xf - || rc=$?
# GNU tar exits 1 when a file changed while it was read: normal for a live
# server, and exactly what WAL replay from the backup start repairs.
[ "$rc" -le 1 ] || die "copying the data directory failed (tar exit $rc)"
echo "copied $(du -sh "$COPY" | cut -f1) into $COPY"

heading "9. Session 2 (a different one): stop the backup"
sql "SELECT pg_backend_pid() AS session, pg_stop_backup() AS stop_lsn;"
sql "SELECT pg_is_in_backup(), pg_backup_start_time();"
sql "SELECT last_label, last_outcome, last_stop_lsn, last_stopped_by FROM pg_exclusive_backup_status;"

heading "10. What the copy holds"
ls "$COPY"
if [ -f "$COPY/backup_label" ]; then
  echo "backup_label in the copy: present (a restore needs it, never delete it there)"
else
  die "backup_label is missing from the copy"
fi
if [ -e "$DATA/backup_label" ]; then
  die "backup_label is still in the live data directory after pg_stop_backup"
else
  echo "backup_label in the live data directory: absent (pg_stop_backup removed it)"
fi

heading "11. The backup history file in the WAL archive"
ls "$ARCHIVE"
history=$(find "$ARCHIVE" -name '*.backup' | head -n1)
[ -n "$history" ] || die "no backup history file in $ARCHIVE"
echo "--- $(basename "$history")"
cat "$history"

heading "12. The server goes down during a backup and comes back by itself"
sql "SELECT pg_start_backup('interrupted backup', true) AS start_lsn;"
as_pg "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null
echo "pg_ctl stop -m immediate; the postmaster's last log lines:"
grep -A1 "online backup mode canceled" "$LOG" | sed 's/^/  /'
as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w start >/dev/null
echo "started again; in the data directory: $(cd "$DATA" && ls -d backup_label* 2>/dev/null | tr '\n' ' ')"
sql "SELECT pg_is_in_backup();"
sql "SELECT in_progress, last_label, last_outcome FROM pg_exclusive_backup_status;"
as_pg "$BINDIR/psql" -X -q -h "$TMP" -p "$PORT" -d demo -c "SELECT pg_stop_backup();" 2>&1 | sed 's/^/  /' || true

heading "Done"
echo "The throwaway cluster and its copy are removed now. Next: read README.md, run tools/test.sh."
