#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and uses it as a user
# outside the repository would:
#  - pkg-config (PKG_CONFIG_PATH=P/lib/pkgconfig) names P, and a one-file
#    service built with its flags links, runs and answers an HTTP request;
#  - a tiny CMake project with find_package(daebus) builds the same service
#    against the shared and the static library, and shows which handlers an
#    OBJECT library (daebus_add_blueprint) and a static archive keep;
#  - installed programs find libdaebus.so with no LD_LIBRARY_PATH (RPATH);
#  - the installed daebus-call answers --help, and a call nobody listens to
#    fails at once with exit 2 and "no service 'x' is listening on redis://..."
#    (password masked), against a real redis-server.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$1 src=$2
here="$src/tests/integration/install"
tmp=$(mktemp -d /tmp/daebus-install-XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "install_test: FAIL: $*"; exit 1; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
unset LD_LIBRARY_PATH

# Runs a built service on a free port, checks GET /ping and the handler
# counts it prints, then stops it with SIGTERM and expects exit 0.
# Usage: check_service BINARY EXPECTED_COUNTS_LINE
check_service() {
  local bin=$1 want=$2 port log pid code body
  port=$(free_port)
  log="$tmp/$(basename "$bin").log"
  "$bin" --port "$port" >"$log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    grep -q 'ready' "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "$bin did not start"; }
  body=$(curl -s "http://127.0.0.1:$port/ping")
  [[ $body == '{"pong":true}' ]] || { cat "$log"; fail "$bin: GET /ping answered '$body'"; }
  grep -qx "$want" "$log" || { cat "$log"; fail "$bin: expected '$want'"; }
  kill -TERM "$pid"
  wait "$pid"
  code=$?
  [[ $code == 0 ]] || { cat "$log"; fail "$bin exited $code after SIGTERM"; }
  echo "install_test: $(basename "$bin") ok ($want)"
}

prefix="$tmp/prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "cmake --install"; }

# ---- pkg-config ----
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[[ $(pkg-config --variable=prefix daebus) == "$prefix" ]] \
  || fail "daebus.pc prefix is '$(pkg-config --variable=prefix daebus)', not $prefix"
flags=$(pkg-config --cflags --libs daebus) || fail "pkg-config --cflags --libs daebus"
[[ $flags == *"-I$prefix/include"* && $flags == *"-L$prefix/lib"* ]] || fail "pkg-config flags: $flags"
mkdir -p "$tmp/pc"
cp "$here/service.c" "$tmp/pc/"
# As docs/getting-started.md says: the flags, plus an rpath to the library.
# shellcheck disable=SC2046
cc -std=c11 "$tmp/pc/service.c" $(pkg-config --cflags --libs daebus) \
  -Wl,-rpath,"$(pkg-config --variable=libdir daebus)" -o "$tmp/pc/service" 2>"$tmp/pc/cc.log" \
  || { cat "$tmp/pc/cc.log"; fail "cc with pkg-config flags"; }
check_service "$tmp/pc/service" "handlers: routes=1 actions=1"

# ---- find_package(daebus) ----
mkdir -p "$tmp/cm"
cp "$here/service.c" "$here/extra.c" "$tmp/cm/"
cp "$here/CMakeLists.txt.user" "$tmp/cm/CMakeLists.txt"
unset PKG_CONFIG_PATH
{ cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    && cmake --build "$tmp/cm/build" -j2; } >"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log"; fail "find_package project"; }
check_service "$tmp/cm/build/svc_shared" "handlers: routes=1 actions=1"
check_service "$tmp/cm/build/svc_static" "handlers: routes=1 actions=1"
check_service "$tmp/cm/build/svc_objlib" "handlers: routes=1 actions=2"
check_service "$tmp/cm/build/svc_archive" "handlers: routes=1 actions=1"

# ---- installed programs ----
"$prefix/bin/daebus-call" --help >"$tmp/help.txt" 2>&1 || { cat "$tmp/help.txt"; fail "daebus-call --help"; }
grep -q '^usage: daebus-call' "$tmp/help.txt" || fail "daebus-call --help printed no usage"
if [[ -x $prefix/bin/chat_service ]]; then
  "$prefix/bin/chat_service" --help >"$tmp/chat-help.txt" 2>&1 \
    || { cat "$tmp/chat-help.txt"; fail "installed chat_service cannot start (libdaebus.so not found?)"; }
  echo "install_test: installed chat_service runs"
fi

# ---- daebus-call to a service nobody listens to ----
rport=$(free_port)
mkdir -p "$tmp/redis"
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/redis" \
  --requirepass s3cret --loglevel warning >"$tmp/redis/log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
  redis-cli -p "$rport" -a s3cret --no-auth-warning ping >/dev/null 2>&1 && break
  sleep 0.05
done
t0=$(date +%s%N)
"$prefix/bin/daebus-call" --redis "redis://:s3cret@127.0.0.1:$rport" --timeout 20 nobody_here x \
  >"$tmp/call.out" 2>"$tmp/call.err"
code=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $code == 2 ]] || { cat "$tmp/call.err"; fail "daebus-call to nobody exited $code, not 2"; }
((ms < 3000)) || fail "daebus-call to nobody took $ms ms (waited for the time-out?)"
grep -q "^daebus-call: no service 'nobody_here' is listening on redis://:\*\*\*@127.0.0.1:$rport" "$tmp/call.err" \
  || { cat "$tmp/call.err"; fail "daebus-call to nobody: wrong message"; }
grep -q s3cret "$tmp/call.err" && fail "daebus-call printed the password"
echo "install_test: daebus-call to nobody: exit 2 after $ms ms: $(cat "$tmp/call.err")"
echo "install_test: ok"
