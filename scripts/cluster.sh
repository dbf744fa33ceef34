#!/usr/bin/env bash
# A private PostgreSQL cluster for api_auth: its own data folder, port and
# socket folder, no existing server needed. Works as root (the server runs as
# the `postgres` user) and as an ordinary user.
#
#   scripts/cluster.sh start   # initdb on first use, start, create database + extension
#   scripts/cluster.sh stop
#   scripts/cluster.sh env     # print PG* variables and a DSN for clients
#
# Settings (environment): API_AUTH_HOME (folder holding everything, default
# /var/tmp/api_auth), API_AUTH_PGPORT (default 25415), API_AUTH_DB (default
# api_auth), API_AUTH_FAST=1 (fsync off: for throwaway test clusters only),
# API_AUTH_PG (major version, default 15: Debian's; others come from
# scripts/pg.sh), API_AUTH_PGBIN (a bin/ folder to use instead, e.g. a tree
# holding an unpacked package: scripts/package-test.sh).
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

stop() {
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
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
