#!/usr/bin/env bash
# Prints the nginx configuration docs/operations.md recommends for replicas of
# a daebus-c service: one upstream of every replica, HTTP and WebSocket through
# one location (upgrade headers passed on), TLS terminated by nginx.
#
#   scripts/nginx-conf.sh [options] --upstream HOST:PORT [--upstream HOST:PORT ...]
#
#   --upstream HOST:PORT   a replica (repeat for each one; round robin between them)
#   --server-name NAME     server_name (default: localhost)
#   --https LISTEN         TLS listener, e.g. 443 or 127.0.0.1:8443 (needs --cert and --key)
#   --cert FILE --key FILE the certificate chain and its private key (PEM)
#   --http LISTEN          plain-HTTP listener, e.g. 80 or 127.0.0.1:8080
#   --http-mode MODE       redirect (to the TLS listener; the default with --https) or proxy
#                          (serve plain HTTP too; the default without --https)
#   --balance METHOD       round-robin (the default) or least-conn (each connection to the
#                          replica holding the fewest: evens out long-lived WebSockets)
#   --name NAME            the upstream's name (default: daebus)
#   --max-body SIZE        client_max_body_size (default: 1m, the HTTP max_body_size)
#   --standalone DIR       print a whole nginx.conf for `nginx -p DIR -c DIR/nginx.conf`:
#                          one foreground process as the current user (daemon off,
#                          master_process off), pid, logs and temp files under DIR.
#                          Without it: the http-context part, for /etc/nginx/conf.d/.
#
# The docs show this script's output for the command line written above it, and
# tests/integration/deploy checks that they agree and runs nginx on the output.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "nginx-conf.sh: $*" >&2; exit 2; }

upstreams=() server_name=localhost https="" http="" mode="" cert="" key="" name=daebus max_body=1m standalone=""
balance=round-robin
while (($#)); do
  opt=$1
  case "$opt" in
    -h | --help) usage ;;
  esac
  (($# >= 2)) || die "$opt needs a value"
  case "$opt" in
    --upstream) upstreams+=("$2") ;;
    --server-name) server_name=$2 ;;
    --https) https=$2 ;;
    --http) http=$2 ;;
    --http-mode) mode=$2 ;;
    --cert) cert=$2 ;;
    --key) key=$2 ;;
    --name) name=$2 ;;
    --balance) balance=$2 ;;
    --max-body) max_body=$2 ;;
    --standalone) standalone=$2 ;;
    *) die "unknown option '$opt' (--help)" ;;
  esac
  shift 2
done
((${#upstreams[@]})) || die "no --upstream given"
[[ -n $https || -n $http ]] || die "give --https, --http or both"
if [[ -n $https ]]; then
  [[ -n $cert && -n $key ]] || die "--https needs --cert and --key"
fi
[[ -n $mode ]] || { [[ -n $https ]] && mode=redirect || mode=proxy; }
[[ $mode == redirect || $mode == proxy ]] || die "--http-mode is redirect or proxy"
[[ $mode == proxy || -n $https ]] || die "--http-mode redirect needs --https"
[[ $name =~ ^[A-Za-z0-9_]+$ ]] || die "--name: letters, digits and _ only"
[[ $balance == round-robin || $balance == least-conn ]] || die "--balance is round-robin or least-conn"
hostport='^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$'
for u in "${upstreams[@]}"; do
  [[ $u =~ $hostport ]] || die "--upstream '$u' is not HOST:PORT"
done

# The one location both server blocks share (HTTP and WebSocket on one port).
location_block() {
  cat <<EOF
    # As large as the replicas' max_body_size (1 MiB unless set otherwise).
    client_max_body_size $max_body;

    location / {
        proxy_pass http://$name;
        proxy_http_version 1.1;            # WebSocket needs HTTP/1.1 to the replica
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection \$${name}_connection;
        proxy_set_header Host \$http_host;  # with the port: the Origin check compares them
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_connect_timeout 2s;          # a replica that does not accept is passed over
        proxy_read_timeout 75s;            # above ping_interval (25 s): idle sockets stay open
        proxy_send_timeout 75s;
        # A replica that is gone (refused, timed out) or stopping (503 while it
        # drains) is skipped: requests nginx may repeat go to the next one.
        proxy_next_upstream error timeout http_502 http_503;
    }
EOF
}

emit_http_part() {
  cat <<EOF
# Replicas of one daebus-c service behind nginx (scripts/nginx-conf.sh).
# Upgrade requests get "Connection: upgrade"; others "close": CivetWeb holds a
# thread per connection, so nginx keeps no idle connections to the replicas.
map \$http_upgrade \$${name}_connection {
    default upgrade;
    ''      close;
}

upstream $name {
EOF
  [[ $balance == least-conn ]] && printf '    least_conn;\n'
  for u in "${upstreams[@]}"; do
    printf '    server %s max_fails=1 fail_timeout=5s;\n' "$u"
  done
  printf '}\n'
  if [[ -n $https ]]; then
    cat <<EOF

server {
    listen $https ssl;
    server_name $server_name;
    ssl_certificate     $cert;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:${name}_tls:10m;
    ssl_session_timeout 1h;

EOF
    location_block
    printf '}\n'
  fi
  if [[ -n $http ]]; then
    printf '\nserver {\n    listen %s;\n    server_name %s;\n\n' "$http" "$server_name"
    if [[ $mode == redirect ]]; then
      local port=${https##*:}
      if [[ $port == 443 ]]; then
        printf '    return 301 https://$host$request_uri;\n'
      else
        printf '    return 301 https://$host:%s$request_uri;\n' "$port"
      fi
    else
      location_block
    fi
    printf '}\n'
  fi
}

if [[ -z $standalone ]]; then
  emit_http_part
  exit 0
fi

[[ $standalone == /* ]] || standalone="$PWD/$standalone"
mkdir -p "$standalone/tmp"
cat <<EOF
# nginx -p $standalone -c $standalone/nginx.conf
# One process in the foreground as the current user; everything under the prefix.
daemon off;
master_process off;
worker_processes 1;
pid $standalone/nginx.pid;
error_log $standalone/error.log notice;

events {
    worker_connections 1024;
}

http {
    log_format ${name}_log '\$remote_addr [\$time_local] "\$request" \$status upstream=\$upstream_addr';
    access_log $standalone/access.log ${name}_log;
    client_body_temp_path $standalone/tmp/body;
    proxy_temp_path $standalone/tmp/proxy;
    fastcgi_temp_path $standalone/tmp/fastcgi;
    uwsgi_temp_path $standalone/tmp/uwsgi;
    scgi_temp_path $standalone/tmp/scgi;

EOF
emit_http_part | sed 's/^./    &/'
printf '}\n'
