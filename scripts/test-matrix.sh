#!/usr/bin/env bash
# The SQL suites (tests/, with the upgrade from every earlier release) on every
# supported PostgreSQL version, one after the other, then the pg_upgrade test
# from the oldest supported version to the newest; prints how long each took.
#
#   bash scripts/test-matrix.sh            # 14 15 16 17 18 (scripts/pg-versions.sh)
#   bash scripts/test-matrix.sh 16 18      # only these
#
# 15 is Debian's /usr/lib/postgresql/15 unless API_AUTH_PG_WHEEL=1 (then the
# private build of 15, leaving the system's untouched). Ports: API_AUTH_TEST_PGPORT
# (default 25430) + the major version - 14.
# API_AUTH_MATRIX_PACKAGES=1 also builds each version's Debian package (release
# builds: minutes per version) and tests it (scripts/package-test.sh; for 15
# that is the dpkg test against Debian's 15, unless API_AUTH_PG_WHEEL=1).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/pg-versions.sh

majors=${*:-$API_AUTH_PG_MAJORS}
base=${API_AUTH_TEST_PGPORT:-25430}
summary=()
status=0
for major in $majors; do
  start=$(date +%s)
  if API_AUTH_PG=$major API_AUTH_TEST_PGPORT=$((base + major - 14)) bash scripts/test.sh; then r=ok; else r=FAILED; status=1; fi
  summary+=("PostgreSQL $major: SQL suites $r in $(( $(date +%s) - start ))s")
done
oldest=${majors%% *} newest=${majors##* }
if [ "$oldest" != "$newest" ]; then
  start=$(date +%s)
  # Both sides have the extension from the runs above.
  if API_AUTH_SKIP_INSTALL=1 API_AUTH_UPGRADE_PORT=$((base + 10)) bash scripts/pg-upgrade-test.sh "$oldest" "$newest"; then r=ok; else r=FAILED; status=1; fi
  summary+=("pg_upgrade $oldest -> $newest: $r in $(( $(date +%s) - start ))s")
fi
if [ "${API_AUTH_MATRIX_PACKAGES:-0}" = 1 ]; then
  for major in $majors; do
    start=$(date +%s)
    # With API_AUTH_PG_WHEEL=1, 15 gets the contents test too, leaving Debian's 15 alone.
    contents=0
    [ "$major" != 15 ] || [ "${API_AUTH_PG_WHEEL:-0}" != 1 ] || contents=1
    if API_AUTH_PACKAGE_CONTENTS=$contents API_AUTH_PACKAGE_PGPORT=$((base + 20 + major - 14)) \
      bash scripts/package-test.sh "$major"; then r=ok; else r=FAILED; status=1; fi
    summary+=("postgresql-$major-api-auth package: $r in $(( $(date +%s) - start ))s")
  done
fi
printf '%s\n' "== matrix" "${summary[@]}"
exit "$status"
