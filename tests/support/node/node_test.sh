# node_test.sh - sourced by the shell runners of the node client tests
# (tests/integration/gateway/run_gateway_test.sh,
# tests/integration/websocket/run_channels_node.sh): a temp directory and the
# background processes killed on exit, npm ws installed once into the build
# tree, a private redis-server, services started until their ready line and
# stopped with SIGTERM (status 0, no sanitizer report).
#   source "$(dirname "$0")/../../support/node/node_test.sh"
#   nt_init "gateway test" daebus-gateway
#   nt_node_ws "$work" "$src/package.json"      # sets NODE_PATH
#   nt_redis                                    # sets rport, redis_url
#   nt_start NAME LOG CMD...; pid=$last_pid     # waits for 'service "NAME" ready'
#   nt_stop "$pid" LOG NAME

# nt_init LABEL TMP_PREFIX: sets tmp, pids; the cleanup on exit kills pids and
# any process whose pid file is $tmp/*.pid (a redis-server a client restarted).
nt_init() {
  nt_label=$1
  tmp=$(mktemp -d "/tmp/$2-XXXXXX")
  pids=()
  trap nt_cleanup EXIT
}

nt_cleanup() {
  local p f
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for f in "$tmp"/*.pid; do [[ -f "$f" ]] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}

fail() { echo "FAILED: $nt_label: $*" >&2; exit 1; }

# nt_node_ws WORK_DIR PACKAGE_JSON: node + npm ws from PACKAGE_JSON, installed
# once into WORK_DIR/node (again when PACKAGE_JSON changed); exports NODE_PATH.
nt_node_ws() {
  command -v node >/dev/null || fail "node not found (scripts/deps.sh browser installs nodejs npm)"
  local nodedir="$1/node"
  mkdir -p "$nodedir" || fail "cannot create $nodedir"
  if ! cmp -s "$2" "$nodedir/package.json" || [[ ! -f "$nodedir/node_modules/ws/package.json" ]]; then
    command -v npm >/dev/null || fail "npm not found (scripts/deps.sh browser installs nodejs npm)"
    cp "$2" "$nodedir/package.json"
    echo "$nt_label: npm install ws into $nodedir"
    (cd "$nodedir" && npm install --no-audit --no-fund --loglevel=error) || fail "npm install ws failed"
  fi
  export NODE_PATH="$nodedir/node_modules"
}

nt_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nt_redis: a private redis-server (no persistence) in $tmp; sets rport, redis_url.
nt_redis() {
  rport=$(nt_free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    --loglevel warning >"$tmp/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$rport" ping >/dev/null 2>&1 || fail "redis-server did not start: $(cat "$tmp/redis.log")"
  redis_url="redis://127.0.0.1:$rport"
}

# nt_start NAME LOG CMD...: runs CMD in the background, output in LOG; waits for
# its line 'service "NAME" ready'; sets last_pid.
nt_start() {
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

# nt_stop PID LOG NAME: SIGTERM, exit status 0, no sanitizer report.
nt_stop() {
  kill -TERM "$1" 2>/dev/null
  wait "$1"
  local st=$?
  [[ $st -eq 0 ]] || fail "$3 exited with $st after SIGTERM: $(tail -n 30 "$2")"
  if grep -q "Sanitizer" "$2"; then fail "$3: sanitizer report: $(grep -A 30 Sanitizer "$2" | head -60)"; fi
}
