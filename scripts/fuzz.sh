#!/usr/bin/env bash
# Short libFuzzer runs for CI: scripts/fuzz.sh [target...]
#   Builds the fuzz targets with clang in build-fuzz/ (-DDAEBUS_BUILD_FUZZ=ON),
#   then runs each for FUZZ_SECONDS (default 25; ten targets, about 4 min)
#   on a scratch copy of its seed corpus (tests/fuzz/corpus/<name>/ is never
#   grown here). Any crash, leak, invariant failure or time-out fails the run;
#   the input that did it is kept in build-fuzz/fuzz-artifacts/ — copy it into
#   tests/fuzz/regress/<name>/ so that it becomes a regression test.
# Environment: FUZZ_SECONDS (per target),
#   FUZZ_KEEP_CORPUS=1 (keep the grown scratch corpora).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh fuzz

seconds=${FUZZ_SECONDS:-25}
dir=build-fuzz
all=(json ws_envelope bus_envelope http_form http_payload http_route http_cors redis_url config text)
targets=("${@:-${all[@]}}")

# Input size bounds: large enough for every realistic message, small enough
# to keep the runs fast.
max_len() {
  case "$1" in
    redis_url) echo 1024 ;;
    config | http_route | http_form) echo 2048 ;;
    http_cors) echo 4096 ;;
    *) echo 8192 ;;
  esac
}

CC=clang cmake -S . -B $dir -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDAEBUS_BUILD_FUZZ=ON \
  -DDAEBUS_BUILD_TESTS=OFF -DDAEBUS_BUILD_EXAMPLES=OFF -DDAEBUS_BUILD_BENCH=OFF >/dev/null
cmake --build $dir --target daebus_fuzz -j 2

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
artifacts=$PWD/$dir/fuzz-artifacts
mkdir -p "$artifacts"
fail=0
for t in "${targets[@]}"; do
  bin=$dir/fuzz/fuzz_$t
  seeds=tests/fuzz/corpus/$t
  if [[ ! -x $bin || ! -d $seeds ]]; then
    echo "fuzz: unknown target '$t'" >&2
    exit 2
  fi
  work=$(mktemp -d "${TMPDIR:-/tmp}/daebus-fuzz-$t.XXXXXX")
  cp -r "$seeds/." "$work/"
  [[ -d tests/fuzz/regress/$t ]] && cp -r "tests/fuzz/regress/$t/." "$work/"
  dict=()
  [[ -f tests/fuzz/dict/$t.dict ]] && dict=(-dict="tests/fuzz/dict/$t.dict")
  echo "== fuzz $t (${seconds}s)"
  if "$bin" "$work" "${dict[@]}" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
       -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$artifacts/$t-" >"$dir/fuzz-$t.log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$dir/fuzz-$t.log" || true
  else
    echo "fuzz: $t FAILED (log: $dir/fuzz-$t.log, inputs: $artifacts/$t-*)" >&2
    tail -n 40 "$dir/fuzz-$t.log" >&2
    fail=1
  fi
  if [[ ${FUZZ_KEEP_CORPUS:-0} == 1 ]]; then
    echo "fuzz: grown corpus kept in $work"
  else
    rm -rf "$work"
  fi
done
exit $fail
