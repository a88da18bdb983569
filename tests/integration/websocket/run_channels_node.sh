#!/usr/bin/env bash
# The TypeScript client's channel frames from node (npm ws) against two
# replicas of channels_service on a private redis-server. Usage:
#   run_channels_node.sh CHANNELS_SERVICE WORK_DIR PACKAGE_JSON CLIENT_JS
# npm ws is installed once into WORK_DIR/node from PACKAGE_JSON (the gateway
# test's, tests/integration/gateway/package.json). Each replica must stop on
# SIGTERM with status 0 and no sanitizer report. Exit 0 pass, 1 fail.
set -uo pipefail
svc=$1 work=$2 pkg=$3 client=$4
mkdir -p "$work"
tmp=$(mktemp -d /tmp/daebus-chnode-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAILED: channels node test: $*" >&2; exit 1; }

command -v node >/dev/null || fail "node not found (scripts/deps.sh browser installs nodejs npm)"
nodedir="$work/node"
mkdir -p "$nodedir"
if ! cmp -s "$pkg" "$nodedir/package.json" || [[ ! -f "$nodedir/node_modules/ws/package.json" ]]; then
  command -v npm >/dev/null || fail "npm not found (scripts/deps.sh browser installs nodejs npm)"
  cp "$pkg" "$nodedir/package.json"
  echo "channels node test: npm install ws into $nodedir"
  (cd "$nodedir" && npm install --no-audit --no-fund --loglevel=error) || fail "npm install ws failed"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
  --loglevel warning >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$rport" ping >/dev/null 2>&1 || fail "redis-server did not start: $(cat "$tmp/redis.log")"

# start LOG PORT: one replica; waits for its ready line.
start() {
  "$svc" --port "$2" --redis "redis://127.0.0.1:$rport" >"$1" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 300); do
    grep -q 'service "chan_test" ready' "$1" 2>/dev/null && { last_pid=$pid; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  fail "replica did not become ready: $(tail -n 20 "$1")"
}
stop() {
  kill -TERM "$1" 2>/dev/null
  wait "$1"
  local st=$?
  [[ $st -eq 0 ]] || fail "replica exited with $st after SIGTERM: $(tail -n 30 "$2")"
  if grep -q "Sanitizer" "$2"; then fail "sanitizer report: $(grep -A 30 Sanitizer "$2" | head -60)"; fi
}

port1=$(free_port)
start "$tmp/r1.log" "$port1"
pid1=$last_pid
port2=$(free_port)
start "$tmp/r2.log" "$port2"
pid2=$last_pid

NODE_PATH="$nodedir/node_modules" timeout 45 node "$client" "$port1" "$port2"
rc=$?
if [[ $rc -ne 0 ]]; then
  echo "---- replica logs (tail) ----" >&2; tail -n 30 "$tmp/r1.log" "$tmp/r2.log" >&2
  exit 1
fi
stop "$pid1" "$tmp/r1.log"
stop "$pid2" "$tmp/r2.log"
echo "channels node test: passed"
