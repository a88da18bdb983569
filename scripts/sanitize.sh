#!/usr/bin/env bash
# Sanitizer runs for CI: scripts/sanitize.sh address|thread
#   address: the whole test suite under AddressSanitizer + UBSan (leak detection on)
#   thread:  the tests labelled "concurrency" under ThreadSanitizer
set -euo pipefail
kind=${1:?usage: sanitize.sh address|thread}
jobs=$(nproc 2>/dev/null || echo 2)
case "$kind" in
  address)
    dir=build-asan
    cmake -S . -B $dir -DCMAKE_BUILD_TYPE=Debug -DDAEBUS_SANITIZE=address,undefined \
      -DDAEBUS_BUILD_BENCH=OFF >/dev/null
    cmake --build $dir -j "$jobs"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export LSAN_OPTIONS=suppressions=$PWD/scripts/lsan.supp:print_suppressions=0
    (cd $dir && ctest --output-on-failure --timeout 600 -LE "no-asan|browser")
    ;;
  thread)
    dir=build-tsan
    cmake -S . -B $dir -DCMAKE_BUILD_TYPE=Debug -DDAEBUS_SANITIZE=thread -DDAEBUS_BUILD_BENCH=OFF \
      -DDAEBUS_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build $dir -j "$jobs"
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp"
    # TSan needs a non-randomised address space on kernels with high mmap entropy.
    runner=""
    if command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null; then
      runner="setarch $(uname -m) -R"
    fi
    (cd $dir && $runner ctest --output-on-failure --timeout 600 -L concurrency)
    ;;
  *) echo "sanitize.sh: unknown kind '$kind'" >&2; exit 2 ;;
esac
