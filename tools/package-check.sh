#!/usr/bin/env bash
# tools/package-check.sh: checks the packaging of pg_exclusive_backup on a
# Debian 12 machine, as root (CI runs it). Everything happens in a temporary
# directory, from a copy of this working tree:
#
#   1. META.json against the PGXN Meta Spec 1.0.0; versions agree everywhere
#   2. make dist: the release archive (git archive + vendored crates)
#   3. the archive builds offline from clean: empty CARGO_HOME, --offline,
#      no network at all when "unshare -n" is allowed (timed)
#   4. Debian: dpkg-buildpackage -b in the unpacked archive (offline too),
#      apt-get install of the .deb, CREATE EXTENSION and the pg_regress
#      suite (autopkgtest debian/tests/installcheck) against the installed
#      package, then the package is removed again
#   5. RPM: rpmbuild -bb --nodeps from the archive; its file list must equal
#      what "make install DESTDIR=..." installs
#
# The system's make-installed extension (used by other tests) is saved before
# the .deb replaces it and put back afterwards, also when a step fails; if
# there was none, "make USE_PGXS=1 install" from this tree installs it.
#
# Usage: [PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config] tools/package-check.sh
# Needs network for apt-get (missing tools only) and for cargo vendor (unless
# the crates are in the cargo cache).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
if [ "$(id -u)" != 0 ]; then
  echo "package-check.sh: run as root (installs and removes a .deb)" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
major=$("$PG_CONFIG" --version | sed 's/[^0-9]*\([0-9]*\).*/\1/')
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
ext=pg_exclusive_backup
debpkg=postgresql-$major-exclusive-backup

step() { printf '\n===== %s\n' "$*"; }
fail() { echo "package-check.sh: $*" >&2; exit 1; }

step "tools"
need=()
for pkg in build-essential dpkg-dev debhelper fakeroot postgresql-common postgresql-server-dev-all \
           postgresql-all "postgresql-$major" "postgresql-server-dev-$major" libclang-dev rpm \
           git rsync python3 iproute2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || fail "cargo not found (Rust >= 1.77; rustup installs it in ~/.cargo/bin)"
echo "$(cargo --version), $(rustc --version), $("$PG_CONFIG" --version), $(rpmbuild --version)"

# No network for a command: a network namespace with only loopback (which
# pg_virtualenv's clusters need). Without permission for that, the offline
# builds still run with an empty CARGO_HOME and --offline.
if unshare -n sh -c 'ip link set lo up' 2>/dev/null; then
  nonet() { unshare -n sh -c 'ip link set lo up && exec "$@"' nonet "$@"; }
  nonet_how="network namespace without network (unshare -n), empty CARGO_HOME, --offline"
else
  nonet() { "$@"; }
  nonet_how="empty CARGO_HOME, --offline (unshare -n not permitted here)"
fi

if dpkg -s "$debpkg" >/dev/null 2>&1; then
  fail "$debpkg is already installed; remove it first (apt-get remove $debpkg)"
fi

tmp=$(mktemp -d /tmp/pkg-check.XXXXXX)
chmod 755 "$tmp" # the postgres user runs clusters on files in here
backup=$tmp/system-install
deb_installed=
touched= # set once the .deb may have replaced the system's files
restored=

