#!/usr/bin/env bash
# Builds api_auth for one PostgreSQL major version and installs it there, with
# the frozen install scripts of earlier releases (sql/api_auth--X.Y.Z.sql) that
# the upgrade tests start from. Debug build unless API_AUTH_RELEASE=1.
#
#   scripts/install-ext.sh 15   # Debian's /usr/lib/postgresql/15 (sudo when not root)
#   scripts/install-ext.sh 18   # the private 18 tree of scripts/pg.sh
#   API_AUTH_PG_WHEEL=1 scripts/install-ext.sh 15   # the private 15 tree instead
#
# Prints nothing but errors; the build log is shown when the build fails.
set -euo pipefail
cd "$(dirname "$0")/.."

major=${1:?usage: scripts/install-ext.sh MAJOR}
prefix=$(bash scripts/pg.sh "$major")
pg_config=$prefix/bin/pg_config

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# Only Debian's tree belongs to root; the private trees are ours.
install_as() { if [ "$prefix" = /usr/lib/postgresql/"$major" ]; then as_root "$@"; else "$@"; fi; }

# (scripts/pg.sh has told pgrx where version NN's headers are.)
grep -qs "^pg$major *=" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" || {
  echo "pgrx does not know PostgreSQL $major: run scripts/setup.sh first" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# (cargo pgrx passes exactly these features for a 15 pg_config even when not
# asked to, so this is the same build as a plain `cargo pgrx install`.)
args=(--pg-config "$pg_config" --no-default-features --features "pg$major")
[ "${API_AUTH_RELEASE:-0}" = 1 ] && args+=(--release)
if [ "$prefix" = /usr/lib/postgresql/"$major" ] && [ "$(id -u)" != 0 ]; then args+=(--sudo); fi
if ! cargo pgrx install "${args[@]}" >"$log" 2>&1; then
  grep -v '^ *[0-9]*: \|^ *at ' "$log" | tail -40 >&2
  exit 1
fi

extdir=$("$pg_config" --sharedir)/extension
for old in sql/api_auth--[0-9]*.[0-9]*.[0-9]*.sql; do
  case "$old" in *--*--*) continue ;; esac
  install_as cp "$old" "$extdir/"
done
