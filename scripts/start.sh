#!/usr/bin/env bash
# The main job: a private PostgreSQL 15 cluster with api_auth installed, plus
# the HTTP shim in front of it. Installs whatever is missing first.
#
#   bash scripts/start.sh            # cluster on 127.0.0.1:25415, shim on 127.0.0.1:8787
#   API_AUTH_REPLICAS=1 bash scripts/start.sh   # plus a streaming hot standby on 25416,
#                                    # which serves the shim's authentication reads
#
# Least privilege by default: the shim does not log in as the superuser but as
# two login roles created for it, api_auth_shim_client (member of
# api_auth_client: the public routes) and api_auth_shim_admin (member of
# api_auth_admin: the /admin routes). The cluster trusts local connections
# (a private cluster on loopback), so these roles have no password.
#
# Environment: API_AUTH_HOME (data folder, default /var/tmp/api_auth),
# API_AUTH_PGPORT (25415), API_AUTH_LISTEN (127.0.0.1:8787),
# API_AUTH_ADMIN_TOKEN (default: a random token kept in $API_AUTH_HOME/admin-token),
# API_AUTH_REPLICAS (number of hot standbys, default 0; standby N lives in
# $API_AUTH_HOME/standbyN and listens on API_AUTH_PGPORT + N).
# API_AUTH_START_SKIP_INSTALL=1 (use the extension already installed into
# PostgreSQL instead of building and installing it).
set -euo pipefail
cd "$(dirname "$0")/.."

export API_AUTH_HOME=${API_AUTH_HOME:-/var/tmp/api_auth}
export API_AUTH_PGPORT=${API_AUTH_PGPORT:-25415}
export API_AUTH_DB=${API_AUTH_DB:-api_auth}
LISTEN=${API_AUTH_LISTEN:-127.0.0.1:8787}

CLIENT_ROLE=api_auth_shim_client
ADMIN_ROLE=api_auth_shim_admin

bash scripts/setup.sh
if [ "${API_AUTH_START_SKIP_INSTALL:-0}" != 1 ]; then
  echo "[start] building and installing the extension (release)" >&2
  if [ "$(id -u)" = 0 ]; then
    cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null
  else
    cargo pgrx install --release --sudo --pg-config /usr/lib/postgresql/15/bin/pg_config >/dev/null
  fi
fi
echo "[start] building the shim (release)" >&2
cargo build --release -q -p api_auth_shim

bash scripts/cluster.sh start
# A cluster kept from an older install may run an older version of the extension.
/usr/lib/postgresql/15/bin/psql -X -q -h "$API_AUTH_HOME/run" -p "$API_AUTH_PGPORT" -U postgres -d "$API_AUTH_DB" \
  -c "ALTER EXTENSION api_auth UPDATE" >/dev/null
# The shim's login roles (created once; the extension's group roles give them
# exactly the privileges of their routes).
/usr/lib/postgresql/15/bin/psql -X -q -v ON_ERROR_STOP=1 -h "$API_AUTH_HOME/run" -p "$API_AUTH_PGPORT" -U postgres \
  -d "$API_AUTH_DB" >/dev/null <<EOSQL
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE IN ROLE api_auth_client', '$CLIENT_ROLE')
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '$CLIENT_ROLE') \\gexec
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE IN ROLE api_auth_admin', '$ADMIN_ROLE')
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '$ADMIN_ROLE') \\gexec
GRANT api_auth_client TO $CLIENT_ROLE;
GRANT api_auth_admin TO $ADMIN_ROLE;
GRANT CONNECT ON DATABASE "$API_AUTH_DB" TO $CLIENT_ROLE, $ADMIN_ROLE;
EOSQL

REPLICAS=${API_AUTH_REPLICAS:-0}
case "$REPLICAS" in ''|*[!0-9]*) echo "API_AUTH_REPLICAS must be a number" >&2; exit 2 ;; esac
replica_args=()
for n in $(seq 1 "$REPLICAS"); do
  sb_port=$((API_AUTH_PGPORT + n))
  echo "[start] hot standby $n (pg_basebackup -R, streaming) on 127.0.0.1:$sb_port" >&2
  API_AUTH_STANDBY_HOME=$API_AUTH_HOME/standby$n API_AUTH_STANDBY_PGPORT=$sb_port bash scripts/cluster.sh standby-start
  replica_args+=(--replica-database-url "postgresql://$CLIENT_ROLE@127.0.0.1:$sb_port/$API_AUTH_DB")
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
         metrics: http://$LISTEN/metrics
  roles: the shim logs in as $CLIENT_ROLE (member of api_auth_client, public routes)
         and $ADMIN_ROLE (member of api_auth_admin, /admin routes), not as a superuser

Try it (paste into another terminal):
  ADMIN=\$(cat $token_file)
  KEY=\$(curl -s -X POST http://$LISTEN/admin/api/v1/environments \\
        -H "Authorization: Bearer \$ADMIN" -H 'Content-Type: application/json' \\
        -d '{"slug": "prod", "type": "PRODUCTION"}' | sed -E 's/.*"apiKey":"([^"]+)".*/\1/')
  curl -s -X POST http://$LISTEN/api/v1/auth/jwt -H "Authorization: Bearer \$KEY" \\
        -H 'Content-Type: application/json' -d '{"claims": {"scopes": ["read:runs"]}}'

Stop the shim with Ctrl-C; stop the database (and its standbys) with: bash scripts/cluster.sh stop
EOM

args=(--database-url "postgresql://$CLIENT_ROLE@127.0.0.1:$API_AUTH_PGPORT/$API_AUTH_DB"
      --admin-database-url "postgresql://$ADMIN_ROLE@127.0.0.1:$API_AUTH_PGPORT/$API_AUTH_DB"
      --listen "$LISTEN" "${replica_args[@]}")
if [ -z "${API_AUTH_ADMIN_TOKEN:-}" ]; then args+=(--admin-token-file "$token_file"); fi
exec target/release/api-auth-shim "${args[@]}"
