#!/usr/bin/env bash
# The README's "A whole service" block is examples/hello/main.c byte for byte,
# so the service a user copies is the one the build compiles and
# tests/integration/chat/test_examples runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
block=$(awk '/^## A whole service/{s=1} s&&/^```c$/{c=1;next} c&&/^```$/{exit} c{print}' "$root/README.md")
if [[ -z "$block" ]]; then echo "README.md: no \`\`\`c block under '## A whole service'"; exit 1; fi
if ! diff <(printf '%s\n' "$block") "$root/examples/hello/main.c"; then
  echo "README.md's service differs from examples/hello/main.c (< README, > main.c)"; exit 1
fi
echo "README service == examples/hello/main.c"
