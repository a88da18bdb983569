#!/usr/bin/env bash
# Browser test of the chat example. Usage:
#   run_browser_test.sh CHAT_SERVICE DAEBUS_CALL WORK_DIR SOURCE_DIR [TEST.js]
# Starts a private redis-server and chat_service on free ports, installs npm
# playwright-core into WORK_DIR/node (once; reused afterwards) and runs
# TEST.js (default browser_test.js) against /usr/bin/chromium. Exit 0 pass, 1 fail, 77 skipped
# (only when Chromium cannot start; the reason is printed).
set -uo pipefail
chat=$1 caller=$2 work=$3 src=$4 script=${5:-browser_test.js}
chromium_bin=${CHROMIUM:-/usr/bin/chromium}
mkdir -p "$work"
tmp=$(mktemp -d /tmp/daebus-browser-XXXXXX)
redis_pid="" chat_pid=""

cleanup() {
  [[ -n "$chat_pid" ]] && kill -TERM "$chat_pid" 2>/dev/null && wait "$chat_pid" 2>/dev/null
  [[ -n "$redis_pid" ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

skip() { echo "SKIPPED: browser test: $*" >&2; exit 77; }
fail() { echo "FAILED: browser test: $*" >&2; exit 1; }

# ---- Chromium ----
[[ -x "$chromium_bin" ]] || skip "Chromium not found at $chromium_bin (install the Debian package 'chromium': scripts/deps.sh browser)"
if ! out=$(timeout 60 "$chromium_bin" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$tmp/probe-profile" --dump-dom about:blank 2>&1); then
  skip "Chromium cannot start: $(printf '%s' "$out" | tail -n 3)"
fi

# ---- node + playwright-core (cached in the build tree) ----
command -v node >/dev/null || fail "node not found (scripts/deps.sh browser installs nodejs npm)"
command -v npm >/dev/null || fail "npm not found (scripts/deps.sh browser installs nodejs npm)"
nodedir="$work/node"
mkdir -p "$nodedir"
if ! cmp -s "$src/package.json" "$nodedir/package.json" || [[ ! -f "$nodedir/node_modules/playwright-core/package.json" ]]; then
  cp "$src/package.json" "$nodedir/package.json"
  echo "browser test: npm install playwright-core into $nodedir"
  (cd "$nodedir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error) \
    || fail "npm install playwright-core failed"
fi

# ---- redis-server and chat_service on free ports ----
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
  --loglevel warning >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$rport" ping >/dev/null 2>&1 || fail "redis-server did not start: $(cat "$tmp/redis.log")"
redis_url="redis://127.0.0.1:$rport"

hport=$(free_port)
CHAT_STATUS_INTERVAL=2 "$chat" --port "$hport" --redis "$redis_url" >"$tmp/chat.log" 2>&1 &
chat_pid=$!
ready=""
for _ in $(seq 1 200); do
  if grep -q 'service "chat_service" ready' "$tmp/chat.log" 2>/dev/null && curl -sf "http://127.0.0.1:$hport/health/ready" >/dev/null; then
    ready=1; break
  fi
  kill -0 "$chat_pid" 2>/dev/null || break
  sleep 0.05
done
[[ -n "$ready" ]] || fail "chat_service did not become ready: $(tail -n 20 "$tmp/chat.log")"

# ---- the test (browser_test.js leaves its pictures in WORK_DIR, others in a
# directory of their own) ----
shots=$work
[[ $script == browser_test.js ]] || shots="$work/${script%.js}"
mkdir -p "$shots"
NODE_PATH="$nodedir/node_modules" CHAT_BIN="$chat" CHAT_URL="http://127.0.0.1:$hport/" DAEBUS_CALL="$caller" \
  REDIS_URL="$redis_url" CHROMIUM="$chromium_bin" SHOT_DIR="$shots" PROFILE_DIR="$tmp/profile" \
  node "$src/$script"
rc=$?
if [[ $rc -ne 0 ]]; then
  echo "---- chat_service log (tail) ----" >&2
  tail -n 40 "$tmp/chat.log" >&2
  exit "$rc"
fi

# ---- browser_test.js stopped the first process with the shutdown action,
# the others leave it running: SIGTERM. Either way it exits 0. ----
if [[ $script == browser_test.js ]]; then
  wait "$chat_pid"
  st=$?
  why="the shutdown action"
else
  kill -TERM "$chat_pid"
  wait "$chat_pid"
  st=$?
  why="SIGTERM"
fi
chat_pid=""
[[ $st -eq 0 ]] || fail "chat_service exited with $st after $why (want 0)"
echo "browser test: $script passed (screenshots in $shots)"
