#!/usr/bin/env bash
# Runs the benchmark suite (issue 8) and prints its figures as JSON lines on
# stdout (progress on stderr). Each benchmark starts what it needs (servers,
# its own redis-server, client processes) and is bounded in time.
# Usage: tests/perf/run_all.sh [build-dir]     (`make bench`)
#   BENCH_SECONDS=3   seconds per measured round (HTTP, bus, WebSocket echo)
#   BENCH_ONLY="http bus"   run only these (http bus ws_echo ws_broadcast footprint
#                           replicas_broadcast replicas_send replicas_actions
#                           channel_history channel_fanout channel_recovery durable vs_base)
#   vs_base (not in the default list): this build's http, ws_echo and ws_broadcast
#     vs those of BENCH_BASE_COMMIT (default ad8484d, built by base_build.sh into
#     /tmp/daebus-base-<commit>), alternately, BENCH_BASE_ROUNDS (3) times each;
#     bounded by BENCH_BASE_TIMEOUT (900 s)
# Exit status: 0 when every benchmark ran without errors (targets missed do
# not fail the run; see the "met" field of the ratio lines).
set -uo pipefail
build=${1:-build}
bin=$build/bin
export BENCH_SECONDS=${BENCH_SECONDS:-3}
limit=${BENCH_TIMEOUT:-90}

command -v wrk >/dev/null || { echo "run_all: wrk missing (bash scripts/deps.sh bench)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "run_all: $(nproc) cores, $(uname -sr), $(. /etc/os-release && echo "$PRETTY_NAME"), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
failed=()
here=$(dirname "$0")
for b in ${BENCH_ONLY:-http bus ws_echo ws_broadcast footprint replicas_broadcast replicas_send replicas_actions channel_history channel_fanout channel_recovery durable}; do
  exe=$bin/bench_$b
  args=()
  blimit=$limit
  if [[ $b == vs_base ]]; then
    echo "run_all: building the base (${BENCH_BASE_COMMIT:-ad8484d}) ..." >&2
    if ! base_bin=$(bash "$here/base_build.sh" "${BENCH_BASE_COMMIT:-ad8484d}"); then
      echo "run_all: base build failed" >&2
      failed+=("$b")
      continue
    fi
    args=("$base_bin")
    blimit=${BENCH_BASE_TIMEOUT:-900}
  fi
  if [[ ! -x $exe ]]; then
    echo "run_all: $exe not built" >&2
    failed+=("$b")
    continue
  fi
  echo "run_all: bench_$b ..." >&2
  start=$SECONDS
  timeout --kill-after=5 "$blimit" "$exe" "${args[@]}"
  rc=$?
  echo "run_all: bench_$b done in $((SECONDS - start)) s (status $rc)" >&2
  ((rc == 0)) || failed+=("$b")
done
if ((${#failed[@]})); then
  echo "run_all: failed: ${failed[*]}" >&2
  exit 1
fi
