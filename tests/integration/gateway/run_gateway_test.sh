#!/usr/bin/env bash
# The action gateway end to end. Usage:
#   run_gateway_test.sh GW_SERVICE CHAT_SERVICE|"" WORK_DIR SOURCE_DIR
# A private redis-server, gw_service as three processes (GW_MODE=target: two
# replicas of the called service; GW_MODE=front: WebSocket + gateway), a node client with npm
# ws (installed once into WORK_DIR/node) sending the TypeScript client's
# frames (gateway_client.js; its last case restarts redis-server on the same
# port); then chat_service and chat_gateway_client.js
# (list_rooms through the gateway = GET /api/rooms). Every service must stop
# on SIGTERM with status 0 and no sanitizer report. Exit 0 pass, 1 fail.
set -uo pipefail
gw=$1 chat=$2 work=$3 src=$4
mkdir -p "$work"
tmp=$(mktemp -d /tmp/daebus-gateway-XXXXXX)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [[ -f "$tmp/redis2.pid" ]] && kill -KILL "$(cat "$tmp/redis2.pid")" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAILED: gateway test: $*" >&2; exit 1; }

# ---- node + ws (cached in the build tree) ----
command -v node >/dev/null || fail "node not found (scripts/deps.sh browser installs nodejs npm)"
nodedir="$work/node"
mkdir -p "$nodedir"
if ! cmp -s "$src/package.json" "$nodedir/package.json" || [[ ! -f "$nodedir/node_modules/ws/package.json" ]]; then
  command -v npm >/dev/null || fail "npm not found (scripts/deps.sh browser installs nodejs npm)"
  cp "$src/package.json" "$nodedir/package.json"
  echo "gateway test: npm install ws into $nodedir"
  (cd "$nodedir" && npm install --no-audit --no-fund --loglevel=error) || fail "npm install ws failed"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
  --loglevel warning >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$rport" ping >/dev/null 2>&1 || fail "redis-server did not start: $(cat "$tmp/redis.log")"
redis_url="redis://127.0.0.1:$rport"

# start NAME LOG CMD...: runs CMD in the background; waits for its ready line.
start() {
  local name=$1 log=$2; shift 2
  "$@" >"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 300); do
    grep -q "service \"$name\" ready" "$log" 2>/dev/null && { last_pid=$pid; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  fail "$name did not become ready: $(tail -n 20 "$log")"
}

# stop PID LOG NAME: SIGTERM, exit status 0, no sanitizer report.
stop() {
  kill -TERM "$1" 2>/dev/null
  wait "$1"
  local st=$?
  [[ $st -eq 0 ]] || fail "$3 exited with $st after SIGTERM: $(tail -n 30 "$2")"
  if grep -q "Sanitizer" "$2"; then fail "$3: sanitizer report: $(grep -A 30 Sanitizer "$2" | head -60)"; fi
}

# Two replicas of the called service: each call is taken by exactly one.
GW_MODE=target start gw_target "$tmp/target.log" "$gw" --redis "$redis_url"
target_pid=$last_pid
GW_MODE=target start gw_target "$tmp/target2.log" "$gw" --redis "$redis_url"
target2_pid=$last_pid
fport=$(free_port)
GW_MODE=front start gw_front "$tmp/front.log" "$gw" --redis "$redis_url" --port "$fport"
front_pid=$last_pid

REDIS_PORT=$rport WORK_DIR=$tmp NODE_PATH="$nodedir/node_modules" timeout 60 node "$src/gateway_client.js" \
  "ws://127.0.0.1:$fport/ws" "http://127.0.0.1:$fport"
rc=$?
if [[ $rc -ne 0 ]]; then
  echo "---- gw_front log (tail) ----" >&2; tail -n 30 "$tmp/front.log" >&2
  echo "---- gw_target logs (tail) ----" >&2; tail -n 20 "$tmp/target.log" "$tmp/target2.log" >&2
  exit 1
fi
stop "$front_pid" "$tmp/front.log" gw_front
stop "$target_pid" "$tmp/target.log" gw_target
stop "$target2_pid" "$tmp/target2.log" "gw_target (replica 2)"

if [[ -n "$chat" ]]; then
  cport=$(free_port)
  start chat_service "$tmp/chat.log" "$chat" --redis "$redis_url" --port "$cport"
  chat_pid=$last_pid
  NODE_PATH="$nodedir/node_modules" timeout 60 node "$src/chat_gateway_client.js" \
    "ws://127.0.0.1:$cport/ws" "http://127.0.0.1:$cport"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "---- chat_service log (tail) ----" >&2; tail -n 30 "$tmp/chat.log" >&2
    exit 1
  fi
  stop "$chat_pid" "$tmp/chat.log" chat_service
fi
echo "gateway test: passed"
