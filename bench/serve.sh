#!/usr/bin/env bash
# Serves the same 4 KiB, 100 KiB and 10 MiB files with paf and with nginx,
# side by side on loopback, and measures both in the same run:
#   wrk    HTTP/1.1 plain and over TLS
#   h2load HTTP/2 over TLS
# It prints requests/s for each and the paf/nginx ratio. Results and the
# machine they came from go in docs/benchmarks.md.
#
# Usage: bench/serve.sh [DURATION_SECONDS]   (default 10)
# Needs: go, nginx (nginx-light), wrk, h2load (nghttp2-client), openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
conns=${CONNS:-32}
for p in nginx wrk h2load openssl; do
	command -v $p >/dev/null || [ -x /usr/sbin/$p ] || { echo "bench: $p not found (apt-get install nginx-light wrk nghttp2-client openssl)" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin"

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# Incompressible content, so neither server's compression changes the bytes sent.
mkdir -p "$work/www"
head -c 4096 /dev/urandom >"$work/www/4k.bin"
head -c 102400 /dev/urandom >"$work/www/100k.bin"
head -c 10485760 /dev/urandom >"$work/www/10m.bin"
echo ok >"$work/www/index.html"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
paf_http=$(free_port); paf_https=$(free_port); ngx_http=$(free_port); ngx_https=$(free_port)

CGO_ENABLED=0 go build -o "$work/paf" ./cmd/paf
# Two paf processes: with HTTPS on, paf's plain listener only redirects.
"$work/paf" serve --root "$work/www" --data-dir "$work/data" --poll 0 --log-level warn \
	--http 127.0.0.1:$paf_http --https off 2>"$work/paf-http.log" &
pids+=($!)
"$work/paf" serve --root "$work/www" --data-dir "$work/data" --poll 0 --log-level warn \
	--http off --https 127.0.0.1:$paf_https \
	--tls-cert "$work/cert.pem" --tls-key "$work/key.pem" 2>"$work/paf-https.log" &
pids+=($!)

cat >"$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	default_type application/octet-stream;
	ssl_protocols TLSv1.2 TLSv1.3;
	client_body_temp_path $work/ngx_tmp;
	proxy_temp_path $work/ngx_tmp;
	fastcgi_temp_path $work/ngx_tmp;
	uwsgi_temp_path $work/ngx_tmp;
	scgi_temp_path $work/ngx_tmp;
	server {
		listen 127.0.0.1:$ngx_http;
		listen 127.0.0.1:$ngx_https ssl http2;
		ssl_certificate $work/cert.pem;
		ssl_certificate_key $work/key.pem;
		root $work/www;
	}
}
NGINX
mkdir -p "$work/ngx_tmp"
nginx -c "$work/nginx.conf" -e "$work/nginx.err" 2>/dev/null || nginx -c "$work/nginx.conf"

for i in $(seq 1 100); do
	curl -sfk -o /dev/null "https://127.0.0.1:$paf_https/index.html" && \
	curl -sf -o /dev/null "http://127.0.0.1:$paf_http/index.html" && \
	curl -sfk -o /dev/null "https://127.0.0.1:$ngx_https/index.html" && break
	sleep 0.1
done

rps_wrk() { wrk -t1 -c"$conns" -d"${dur}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
rps_h2() { h2load -D "$dur" -c 16 -m 8 -t1 "$1" 2>/dev/null | awk '/^finished in/ {gsub(/,/,""); print $4}'; }

printf '%-8s %-12s %12s %12s %8s\n' file protocol paf nginx paf/nginx
for f in 4k 100k 10m; do
	for proto in http1 https1 h2; do
		case $proto in
		http1)  p=$(rps_wrk "http://127.0.0.1:$paf_http/$f.bin");   n=$(rps_wrk "http://127.0.0.1:$ngx_http/$f.bin") ;;
		https1) p=$(rps_wrk "https://127.0.0.1:$paf_https/$f.bin"); n=$(rps_wrk "https://127.0.0.1:$ngx_https/$f.bin") ;;
		h2)     p=$(rps_h2 "https://127.0.0.1:$paf_https/$f.bin");  n=$(rps_h2 "https://127.0.0.1:$ngx_https/$f.bin") ;;
		esac
		ratio=$(awk -v p="$p" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", p / n; else print "n/a" }')
		printf '%-8s %-12s %12s %12s %8s\n' "$f" "$proto" "$p" "$n" "$ratio"
	done
done
