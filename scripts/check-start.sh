#!/usr/bin/env bash
# Scripted test of scripts/start.sh (run by scripts/test.sh): it starts a
# private cluster and the shim on their own ports, and this checks that the
# shim logs in as the two roles start.sh created for it, neither of them a
# superuser, each a member of its extension role, and that the routes work
# through them (an admin route as the admin role, verify as the client role).
# It runs the replica topology (API_AUTH_REPLICAS=1): a streaming standby on
# the cluster's port + 1 serves the verify calls, as /readyz counts.
#
#   bash scripts/check-start.sh
#
# Uses the extension already installed into PostgreSQL (scripts/test.sh
# installs it first): API_AUTH_START_SKIP_INSTALL=1.
# Settings: API_AUTH_CHECK_PGPORT (default 25481; the standby takes the next
# port), API_AUTH_CHECK_LISTEN_PORT (25483).
set -euo pipefail
cd "$(dirname "$0")/.."

PGPORT=${API_AUTH_CHECK_PGPORT:-25481}
PORT=${API_AUTH_CHECK_LISTEN_PORT:-25483}
HOME_DIR=$(mktemp -d /var/tmp/api_auth-start-check.XXXXXX)
PSQL=/usr/lib/postgresql/15/bin/psql
fail() { echo "[check-start] FAIL: $*" >&2; exit 1; }

export API_AUTH_HOME=$HOME_DIR API_AUTH_PGPORT=$PGPORT API_AUTH_LISTEN=127.0.0.1:$PORT API_AUTH_FAST=1
export API_AUTH_START_SKIP_INSTALL=1 API_AUTH_REPLICAS=1
unset API_AUTH_ADMIN_TOKEN
shim_pid=
cleanup() {
  if [ -n "$shim_pid" ]; then kill "$shim_pid" 2>/dev/null || true; wait "$shim_pid" 2>/dev/null || true; fi
  bash scripts/cluster.sh stop
  rm -rf "$HOME_DIR"
}
trap cleanup EXIT

bash scripts/start.sh >"$HOME_DIR/start.out" 2>"$HOME_DIR/start.err" &
shim_pid=$!
for _ in $(seq 1 600); do
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$shim_pid" 2>/dev/null || { cat "$HOME_DIR/start.err" >&2; fail "start.sh exited"; }
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || fail "the shim never became ready"

grep -q "api_auth_shim_client (member of api_auth_client" "$HOME_DIR/start.out" || fail "start.sh does not print the client role"
grep -q "api_auth_shim_admin (member of api_auth_admin" "$HOME_DIR/start.out" || fail "start.sh does not print the admin role"

# Traffic through both pools.
ADMIN=$(cat "$HOME_DIR/admin-token")
KEY=$(curl -fsS -X POST "http://127.0.0.1:$PORT/admin/api/v1/environments" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"slug": "prod", "type": "PRODUCTION"}' | sed -E 's/.*"apiKey":"([^"]+)".*/\1/')
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/v1/auth/verify")" = 200 ] ||
  fail "verify with a fresh key"

# The standby is used for authentication reads once the shim has measured it.
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" | grep -q '"usable":true' && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" | grep -q '"usable":true' || fail "the standby never became usable"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/v1/auth/verify")" = 200 ] ||
  fail "verify through the standby"
# Repeats of one key are answered from the shim's answer cache, so the reads
# that reach a database use keys never seen before (each refused, as it should be).
served=0
for i in $(seq 1 50); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer tr_prod_checkstart$(printf '%016d' "$i")" \
    "http://127.0.0.1:$PORT/api/v1/auth/verify")" = 401 ] || fail "an unknown key was not refused"
  served=$(curl -fsS "http://127.0.0.1:$PORT/readyz" | sed -E 's/.*"served":([0-9]+).*/\1/')
  [ "${served:-0}" -ge 5 ] && break
  sleep 0.1
done
[ "${served:-0}" -ge 5 ] || fail "the standby served $served verify calls, expected at least 5"
echo "[check-start] standby on port $((PGPORT + 1)) served $served authentication reads"

q() { "$PSQL" -X -At -h "$HOME_DIR/run" -p "$PGPORT" -U postgres -d api_auth -c "$1"; }
# Who the shim's connections are (it names itself api-auth-shim).
sessions=$(q "SELECT DISTINCT a.usename || ':' || r.rolsuper
              FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
              WHERE a.application_name = 'api-auth-shim' ORDER BY 1")
echo "[check-start] shim connections (role:superuser): $(echo $sessions)"
[ -n "$sessions" ] || fail "no shim connection found"
echo "$sessions" | grep -q ':true' && fail "the shim is connected as a superuser"
[ "$sessions" = "$(printf 'api_auth_shim_admin:false\napi_auth_shim_client:false')" ] || fail "unexpected roles: $sessions"
[ "$(q "SELECT pg_has_role('api_auth_shim_client', 'api_auth_client', 'MEMBER') AND NOT pg_has_role('api_auth_shim_client', 'api_auth_admin', 'MEMBER')")" = t ] ||
  fail "api_auth_shim_client is not exactly a client"
[ "$(q "SELECT pg_has_role('api_auth_shim_admin', 'api_auth_admin', 'MEMBER')")" = t ] || fail "api_auth_shim_admin is not an admin"
[ "$(q "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'api_auth_shim_%' AND (rolsuper OR rolcreaterole OR rolcreatedb)")" = 0 ] ||
  fail "a shim role has superuser, createrole or createdb"
echo "[check-start] ok: start.sh runs the shim as api_auth_shim_client and api_auth_shim_admin, no superuser, with a standby for reads"
