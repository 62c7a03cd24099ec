#!/usr/bin/env bash
# pg_upgrade tests (tests/upgrade.rs): builds and installs the extension
# into both installations, then upgrades clusters from OLD to NEW in copy
# and link mode. Root (or write access to both installations) is needed.
# Usage: tools/upgrade-test.sh OLD_PG_CONFIG NEW_PG_CONFIG
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: tools/upgrade-test.sh OLD_PG_CONFIG NEW_PG_CONFIG" >&2; exit 2; }
old=$(command -v "$1") new=$(command -v "$2")
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
major() { "$1" --version | sed 's/[^0-9]*\([0-9]*\).*/\1/'; }
echo "== pg_upgrade from $("$old" --version) to $("$new" --version)"
for pgc in "$old" "$new"; do
  make -s USE_PGXS=1 PG_CONFIG="$pgc"
  make -s USE_PGXS=1 PG_CONFIG="$pgc" install >/dev/null
done
PG_CONFIG=$new PEB_UPGRADE_FROM=$old cargo test --release --target-dir "$PWD/target/pg$(major "$new")" \
  --test upgrade -- --ignored --test-threads=2
