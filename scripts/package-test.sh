#!/usr/bin/env bash
# The Debian package, tested with the real dpkg on this machine: builds
# postgresql-NN-api-auth (scripts/package.sh), removes what `cargo pgrx install`
# and scripts/install-ext.sh put into PostgreSQL NN, installs the package with
# dpkg -i, runs CREATE EXTENSION api_auth and the README's DBA session
# (tests/readme.rs) against a private cluster, then dpkg -r and checks that no
# file of the package is left.
#
#   bash scripts/package-test.sh [NN]     # default 15, the PostgreSQL Debian 12 ships
#
# When postgresql-NN is installed from Debian packages (15 here), this is the
# dpkg test, and it leaves PostgreSQL NN WITHOUT the extension: run
# scripts/install-ext.sh NN afterwards to put the development build back
# (scripts/test.sh does). For any other NN (no postgresql-NN package to depend
# on), it tests the package's files instead: unpacked with dpkg-deb into a copy
# of the private NN tree (scripts/pg.sh) at the places Debian's layout maps
# to, then CREATE EXTENSION and the README session against that tree.
# API_AUTH_PACKAGE_CONTENTS=1 makes it the contents test whatever is installed.
# API_AUTH_DEB=<file> tests that .deb instead of building.
# Port: API_AUTH_PACKAGE_PGPORT (default 25495).
set -euo pipefail
cd "$(dirname "$0")/.."

major=${1:-15}
pkg=postgresql-$major-api-auth
libdir=/usr/lib/postgresql/$major/lib
extdir=/usr/share/postgresql/$major/extension
port=${API_AUTH_PACKAGE_PGPORT:-25495}
# The cluster below must run Debian's NN, the one the package installs into.
export API_AUTH_PG_WHEEL=0
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
fail() { echo "package test: $*" >&2; exit 1; }
leftovers() { ls -d "$libdir"/api_auth* "$extdir"/api_auth* 2>/dev/null || true; }

deb=${API_AUTH_DEB:-}
if [ -z "$deb" ]; then
  echo "== building the package"
  deb=$(bash scripts/package.sh "$major" | tail -1)
fi
[ -f "$deb" ] || fail "no package file $deb"
echo "package: $deb"
dpkg-deb --field "$deb" Package Version Architecture Depends
# Nothing outside PostgreSQL NN's folders and the package's doc folder.
stray=$(dpkg-deb -c "$deb" | awk '{print $6}' | grep -v '/$' |
  grep -Ev "^\./usr/(lib/postgresql/$major/lib|share/postgresql/$major/extension|share/doc/$pkg)/[^/]+$" || true)
[ -z "$stray" ] || fail "files outside PostgreSQL $major's folders: $stray"

# The package's files in a copy of the private NN tree (no Debian postgresql-NN here).
contents_test() {
  # (global: the EXIT trap reads them after the function returns)
  work=$(mktemp -d /var/tmp/api_auth-package-test.XXXXXX)
  trap 'API_AUTH_HOME=$work/home API_AUTH_PGPORT=$port API_AUTH_PGBIN=$work/pg/bin bash scripts/cluster.sh stop; rm -rf "$work"' EXIT
  tree=$(API_AUTH_PG_WHEEL=1 bash scripts/pg.sh "$major")
  echo "== postgresql-$major is no Debian package here: the package's files in a copy of $tree"
  cp -a "$tree" "$work/pg"
  rm -f "$work/pg/lib"/api_auth* "$work/pg/share/extension"/api_auth*
  dpkg-deb -x "$deb" "$work/deb"
  cp "$work/deb$libdir"/api_auth* "$work/pg/lib/"
  cp "$work/deb$extdir"/api_auth* "$work/pg/share/extension/"
  chmod -R a+rX "$work"
  API_AUTH_HOME=$work/home API_AUTH_PGPORT=$port API_AUTH_PGBIN=$work/pg/bin API_AUTH_FAST=1 API_AUTH_DB=pkgtest \
    bash scripts/cluster.sh start
  "$work/pg/bin/psql" -X -q -At -h "$work/home/run" -p "$port" -U postgres -d pkgtest \
    -c "SELECT 'installed: api_auth ' || extversion FROM pg_extension WHERE extname = 'api_auth'"
  API_AUTH_PG_BINDIR=$work/pg/bin API_AUTH_TEST_DSN="host=$work/home/run port=$port user=postgres dbname=postgres" \
    cargo test -q -p api_auth_tests --test readme
  echo "package contents test passed: postgresql-$major-api-auth works in PostgreSQL $major"
}
if [ "${API_AUTH_PACKAGE_CONTENTS:-0}" = 1 ] ||
   ! dpkg-query -W -f='${Status}' "postgresql-$major" 2>/dev/null | grep -q 'install ok installed'; then
  contents_test
  exit 0
fi

echo "== removing the development build (cargo pgrx install) from PostgreSQL $major"
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$'; then as_root dpkg -r "$pkg" >/dev/null; fi
for f in $(leftovers); do
  if owner=$(dpkg -S "$f" 2>/dev/null); then fail "$f belongs to ${owner%%:*}"; fi
  as_root rm -f "$f"
done
[ -z "$(leftovers)" ] || fail "api_auth files remain: $(leftovers)"

home=$(mktemp -d /var/tmp/api_auth-package-test.XXXXXX)
stop() { API_AUTH_HOME=$home API_AUTH_PGPORT=$port API_AUTH_PG=$major bash scripts/cluster.sh stop; rm -rf "$home"; }
# On failure, stop the cluster and take the package out again.
trap 'stop; if dpkg-query -W -f="\${Status}" "$pkg" 2>/dev/null | grep -q " installed$"; then as_root dpkg -r "$pkg" >/dev/null; fi' EXIT
echo "== dpkg -i"
as_root dpkg -i "$deb"
dpkg-query -W -f='${Package} ${Version} ${Status}\n' "$pkg"
# Every api_auth file PostgreSQL sees now comes from the package.
for f in $(leftovers); do
  dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not from the package"
done
dpkg -L "$pkg" | grep -E "$libdir/api_auth.so$|$extdir/api_auth.control$" >/dev/null || fail "package lacks the .so or .control"

echo "== CREATE EXTENSION api_auth and the README's DBA session, on a private cluster (port $port)"
# cluster.sh start runs CREATE EXTENSION api_auth in its database.
API_AUTH_HOME=$home API_AUTH_PGPORT=$port API_AUTH_PG=$major API_AUTH_FAST=1 API_AUTH_DB=pkgtest bash scripts/cluster.sh start
"$libdir/../bin/psql" -X -q -At -h "$home/run" -p "$port" -U postgres -d pkgtest \
  -c "SELECT 'installed: api_auth ' || extversion FROM pg_extension WHERE extname = 'api_auth'"
API_AUTH_PG_BINDIR=/usr/lib/postgresql/$major/bin \
API_AUTH_TEST_DSN="host=$home/run port=$port user=postgres dbname=postgres" \
  cargo test -q -p api_auth_tests --test readme
stop
trap - EXIT

echo "== dpkg -r"
files=$(dpkg -L "$pkg" | while read -r f; do [ -f "$f" ] && echo "$f"; done)
as_root dpkg -r "$pkg"
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$'; then fail "$pkg still installed"; fi
for f in $files; do [ ! -e "$f" ] || fail "$f left behind by dpkg -r"; done
[ -z "$(leftovers)" ] || fail "api_auth files left behind: $(leftovers)"
echo "package test passed: $(echo "$files" | wc -l) files installed, all removed"
