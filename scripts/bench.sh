#!/usr/bin/env bash
# api_auth benchmarks (issue 5): one command that builds in release mode,
# starts a private PostgreSQL 15 cluster, loads data, runs the pgbench
# comparisons, the scale runs, the HTTP load against the shim and the Node
# reference, the memory runs, and prints one table.
#
#   bash scripts/bench.sh           # full run (1k/100k/1M environments; ~30-40 min on 2 cores)
#   bash scripts/bench.sh --smoke   # tiny data set, a minute or two (what CI runs)
#   bash scripts/bench.sh --http-only   # only the HTTP figures (shim, Node reference,
#                                       # metrics on vs --no-metrics) at the full base point;
#                                       # writes bench/results/http/ (not committed)
#   bash scripts/bench.sh --replicas-only [--smoke]   # only the read-replica section
#   bash scripts/bench.sh --cache-only [--smoke]      # only the answer-cache section
#                                       # (bench/results/cache/cache.json, cache.txt)
#
# The read-replica section (after the rest; API_AUTH_BENCH_REPLICAS=0 skips it)
# starts a streaming hot standby of the bench cluster (pg_basebackup -R) and
# compares a shim reading from it with a shim on the primary alone: verify
# throughput ratio, share of lookups run by the standby, revocation delay
# (bench/results/replicas.json; for a smoke run bench/results/smoke/).
#
# Writes bench/results/latest.json, latest.txt (the table) and scale.svg (a smoke run:
# bench/results/smoke/, not committed). Benchmarks are
# programs, not tests: nothing here fails on a slow figure, only on an error.
#
# Settings (environment):
#   API_AUTH_BENCH_HOME   folder for the cluster, the private PostgreSQL tree
#                         and logs (default /var/tmp/api_auth-bench)
#   API_AUTH_BENCH_PGPORT cluster port (default 25470); the shim and the Node
#                         reference listen on API_AUTH_BENCH_SHIM_PORT (25471)
#                         and API_AUTH_BENCH_NODE_PORT (25472), the shim started
#                         with --no-metrics on API_AUTH_BENCH_SHIM_BARE_PORT
#                         (25473), loopback only
#   API_AUTH_BENCH_RUNS / API_AUTH_BENCH_SECS  override runs per figure and
#                         seconds per run (quick looks)
#   API_AUTH_BENCH_KEEP=1 leave the cluster running afterwards (for profiling)
#   API_AUTH_BENCH_AUTOGROUP=keep  leave the kernel's scheduler autogroups as they
#                         are (by default a root run turns them off for the run;
#                         see below and README "Sharing a host with PostgreSQL")
#   API_AUTH_BENCH_STANDBY_PGPORT standby port (default: cluster port + 6);
#                         API_AUTH_BENCH_REPLICA_SHIM_PORT its shim (cluster port + 7;
#                         + 10 for the same with the answer cache, for its revocation figure)
#   API_AUTH_BENCH_CACHE_SHIM_PORT the answer-cache section's three shims (cluster
#                         port + 8, + 9, + 10); API_AUTH_BENCH_CACHE=0 skips that section
#
# The extension is not installed into the system PostgreSQL: `cargo pgrx
# package` builds the release .so and the bench runs it from a private copy
# of PostgreSQL's install tree, so a debug build installed meanwhile by a test
# run cannot end up in the figures (and the bench never overwrites it).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
MODE=full
REPLICAS_ONLY=0
CACHE_ONLY=0
HTTP_ONLY=0
for a in "$@"; do
  case "$a" in
    --smoke) MODE=smoke ;;
    --replicas-only) REPLICAS_ONLY=1 ;;
    --cache-only) CACHE_ONLY=1 ;;
    --http-only) HTTP_ONLY=1 ;;
    -h|--help) sed -n '2,49p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--smoke] [--http-only | --replicas-only | --cache-only]" >&2; exit 2 ;;
  esac
done

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
HOME_DIR=${API_AUTH_BENCH_HOME:-/var/tmp/api_auth-bench}
PORT=${API_AUTH_BENCH_PGPORT:-25470}
DB=api_auth_bench
ROOT=$HOME_DIR/pgroot
PKG=$HOME_DIR/pkg
DATA=$HOME_DIR/pgdata
RUN=$HOME_DIR/run
WORK=$HOME_DIR/work
PGBIN=$ROOT/usr/lib/postgresql/15/bin

log() { printf '[bench.sh] %s\n' "$*" >&2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

bash scripts/setup.sh

log "building release: extension (cargo pgrx package), shim and bench"
mkdir -p "$HOME_DIR"
rm -rf "$PKG"
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$PKG" >"$HOME_DIR/package.log" 2>&1 || {
  tail -40 "$HOME_DIR/package.log" >&2; exit 1; }
cargo build --release --quiet -p api_auth_shim -p api_auth_bench
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-$REPO/target}