# The make-installed extension of this major, if any, so that it can be put
# back after the .deb (which installs the same paths) is removed.
had_install=
save_system_install() {
  rm -rf "$backup"
  mkdir -p "$backup/lib" "$backup/extension"
  for f in "$pkglibdir/$ext.so" "$sharedir/extension/$ext.control" "$sharedir/extension/$ext"--*.sql; do
    [ -e "$f" ] || continue
    had_install=1
    case $f in
      "$pkglibdir"/*) cp -p "$f" "$backup/lib/" ;;
      *) cp -p "$f" "$backup/extension/" ;;
    esac
  done
}
save_system_install

restore_system_install() {
  [ "$touched" ] && [ -z "$restored" ] || return 0
  restored=1
  if [ "$deb_installed" ]; then
    # Someone may have run "make install" meanwhile (other tests do): then
    # those files, not the ones saved before, are the ones to put back.
    if [ -n "$(dpkg -V "$debpkg" 2>/dev/null)" ]; then
      echo "the package's files changed while it was installed (a concurrent make install?); keeping those"
      save_system_install
    fi
    echo "removing $debpkg"
    apt-get remove -y -qq "$debpkg" >/dev/null || dpkg -r "$debpkg" >/dev/null
    deb_installed=
  fi
  if [ "$had_install" ]; then
    echo "restoring the make-installed extension in $pkglibdir and $sharedir/extension"
    for f in "$backup/lib/"*; do [ -e "$f" ] && cp -p "$f" "$pkglibdir/"; done
    for f in "$backup/extension/"*; do [ -e "$f" ] && cp -p "$f" "$sharedir/extension/"; done
  else
    echo "no make-installed extension before; installing one from $repo"
    make -s -C "$repo" USE_PGXS=1 PG_CONFIG="$PG_CONFIG" install >/dev/null
  fi
}
cleanup() {
  status=$?
  set +e
  restore_system_install
  rm -rf "$tmp"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Throwaway cluster (pg_virtualenv, run as the postgres user) for a psql check
# against whatever is installed in the system directories.
create_extension_check() {
  NONROOT=1 pg_virtualenv -v "$major" psql -X -q -v ON_ERROR_STOP=1 -At <<'SQL'
CREATE EXTENSION pg_exclusive_backup;
SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension WHERE extname = 'pg_exclusive_backup';
SELECT 'pg_is_in_backup() = ' || pg_is_in_backup();
SELECT 'functions: ' || string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.proname)
  FROM pg_depend d JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_exclusive_backup');
SELECT 'built-in pg_backup_start kept: ' || (to_regprocedure('pg_backup_start(text,boolean)') IS NOT NULL);
DROP EXTENSION pg_exclusive_backup;
SQL
}

step "working tree copy in $tmp/src"
# Generated and build files stay behind; the copy is committed (in the copy
# only) so that "make dist" (git archive HEAD) sees uncommitted changes too.
rsync -a --exclude=/target/ --exclude='/build-*/' --exclude=/vendor/ --exclude=/.cargo/ \
  --exclude=/regress-out/ --exclude='*.so' --exclude="/$ext-*.tar.gz" "$repo/" "$tmp/src/"
git -C "$tmp/src" add -A
git -C "$tmp/src" -c user.name=package-check -c user.email=package-check@localhost \
  commit -q --allow-empty --no-verify -m "package-check: working tree"

step "META.json (PGXN Meta Spec 1.0.0) and versions"
python3 - "$tmp/src" <<'PY'
import json, os, re, sys
top = sys.argv[1]
errors = []
def err(msg): errors.append(msg)
with open(os.path.join(top, "META.json")) as f:
    meta = json.load(f)
semver = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")
vrange = re.compile(r"^\s*((==|!=|>=|<=|>|<)\s*)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){0,2}\s*$")
licenses = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd",
            "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit",
            "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay",
            "sun", "zlib", "open_source", "restricted", "unrestricted", "unknown"}
def is_str(v): return isinstance(v, str) and v.strip() != ""
for key in ("name", "abstract", "maintainer", "license", "provides", "version", "meta-spec"):
    if key not in meta:
        err(f"required key {key!r} missing")
if not (is_str(meta.get("name")) and re.match(r"^[^/\\\s\x00-\x1f]{2,}$", meta["name"])):
    err("name: at least 2 characters, no slash, backslash, space or control character")
if meta.get("name") != "pg_exclusive_backup":
    err("name is not pg_exclusive_backup")
if not is_str(meta.get("abstract")):
    err("abstract: non-empty string")
if not is_str(meta.get("version", "")) or not semver.match(meta.get("version", "")):
    err("version: not a semantic version")
m = meta.get("maintainer")
if not (is_str(m) or (isinstance(m, list) and m and all(is_str(x) for x in m))):
    err("maintainer: string or non-empty list of strings")
lic = meta.get("license")
if isinstance(lic, str):
    if lic not in licenses: err(f"license: unknown license string {lic!r}")
elif isinstance(lic, list):
    if not lic or any(x not in licenses for x in lic): err("license: list of known license strings")
elif isinstance(lic, dict):
    if not lic or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in lic.values()):
        err("license: object of name -> URL")
else:
    err("license: string, list or object")
ms = meta.get("meta-spec", {})
if not (isinstance(ms, dict) and ms.get("version") == "1.0.0"):
    err("meta-spec: {\"version\": \"1.0.0\"} required")
prov = meta.get("provides")
if not (isinstance(prov, dict) and prov):
    err("provides: non-empty object")
