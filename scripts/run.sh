#!/usr/bin/env bash
# Starts the chat example (or the hello example until chat exists). If no Redis
# answers at DAEBUS_REDIS_URL (default redis://127.0.0.1:6379), starts a private
# redis-server on a free port for this run, prints the DAEBUS_REDIS_URL line to
# use in another terminal, and stops it on exit.
#
# Signals: a Ctrl-C (SIGINT to the terminal's process group) or a SIGTERM
# (`timeout`, `kill`, make passing one on) stops the service once, gracefully:
# the service and the private Redis run in sessions of their own, so only
# this script receives signals, and it passes the first one on as a single
# SIGTERM and ignores the rest (`timeout make run` delivers two: one from
# timeout to the process group, one from make to its child). The script then
# waits for the service and exits with its status (0 after a graceful stop).
#
# REPLICAS=N (N >= 2; `make run REPLICAS=2`): N replicas of the service on
# free ports behind nginx on DAEBUS_HTTP_PORT instead (scripts/run-replicas.sh).
set -euo pipefail
build=${1:-build}
replicas=${REPLICAS:-1}
if ! [[ $replicas =~ ^[0-9]+$ ]] || ((replicas < 1 || replicas > 16)); then
  echo "run: REPLICAS='$replicas' is not a number of replicas (1 to 16)" >&2
  exit 2
fi
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$build/bin/chat_service"
[[ -x "$bin" ]] || bin="$build/bin/hello_service"
url=${DAEBUS_REDIS_URL:-redis://127.0.0.1:6379}
hostport=${url#redis://}; hostport=${hostport##*@}; hostport=${hostport%%/*}
host=${hostport%%:*}; port=${hostport##*:}
redis_pid="" svc="" stopping=0
cleanup() {
  if [[ -n "$redis_pid" ]]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  [[ -n "${rdir:-}" ]] && rm -rf "$rdir"
  return 0
}
trap cleanup EXIT
on_signal() {
  if [[ -z "$svc" ]]; then
    exit 143 # not started yet: nothing to stop but the private Redis (EXIT trap)
  fi
  if [[ $stopping == 0 ]]; then
    stopping=1
    kill -TERM "$svc" 2>/dev/null || true
  fi
}
trap on_signal INT TERM
if ! redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 6399)
  rdir=$(mktemp -d /tmp/daebus-redis-XXXXXX)
  # Its own session too: a Ctrl-C must not take Redis away before the service has stopped.
  setsid redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$rdir" --daemonize no \
    --loglevel warning >"$rdir/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  export DAEBUS_REDIS_URL="redis://127.0.0.1:$port"
  echo "run: no Redis at $url; started a private redis-server on port $port"
  echo "run: for daebus-call in another terminal, paste this line there first:"
  echo "export DAEBUS_REDIS_URL=$DAEBUS_REDIS_URL"
fi
if ((replicas > 1)); then
  source "$src_dir/scripts/run-replicas.sh" # exits
fi
export DAEBUS_HTTP_PORT=${DAEBUS_HTTP_PORT:-8080}
echo "run: starting $bin on http://localhost:$DAEBUS_HTTP_PORT/ (Ctrl-C to stop)"
setsid "$bin" "${@:2}" &
svc=$!
# `wait` returns early (128+signal) whenever a trapped signal arrives, and a
# signal that arrives while the trap runs ends the next `wait` at once without
# running the trap again: so wait until the process is gone, whatever ended
# each `wait`, then ask once more for a status an early return may have missed.
status=0
while :; do
  set +e
  wait "$svc"
  st=$?
  set -e
  [[ $st != 127 ]] && status=$st
  kill -0 "$svc" 2>/dev/null || break
done
set +e
wait "$svc" 2>/dev/null
st=$?
set -e
[[ $st != 127 ]] && status=$st
echo "run: $(basename "$bin") exited with status $status"
exit "$status"
