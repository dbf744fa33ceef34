#!/usr/bin/env bash
# Smoke-fuzz api_auth_core (no PostgreSQL needed): every cargo-fuzz target in
# fuzz/ runs for SECONDS (default 60) from the seed corpus in fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [seconds-per-target]
#
# Exits non-zero if any target crashes, panics, times out or runs out of memory;
# the failing input is kept in fuzz/artifacts/<target>/ and the line to replay it
# is printed. Seeds are copied to a temporary corpus, so a run adds nothing to git.
#
# Stable Rust is enough: cargo-fuzz needs nightly-only flags (-Zsanitizer=address
# and friends), which RUSTC_BOOTSTRAP=1 unlocks on a stable toolchain.
#
# Environment:
#   FUZZ_TARGETS     space-separated subset of targets (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER   address (default) or none; if the address build fails the
#                    script says so and falls back to none
#   FUZZ_JOBS        cargo build jobs (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
case "$seconds" in '' | *[!0-9]*) echo "usage: $0 [seconds-per-target]" >&2; exit 2 ;; esac

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${FUZZ_JOBS:-2}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi
echo "== $(cargo fuzz --version), $(rustc --version)"

cd fuzz
sanitizer=${FUZZ_SANITIZER:-address}
echo "== building fuzz targets (sanitizer: $sanitizer, debug assertions on)"
if ! cargo fuzz build --sanitizer "$sanitizer"; then
  if [ "$sanitizer" = none ]; then
    echo "fuzz: build failed" >&2
    exit 1
  fi
  echo "fuzz: WARNING: the $sanitizer-sanitizer build failed; retrying with --sanitizer none" >&2
  sanitizer=none
  cargo fuzz build --sanitizer "$sanitizer"
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
work=$(mktemp -d "${TMPDIR:-/tmp}/api_auth-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Inputs larger than the default 4 KiB reach the token size limit (8 KiB).
max_len() {
  case "$1" in
    token_parse) echo 9000 ;;
    token_roundtrip) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

failed=()
summary=()
for target in $targets; do
  corpus="$work/corpus/$target"
  mkdir -p "$corpus" "artifacts/$target"
  if [ -d "corpus/$target" ]; then cp corpus/"$target"/* "$corpus"/; fi
  log="$work/$target.log"
  echo "== $target: ${seconds}s from $(ls "$corpus" | wc -l) seeds"
  start=$SECONDS
  set +e
  cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$target")" \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1
  status=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
  line="$target: ${execs:-?} execs in $((SECONDS - start))s, coverage ${cov:-?}, corpus $(ls "$corpus" | wc -l)"
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $target FAILED (exit $status)" >&2
    { grep -A3 "panicked at" "$log" | grep -v "^stack backtrace" | head -8
      grep -E "==[0-9]+== ERROR|^SUMMARY" "$log" | head -4; } >&2 || true
    crash=$(ls -t "artifacts/$target"/* 2>/dev/null | head -1 || true)
    if [ -n "$crash" ]; then
      echo "fuzz: replay with: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer $target $crash)" >&2
    else
      tail -30 "$log" >&2
    fi
    failed+=("$target")
    line="$line  FAILED"
  fi
  summary+=("$line")
  echo "   $line"
done

echo "== fuzz summary (sanitizer: $sanitizer, ${seconds}s per target)"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no crashes"
