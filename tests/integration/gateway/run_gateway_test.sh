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
source "$(dirname "${BASH_SOURCE[0]}")/../../support/node/node_test.sh"
nt_init "gateway test" daebus-gateway
nt_node_ws "$work" "$src/package.json"
nt_redis

# Two replicas of the called service: each call is taken by exactly one.
GW_MODE=target nt_start gw_target "$tmp/target.log" "$gw" --redis "$redis_url"
target_pid=$last_pid
GW_MODE=target nt_start gw_target "$tmp/target2.log" "$gw" --redis "$redis_url"
target2_pid=$last_pid
fport=$(nt_free_port)
GW_MODE=front nt_start gw_front "$tmp/front.log" "$gw" --redis "$redis_url" --port "$fport"
front_pid=$last_pid

REDIS_PORT=$rport WORK_DIR=$tmp timeout 60 node "$src/gateway_client.js" \
  "ws://127.0.0.1:$fport/ws" "http://127.0.0.1:$fport"
rc=$?
if [[ $rc -ne 0 ]]; then
  echo "---- gw_front log (tail) ----" >&2; tail -n 30 "$tmp/front.log" >&2
  echo "---- gw_target logs (tail) ----" >&2; tail -n 20 "$tmp/target.log" "$tmp/target2.log" >&2
  exit 1
fi
nt_stop "$front_pid" "$tmp/front.log" gw_front
nt_stop "$target_pid" "$tmp/target.log" gw_target
nt_stop "$target2_pid" "$tmp/target2.log" "gw_target (replica 2)"

if [[ -n "$chat" ]]; then
  cport=$(nt_free_port)
  nt_start chat_service "$tmp/chat.log" "$chat" --redis "$redis_url" --port "$cport"
  chat_pid=$last_pid
  timeout 60 node "$src/chat_gateway_client.js" \
    "ws://127.0.0.1:$cport/ws" "http://127.0.0.1:$cport"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "---- chat_service log (tail) ----" >&2; tail -n 30 "$tmp/chat.log" >&2
    exit 1
  fi
  nt_stop "$chat_pid" "$tmp/chat.log" chat_service
fi
echo "gateway test: passed"
