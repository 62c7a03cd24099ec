#!/usr/bin/env bash
# Runs every test of pg_exclusive_backup against the PostgreSQL server that
# PG_CONFIG names (default: pg_config on PATH), so you test what you run:
#
#   1. build and install the extension into that server's directories
#      (root, or write access to them, is needed),
#   2. pg_regress (make installcheck) on a throwaway cluster,
#   3. cargo unit tests (label format, file handling, errors),
#   4. cargo integration tests, which start and stop their own clusters.
#
# As root, initdb and the servers run as the "postgres" user.
# Usage: [PG_CONFIG=/path/to/pg_config] tools/test.sh
set -euo pipefail

cd "$(dirname "$0")/.."
top=$PWD
PG_CONFIG=${PG_CONFIG:-pg_config}
PG_CONFIG=$(command -v "$PG_CONFIG" || true)
if [ -z "$PG_CONFIG" ]; then
  echo "test.sh: pg_config not found; install postgresql-server-dev-NN or set PG_CONFIG" >&2
  exit 2
fi
export PG_CONFIG
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
bindir=$("$PG_CONFIG" --bindir)
version=$("$PG_CONFIG" --version)
echo "== testing against $version ($PG_CONFIG)"

as_server_user=()
if [ "$(id -u)" = 0 ]; then
  as_server_user=(runuser -u postgres --)
fi

tmp=$(mktemp -d /tmp/peb-test.XXXXXX)
chmod 755 "$tmp"
[ ${#as_server_user[@]} -gt 0 ] && chown postgres "$tmp"
cleanup() {
  if [ -f "$tmp/data/postmaster.pid" ]; then
    "${as_server_user[@]}" "$bindir/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== build and install (with the test-only delay points of src/hooks.rs)"
export PEB_TEST_HOOKS=1
make -s USE_PGXS=1 PG_CONFIG="$PG_CONFIG"
make -s USE_PGXS=1 PG_CONFIG="$PG_CONFIG" install >/dev/null

echo "== pg_regress"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_server_user[@]}" "$bindir/initdb" -D "$tmp/data" -A trust -U postgres -E UTF8 --locale=C >"$tmp/initdb.log"
"${as_server_user[@]}" "$bindir/pg_ctl" -D "$tmp/data" -w -l "$tmp/server.log" \
  -o "-p $port -k $tmp -c listen_addresses=''" start >/dev/null
status=0
make -s USE_PGXS=1 PG_CONFIG="$PG_CONFIG" installcheck PGHOST="$tmp" PGPORT="$port" PGUSER=postgres || status=$?
if [ $status -ne 0 ]; then
  [ -f regress-out/regression.diffs ] && cat regress-out/regression.diffs
  echo "test.sh: pg_regress failed" >&2
  exit $status
fi
if grep -E "TRAP:|terminated by signal|PANIC:" "$tmp/server.log"; then
  echo "test.sh: the server log of the pg_regress run shows a crash or an assertion failure" >&2
  exit 1
fi
"${as_server_user[@]}" "$bindir/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null

echo "== cargo unit tests"
cargo test --lib --release --target-dir "$top/target/pg$("$PG_CONFIG" --version | sed 's/[^0-9]*\([0-9]*\).*/\1/')"

echo "== cargo integration tests"
cargo test --test '*' --release --target-dir "$top/target/pg$("$PG_CONFIG" --version | sed 's/[^0-9]*\([0-9]*\).*/\1/')" -- --test-threads=2

echo "== all tests passed against $version"
