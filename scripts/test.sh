#!/usr/bin/env bash
# Runs every test of api_auth on this machine, installing what is missing:
# the formatting check, unit tests of the pure crates, then the SQL suites and
# the shim's HTTP suites
# against a throwaway private PostgreSQL 15 cluster with the extension installed,
# then the start.sh least-privilege check, a fuzz smoke run (API_AUTH_FUZZ_SECONDS
# per target, default 45, 0 skips) and the benchmark command in smoke mode
# (API_AUTH_BENCH_SMOKE=0 skips); then the other PostgreSQL versions
# (API_AUTH_OTHER_PG=0 skips these three): the SQL suites on the newest
# supported version (18), pg_upgrade from 15 to 18 (scripts/pg-upgrade-test.sh)
# and the Debian package of 15 installed with dpkg (scripts/package-test.sh;
# API_AUTH_PACKAGE_TEST=0 skips it).
#
#   API_AUTH_PG=17 bash scripts/test.sh   # only the SQL suites (tests/), on PostgreSQL 17
#   bash scripts/test-matrix.sh           # the SQL suites on every supported version
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg-versions.sh

bash scripts/setup.sh

# The SQL suites (the api_auth_tests package) against a private cluster of
# PostgreSQL $1 with the extension installed; port $2. A failure is noted with `failed`.
sql_suites() {
  local major=$1 port=$2 prefix home log counts
  prefix=$(bash scripts/pg.sh "$major")
  echo "== PostgreSQL $major ($prefix): cargo pgrx install"
  bash scripts/install-ext.sh "$major"
  home=$(mktemp -d "/var/tmp/api_auth-test$major.XXXXXX")
  echo "== PostgreSQL $major: starting a private test cluster on port $port"
  API_AUTH_PG=$major API_AUTH_HOME=$home API_AUTH_PGPORT=$port API_AUTH_FAST=1 bash scripts/cluster.sh start
  log=$home/cargo-test.log
  echo "== PostgreSQL $major: cargo test -p api_auth_tests (the SQL suites)"
  set +e
  API_AUTH_PG=$major API_AUTH_PG_BINDIR=$prefix/bin \
  API_AUTH_TEST_DSN="host=$home/run port=$port user=postgres dbname=postgres" \
    cargo test -p api_auth_tests --no-fail-fast 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" = 0 ] || failed "PostgreSQL $major SQL suites" "$log"
  counts=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" |
    awk '{p+=$4; f+=$6} END {print p+0, f+0}')
  echo "PostgreSQL $major SQL suites: ${counts% *} passed, ${counts#* } failed"
  API_AUTH_PG=$major API_AUTH_HOME=$home API_AUTH_PGPORT=$port bash scripts/cluster.sh stop
  rm -rf "$home"
}

# What failed, said again at the very end: a CI log may show only its tail.
status=0
failures=()
# failed STEP [CARGO_TEST_LOG]: STEP failed (with the names of the tests that
# failed, from the log).
failed() {
  status=1
  local tests=""
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    tests=$(grep -E '^test .* FAILED$' "$2" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' | sort -u | paste -sd ' ' -)
  fi
  failures+=("$1${tests:+: $tests}")
}
summary() {
  if [ "$status" = 0 ]; then
    echo "== all passed"
  else
    echo "== FAILED:"
    printf '   %s\n' "${failures[@]}"
  fi
}
if [ -n "${API_AUTH_PG:-}" ]; then
  port=${API_AUTH_TEST_PGPORT:-$((25420 + API_AUTH_PG))}
  sql_suites "$API_AUTH_PG" "$port"
  summary
  exit "$status"
fi

# Formatting: the tree (the fuzz crate too) is kept in rustfmt's form under
# rustfmt.toml. Checked when rustfmt is installed (rustup's default profile has it).
if cargo fmt --version >/dev/null 2>&1; then
  echo "== cargo fmt --check"
  if ! fmt_diff=$({ cargo fmt --all -- --check --color never &&
    cargo fmt --all --manifest-path fuzz/Cargo.toml -- --check --color never; } 2>&1); then
    printf '%s\n' "${fmt_diff:0:6000}"
    failed "formatting (fix: cargo fmt --all; cargo fmt --all --manifest-path fuzz/Cargo.toml)"
  fi
else
  echo "== cargo fmt --check skipped: rustfmt is not installed"
fi

# Fetch the newest version now: registering it with pgrx changes pgrx's
# config.toml, which would rebuild every pgrx binding made before.
[ "${API_AUTH_OTHER_PG:-1}" = 0 ] || bash scripts/pg.sh "$API_AUTH_PG_NEWEST" >/dev/null

echo "== cargo pgrx install (debug build of the extension)"
bash scripts/install-ext.sh 15

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
[ "${PIPESTATUS[0]}" = 0 ] || failed "cargo test" "$API_AUTH_HOME/cargo-test.log"
set -e
counts=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$API_AUTH_HOME/cargo-test.log" |
  awk '{p+=$4; f+=$6} END {print p+0, f+0}')
