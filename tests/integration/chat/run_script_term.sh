#!/usr/bin/env bash
# `make run` stopped the way `timeout` stops it, five times: the script gets a
# SIGTERM of its own and another one sent to its whole process group (as
# `timeout make run` delivers: one from timeout to the group, one from make
# to its child). Each time the service must stop exactly once, gracefully
# (no "second signal"), before the private Redis goes away; run.sh exits 0;
# and the DAEBUS_REDIS_URL line it prints works for daebus-call meanwhile.
# Usage: run_script_term.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$1 src=$2
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
log=$(mktemp /tmp/daebus-runterm-XXXXXX.log)
leader="" http_port="" redis_port=""

# The service and its Redis run in sessions of their own: kill them by pid,
# found by the environment the service inherited and by Redis's command line.
kill_leftovers() {
  local e pid
  [[ -n $leader ]] && kill -KILL -- -"$leader" 2>/dev/null
  for e in /proc/[0-9]*/environ; do
    if [[ -n $http_port ]] && tr '\0' '\n' <"$e" 2>/dev/null | grep -qx "DAEBUS_HTTP_PORT=$http_port"; then
      pid=${e#/proc/}
      kill -KILL "${pid%/environ}" 2>/dev/null
    fi
  done
  if [[ -n $redis_port ]]; then
    for e in /proc/[0-9]*/cmdline; do
      if tr '\0' ' ' <"$e" 2>/dev/null | grep -q "^redis-server 127.0.0.1:$redis_port\b"; then
        pid=${e#/proc/}
        kill -KILL "${pid%/cmdline}" 2>/dev/null
      fi
    done
  fi
}
cleanup() { kill_leftovers; rm -f "$log"; }
trap cleanup EXIT
fail() { echo "run_script_term: FAIL (round $round): $*"; echo "--- log"; cat "$log"; exit 1; }

for round in 1 2 3 4 5; do
  http_port=$(free_port) redis_port=""
  dead_port=$(free_port) # nothing listens there: the script starts its own Redis
  : >"$log"
  # Its own process group, as `timeout` makes one.
  DAEBUS_REDIS_URL="redis://127.0.0.1:$dead_port" DAEBUS_HTTP_PORT=$http_port \
    setsid bash "$src/scripts/run.sh" "$build" >"$log" 2>&1 &
  leader=$!
  up=0
  for _ in $(seq 1 200); do
    if grep -q 'ready (components' "$log"; then up=1; break; fi
    kill -0 "$leader" 2>/dev/null || break
    sleep 0.1
  done
  [[ $up == 1 ]] || fail "service not ready within 20 s"
  redis_port=$(sed -n 's/.*private redis-server on port \([0-9]*\).*/\1/p' "$log" | head -1)
  [[ -n $redis_port ]] || fail "no private redis-server started"

  # The line to paste in a second terminal, then the documented call there.
  line=$(grep -x 'export DAEBUS_REDIS_URL=redis://127.0.0.1:[0-9]*' "$log" | head -1)
  [[ $line == "export DAEBUS_REDIS_URL=redis://127.0.0.1:$redis_port" ]] || fail "no DAEBUS_REDIS_URL line to paste"
  out=$(env -u DAEBUS_REDIS_URL bash -c "$line && '$build/bin/daebus-call' chat_service get_connected_clients" 2>&1) \
    || fail "daebus-call with the pasted line failed: $out"
  [[ $out == "{"* ]] || fail "daebus-call printed '$out'"

  # What `timeout` does: the signal to its child, then to the process group.
  kill -TERM "$leader"
  kill -TERM -- -"$leader" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$leader" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$leader" 2>/dev/null && fail "run.sh still running 10 s after SIGTERM"
  wait "$leader"
  code=$?
  [[ $code == 0 ]] || fail "run.sh exited $code after SIGTERM"
  n=$(grep -c 'shutting down gracefully' "$log")
  [[ $n == 1 ]] || fail "$n graceful stops, not 1"
  grep -q 'second signal' "$log" && fail "the service got a second signal"
  grep -q 'stopped (shutdown took' "$log" || fail "service did not report its stop"
  grep -q 'lost connection to Redis' "$log" && fail "Redis went away before the service had stopped"
  grep -q 'exited with status 0' "$log" || fail "run.sh did not report status 0"
  # The service is gone before run.sh exits, and the private Redis with it.
  if /usr/bin/python3 -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1',$http_port))==0 else 1)"; then
    fail "service still listening on $http_port after run.sh exited"
  fi
  sleep 0.3
  if /usr/bin/python3 -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1',$redis_port))==0 else 1)"; then
    fail "private redis-server on port $redis_port still running"
  fi
  echo "run_script_term: round $round ok (HTTP $http_port, Redis $redis_port, one graceful stop, exit 0)"
  leader=""
done
echo "run_script_term: ok"
