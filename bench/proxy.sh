#!/usr/bin/env bash
# Requests/s for a 4 KiB response through three TLS-terminating reverse
# proxies in front of the same backend (paf serve, a Go server, over plain
# HTTP/1.1 on loopback), and the backend direct:
#   paf proxy, nginx (proxy_pass with upstream keepalive), HAProxy
# Clients use wrk over HTTPS (HTTP/1.1, keep-alive). It prints requests/s
# and the ratios to nginx.
#
# Usage: bench/proxy.sh [DURATION_SECONDS]
#   DURATION seconds per measurement (10), CONNS wrk connections (32),
#   THREADS wrk threads (2).
# Needs: go, nginx (nginx-light), haproxy, wrk, openssl, curl.
# Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
# shellcheck source=bench/lib.sh
. bench/lib.sh
dur=${1:-${DURATION:-10}}
conns=${CONNS:-32}
threads=${THREADS:-2}
bench_need go nginx haproxy wrk openssl curl

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

wait_up() { # URL
	for _ in $(seq 100); do curl -skf -o /dev/null -H 'Host: bench.test' "$1" && return 0; sleep 0.1; done
	echo "bench: $1 did not come up" >&2; exit 1
}

CGO_ENABLED=0 go build -o "$tmp/paf" ./cmd/paf
mkdir -p "$tmp/www" "$tmp/routes"
head -c 4096 /dev/urandom > "$tmp/www/4k.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
	-addext subjectAltName=DNS:bench.test -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" > "$tmp/haproxy.pem"

pb=$(free_port); pp=$(free_port); pn=$(free_port); ph=$(free_port)
"$tmp/paf" serve --root "$tmp/www" --http 127.0.0.1:$pb --https off --poll 0 --log-level warn --data-dir "$tmp/data-be" &
pids+=($!)
"$tmp/paf" route add bench.test --backend http://127.0.0.1:$pb --routes "$tmp/routes" >/dev/null
"$tmp/paf" proxy --routes "$tmp/routes" --http off --https 127.0.0.1:$pp --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" \
	--default-cert bench.test --poll 0 --log-level warn --data-dir "$tmp/data-px" &
pids+=($!)
cat > "$tmp/nginx.conf" <<NGINX
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  upstream be { server 127.0.0.1:$pb; keepalive 64; }
  server {
    listen 127.0.0.1:$pn ssl http2;
    ssl_certificate $tmp/cert.pem; ssl_certificate_key $tmp/key.pem;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; }
  }
}
NGINX
nginx -c "$tmp/nginx.conf" -e "$tmp/nginx.err"
cat > "$tmp/haproxy.cfg" <<HAP
global
  nbthread $(nproc)
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$ph ssl crt $tmp/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$pb
HAP
haproxy -f "$tmp/haproxy.cfg" -q &
pids+=($!)

wait_up "http://127.0.0.1:$pb/4k.bin"
wait_up "https://127.0.0.1:$pp/4k.bin"
wait_up "https://127.0.0.1:$pn/4k.bin"
wait_up "https://127.0.0.1:$ph/4k.bin"

rps() { # URL
	wrk -t"$threads" -c"$conns" -d"${dur}s" -H 'Host: bench.test' "$1" | awk '/Requests\/sec/ {print int($2)}'
}
direct=$(rps "http://127.0.0.1:$pb/4k.bin")
paf=$(rps "https://127.0.0.1:$pp/4k.bin")
ngx=$(rps "https://127.0.0.1:$pn/4k.bin")
hap=$(rps "https://127.0.0.1:$ph/4k.bin")
echo "4 KiB, wrk -t$threads -c$conns -d${dur}s, HTTPS (HTTP/1.1) to the proxy, HTTP/1.1 to the backend, $(nproc) CPUs"
printf '%-24s %10s %14s\n' target req/s "ratio to nginx"
for row in "backend direct (http):$direct" "paf proxy:$paf" "nginx:$ngx" "haproxy:$hap"; do
	name=${row%%:*}; v=${row##*:}
	printf '%-24s %10s %14s\n' "$name" "$v" "$(awk -v a="$v" -v b="$ngx" 'BEGIN { printf "%.2f", a/b }')"
done
