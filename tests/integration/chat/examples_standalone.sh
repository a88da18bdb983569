#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then configures and builds
# every example on its own against that installed package (find_package
# (daebus)), the way a user outside the repository would. The chat example is
# built from a copy outside the checkout, so it must find the blueprints the
# package installs under share/daebus/blueprints.
# Usage: examples_standalone.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d /tmp/daebus-standalone-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; exit 1; }
for ex in "$src"/examples/*/; do
  name=$(basename "$ex")
  cp -r "$ex" "$tmp/src-$name"
  if ! { cmake -S "$tmp/src-$name" -B "$tmp/build-$name" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
           -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build "$tmp/build-$name" -j2; } >"$tmp/$name.log" 2>&1; then
    echo "examples_standalone: $name FAILED to build against the installed package:"; cat "$tmp/$name.log"
    exit 1
  fi
  echo "examples_standalone: $name built against $tmp/prefix"
done
test -x "$tmp/build-chat/chat_service" && test -f "$tmp/build-chat/chat_static/index.html"
test -f "$tmp/prefix/share/daebus/examples/chat/static/index.html"
echo "examples_standalone: ok"
