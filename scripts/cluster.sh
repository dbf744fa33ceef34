#!/usr/bin/env bash
# A private PostgreSQL cluster for api_auth: its own data folder, port and
# socket folder, no existing server needed. Works as root (the server runs as
# the `postgres` user) and as an ordinary user.
#
#   scripts/cluster.sh start   # initdb on first use, start, create database + extension
#   scripts/cluster.sh stop    # also stops the standbys kept in its folder
#   scripts/cluster.sh env     # print PG* variables and a DSN for clients
#   scripts/cluster.sh standby-start   # a streaming hot standby of the cluster
#   scripts/cluster.sh standby-stop
#
# Settings (environment): API_AUTH_HOME (folder holding everything, default
# /var/tmp/api_auth), API_AUTH_PGPORT (default 25415), API_AUTH_DB (default
# api_auth), API_AUTH_FAST=1 (fsync off: for throwaway test clusters only),
# API_AUTH_PG (major version, default 15: Debian's; others come from
# scripts/pg.sh), API_AUTH_PGBIN (a bin/ folder to use instead, e.g. a tree
# holding an unpacked package: scripts/package-test.sh).
# The standby (pg_basebackup -R of the running cluster, streaming replication,
# hot_standby) lives in API_AUTH_STANDBY_HOME (default $API_AUTH_HOME/standby)
# and listens on API_AUTH_STANDBY_PGPORT (default: the cluster's port + 1).
set -euo pipefail

PGBIN=${API_AUTH_PGBIN:-$(bash "$(dirname "$0")/pg.sh" "${API_AUTH_PG:-15}")/bin}
HOME_DIR=${API_AUTH_HOME:-/var/tmp/api_auth}
# Fixed default ports stay below Linux's ephemeral range (32768-60999), where
# a client connection's local port could already hold them.
PORT=${API_AUTH_PGPORT:-25415}
DB=${API_AUTH_DB:-api_auth}
DATA=$HOME_DIR/pgdata
RUN=$HOME_DIR/run
LOG=$HOME_DIR/postgres.log

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_admin() {
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U postgres "$@"
}

start() {
  mkdir -p "$HOME_DIR" "$RUN"
  chmod 755 "$HOME_DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$HOME_DIR" "$RUN"; fi
  if [ ! -s "$DATA/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $PORT"
      echo "unix_socket_directories = '$RUN'"
      echo "max_connections = 200"
      echo "shared_buffers = 256MB"
      if [ "${API_AUTH_FAST:-0}" = 1 ]; then
        echo "fsync = off"; echo "synchronous_commit = off"; echo "full_page_writes = off"
      fi
    } | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null
  fi
  if ! psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    psql_admin -d postgres -c "CREATE DATABASE \"$DB\""
  fi
  psql_admin -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS api_auth"
}

SB_HOME=${API_AUTH_STANDBY_HOME:-$HOME_DIR/standby}
SB_PORT=${API_AUTH_STANDBY_PGPORT:-$((PORT + 1))}
SB_DATA=$SB_HOME/pgdata
SB_RUN=$SB_HOME/run
SB_LOG=$SB_HOME/postgres.log

standby_start() {
  mkdir -p "$SB_HOME" "$SB_RUN"
  chmod 755 "$SB_HOME"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$SB_HOME" "$SB_RUN"; fi
  if [ ! -s "$SB_DATA/PG_VERSION" ]; then
    # The initdb defaults (wal_level=replica, max_wal_senders=10, trust for
    # local replication connections) are all a standby needs.
    as_pg "$PGBIN/pg_basebackup" -h "$RUN" -p "$PORT" -U postgres -D "$SB_DATA" -R -X stream -c fast >/dev/null
    {
      echo "port = $SB_PORT"
      echo "unix_socket_directories = '$SB_RUN'"
      echo "hot_standby = on"
      # Report replay progress often, so the primary's view stays current.
      echo "wal_receiver_status_interval = 1s"
    } | as_pg tee -a "$SB_DATA/postgresql.conf" >/dev/null
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$SB_DATA" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$SB_DATA" -l "$SB_LOG" -w -t 60 start >/dev/null
  fi
  # Wait until it accepts read-only connections (consistent recovery state).
  for _ in $(seq 1 300); do
    if "$PGBIN/psql" -X -q -h "$SB_RUN" -p "$SB_PORT" -U postgres -d "$DB" -tAc "SELECT pg_is_in_recovery()" 2>/dev/null | grep -q t; then
      return 0
    fi
    sleep 0.1
  done
  echo "standby on port $SB_PORT did not become ready (see $SB_LOG)" >&2
  exit 1
}

standby_stop() {
  if [ -s "$SB_DATA/PG_VERSION" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$SB_DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

stop() {
  # Standbys kept in the cluster's folder first (scripts/start.sh with API_AUTH_REPLICAS).
  for sb in "$HOME_DIR"/standby*/pgdata; do
    if [ -s "$sb/PG_VERSION" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$sb" -m fast -w stop >/dev/null 2>&1 || true
    fi
  done
  if [ -s "$DATA/PG_VERSION" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

env_vars() {
  cat <<EOV
export PGHOST=$RUN PGPORT=$PORT PGUSER=postgres PGDATABASE=$DB
export DATABASE_URL='postgresql://postgres@127.0.0.1:$PORT/$DB'
EOV
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_vars ;;
  standby-start) standby_start ;;
  standby-stop) standby_stop ;;
  *) echo "usage: $0 start|stop|env|standby-start|standby-stop" >&2; exit 2 ;;
esac