else:
    for ext, p in prov.items():
        if not isinstance(p, dict): err(f"provides.{ext}: object"); continue
        for k in p:
            if k not in ("file", "version", "abstract", "docfile") and not k.lower().startswith("x_"):
                err(f"provides.{ext}: unknown key {k!r}")
        if not is_str(p.get("file")): err(f"provides.{ext}.file required")
        elif not os.path.isfile(os.path.join(top, p["file"])): err(f"provides.{ext}.file {p['file']} does not exist")
        if not (is_str(p.get("version")) and semver.match(p["version"])): err(f"provides.{ext}.version: semantic version required")
        if "docfile" in p and not os.path.isfile(os.path.join(top, p["docfile"])): err(f"provides.{ext}.docfile {p['docfile']} does not exist")
pr = meta.get("prereqs", {})
if not isinstance(pr, dict): err("prereqs: object")
else:
    for phase, rels in pr.items():
        if phase not in ("configure", "build", "test", "runtime", "develop"): err(f"prereqs: unknown phase {phase!r}")
        if not isinstance(rels, dict): err(f"prereqs.{phase}: object"); continue
        for rel, deps in rels.items():
            if rel not in ("requires", "recommends", "suggests", "conflicts"): err(f"prereqs.{phase}: unknown relationship {rel!r}")
            if not isinstance(deps, dict): err(f"prereqs.{phase}.{rel}: object"); continue
            for name, rng in deps.items():
                if not (isinstance(rng, (str, int)) and all(vrange.match(part) for part in str(rng).split(","))):
                    err(f"prereqs.{phase}.{rel}.{name}: bad version range {rng!r}")
pg = pr.get("runtime", {}).get("requires", {}).get("PostgreSQL") if isinstance(pr, dict) else None
# build.rs accepts majors 15 to 19.
if pg is None or not re.match(r"^\s*>=\s*15\.0\.0\s*,\s*<\s*20\.0\.0\s*$", str(pg)):
    err(f"prereqs.runtime.requires.PostgreSQL should be >= 15.0.0, < 20.0.0, is {pg!r}")
if "release_status" in meta and meta["release_status"] not in ("stable", "testing", "unstable"):
    err("release_status: stable, testing or unstable")
if "tags" in meta and not (isinstance(meta["tags"], list) and all(is_str(t) and len(t) < 256 for t in meta["tags"])):
    err("tags: list of strings shorter than 256 characters")
if "no_index" in meta:
    ni = meta["no_index"]
    if not (isinstance(ni, dict) and set(ni) <= {"file", "directory"}): err("no_index: object with file/directory")
if "resources" in meta and not isinstance(meta["resources"], dict):
    err("resources: object")
allowed = {"name", "abstract", "description", "version", "maintainer", "license", "provides", "prereqs",
           "no_index", "release_status", "resources", "tags", "generated_by", "meta-spec"}
for k in meta:
    if k not in allowed and not k.lower().startswith("x_"):
        err(f"unknown top-level key {k!r} (custom keys start with x_)")

# The same version everywhere.
def grab(path, pattern):
    with open(os.path.join(top, path)) as f:
        m = re.search(pattern, f.read(), re.M)
    return m.group(1) if m else None
versions = {
    "META.json": meta.get("version"),
    "Cargo.toml": grab("Cargo.toml", r'^version\s*=\s*"([^"]+)"'),
    "debian/changelog": grab("debian/changelog", r"^\S+ \(([^)-]+)-[^)]*\)"),
    "rpm spec": grab("rpm/pg_exclusive_backup.spec", r"^Version:\s*(\S+)"),
}
if len(set(versions.values())) != 1:
    err(f"versions disagree: {versions}")
ctl = grab("pg_exclusive_backup.control", r"^default_version\s*=\s*'([^']+)'")
sql = meta.get("provides", {}).get("pg_exclusive_backup", {}).get("file", "")
if f"--{ctl}.sql" not in sql:
    err(f"provides file {sql} is not the script of default_version {ctl}")
if errors:
    print("META.json / versions: " + "\n  ".join([""] + errors), file=sys.stderr)
    sys.exit(1)
print(f"META.json valid; version {meta['version']} in {', '.join(versions)}; extension default_version {ctl}")
PY

step "debian/control up to date with debian/control.in and debian/pgversions"
# As dpkg-buildpackage's clean step checks (pgxs_debian_control.mk).
(cd "$tmp/src" && pg_buildext checkcontrol >"$tmp/checkcontrol.log" 2>&1) \
  || { cat "$tmp/checkcontrol.log"; fail "debian/control is stale: run 'pg_buildext updatecontrol' and commit it"; }
echo "debian/control: $(grep -c '^Package:' "$tmp/src/debian/control") binary package(s): $(sed -n 's/^Package: //p' "$tmp/src/debian/control" | tr '\n' ' ')"