SB_PORT=${API_AUTH_BENCH_STANDBY_PGPORT:-$((PORT + 6))}
SB_HOME=$HOME_DIR/standby
SB_DATA=$SB_HOME/pgdata
SB_RUN=$SB_HOME/run

stop_standby() {
  if [ -s "$SB_DATA/PG_VERSION" ] && [ -x "$PGBIN/pg_ctl" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$SB_DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

stop_cluster() {
  stop_standby
  if [ -s "$DATA/PG_VERSION" ] && [ -x "$PGBIN/pg_ctl" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# The kernel's autogroups (kernel.sched_autogroup_enabled=1, a desktop default
# that this kind of VM ships with) give every session's processes a CPU group
# of their own. Here that is PostgreSQL (pg_ctl starts it in a session of its
# own) in one group and the load generator with the shims in another. When the
# load saturates the cores, the low-weight PostgreSQL group then waits for a
# core for tens of milliseconds at a time (perf sched: 24-47 ms for a backend
# woken by a query), which puts a load generator that exists only because the
# bench has one machine into every figure that reads the database: revocation
# delays of 4.8-41 ms at p99 with autogroups, 2.4-6.5 ms without (README
# "Performance"). Servers schedule flat (autogroups apply only to processes in
# the root cgroup; services under systemd are not), so the bench turns them
# off for its run and puts the setting back on exit. API_AUTH_BENCH_AUTOGROUP=keep
# leaves the machine as it is (to see the difference). Either way the setting
# measured under is in the results ("machine": {"sched_autogroup": ...}).
AUTOGROUP_SYSCTL=/proc/sys/kernel/sched_autogroup_enabled
AUTOGROUP_WAS=$(cat "$AUTOGROUP_SYSCTL" 2>/dev/null || echo none)
restore_autogroup() {
  if [ "$AUTOGROUP_WAS" != none ] && [ "$(cat "$AUTOGROUP_SYSCTL")" != "$AUTOGROUP_WAS" ]; then
    echo "$AUTOGROUP_WAS" >"$AUTOGROUP_SYSCTL" || log "could not restore $AUTOGROUP_SYSCTL to $AUTOGROUP_WAS"
  fi
}
if [ "${API_AUTH_BENCH_AUTOGROUP:-off}" = keep ]; then
  log "scheduler autogroups left as they are ($AUTOGROUP_SYSCTL: $AUTOGROUP_WAS)"
elif [ "$AUTOGROUP_WAS" = 1 ]; then
  if echo 0 2>/dev/null >"$AUTOGROUP_SYSCTL"; then
    trap restore_autogroup EXIT
    log "scheduler autogroups off for this run (put back on exit)"
  else
    log "scheduler autogroups are on and cannot be turned off (not root?): figures that read the database will show it"
  fi
fi

# A private PostgreSQL tree: the system's binaries, libraries (pgcrypto
# included) and share folder, plus the freshly packaged release extension.
# PostgreSQL finds lib/ and share/ relative to its binary.
stop_cluster
rm -rf "$ROOT" "$DATA" "$RUN" "$WORK" "$SB_HOME"
mkdir -p "$ROOT/usr/lib/postgresql/15/lib" "$ROOT/usr/share/postgresql" "$RUN" "$WORK"
cp -a /usr/lib/postgresql/15/bin "$ROOT/usr/lib/postgresql/15/"
find /usr/lib/postgresql/15/lib -maxdepth 1 -type f -name '*.so' ! -name 'api_auth*' \
  -exec cp -a {} "$ROOT/usr/lib/postgresql/15/lib/" \;
cp -a /usr/lib/postgresql/15/lib/llvmjit_types.bc "$ROOT/usr/lib/postgresql/15/lib/" 2>/dev/null || true
cp -a /usr/share/postgresql/15 "$ROOT/usr/share/postgresql/"
rm -f "$ROOT"/usr/share/postgresql/15/extension/api_auth*
cp -a "$PKG"/usr/lib/postgresql/15/lib/api_auth.so "$ROOT/usr/lib/postgresql/15/lib/"
cp -a "$PKG"/usr/share/postgresql/15/extension/api_auth* "$ROOT/usr/share/postgresql/15/extension/"
chmod 755 "$HOME_DIR"
if [ "$(id -u)" = 0 ]; then chown postgres: "$HOME_DIR" "$RUN"; fi

# A fresh throwaway cluster every run (fsync off: nothing here is kept).
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat <<EOC | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
checkpoint_timeout = 30min
jit = off
EOC
if [ "${API_AUTH_BENCH_KEEP:-0}" != 1 ]; then trap 'stop_cluster; restore_autogroup' EXIT; else trap restore_autogroup EXIT; fi
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$HOME_DIR/postgres.log" -w -t 60 start >/dev/null
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U postgres -d postgres -c "CREATE DATABASE $DB"
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U postgres -d "$DB" -c "CREATE EXTENSION api_auth"
log "cluster up on port $PORT ($DATA), extension $("$PGBIN/psql" -X -At -h "$RUN" -p "$PORT" -U postgres -d "$DB" \
  -c "SELECT extversion FROM pg_extension WHERE extname = 'api_auth'") from $PKG"

# The Node reference server's dependencies (pg, jose), pinned by its lock file.
NODE_DIR=$REPO/bench/baselines/node
if [ ! -d "$NODE_DIR/node_modules/pg" ] || [ ! -d "$NODE_DIR/node_modules/jose" ] \
   || [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
  log "npm ci in bench/baselines/node"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

export API_AUTH_BENCH_DIR=$REPO/bench
# A smoke or HTTP-only run must not overwrite the committed figures of a full run.
if [ "$MODE" = smoke ]; then export API_AUTH_BENCH_OUT=$REPO/bench/results/smoke
elif [ "$HTTP_ONLY" = 1 ]; then export API_AUTH_BENCH_OUT=$REPO/bench/results/http
else export API_AUTH_BENCH_OUT=$REPO/bench/results; fi
export API_AUTH_BENCH_WORK=$WORK
export API_AUTH_BENCH_PGBIN=$PGBIN
export API_AUTH_BENCH_PGHOST=$RUN
export API_AUTH_BENCH_PGPORT=$PORT
export API_AUTH_BENCH_DB=$DB
export API_AUTH_BENCH_SHIM=$TARGET_DIR/release/api-auth-shim
export API_AUTH_BENCH_NODE_DIR=$NODE_DIR
export API_AUTH_BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export API_AUTH_BENCH_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ARGS=(run)
SMOKE=()
if [ "$MODE" = smoke ]; then ARGS+=(--smoke); SMOKE=(--smoke); fi
if [ "$HTTP_ONLY" = 1 ]; then ARGS+=(--http-only); fi
: >"$WORK/table.txt"
if [ "$REPLICAS_ONLY" = 0 ] && [ "$CACHE_ONLY" = 0 ]; then
  "$TARGET_DIR/release/api_auth_bench" "${ARGS[@]}" | tee "$WORK/table.txt"
fi

# The answer-cache section (issue 14): caching shim vs /healthz and vs the
# uncached shim, revocation delay, a killed listener.
if [ "${API_AUTH_BENCH_CACHE:-1}" != 0 ] && [ "$HTTP_ONLY" = 0 ] && [ "$REPLICAS_ONLY" = 0 ]; then
  [ "$CACHE_ONLY" = 1 ] && [ "$MODE" != smoke ] && API_AUTH_BENCH_OUT=$REPO/bench/results/cache && mkdir -p "$API_AUTH_BENCH_OUT"
  export API_AUTH_BENCH_CACHE_SHIM_PORT=${API_AUTH_BENCH_CACHE_SHIM_PORT:-$((PORT + 8))}
  "$TARGET_DIR/release/api_auth_bench" cache "${SMOKE[@]}" | tee -a "$WORK/table.txt"
fi

# The read-replica section: a streaming standby of the bench cluster, from the
# same private binaries, started only now so that it costs the other figures
# nothing.
if [ "${API_AUTH_BENCH_REPLICAS:-1}" != 0 ] && [ "$HTTP_ONLY" = 0 ] && [ "$CACHE_ONLY" = 0 ]; then
  log "read replicas: pg_basebackup -R to $SB_DATA, standby on port $SB_PORT"
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U postgres -d "$DB" \
    -c "ALTER SYSTEM SET track_functions = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
  mkdir -p "$SB_HOME" "$SB_RUN"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$SB_HOME" "$SB_RUN"; fi
  as_pg "$PGBIN/pg_basebackup" -h "$RUN" -p "$PORT" -U postgres -D "$SB_DATA" -R -X stream -c fast
  printf "port = %s\nunix_socket_directories = '%s'\nhot_standby = on\n" "$SB_PORT" "$SB_RUN" |
    as_pg tee -a "$SB_DATA/postgresql.conf" >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$SB_DATA" -l "$SB_HOME/postgres.log" -w -t 120 start >/dev/null
  export API_AUTH_BENCH_STANDBY_PGPORT=$SB_PORT
  export API_AUTH_BENCH_REPLICA_SHIM_PORT=${API_AUTH_BENCH_REPLICA_SHIM_PORT:-$((PORT + 7))}
  "$TARGET_DIR/release/api_auth_bench" replicas "${SMOKE[@]}" | tee -a "$WORK/table.txt"
  stop_standby
fi
# The printed table beside the raw numbers, as committed for a full run.
if [ "$CACHE_ONLY" = 1 ]; then
  cp "$WORK/table.txt" "$API_AUTH_BENCH_OUT/cache.txt"
elif [ "$REPLICAS_ONLY" = 0 ]; then
  cp "$WORK/table.txt" "$API_AUTH_BENCH_OUT/latest.txt"
else
  cp "$WORK/table.txt" "$API_AUTH_BENCH_OUT/replicas.txt"
fi
