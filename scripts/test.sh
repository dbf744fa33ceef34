#!/usr/bin/env bash
# Runs every test of api_auth on this machine, installing what is missing:
# unit tests of the pure crates, then the SQL suites and the shim's HTTP suites
# against a throwaway private PostgreSQL 15 cluster with the extension installed,
# then the start.sh least-privilege check, a fuzz smoke run (API_AUTH_FUZZ_SECONDS per target, default 45, 0 skips)
# and the benchmark command in smoke mode (API_AUTH_BENCH_SMOKE=0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo pgrx install (debug build of the extension)"
if [ "$(id -u)" = 0 ]; then
  cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null
else
  cargo pgrx install --sudo --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null
fi
# The frozen install scripts of earlier releases, for the upgrade tests.
extdir=$(/usr/lib/postgresql/15/bin/pg_config --sharedir)/extension
for old in sql/api_auth--[0-9]*.[0-9]*.[0-9]*.sql; do
  case "$old" in *--*--*) continue ;; esac
  if [ "$(id -u)" = 0 ]; then cp "$old" "$extdir/"; else sudo cp "$old" "$extdir/"; fi
done

export API_AUTH_HOME
API_AUTH_HOME=$(mktemp -d /var/tmp/api_auth-test.XXXXXX)
export API_AUTH_PGPORT=${API_AUTH_TEST_PGPORT:-25429}
export API_AUTH_FAST=1
cleanup() { bash scripts/cluster.sh stop; rm -rf "$API_AUTH_HOME"; }
trap cleanup EXIT
echo "== starting a private test cluster on port $API_AUTH_PGPORT"
bash scripts/cluster.sh start
export API_AUTH_TEST_DSN="host=$API_AUTH_HOME/run port=$API_AUTH_PGPORT user=postgres dbname=postgres"

echo "== cargo test (core, SQL suites, shim)"
set +e
cargo test --workspace --exclude api_auth --no-fail-fast 2>&1 | tee "$API_AUTH_HOME/cargo-test.log"
status=${PIPESTATUS[0]}
set -e
counts=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$API_AUTH_HOME/cargo-test.log" |
  awk '{p+=$4; f+=$6} END {print p+0, f+0}')
echo "tests: ${counts% *} passed, ${counts#* } failed"

# scripts/start.sh runs the shim as its two least-privilege roles, not as a superuser,
# with a streaming standby serving the authentication reads (API_AUTH_REPLICAS=1).
echo "== start.sh least privilege and replica topology"
API_AUTH_CHECK_PGPORT=$((API_AUTH_PGPORT + 53)) API_AUTH_CHECK_LISTEN_PORT=$((API_AUTH_PGPORT + 58)) \
  bash scripts/check-start.sh || status=1

# Fuzz smoke of the token and scope code (no PostgreSQL involved):
# API_AUTH_FUZZ_SECONDS per target, 0 to skip.
fuzz_seconds=${API_AUTH_FUZZ_SECONDS:-45}
if [ "$fuzz_seconds" != 0 ]; then
  echo "== fuzz smoke: ${fuzz_seconds}s per target"
  bash scripts/fuzz.sh "$fuzz_seconds" || status=1
fi
# The benchmark command in smoke mode (tiny data; checks it runs, asserts no speed):
# API_AUTH_BENCH_SMOKE=0 skips it.
if [ "${API_AUTH_BENCH_SMOKE:-1}" != 0 ]; then
  echo "== bench smoke"
  API_AUTH_BENCH_HOME="$API_AUTH_HOME/bench" API_AUTH_BENCH_PGPORT=$((API_AUTH_PGPORT + 50)) \
  API_AUTH_BENCH_SHIM_PORT=$((API_AUTH_PGPORT + 51)) API_AUTH_BENCH_NODE_PORT=$((API_AUTH_PGPORT + 52)) \
  API_AUTH_BENCH_SHIM_BARE_PORT=$((API_AUTH_PGPORT + 55)) API_AUTH_BENCH_CACHE_SHIM_PORT=$((API_AUTH_PGPORT + 61)) \
    bash scripts/bench.sh --smoke || status=1
fi
exit "$status"