step "make dist"
make -s -C "$tmp/src" USE_PGXS=1 PG_CONFIG="$PG_CONFIG" dist
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$tmp/src/Cargo.toml" | head -n 1)
dist=$tmp/src/$ext-$version.tar.gz
[ -f "$dist" ] || fail "make dist did not write $dist"
cp "$dist" "$tmp/"
dist=$tmp/$ext-$version.tar.gz
echo "$(basename "$dist"): $(du -h "$dist" | cut -f1), $(stat -c %s "$dist") bytes, $(tar -tzf "$dist" | grep -vc '/$') files ($(tar -tzf "$dist" | grep -c "^$ext-$version/vendor/.*[^/]$") in vendor/), $(tar -tzf "$dist" | grep -c "^$ext-$version/vendor/[^/]*/$") vendored crates"
echo "contents outside vendor/:"
tar -tvzf "$dist" | grep -v "/vendor/." | grep -v '/$' | awk '{printf "  %8s  %s\n", $3, $6}'
for f in META.json Cargo.lock Makefile .cargo/config.toml debian/control rpm/$ext.spec vendor/libc/Cargo.toml; do
  tar -tzf "$dist" "$ext-$version/$f" >/dev/null 2>&1 || fail "$f missing from the release archive"
done

step "offline build of the release archive, from clean ($nonet_how)"
mkdir -p "$tmp/offline" "$tmp/empty-cargo-home"
tar -xzf "$dist" -C "$tmp/offline"
off=$tmp/offline/$ext-$version
start=$(date +%s.%N)
nonet env CARGO_HOME="$tmp/empty-cargo-home" CARGO_NET_OFFLINE=true \
  make -C "$off" USE_PGXS=1 PG_CONFIG="$PG_CONFIG" >"$tmp/offline-build.log" 2>&1 \
  || { tail -n 30 "$tmp/offline-build.log"; fail "offline build of the release archive failed"; }
offline_time=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $start))")
grep -q -- '--offline' "$tmp/offline-build.log" || fail "cargo did not run with --offline"
[ -z "$(ls -A "$tmp/empty-cargo-home/registry" 2>/dev/null)" ] || fail "the offline build used a registry"
echo "offline build from clean: ${offline_time} s ($(grep -c 'Compiling' "$tmp/offline-build.log") crates compiled)"
make -s -C "$off" USE_PGXS=1 PG_CONFIG="$PG_CONFIG" install DESTDIR="$tmp/destdir" >/dev/null
(cd "$tmp/destdir" && find . -type f -printf '/%P\n' | sort) >"$tmp/destdir.list"
echo "make install DESTDIR=... installs:"
(cd "$tmp/destdir" && find . -type f -printf '  %10s  /%P\n' | sort -k2)

step "Debian package (dpkg-buildpackage -b, from the release archive, offline)"
mkdir -p "$tmp/deb"
tar -xzf "$dist" -C "$tmp/deb"
ln -s "../$(basename "$dist")" "$tmp/deb/pg-exclusive-backup_$version.orig.tar.gz"
debsrc=$tmp/deb/$ext-$version
(cd "$debsrc" && nonet dpkg-buildpackage -us -uc -b -Ppkg.pg-exclusive-backup.rustup) \
  >"$tmp/deb-build.log" 2>&1 || { tail -n 60 "$tmp/deb-build.log"; fail "dpkg-buildpackage failed"; }
grep -q 'All [0-9]* tests passed' "$tmp/deb-build.log" || fail "the build-time pg_regress run (dh_pgxs_test) did not pass"
echo "build-time pg_regress (dh_pgxs_test): $(grep -o 'All [0-9]* tests passed' "$tmp/deb-build.log" | head -n 1)"
debs=("$tmp/deb/"*.deb)
for d in "${debs[@]}"; do
  echo "$(basename "$d"): $(du -h "$d" | cut -f1), $(stat -c %s "$d") bytes"
  dpkg-deb -c "$d" | grep -v '/$' | awk '{printf "  %8s  %s\n", $3, substr($6, 2)}'
done
deb=$tmp/deb/${debpkg}_${version}-1_$(dpkg --print-architecture).deb
[ -f "$deb" ] || fail "no $(basename "$deb")"
dpkg-deb -f "$deb" Depends | sed 's/^/  Depends: /'
# The .deb installs what make install installs (plus /usr/share/doc).
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print substr($6, 2)}' | grep -v '^/usr/share/doc/' | sort >"$tmp/deb.list"
diff -u "$tmp/destdir.list" "$tmp/deb.list" || fail "the .deb's files differ from make install"

