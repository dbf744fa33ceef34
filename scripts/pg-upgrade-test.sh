#!/usr/bin/env bash
# pg_upgrade of a cluster holding api_auth data from one major version to a
# newer one (tests/pg_upgrade.rs says what is checked). Default: Debian's 15,
# with the extension as scripts/test.sh installed it, to the newest supported
# version (18), into which this script installs the extension first.
#
#   scripts/pg-upgrade-test.sh [OLD [NEW]]       e.g. scripts/pg-upgrade-test.sh 15 17
#
# Settings: API_AUTH_UPGRADE_PORT (default 25490; uses it and the next),
# API_AUTH_UPGRADE_HOME (scratch folder, default a new /var/tmp/api_auth-upgrade.*),
# API_AUTH_PG_WHEEL=1 (the old 15 is the private wheel build, not Debian's),
# API_AUTH_SKIP_INSTALL=1 (both sides already have the extension installed).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg-versions.sh

old=${1:-15}
new=${2:-$API_AUTH_PG_NEWEST}
[ "$old" -lt "$new" ] || { echo "OLD ($old) must be older than NEW ($new)" >&2; exit 2; }
old_prefix=$(bash scripts/pg.sh "$old")
# The new side is always a private tree (Debian's 15 can only be an old side).
new_prefix=$(API_AUTH_PG_WHEEL=1 bash scripts/pg.sh "$new")

if [ "${API_AUTH_SKIP_INSTALL:-0}" != 1 ]; then
  echo "== installing the extension into PostgreSQL $new ($new_prefix)"
  API_AUTH_PG_WHEEL=1 bash scripts/install-ext.sh "$new"
  if [ "$old_prefix" != /usr/lib/postgresql/"$old" ]; then
    echo "== installing the extension into PostgreSQL $old ($old_prefix)"
    bash scripts/install-ext.sh "$old"
  fi
fi

home=${API_AUTH_UPGRADE_HOME:-$(mktemp -d /var/tmp/api_auth-upgrade.XXXXXX)}
stop_all() {
  for d in old new; do
    for p in "$old_prefix" "$new_prefix"; do
      if [ -s "$home/$d/postmaster.pid" ]; then
        if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$p/bin/pg_ctl" -D "$home/$d" -m immediate stop >/dev/null 2>&1 || true
        else "$p/bin/pg_ctl" -D "$home/$d" -m immediate stop >/dev/null 2>&1 || true; fi
      fi
    done
  done
  rm -rf "$home"
}
trap stop_all EXIT
echo "== pg_upgrade $old -> $new (tests/pg_upgrade.rs)"
API_AUTH_UPGRADE_OLD_BIN=$old_prefix/bin API_AUTH_UPGRADE_NEW_BIN=$new_prefix/bin \
API_AUTH_UPGRADE_HOME=$home API_AUTH_UPGRADE_PORT=${API_AUTH_UPGRADE_PORT:-25490} \
  cargo test -q -p api_auth_tests --test pg_upgrade -- --ignored --nocapture
