#!/usr/bin/env bash
# Builds the Debian package of api_auth for PostgreSQL major versions, named
# as Debian and PGDG name theirs: postgresql-NN-api-auth_<version>_amd64.deb.
#
#   bash scripts/package.sh            # every supported version (scripts/pg-versions.sh)
#   bash scripts/package.sh 15 18      # only these
#
# Output: $API_AUTH_PKG_OUT (default target/debian/). Each package holds what
# `cargo pgrx package` builds (release profile), laid out where Debian's and
# PGDG's postgresql-NN look for extensions: /usr/lib/postgresql/NN/lib and
# /usr/share/postgresql/NN/extension, whatever tree it was built against (the
# ABI is fixed within a major version). Depends: postgresql-NN, plus the shared
# libraries the .so links (dpkg-shlibdeps).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg-versions.sh

majors=${*:-$API_AUTH_PG_MAJORS}
out=${API_AUTH_PKG_OUT:-$PWD/target/debian}
# The extension's version (api_auth.control says @CARGO_VERSION@).
version=$(cargo pkgid -p api_auth | sed 's/.*[@#]//')
mkdir -p "$out"

for major in $majors; do
  prefix=$(bash scripts/pg.sh "$major")
  pg_config=$prefix/bin/pg_config
  work=$(mktemp -d /var/tmp/api_auth-package.XXXXXX)
  # For 15 this is the same build as scripts/bench.sh's (cargo pgrx passes
  # these features for a 15 pg_config anyway), so CI links fat LTO only once.
  features=(--no-default-features --features "pg$major")
  echo "== PostgreSQL $major: cargo pgrx package (release)" >&2
  if ! cargo pgrx package --pg-config "$pg_config" "${features[@]}" --out-dir "$work/pgrx" >"$work/build.log" 2>&1; then
    grep -v '^ *[0-9]*: \|^ *at ' "$work/build.log" | tail -40 >&2; exit 1
  fi
  so=$work/pgrx$("$pg_config" --pkglibdir)/api_auth.so
  ext=$work/pgrx$("$pg_config" --sharedir)/extension
  [ -f "$so" ] && [ -f "$ext/api_auth.control" ] || { echo "cargo pgrx package left no $so or $ext" >&2; exit 1; }

  root=$work/root
  install -d "$root/DEBIAN" "$root/usr/lib/postgresql/$major/lib" "$root/usr/share/postgresql/$major/extension" \
    "$root/usr/share/doc/postgresql-$major-api-auth"
  install -m 0644 "$so" "$root/usr/lib/postgresql/$major/lib/"
  install -m 0644 "$ext"/api_auth* "$root/usr/share/postgresql/$major/extension/"
  strip --strip-unneeded "$root/usr/lib/postgresql/$major/lib/api_auth.so"
  install -m 0644 README.md "$root/usr/share/doc/postgresql-$major-api-auth/"
  cat >"$root/usr/share/doc/postgresql-$major-api-auth/copyright" <<EOC
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: api_auth
License: Apache-2.0

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
EOC

  # Shared-library dependencies of the .so, as dpkg-shlibdeps computes them
  # (it wants a debian/control to read; a minimal one in the work folder).
  mkdir -p "$work/debian"
  printf 'Source: api-auth\n\nPackage: postgresql-%s-api-auth\nArchitecture: amd64\n' "$major" >"$work/debian/control"
  shlibs=$(cd "$work" && dpkg-shlibdeps -O --ignore-missing-info \
    "root/usr/lib/postgresql/$major/lib/api_auth.so" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
  depends="postgresql-$major${shlibs:+, $shlibs}"
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  cat >"$root/DEBIAN/control" <<EOC
Package: postgresql-$major-api-auth
Version: $version
Architecture: amd64
Maintainer: api_auth maintainers <api-auth@localhost>
Depends: $depends
Section: database
Priority: optional
Installed-Size: $size
Description: API-key authentication with rotation grace windows, inside PostgreSQL $major
 The api_auth extension: environments with API keys, rotation with grace
 windows, public access tokens (JWT), scopes and sessions, as SQL functions
 (CREATE EXTENSION api_auth). Built for PostgreSQL $major.
EOC
  deb=$out/postgresql-$major-api-auth_${version}_amd64.deb
  dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
  echo "$deb"
  rm -rf "$work"
done
