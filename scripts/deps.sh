#!/usr/bin/env bash
# Installs the Debian packages daebus-c needs, and only the missing ones.
# Usage: scripts/deps.sh [run|test|bench|fuzz|browser]...   (default: run)
# Idempotent: a second run installs nothing. Needs root only when something is missing.
set -euo pipefail

# nginx and openssl: the load balancer and throw-away TLS certificate of the
# deployment tests and of `make run REPLICAS=2` (each starts its own nginx).
base=(build-essential cmake pkg-config libcivetweb-dev libcjson-dev libhiredis-dev libcunit1-dev
      redis-server nginx openssl)
want=("${base[@]}")
for profile in "${@:-run}"; do
  case "$profile" in
    run) ;;
    test) want+=(redis-sentinel python3 python3-websockets python3-redis curl clang libclang-rt-14-dev clang-format) ;;
    browser) want+=(chromium nodejs npm) ;;
    bench) want+=(wrk procps) ;;
    fuzz) want+=(clang libclang-rt-14-dev) ;;
    *) echo "deps.sh: unknown profile '$profile' (run, test, bench, fuzz, browser)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  # A Node.js from elsewhere (e.g. nodesource) ships its own npm and conflicts with Debian's.
  if [[ $p == npm ]] && command -v npm >/dev/null; then continue; fi
  if [[ $p == nodejs ]] && command -v node >/dev/null; then continue; fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# De-duplicate.
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
fi

if ((${#missing[@]} == 0)); then
  echo "deps: all packages present"
  exit 0
fi

echo "deps: missing packages: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "deps: not root. Install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Debian's nginx package starts the system nginx (port 80) where services may
# start; the tests and `make run` never use it: stop the one just installed.
if [[ " ${missing[*]} " == *" nginx "* && -s /run/nginx.pid ]]; then
  /usr/sbin/nginx -s quit 2>/dev/null && echo "deps: stopped the system nginx the package started (not used here)"
fi
exit 0
