#!/usr/bin/env bash
# Builds the benchmarks of a base commit (default ad8484d: main before the
# replica work of issue 15) in a directory of its own, for bench_vs_base.
# The sources come from `git archive` (nothing is added to the repository's
# worktree list); a second run reuses the build. Prints the bin directory on
# stdout (progress on stderr).
# Usage: tests/perf/base_build.sh [commit] [dir (default /tmp/daebus-base-<commit>)]
set -euo pipefail
commit=${1:-ad8484d}
dir=${2:-/tmp/daebus-base-$commit}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
if [[ ! -f $dir/src/CMakeLists.txt ]]; then
  echo "base_build: sources of $commit into $dir/src" >&2
  mkdir -p "$dir/src"
  git -C "$repo" archive "$commit" | tar -x -C "$dir/src"
fi
cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDAEBUS_BUILD_BENCH=ON \
  -DDAEBUS_BUILD_EXAMPLES=OFF >&2
cmake --build "$dir/build" -j2 --target bench_http bench_ws_echo bench_ws_broadcast perf_service >&2
echo "$dir/build/bin"
