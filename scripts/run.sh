#!/usr/bin/env bash
# Starts the chat example (or the hello example until chat exists). If no Redis
# answers at DAEBUS_REDIS_URL (default redis://127.0.0.1:6379), starts a private
# redis-server on a free port for this run and stops it on exit.
set -euo pipefail
build=${1:-build}
bin="$build/bin/chat_service"
[[ -x "$bin" ]] || bin="$build/bin/hello_service"
url=${DAEBUS_REDIS_URL:-redis://127.0.0.1:6379}
hostport=${url#redis://}; hostport=${hostport##*@}; hostport=${hostport%%/*}
host=${hostport%%:*}; port=${hostport##*:}
redis_pid=""
cleanup() { [[ -n "$redis_pid" ]] && kill "$redis_pid" 2>/dev/null || true; [[ -n "${rdir:-}" ]] && rm -rf "$rdir"; }
trap cleanup EXIT
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
fi
export DAEBUS_HTTP_PORT=${DAEBUS_HTTP_PORT:-8080}
echo "run: starting $bin on http://localhost:$DAEBUS_HTTP_PORT/ (Ctrl-C to stop)"
# Its own session: a Ctrl-C in the terminal reaches the script, whose trap
# passes one SIGTERM on (the service would otherwise get both and exit at once).
setsid "$bin" "${@:2}" &
svc=$!
trap 'kill -TERM $svc 2>/dev/null || true' INT TERM
wait $svc || true
wait $svc 2>/dev/null || true
