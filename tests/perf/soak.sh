#!/usr/bin/env bash
# Soak test (issue 8): 10 minutes of mixed load on one service - HTTP, bus
# actions, WebSocket round trips and broadcasts - then resident memory at the
# end vs after the warm-up, and the error count, as JSON lines.
# Not in CI. Usage: tests/perf/soak.sh [build-dir]   (SOAK_SECONDS=600 to change)
set -euo pipefail
build=${1:-build}
for b in bench_soak perf_service; do
  if [[ ! -x $build/bin/$b ]]; then
    echo "soak: $build/bin/$b not built (make build)" >&2
    exit 2
  fi
done
command -v wrk >/dev/null || { echo "soak: wrk missing (scripts/deps.sh bench)" >&2; exit 2; }
exec "$build/bin/bench_soak" "${SOAK_SECONDS:-600}"
