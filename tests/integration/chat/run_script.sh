#!/usr/bin/env bash
# `make run`'s script end to end: with no Redis reachable it starts a private
# redis-server, brings the chat service up, and a Ctrl-C (SIGINT to the whole
# foreground process group, as a terminal sends it) stops the service
# gracefully, exactly once, and removes the private Redis.
# Usage: run_script.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$1 src=$2
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
dead_port=$(free_port) # nothing listens there: the script must start its own Redis
log=$(mktemp /tmp/daebus-runsh-XXXXXX.log)
fail() { echo "run_script: FAIL: $*"; echo "--- log"; cat "$log"; exit 1; }

# As from a terminal: its own process group, SIGINT not ignored (a shell's
# background job would inherit it ignored, and bash cannot trap it then).
DAEBUS_REDIS_URL="redis://127.0.0.1:$dead_port" DAEBUS_HTTP_PORT=$http_port \
  /usr/bin/python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execvp("bash", ["bash"] + sys.argv[1:])' "$src/scripts/run.sh" "$build" >"$log" 2>&1 &
leader=$!
# The service and its Redis run in sessions of their own: find the service by
# the environment it inherited from this run.
cleanup() {
  kill -KILL -- -"$leader" 2>/dev/null
  local e pid
  for e in /proc/[0-9]*/environ; do
    if tr '\0' '\n' <"$e" 2>/dev/null | grep -qx "DAEBUS_HTTP_PORT=$http_port"; then
      pid=${e#/proc/}
      kill -KILL "${pid%/environ}" 2>/dev/null
    fi
  done
  # redis-server rewrites its title over its environment: find it by port.
  [[ -n ${redis_port:-} ]] && pkill -KILL -f "redis-server 127.0.0.1:$redis_port\$" 2>/dev/null
  rm -f "$log"
}
trap cleanup EXIT

up=0
for _ in $(seq 1 200); do
  if grep -q 'ready (components' "$log"; then up=1; break; fi
  sleep 0.1
done
[[ $up == 1 ]] || fail "service not ready within 20 s"
grep -q 'started a private redis-server' "$log" || fail "no private redis-server started"
redis_port=$(sed -n 's/.*private redis-server on port \([0-9]*\).*/\1/p' "$log" | head -1)
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/")
[[ $code == 200 ]] || fail "GET / answered $code"

kill -INT -- -"$leader" # the terminal's Ctrl-C
for _ in $(seq 1 100); do kill -0 "$leader" 2>/dev/null || break; sleep 0.1; done
kill -0 "$leader" 2>/dev/null && fail "run.sh still running 10 s after Ctrl-C"
wait "$leader"
grep -q 'shutting down gracefully' "$log" || fail "no graceful shutdown"
grep -q 'second signal' "$log" && fail "the service got two signals for one Ctrl-C"
grep -q 'stopped (shutdown took' "$log" || fail "service did not report its stop"
grep -q 'lost connection to Redis' "$log" && fail "Redis went away before the service had stopped"
sleep 0.3
if /usr/bin/python3 -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1',$redis_port))==0 else 1)"; then
  fail "private redis-server on port $redis_port still running"
fi
echo "run_script: ok (HTTP $http_port, private Redis $redis_port, graceful stop on Ctrl-C)"
