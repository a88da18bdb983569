# Sourced by scripts/run.sh for `make run REPLICAS=N` (N >= 2), once Redis
# answers: starts N replicas of the service on free ports, nginx in front of
# them on DAEBUS_HTTP_PORT (8080 by default; plain HTTP, the configuration
# scripts/nginx-conf.sh prints, least_conn, WebSocket upgrades proxied), and
# prints the address to open in two browser tabs.
#
# Like the single service: every child runs in a session of its own, so only
# this script gets the terminal's signals; the first Ctrl-C or SIGTERM becomes
# one SIGTERM to each replica (later ones are ignored). When the replicas have
# stopped (their WebSocket close frames go out through nginx), nginx is
# stopped, then the private Redis (run.sh's EXIT trap). A replica or nginx that
# exits on its own stops the rest. Exit status: 0 when every replica exited 0.
# Needs from run.sh: $bin, $replicas, $src_dir, cleanup (stops the private Redis).

front=${DAEBUS_HTTP_PORT:-8080}
rundir=$(mktemp -d /tmp/daebus-run-XXXXXX)
replica_pids=() replica_ports=() nginx_pid="" stopping=0 termed=0
declare -A exit_status=()

nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
if [[ ! -x $nginx_bin ]]; then
  echo "run: REPLICAS=$replicas needs nginx (scripts/deps.sh installs it)" >&2
  exit 1
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((front + $1))
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { kill -0 "$1" 2>/dev/null; }

# One SIGTERM per replica, ever: a second one would end it at once.
stop_replicas() {
  local p
  ((termed)) && return 0
  termed=1
  for p in "${replica_pids[@]}"; do alive "$p" && kill -TERM "$p" 2>/dev/null; done
  return 0
}

# Waits for every replica (any `wait` may end early on a trapped signal), then
# stops nginx. A pid `wait -n` did not report is asked for once more at the end.
wait_all() {
  local p who st waiting
  while :; do
    waiting=()
    for p in "${replica_pids[@]}"; do alive "$p" && waiting+=("$p"); done
    [[ -n $nginx_pid ]] && alive "$nginx_pid" && waiting+=("$nginx_pid")
    if [[ $stopping == 0 ]] && ((${#waiting[@]} < ${#replica_pids[@]} + 1)); then
      stopping=1
      echo "run: a replica or nginx exited; stopping the rest"
      stop_replicas
    fi
    # Only nginx left (or nothing): the replicas are done.
    local left=0
    for p in "${replica_pids[@]}"; do alive "$p" && left=1; done
    ((left)) || break
    who=""
    set +e
    wait -n -p who "${waiting[@]}"
    st=$?
    set -e
    [[ -n ${who:-} ]] && exit_status[$who]=$st
  done
  for p in "${replica_pids[@]}"; do
    if [[ -z ${exit_status[$p]:-} ]]; then
      set +e
      wait "$p" 2>/dev/null
      st=$?
      set -e
      exit_status[$p]=$st
    fi
  done
}

stop_nginx() {
  [[ -n $nginx_pid ]] || return 0
  alive "$nginx_pid" && kill -TERM "$nginx_pid" 2>/dev/null
  wait "$nginx_pid" 2>/dev/null || true
  nginx_pid=""
}

replicas_cleanup() {
  # Only after an early exit are children still running here.
  stop_replicas
  local p
  for p in "${replica_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  stop_nginx
  rm -rf "$rundir"
  cleanup
}
trap replicas_cleanup EXIT

replicas_on_signal() {
  if ((${#replica_pids[@]} == 0)); then
    exit 143 # nothing started yet but maybe Redis: the EXIT trap
  fi
  if [[ $stopping == 0 ]]; then
    stopping=1
    stop_replicas
  fi
}
trap replicas_on_signal INT TERM

# ---- the replicas ----
for i in $(seq 1 "$replicas"); do
  p=$(free_port "$i")
  replica_ports+=("$p")
  DAEBUS_HTTP_PORT=$p setsid "$bin" "${@:2}" &
  replica_pids+=($!)
done
for i in "${!replica_pids[@]}"; do
  for _ in $(seq 1 200); do
    listening "${replica_ports[$i]}" && break
    alive "${replica_pids[$i]}" || break
    sleep 0.05
  done
  if ! listening "${replica_ports[$i]}"; then
    echo "run: replica $((i + 1)) did not start on port ${replica_ports[$i]}" >&2
    exit 1
  fi
  # Listening is not ready: the WebSocket component and the bus start after
  # the HTTP port opens (an upgrade then gets no valid answer). Wait for
  # /health/ready (404: a service without the health blueprint).
  for _ in $(seq 1 200); do
    command -v curl >/dev/null || break
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:${replica_ports[$i]}/health/ready" || true)
    [[ $code == 200 || $code == 404 ]] && break
    alive "${replica_pids[$i]}" || break
    sleep 0.05
  done
done

# ---- nginx in front ----
# least_conn: a second tab's WebSocket goes to the replica without the first one.
conf_args=(--standalone "$rundir/nginx" --http "$front" --http-mode proxy --name daebus_run --balance least-conn)
for p in "${replica_ports[@]}"; do conf_args+=(--upstream "127.0.0.1:$p"); done
mkdir -p "$rundir/nginx"
bash "$src_dir/scripts/nginx-conf.sh" "${conf_args[@]}" >"$rundir/nginx/nginx.conf"
setsid "$nginx_bin" -p "$rundir/nginx" -c "$rundir/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 1 100); do
  listening "$front" && break
  alive "$nginx_pid" || break
  sleep 0.05
done
if ! alive "$nginx_pid" || ! listening "$front"; then
  echo "run: nginx did not start on port $front (in use? set DAEBUS_HTTP_PORT)" >&2
  cat "$rundir/nginx/error.log" >&2 2>/dev/null || true
  exit 1
fi
echo "run: $replicas replicas of $(basename "$bin") on ports ${replica_ports[*]}, nginx in front on port $front"
echo "run: open http://localhost:$front/ in two browser tabs (Ctrl-C to stop)"

wait_all
stop_nginx
status=0
for p in "${replica_pids[@]}"; do
  [[ ${exit_status[$p]} == 0 ]] || status=${exit_status[$p]}
done
echo "run: $replicas replicas exited with status $(for p in "${replica_pids[@]}"; do printf '%s ' "${exit_status[$p]}"; done)"
exit "$status"
