#!/usr/bin/env bash
# Mechanical style checks: clang-format clean, banned functions absent.
set -euo pipefail
files=$(git ls-files '*.c' '*.h')
fail=0
if command -v clang-format >/dev/null; then
  if ! clang-format --dry-run --Werror $files 2>/tmp/daebus-format.log; then
    echo "style: clang-format differences (run 'make format'):"; head -40 /tmp/daebus-format.log; fail=1
  fi
else
  echo "style: clang-format not installed, skipping the format check"
fi
banned='\b(strcpy|strcat|sprintf|vsprintf|strtok|gmtime|localtime|cJSON_GetErrorPtr|rand)[[:space:]]*\('
if grep -nE "$banned" $files | grep -v '^scripts/'; then
  echo "style: banned functions used (see DESIGN.md house style 18)"; fail=1
fi
exit $fail
