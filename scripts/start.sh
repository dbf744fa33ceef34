#!/usr/bin/env bash
# The main job: a private PostgreSQL 15 cluster with api_auth installed, plus
# the HTTP shim in front of it. Installs whatever is missing first.
#
#   bash scripts/start.sh            # cluster on 127.0.0.1:25415, shim on 127.0.0.1:8787
#   API_AUTH_REPLICAS=1 bash scripts/start.sh   # plus a streaming hot standby on 25416,
#                                    # which serves the shim's authentication reads
#
# Environment: API_AUTH_HOME (data folder, default /var/tmp/api_auth),
# API_AUTH_PGPORT (25415), API_AUTH_LISTEN (127.0.0.1:8787),
# API_AUTH_ADMIN_TOKEN (default: a random token kept in $API_AUTH_HOME/admin-token),
# API_AUTH_REPLICAS (number of hot standbys, default 0; standby N lives in
# $API_AUTH_HOME/standbyN and listens on API_AUTH_PGPORT + N).
set -euo pipefail
cd "$(dirname "$0")/.."

export API_AUTH_HOME=${API_AUTH_HOME:-/var/tmp/api_auth}
export API_AUTH_PGPORT=${API_AUTH_PGPORT:-25415}
export API_AUTH_DB=${API_AUTH_DB:-api_auth}
LISTEN=${API_AUTH_LISTEN:-127.0.0.1:8787}

bash scripts/setup.sh
echo "[start] building and installing the extension (release)" >&2
if [ "$(id -u)" = 0 ]; then
  cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null
else
  cargo pgrx install --release --sudo --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null
fi
echo "[start] building the shim (release)" >&2
cargo build --release -q -p api_auth_shim

bash scripts/cluster.sh start
# A cluster kept from an older install may run an older version of the extension.
/usr/lib/postgresql/15/bin/psql -X -q -h "$API_AUTH_HOME/run" -p "$API_AUTH_PGPORT" -U postgres -d "$API_AUTH_DB" \
  -c "ALTER EXTENSION api_auth UPDATE" >/dev/null

REPLICAS=${API_AUTH_REPLICAS:-0}
case "$REPLICAS" in ''|*[!0-9]*) echo "API_AUTH_REPLICAS must be a number" >&2; exit 2 ;; esac
replica_args=()
for n in $(seq 1 "$REPLICAS"); do
  sb_port=$((API_AUTH_PGPORT + n))
  echo "[start] hot standby $n (pg_basebackup -R, streaming) on 127.0.0.1:$sb_port" >&2
  API_AUTH_STANDBY_HOME=$API_AUTH_HOME/standby$n API_AUTH_STANDBY_PGPORT=$sb_port bash scripts/cluster.sh standby-start
  replica_args+=(--replica-database-url "postgresql://postgres@127.0.0.1:$sb_port/$API_AUTH_DB")
done

token_file=$API_AUTH_HOME/admin-token
if [ -z "${API_AUTH_ADMIN_TOKEN:-}" ] && [ ! -s "$token_file" ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token_file")
fi

cat <<EOM

api_auth is up.
  psql:  psql -h $API_AUTH_HOME/run -p $API_AUTH_PGPORT -U postgres $API_AUTH_DB
  shim:  http://$LISTEN   (admin token in $token_file)
  standbys: $REPLICAS (authentication reads; see /readyz "reads")

Try it (paste into another terminal):
  ADMIN=\$(cat $token_file)
  KEY=\$(curl -s -X POST http://$LISTEN/admin/api/v1/environments \\
        -H "Authorization: Bearer \$ADMIN" -H 'Content-Type: application/json' \\
        -d '{"slug": "prod", "type": "PRODUCTION"}' | sed -E 's/.*"apiKey":"([^"]+)".*/\1/')
  curl -s -X POST http://$LISTEN/api/v1/auth/jwt -H "Authorization: Bearer \$KEY" \\
        -H 'Content-Type: application/json' -d '{"claims": {"scopes": ["read:runs"]}}'

Stop the shim with Ctrl-C; stop the database (and its standbys) with: bash scripts/cluster.sh stop
EOM

args=(--database-url "postgresql://postgres@127.0.0.1:$API_AUTH_PGPORT/$API_AUTH_DB" --listen "$LISTEN" "${replica_args[@]}")
if [ -z "${API_AUTH_ADMIN_TOKEN:-}" ]; then args+=(--admin-token-file "$token_file"); fi
exec target/release/api-auth-shim "${args[@]}"