echo "tests: ${counts% *} passed, ${counts#* } failed"

# scripts/start.sh runs the shim as its two least-privilege roles, not as a superuser,
# with a streaming standby serving the authentication reads (API_AUTH_REPLICAS=1).
echo "== start.sh least privilege and replica topology"
API_AUTH_CHECK_PGPORT=$((API_AUTH_PGPORT + 53)) API_AUTH_CHECK_LISTEN_PORT=$((API_AUTH_PGPORT + 58)) \
  bash scripts/check-start.sh || failed "start.sh check (scripts/check-start.sh)"

# Fuzz smoke of the token and scope code (no PostgreSQL involved):
# API_AUTH_FUZZ_SECONDS per target, 0 to skip.
fuzz_seconds=${API_AUTH_FUZZ_SECONDS:-45}
if [ "$fuzz_seconds" != 0 ]; then
  echo "== fuzz smoke: ${fuzz_seconds}s per target"
  bash scripts/fuzz.sh "$fuzz_seconds" || failed "fuzz smoke"
fi
# The benchmark command in smoke mode (tiny data; checks it runs, asserts no speed):
# API_AUTH_BENCH_SMOKE=0 skips it.
if [ "${API_AUTH_BENCH_SMOKE:-1}" != 0 ]; then
  echo "== bench smoke"
  API_AUTH_BENCH_HOME="$API_AUTH_HOME/bench" API_AUTH_BENCH_PGPORT=$((API_AUTH_PGPORT + 50)) \
  API_AUTH_BENCH_SHIM_PORT=$((API_AUTH_PGPORT + 51)) API_AUTH_BENCH_NODE_PORT=$((API_AUTH_PGPORT + 52)) \
  API_AUTH_BENCH_SHIM_BARE_PORT=$((API_AUTH_PGPORT + 55)) API_AUTH_BENCH_CACHE_SHIM_PORT=$((API_AUTH_PGPORT + 61)) \
    bash scripts/bench.sh --smoke || failed "bench smoke"
fi

# The other PostgreSQL versions: the SQL suites on the newest, pg_upgrade from
# 15 (the extension installed above) to it, and the 15 package through dpkg.
# API_AUTH_OTHER_PG=0 skips them.
if [ "${API_AUTH_OTHER_PG:-1}" != 0 ]; then
  sql_suites "$API_AUTH_PG_NEWEST" $((API_AUTH_PGPORT + 40 + API_AUTH_PG_NEWEST - 14))
  # The old side is the vanilla 15 build: Debian's 15 on these machines writes a
  # non-standard attribute option (pg_attver) on every column of every table,
  # which no vanilla newer server accepts, so pg_upgrade from it fails for any
  # database (api_auth or not).
  echo "== pg_upgrade 15 -> $API_AUTH_PG_NEWEST"
  API_AUTH_PG_WHEEL=1 API_AUTH_UPGRADE_PORT=$((API_AUTH_PGPORT + 70)) \
    bash scripts/pg-upgrade-test.sh 15 "$API_AUTH_PG_NEWEST" || failed "pg_upgrade 15 -> $API_AUTH_PG_NEWEST"
  # It installs into Debian's 15 with dpkg: API_AUTH_PACKAGE_TEST=0 skips it.
  if [ "${API_AUTH_PACKAGE_TEST:-1}" != 0 ]; then
    echo "== Debian package of PostgreSQL 15 (dpkg -i, CREATE EXTENSION, README session, dpkg -r)"
    bash scripts/package-test.sh 15 || failed "Debian package test"
    # Put back the development build the suites above ran against (package-test.sh removed it).
    bash scripts/install-ext.sh 15
  fi
fi
summary
exit "$status"
