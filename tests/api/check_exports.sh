#!/usr/bin/env bash
# The shared library exports exactly the symbols listed in exported_symbols.txt
# (the functions and data the public headers declare), nothing else.
# With --static, the static archive is checked instead: every global symbol it
# defines starts with daebus__ (internal) or daebus_ (public, and then it is
# listed in exported_symbols.txt), so nothing in libdaebus.a can clash with a
# symbol of the program that links it.
# Regenerate after an intended API change: tests/api/check_exports.sh LIB --update
set -euo pipefail
list=$(dirname "$0")/exported_symbols.txt
if [[ "${1:-}" == "--static" ]]; then
  archive=$2
  # nm prints "address type name" for each definition (and "file.o:" headers).
  # Under AddressSanitizer the compiler adds one ODR indicator per global
  # variable, named after it (GCC: __odr_asan.NAME, Clang: __odr_asan_gen_NAME);
  # those of our own globals are not ours to name, so they are skipped.
  defs=$(nm -g --defined-only "$archive" | awk 'NF == 3 && $2 ~ /^[A-Z]$/ {print $3}' |
    grep -Ev '^__odr_asan(\.|_gen_)daebus_' | sort -u)
  bad=$(echo "$defs" | grep -v '^daebus_' || true)
  status=0
  if [[ -n "$bad" ]]; then
    echo "defined in $archive without the daebus_ or daebus__ prefix:"
    echo "$bad"
    status=1
  fi
  public=$(echo "$defs" | grep '^daebus_' | grep -v '^daebus__' || true)
  unlisted=$(comm -23 <(echo "$public") <(sort -u "$list") || true)
  if [[ -n "$unlisted" ]]; then
    echo "public-looking (daebus_ but not daebus__) yet not in $list:"
    echo "$unlisted"
    status=1
  fi
  exit $status
fi
lib=$1
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^_' | sort -u)
if [[ "${2:-}" == "--update" ]]; then
  echo "$actual" > "$list"; echo "updated $list"; exit 0
fi
# Every exported symbol must carry the daebus_ prefix and be declared in a public header.
bad=$(echo "$actual" | grep -v '^daebus_' || true)
if [[ -n "$bad" ]]; then echo "exported without the daebus_ prefix:"; echo "$bad"; exit 1; fi
if ! diff <(sort -u "$list") <(echo "$actual"); then
  echo "exported symbols differ from $list (< listed only, > exported only)"; exit 1
fi
hdr=$(cat "$(dirname "$0")"/../../include/daebus/*.h)
missing=0
for s in $actual; do
  grep -qw "$s" <<<"$hdr" || { echo "exported but not declared in include/daebus: $s"; missing=1; }
done
exit $missing