step "install the .deb"
touched=1
deb_installed=1
apt-get install -y -qq "$deb" >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; fail "apt-get install failed"; }
dpkg -s "$debpkg" | grep -E '^(Status|Version):'
dpkg -V "$debpkg" || fail "the installed files are not the package's"
dpkg -L "$debpkg" | grep -E "$ext(\.so|\.control|--.*\.sql)$"
# The test build's probes (cargo feature test-hooks) must not be packaged.
so=$(dpkg -L "$debpkg" | grep -E "/$ext\.so$" | head -n 1)
if nm -D --defined-only "$so" | grep -q peb_test_holdoff_survives_error; then
  fail "the packaged $so was built with the test-hooks feature"
fi
echo "no test hooks in $so"

step "CREATE EXTENSION against the installed package"
create_extension_check

step "pg_regress against the installed package (autopkgtest debian/tests/installcheck)"
# A fresh, unbuilt source tree, as autopkgtest provides; the test builds nothing.
mkdir -p "$tmp/autopkgtest"
tar -xzf "$dist" -C "$tmp/autopkgtest"
apt_src=$tmp/autopkgtest/$ext-$version
(cd "$apt_src" && debian/tests/installcheck) >"$tmp/autopkgtest.log" 2>&1 \
  || { cat "$tmp/autopkgtest.log"; fail "autopkgtest installcheck failed against the installed package"; }
grep -E '^(test |ok |not ok |# All| All [0-9]+ tests)' "$tmp/autopkgtest.log" | sed 's/^/  /'
grep -q 'All [0-9]* tests passed' "$tmp/autopkgtest.log" || fail "pg_regress did not report success"
[ ! -e "$apt_src/target" ] || fail "the autopkgtest built something"

step "remove the .deb; the make-installed extension again"
restore_system_install
dpkg -s "$debpkg" >/dev/null 2>&1 && fail "$debpkg still installed"
create_extension_check

step "RPM (rpmbuild -bb --nodeps, from the release archive)"
rpmtop=$tmp/rpmbuild
mkdir -p "$rpmtop/SOURCES"
cp "$dist" "$rpmtop/SOURCES/"
rpmbuild -bb --nodeps --define "_topdir $rpmtop" \
  --define "pgmajorversion $major" --define "pg_config $PG_CONFIG" \
  "$tmp/src/rpm/$ext.spec" >"$tmp/rpm-build.log" 2>&1 \
  || { tail -n 40 "$tmp/rpm-build.log"; fail "rpmbuild failed"; }
rpms=("$rpmtop"/RPMS/*/*.rpm)
for r in "${rpms[@]}"; do
  echo "$(basename "$r"): $(du -h "$r" | cut -f1), $(stat -c %s "$r") bytes"
  rpm -qp --qf '[%{FILESIZES} %{FILENAMES}\n]' "$r" | awk '{printf "  %8s  %s\n", $1, $2}'
done
rpmfile=$(ls "$rpmtop"/RPMS/*/"${ext}_$major-$version"-*.rpm)
rpm -qp --qf '  Name: %{NAME}  Version: %{VERSION}-%{RELEASE}  License: %{LICENSE}\n' "$rpmfile"
rpm -qp --requires "$rpmfile" | grep -i postgres | sed 's/^/  Requires: /'
# Files minus %license and %doc ones (rpm's flags "l", "d") against make
# install DESTDIR.
rpm -qp --qf '[%{FILEFLAGS:fflags}|%{FILEMODES:perms}|%{FILENAMES}\n]' "$rpmfile" >"$tmp/rpm.files"
awk -F'|' '$1 !~ /[ld]/ && $2 !~ /^d/ {print $3}' "$tmp/rpm.files" | sort >"$tmp/rpm.list"
awk -F'|' '$1 ~ /[ld]/ && $2 !~ /^d/ {print "  %license/%doc, not from make install: " $3}' "$tmp/rpm.files"
diff -u "$tmp/destdir.list" "$tmp/rpm.list" || fail "the RPM's file list differs from make install DESTDIR"
echo "RPM file list = make install DESTDIR file list ($(wc -l <"$tmp/rpm.list") files)"

step "summary"
echo "release archive:        $(basename "$dist") ($(du -h "$dist" | cut -f1))"
echo "offline build:          ${offline_time} s from clean ($nonet_how)"
for d in "${debs[@]}" "${rpms[@]}"; do
  echo "package:                $(basename "$d") ($(du -h "$d" | cut -f1))"
done
echo "installed .deb:         CREATE EXTENSION ok, pg_regress ok; removed again"
echo "system extension:       $([ "$had_install" ] && echo restored || echo installed by make install) in $pkglibdir"
echo "package-check: all checks passed"
