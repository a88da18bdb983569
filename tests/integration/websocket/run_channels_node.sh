#!/usr/bin/env bash
# The TypeScript client's channel frames from node (npm ws) against two
# replicas of channels_service on a private redis-server. Usage:
#   run_channels_node.sh CHANNELS_SERVICE WORK_DIR PACKAGE_JSON CLIENT_JS
# npm ws is installed once into WORK_DIR/node from PACKAGE_JSON (the gateway
# test's, tests/integration/gateway/package.json). Each replica must stop on
# SIGTERM with status 0 and no sanitizer report. Exit 0 pass, 1 fail.
set -uo pipefail
svc=$1 work=$2 pkg=$3 client=$4
source "$(dirname "${BASH_SOURCE[0]}")/../../support/node/node_test.sh"
nt_init "channels node test" daebus-chnode
nt_node_ws "$work" "$pkg"
nt_redis

# start LOG PORT: one replica; waits for its ready line.
start() {
  nt_start chan_test "$1" "$svc" --port "$2" --redis "$redis_url"
}

port1=$(nt_free_port)
start "$tmp/r1.log" "$port1"
pid1=$last_pid
port2=$(nt_free_port)
start "$tmp/r2.log" "$port2"
pid2=$last_pid

timeout 45 node "$client" "$port1" "$port2"
rc=$?
if [[ $rc -ne 0 ]]; then
  echo "---- replica logs (tail) ----" >&2; tail -n 30 "$tmp/r1.log" "$tmp/r2.log" >&2
  exit 1
fi
nt_stop "$pid1" "$tmp/r1.log" "replica 1"
nt_stop "$pid2" "$tmp/r2.log" "replica 2"
echo "channels node test: passed"
