#!/usr/bin/env bash
# The shared library exports exactly the symbols listed in exported_symbols.txt
# (the functions and data the public headers declare), nothing else.
# Regenerate after an intended API change: tests/api/check_exports.sh LIB --update
set -euo pipefail
lib=$1
list=$(dirname "$0")/exported_symbols.txt
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
