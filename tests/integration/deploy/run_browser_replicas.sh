#!/usr/bin/env bash
# The chat page through nginx over https:// with two replicas (label browser).
# Usage: run_browser_replicas.sh CHAT_SERVICE NODE_DIR SHOT_DIR SOURCE_DIR
# deploy_env.py starts Redis, two chat_service replicas and nginx with TLS
# (the configuration scripts/nginx-conf.sh prints); browser_replicas.js drives
# Chromium. npm playwright-core is installed into NODE_DIR once (the same
# directory and package.json as tests/browser). Exit 0 pass, 1 fail, 77
# skipped (only when Chromium cannot start; the reason is printed).
set -uo pipefail
chat=$1 nodedir=$2 shots=$3 src=$4
here=$(cd "$(dirname "$0")" && pwd)
chromium_bin=${CHROMIUM:-/usr/bin/chromium}
tmp=$(mktemp -d /tmp/daebus-browser-rep-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
skip() { echo "SKIPPED: browser replicas test: $*" >&2; exit 77; }
fail() { echo "FAILED: browser replicas test: $*" >&2; exit 1; }

[[ -x "$chromium_bin" ]] || skip "Chromium not found at $chromium_bin (scripts/deps.sh browser)"
if ! out=$(timeout 60 "$chromium_bin" --headless --no-sandbox --disable-gpu --no-first-run \
      --user-data-dir="$tmp/probe" --dump-dom about:blank 2>&1); then
  skip "Chromium cannot start: $(printf '%s' "$out" | tail -n 3)"
fi
command -v node >/dev/null || fail "node not found (scripts/deps.sh browser installs nodejs npm)"
command -v npm >/dev/null || fail "npm not found (scripts/deps.sh browser installs nodejs npm)"
mkdir -p "$nodedir" "$shots"
(
  flock 9
  if ! cmp -s "$src/tests/browser/package.json" "$nodedir/package.json" ||
     [[ ! -f "$nodedir/node_modules/playwright-core/package.json" ]]; then
    cp "$src/tests/browser/package.json" "$nodedir/package.json"
    echo "browser replicas test: npm install playwright-core into $nodedir"
    (cd "$nodedir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error) ||
      exit 1
  fi
) 9>"$nodedir/.install.lock" || fail "npm install playwright-core failed"

NODE_PATH="$nodedir/node_modules" CHROMIUM="$chromium_bin" SHOT_DIR="$shots" PROFILE_DIR="$tmp/profile" \
  /usr/bin/python3 "$here/deploy_env.py" --chat "$chat" --source "$src" --replicas 2 -- \
  node "$here/browser_replicas.js"
