#!/usr/bin/env bash
# Side by side, in one run: paf, nginx, Caddy and HAProxy on loopback with
# equivalent configurations (the same files, the same ECDSA P-256
# certificate for localhost, the same number of workers or threads, TLS 1.2
# and 1.3 with TLS 1.3 negotiated, TLS_AES_128_GCM_SHA256 and X25519, no
# access log), measured row by row, the servers alternating within each row:
#
#   4k     http1 https1 h2   4 KiB, requests/s: wrk (HTTP/1.1), h2load (HTTP/2)
#   100k   http1 https1 h2   100 KiB, MB/s of body
#   10m    http1 https1 h2   10 MiB, MB/s of body
#   handshake                full TLS 1.3 handshakes/s: h2load batches of
#                            HS_CONNS new connections, one request each
#   proxy                    4 KiB through each TLS-terminating proxy (wrk,
#                            HTTPS/1.1) to the same Go backend over plain HTTP/1.1
#   rss                      peak resident memory (VmHWM) of each server's
#                            processes over the whole run, workers summed
#
# HAProxy serves no files: it is in the proxy row, and in the handshake row
# as a TLS terminator in front of the proxy row's backend.
#
# Every server must answer 200 with the same bytes on every URL before
# anything is measured; any load-generator error or non-2xx status fails the
# run. It prints the medians, the ratio of each server to the best one per
# row (paf/best is the point), the CPU each used, and writes the same into
# docs/benchmarks.md between marker comments (replaced in place each run).
#
# Usage: bench/all.sh [DURATION_SECONDS]
#
# Settings (environment; the positional argument overrides DURATION):
#   DURATION   seconds per measurement (10)
#   REPEAT     measurements per cell, the median is quoted (3)
#   ROWS       subset of "4k 100k 10m handshake proxy" (all); rss is always reported
#   PROTOS     subset of "http1 https1 h2" for the file rows (all)
#   CONNS      wrk connections (32)
#   H2_CONNS   h2load connections (16), H2_STREAMS streams per connection (8)
#   HS_CONNS   connections per handshake batch (128)
#   PIN        1 (default when nproc >= 2): servers on the first half of the
#              CPUs, load generators and the proxy row's backend on the other
#              half; every server gets that many workers/threads. 0: nothing
#              pinned, nproc workers each.
#   DOC        the file the results go into (docs/benchmarks.md); WRITE_DOC=0
#              leaves it alone (for short trial runs)
#
# Needs: go, nginx (nginx-light), caddy, haproxy, wrk, h2load
# (nghttp2-client), openssl, curl, python3, taskset. Only loopback; every
# process it starts is stopped on exit (Ctrl-C and TERM included); every
# load command is bounded by DURATION plus a margin.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
# shellcheck source=bench/lib.sh
. bench/lib.sh

dur=${1:-${DURATION:-10}}
repeat=${REPEAT:-3}
rows=${ROWS:-4k 100k 10m handshake proxy}
protos=${PROTOS:-http1 https1 h2}
conns=${CONNS:-32}
h2conns=${H2_CONNS:-16}
h2streams=${H2_STREAMS:-8}
hsconns=${HS_CONNS:-128}
doc=${DOC:-docs/benchmarks.md}
write_doc=${WRITE_DOC:-1}
ncpu=$(nproc)
pin=${PIN:-$([ "$ncpu" -ge 2 ] && echo 1 || echo 0)}
bench_posint "$dur" "$repeat" "$conns" "$h2conns" "$h2streams" "$hsconns"
for r in $rows; do case $r in 4k | 100k | 10m | handshake | proxy) ;; *) echo "bench: unknown row $r" >&2; exit 2 ;; esac; done
for p in $protos; do case $p in http1 | https1 | h2) ;; *) echo "bench: unknown protocol $p" >&2; exit 2 ;; esac; done
bench_need go nginx caddy haproxy wrk h2load openssl curl python3 timeout sha256sum
[ "$pin" = 1 ] && bench_need taskset

bench_cpus
h2threads=$((threads < h2conns ? threads : h2conns))
wthreads=$((threads < conns ? threads : conns))
hsthreads=$((threads < hsconns ? threads : hsconns))
# One TLS 1.3 suite and group for every server: the Go servers (paf, Caddy)
# pick AES-128-GCM on AES-NI hardware and take the client's X25519 key
# share; OpenSSL (nginx, HAProxy) is told the same. h2load is told too.
suite=TLS_AES_128_GCM_SHA256
group=X25519

work=$(mktemp -d)
chmod 755 "$work" # nginx's workers run as another user
pids=()
masters=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${masters[@]}"; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Incompressible content, so no server's compression changes the bytes sent.
mkdir -p "$work/www" "$work/routes" "$work/tmp"
head -c 4096 /dev/urandom >"$work/www/4k.bin"
head -c 102400 /dev/urandom >"$work/www/100k.bin"
head -c 10485760 /dev/urandom >"$work/www/10m.bin"
echo ok >"$work/www/index.html"
chmod -R a+rX "$work/www"
make_cert "$work"
chmod a+r "$work/key.pem" "$work/cert.pem"
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"

declare -A port
for k in paf_http paf_https ngx_http ngx_https caddy_http caddy_https backend \
	paf_proxy ngx_proxy caddy_proxy hap_proxy hap_hs caddy_admin; do
	port[$k]=$(free_port)
done

paf_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- . 2>/dev/null | head -1)" ]; then paf_rev="$paf_rev+uncommitted"; fi
CGO_ENABLED=0 go build -o "$work/paf" ./cmd/paf

# --- servers ---------------------------------------------------------------
# paf: with HTTPS on, paf's plain listener only redirects, so plain HTTP is a
# second process. --log-level warn turns the access log off.
paf_common=(--root "$work/www" --data-dir "$work/data" --poll 0 --log-level warn)
cmd_paf_http=(env GOMAXPROCS=$procs "${srv[@]}" "$work/paf" serve "${paf_common[@]}" --http 127.0.0.1:${port[paf_http]} --https off)
cmd_paf_https=(env GOMAXPROCS=$procs "${srv[@]}" "$work/paf" serve "${paf_common[@]}" --http off
	--https 127.0.0.1:${port[paf_https]} --tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
"${cmd_paf_http[@]}" 2>"$work/paf-http.log" &
pid_paf_http=$!; pids+=($!)
"${cmd_paf_https[@]}" 2>"$work/paf-https.log" &
pid_paf_https=$!; pids+=($!)

# The proxy row's backend: paf serving the same files over plain HTTP, on the
# load generators' CPUs so that each proxy has the server CPUs to itself.
cmd_backend=(env GOMAXPROCS=$threads "${load[@]}" "$work/paf" serve --root "$work/www" --data-dir "$work/data-be"
	--poll 0 --log-level warn --http 127.0.0.1:${port[backend]} --https off)
"${cmd_backend[@]}" 2>"$work/backend.log" &
pid_backend=$!; pids+=($!)
"$work/paf" route add localhost --backend "http://127.0.0.1:${port[backend]}" --routes "$work/routes" >/dev/null
cmd_paf_proxy=(env GOMAXPROCS=$procs "${srv[@]}" "$work/paf" proxy --routes "$work/routes" --http off
	--https 127.0.0.1:${port[paf_proxy]} --tls-cert "$work/cert.pem" --tls-key "$work/key.pem"
	--default-cert localhost --poll 0 --log-level warn --data-dir "$work/data-px")
"${cmd_paf_proxy[@]}" 2>"$work/paf-proxy.log" &
pid_paf_proxy=$!; pids+=($!)

# nginx: the usual static-file tuning (sendfile, tcp_nopush, open file
# cache), one instance for files and one for the proxy row.
ngx_common="worker_processes $procs;
error_log $work/nginx.err warn;
events { worker_connections 4096; }"
ngx_http_common="access_log off;
	keepalive_requests 100000;
	default_type application/octet-stream;
	ssl_protocols TLSv1.2 TLSv1.3;
	ssl_conf_command Ciphersuites $suite;
	ssl_ecdh_curve $group;
	ssl_certificate $work/cert.pem;
	ssl_certificate_key $work/key.pem;
	client_body_temp_path $work/tmp;
	proxy_temp_path $work/tmp;
	fastcgi_temp_path $work/tmp;
	uwsgi_temp_path $work/tmp;
	scgi_temp_path $work/tmp;"
cat >"$work/nginx.conf" <<NGINX
$ngx_common
pid $work/nginx.pid;
http {
	$ngx_http_common
	sendfile on;
	tcp_nopush on;
	open_file_cache max=64;
	open_file_cache_valid 60s;
	server {
		listen 127.0.0.1:${port[ngx_http]};
		listen 127.0.0.1:${port[ngx_https]} ssl http2;
		root $work/www;
	}
}
NGINX
cat >"$work/nginx-proxy.conf" <<NGINX
$ngx_common
pid $work/nginx-proxy.pid;
http {
	$ngx_http_common
	upstream be { server 127.0.0.1:${port[backend]}; keepalive 64; }
	server {
		listen 127.0.0.1:${port[ngx_proxy]} ssl http2;
		location / {
			proxy_pass http://be;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$host;
		}
	}
}
NGINX
cmd_nginx=("${srv[@]}" nginx -e "$work/nginx.err" -c "$work/nginx.conf")
cmd_nginx_proxy=("${srv[@]}" nginx -e "$work/nginx.err" -c "$work/nginx-proxy.conf")
masters+=("$work/nginx.pid" "$work/nginx-proxy.pid")
"${cmd_nginx[@]}"
"${cmd_nginx_proxy[@]}"

# Caddy: no admin endpoint, no automatic HTTPS or redirects, HTTP/1.1 and
# HTTP/2 only (no HTTP/3 listener), access logs are off unless asked for.
# default_sni serves the certificate to clients that send no server name.
caddy_global="{
	admin off
	auto_https off
	default_sni localhost
	storage file_system $work/caddy-data
	servers {
		protocols h1 h2
	}
}"
caddy_tls="tls $work/cert.pem $work/key.pem {
		protocols tls1.2 tls1.3
		curves x25519
	}"
cat >"$work/Caddyfile" <<CADDY
$caddy_global
http://:${port[caddy_http]} {
	bind 127.0.0.1
	root * $work/www
	file_server
}
https://:${port[caddy_https]} {
	bind 127.0.0.1
	$caddy_tls
	root * $work/www
	file_server
}
CADDY
cat >"$work/Caddyfile-proxy" <<CADDY
$caddy_global
https://:${port[caddy_proxy]} {
	bind 127.0.0.1
	$caddy_tls
	reverse_proxy 127.0.0.1:${port[backend]}
}
CADDY
caddy_env=(env GOMAXPROCS=$procs HOME="$work" XDG_DATA_HOME="$work/xdg" XDG_CONFIG_HOME="$work/xdg")
cmd_caddy=("${caddy_env[@]}" "${srv[@]}" caddy run --adapter caddyfile --config "$work/Caddyfile")
cmd_caddy_proxy=("${caddy_env[@]}" "${srv[@]}" caddy run --adapter caddyfile --config "$work/Caddyfile-proxy")
"${cmd_caddy[@]}" >"$work/caddy.log" 2>&1 &
pid_caddy=$!; pids+=($!)
"${cmd_caddy_proxy[@]}" >"$work/caddy-proxy.log" 2>&1 &
pid_caddy_proxy=$!; pids+=($!)

# HAProxy: a TLS-terminating proxy to the backend (proxy row), and a second
# instance of the same configuration for the handshake row, so that the
# proxy row's memory figure does not include the handshake storm.
hap_cfg() { # PORT
	cat <<HAP
global
	nbthread $procs
	maxconn 4096
	ssl-default-bind-options ssl-min-ver TLSv1.2
	ssl-default-bind-ciphersuites $suite
defaults
	mode http
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend fe
	bind 127.0.0.1:$1 ssl crt $work/haproxy.pem alpn h2,http/1.1 curves $group
	default_backend be
backend be
	http-reuse always
	server s1 127.0.0.1:${port[backend]}
HAP
}
hap_cfg "${port[hap_proxy]}" >"$work/haproxy.cfg"
hap_cfg "${port[hap_hs]}" >"$work/haproxy-hs.cfg"
cmd_hap=("${srv[@]}" haproxy -q -f "$work/haproxy.cfg")
cmd_hap_hs=("${srv[@]}" haproxy -q -f "$work/haproxy-hs.cfg")
"${cmd_hap[@]}" >"$work/haproxy.log" 2>&1 &
pid_hap=$!; pids+=($!)
"${cmd_hap_hs[@]}" >"$work/haproxy-hs.log" 2>&1 &
pid_hap_hs=$!; pids+=($!)

# --- ready and correct -----------------------------------------------------
declare -A url_http url_https
url_http[paf]=http://127.0.0.1:${port[paf_http]}
url_https[paf]=https://127.0.0.1:${port[paf_https]}
url_http[nginx]=http://127.0.0.1:${port[ngx_http]}
url_https[nginx]=https://127.0.0.1:${port[ngx_https]}
url_http[caddy]=http://127.0.0.1:${port[caddy_http]}
url_https[caddy]=https://127.0.0.1:${port[caddy_https]}
url_https[haproxy]=https://127.0.0.1:${port[hap_hs]}
declare -A url_proxy
url_proxy[paf]=https://127.0.0.1:${port[paf_proxy]}
url_proxy[nginx]=https://127.0.0.1:${port[ngx_proxy]}
url_proxy[caddy]=https://127.0.0.1:${port[caddy_proxy]}
url_proxy[haproxy]=https://127.0.0.1:${port[hap_proxy]}

all_urls=("http://127.0.0.1:${port[backend]}")
for s in paf nginx caddy; do all_urls+=("${url_http[$s]}" "${url_https[$s]}"); done
for s in paf nginx caddy haproxy; do all_urls+=("${url_proxy[$s]}"); done
all_urls+=("${url_https[haproxy]}")
for u in "${all_urls[@]}"; do
	ok=0
	for _ in $(seq 1 150); do
		if curl -sfk -m 2 -o /dev/null -H 'Host: localhost' "$u/index.html"; then ok=1; break; fi
		sleep 0.1
	done
	[ "$ok" = 1 ] || {
		echo "bench: $u did not come up" >&2
		tail -n 5 "$work"/*.log "$work/nginx.err" >&2 2>/dev/null || true
		exit 1
	}
done
# The worker processes of each nginx instance, once they are up.
ngx_workers=$(pgrep -P "$(cat "$work/nginx.pid")" | tr '\n' ' ')
ngx_proxy_workers=$(pgrep -P "$(cat "$work/nginx-proxy.pid")" | tr '\n' ' ')
[ -n "$ngx_workers" ] && [ -n "$ngx_proxy_workers" ] || { echo "bench: no nginx workers" >&2; exit 1; }

# check URL PROTO WANT fails the run unless URL answers 200 with the bytes
# whose sha256sum line is WANT over PROTO (http1.1 or http2).
check() {
	local got code
	code=$(curl -sk -m 60 --"$2" -H 'Host: localhost' -o "$work/check.body" -w '%{http_code} %{http_version}' "$1") ||
		{ echo "bench: $1 ($2): curl failed" >&2; exit 1; }
	case "$2:$code" in http1.1:"200 1.1" | http2:"200 2") ;; *) echo "bench: $1 ($2): got $code" >&2; exit 1 ;; esac
	got=$(sha256sum <"$work/check.body")
	[ "$got" = "$3" ] || { echo "bench: $1 ($2): other bytes than the file" >&2; exit 1; }
}
for f in 4k 100k 10m; do
	want=$(sha256sum <"$work/www/$f.bin")
	for s in paf nginx caddy; do
		check "${url_http[$s]}/$f.bin" http1.1 "$want"
		check "${url_https[$s]}/$f.bin" http1.1 "$want"
		check "${url_https[$s]}/$f.bin" http2 "$want"
	done
	check "http://127.0.0.1:${port[backend]}/$f.bin" http1.1 "$want"
done
want=$(sha256sum <"$work/www/4k.bin")
for s in paf nginx caddy haproxy; do
	check "${url_proxy[$s]}/4k.bin" http1.1 "$want"
	check "${url_proxy[$s]}/4k.bin" http2 "$want"
done
check "${url_https[haproxy]}/4k.bin" http2 "$want"
# Every TLS endpoint must negotiate the same version, suite and group.
tls_lines=()
for k in paf_https ngx_https caddy_https hap_hs paf_proxy ngx_proxy caddy_proxy hap_proxy; do
	for alpn in http/1.1 h2; do
		got=$(tls_params "${port[$k]}" "$alpn")
		tls_lines+=("$k $alpn: $got")
		[ "$got" = "TLSv1.3 $suite $group $alpn" ] || { echo "bench: $k negotiated $got, want TLSv1.3 $suite $group $alpn" >&2; exit 1; }
	done
done

# --- measuring -------------------------------------------------------------
hz=$(getconf CLK_TCK)
cat >"$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
	io.write(string.format("BYTES %d USEC %d REQS %d\n", summary.bytes, summary.duration, summary.requests))
end
LUA
bound=$((dur + 30))
wrk_cmd=("${load[@]}" timeout "$bound" wrk -t"$wthreads" -c"$conns" -d"${dur}s" --timeout 60s -s "$work/report.lua")
h2_cmd=("${load[@]}" timeout "$bound" h2load --tls13-ciphers=$suite -D "$dur" -c "$h2conns" -m "$h2streams" -t "$h2threads")
hs_cmd=("${load[@]}" timeout "$bound" h2load --tls13-ciphers=$suite -n "$hsconns" -c "$hsconns" -t "$hsthreads")

# h2load_check FILE URL fails the run if the h2load output in FILE shows a
# failed request or a non-2xx status.
h2load_check() {
	awk '/^requests:/ {if ($10 + $12 + $14 > 0) exit 1}' "$1" &&
		awk '/^status codes:/ {if ($5 + $7 + $9 > 0) exit 1}' "$1" ||
		{ echo "bench: $cur: h2load $2: $(grep -E '^(requests|status codes):' "$1" | tr '\n' ' ')" >&2; cat "$1" >&2; exit 1; }
}

# measure KIND URL SIZE PIDS... runs one load test of KIND (wrk, h2,
# handshake) against URL, served by the processes PIDS, and prints
# "RATE SERVER_CPU GEN_CPU OTHER_CPU". RATE is responses/s counted from
# bytes (partial responses included: bytes received over SIZE, the bytes of
# one response, headers included for HTTP/1.1, DATA only for HTTP/2), or
# for handshake full handshakes/s (each connection does one, and one
# request). The CPU figures are percent of one core over the run's wall
# time: the server, the load generator, and everything else on the machine
# but the proxy row's backend ($aux_pids) — anything above 0 there is noise.
aux_pids=
cur=
# load_failed STATUS TOOL URL OUTPUT exits the measurement: 3 when TOOL was
# stopped by its time bound (it hung; run_row retries once), 1 otherwise.
load_failed() {
	echo "bench: $cur: $2 $3 failed (exit $1):" >&2
	tail -n 20 "$4" >&2
	[ "$1" = 124 ] && exit 3
	exit 1
}
measure() {
	local kind=$1 url=$2 size=$3
	shift 3
	local t0 t1 g0 g1 b0 b1 a0 a1 s0 s1 rate out=$work/load.out
	times >"$work/times"; g0=$(child_ticks "$work/times"); t0=$(cpu_ticks "$@"); a0=$(cpu_ticks $aux_pids)
	b0=$(busy_ticks); s0=$(date +%s%N)
	case $kind in
	h2)
		"${h2_cmd[@]}" "$url" >"$out" 2>&1 || load_failed $? h2load "$url" "$out"
		h2load_check "$out" "$url"
		rate=$(awk -v size="$size" '/^finished in/ {secs = $3 + 0}
			/^traffic:/ {for (i = 1; i <= NF; i++) if ($i == "data") {b = $(i - 1); gsub(/[()]/, "", b)}}
			END {if (secs > 0 && b > 0) printf "%.2f", b / size / secs}' "$out")
		;;
	handshake)
		# Batches of HS_CONNS connections, each doing one full handshake
		# (h2load neither resumes sessions nor reuses connections here)
		# and one request, until DURATION is spent; the rate is the
		# handshakes over the time h2load reports for its batches.
		local end=$(($(date +%s%N) + dur * 1000000000)) n=0 us=0 bn bus
		while [ "$(date +%s%N)" -lt "$end" ]; do
			"${hs_cmd[@]}" "$url" >"$out" 2>&1 || load_failed $? h2load "$url" "$out"
			h2load_check "$out" "$url"
			read -r bn bus < <(awk '/^finished in/ {t = $3; u = t; sub(/^[0-9.]+/, "", u); t += 0
					if (u == "ms,") t *= 1e3; else if (u == "s,") t *= 1e6; else if (u != "us,") t = -1}
				/^requests:/ {n = $8} END {printf "%d %.0f\n", n, t}' "$out")
			[ "$bus" -gt 0 ] || { echo "bench: h2load $url: no duration in its output" >&2; cat "$out" >&2; exit 1; }
			n=$((n + bn)) us=$((us + bus))
		done
		rate=$(awk -v n="$n" -v us="$us" 'BEGIN {printf "%.2f", n / (us / 1e6)}')
		;;
	wrk)
		"${wrk_cmd[@]}" -H 'Host: localhost' "$url" >"$out" 2>&1 || load_failed $? wrk "$url" "$out"
		if grep -q 'Non-2xx\|Socket errors' "$out"; then
			echo "bench: $cur: wrk $url: $(grep 'Non-2xx\|Socket errors' "$out")" >&2
			exit 1
		fi
		rate=$(awk -v size="$size" '/^BYTES / {if ($4 > 0) printf "%.2f", $2 / size / ($4 / 1e6)}' "$out")
		;;
	esac
	times >"$work/times"; g1=$(child_ticks "$work/times"); t1=$(cpu_ticks "$@"); a1=$(cpu_ticks $aux_pids)
	b1=$(busy_ticks); s1=$(date +%s%N)
	[ -n "$rate" ] || { echo "bench: no rate in the output of the load generator:" >&2; cat "$out" >&2; exit 1; }
	awk -v r="$rate" -v t=$((t1 - t0)) -v g=$((g1 - g0)) -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v hz="$hz" -v ns=$((s1 - s0)) 'BEGIN {
		w = hz * ns / 1e9 / 100
		o = b - t - g - a; if (o < 0) o = 0
		printf "%s %.0f %.0f %.0f\n", r, t / w, g / w, o / w
	}'
}

# pids_of SERVER ROLE prints the processes serving ROLE (files, proxy, handshake).
pids_of() {
	case $1:$2 in
	paf:files) echo "$pid_paf_http $pid_paf_https" ;;
	nginx:files) echo "$ngx_workers" ;;
	caddy:files) echo "$pid_caddy" ;;
	haproxy:handshake) echo "$pid_hap_hs" ;;
	paf:handshake) echo "$pid_paf_https" ;;
	nginx:handshake) echo "$ngx_workers" ;;
	caddy:handshake) echo "$pid_caddy" ;;
	paf:proxy) echo "$pid_paf_proxy" ;;
	nginx:proxy) echo "$ngx_proxy_workers" ;;
	caddy:proxy) echo "$pid_caddy_proxy" ;;
	haproxy:proxy) echo "$pid_hap" ;;
	esac
}

servers=(paf nginx caddy haproxy)
# Results: res[ROW,SERVER] = "VALUE SRV_CPU GEN_CPU OTHER_CPU" (medians).
declare -A res
row_names=() row_units=()
# run_row NAME UNIT SCALE KIND ROLE SERVER|URL|SIZE... measures the row:
# REPEAT rounds, each round every server once, in turn, and keeps each
# server's median run. VALUE = RATE * SCALE (SIZE: bytes of one response).
run_row() {
	local name=$1 unit=$2 scale=$3 kind=$4 role=$5
	shift 5
	local -A runs=()
	local i spec s u z r rc
	echo "bench: $name ..." >&2
	for i in $(seq 1 "$repeat"); do
		for spec in "$@"; do
			IFS='|' read -r s u z <<<"$spec"
			cur="$name, $s"
			# shellcheck disable=SC2046 # one argument per process
			r=$(measure "$kind" "$u" "$z" $(pids_of "$s" "$role")) || {
				rc=$?
				[ "$rc" = 3 ] || exit 1
				# A load generator that outlived its bound once is retried
				# once, and the retry is reported with the results.
				echo "$cur: the load generator hung past its bound, retried" >>"$work/retries"
				# shellcheck disable=SC2046
				r=$(measure "$kind" "$u" "$z" $(pids_of "$s" "$role")) || exit 1
			}
			runs[$s]+="$r"$'\n'
		done
	done
	row_names+=("$name") row_units+=("$unit")
	for spec in "$@"; do
		s=${spec%%|*}
		res[$name,$s]=$(printf '%s' "${runs[$s]}" | median |
			awk -v k="$scale" '{printf "%.2f %s %s %s\n", $1 * k, $2, $3, $4}')
	done
}

# resp_size URL BODY PROTO prints the bytes of one response: the body, plus
# the header for HTTP/1.1 (HPACK shrinks HTTP/2's, which are not counted).
resp_size() {
	if [ "$3" = h2 ]; then echo "$2"; return; fi
	echo $(($2 + $(curl -sk -m 60 -H 'Host: localhost' -o /dev/null -w '%{size_header}' "$1")))
}

for row in $rows; do
	case $row in
	4k | 100k | 10m)
		body=$(stat -c %s "$work/www/$row.bin")
		if [ "$row" = 4k ]; then unit=req/s scale=1; else unit=MB/s scale=$(awk -v b="$body" 'BEGIN {print b / 1e6}'); fi
		for proto in $protos; do
			args=()
			for s in paf nginx caddy; do
				case $proto in
				http1) u=${url_http[$s]}/$row.bin kind=wrk ;;
				https1) u=${url_https[$s]}/$row.bin kind=wrk ;;
				h2) u=${url_https[$s]}/$row.bin kind=h2 ;;
				esac
				args+=("$s|$u|$(resp_size "$u" "$body" "$proto")")
			done
			run_row "$row $proto" "$unit" "$scale" "$kind" files "${args[@]}"
		done
		;;
	handshake)
		args=()
		for s in paf nginx caddy haproxy; do args+=("$s|${url_https[$s]}/4k.bin|1"); done
		aux_pids=$pid_backend # HAProxy forwards each request to it
		run_row "handshake" handshakes/s 1 handshake handshake "${args[@]}"
		aux_pids=
		;;
	proxy)
		aux_pids=$pid_backend
		args=()
		for s in paf nginx caddy haproxy; do
			args+=("$s|${url_proxy[$s]}/4k.bin|$(resp_size "${url_proxy[$s]}/4k.bin" 4096 http1)")
		done
		run_row "4k proxy" req/s 1 wrk proxy "${args[@]}"
		aux_pids=
		;;
	esac
done

# --- peak memory -------------------------------------------------------------
# VmHWM of every process of each server, workers summed (nginx: master and
# workers; paf files: its plain and its TLS process), read after all the load.
kib_mib() { awk -v k="$1" 'BEGIN {printf "%.2f", k / 1024}'; }
ngx_all="$(cat "$work/nginx.pid") $ngx_workers"
ngx_proxy_all="$(cat "$work/nginx-proxy.pid") $ngx_proxy_workers"
row_names+=("peak RSS files") row_units+=(MiB)
res["peak RSS files",paf]="$(kib_mib "$(peak_rss_kib $pid_paf_http $pid_paf_https)") - - -"
res["peak RSS files",nginx]="$(kib_mib "$(peak_rss_kib $ngx_all)") - - -"
res["peak RSS files",caddy]="$(kib_mib "$(peak_rss_kib $pid_caddy)") - - -"
row_names+=("peak RSS proxy") row_units+=(MiB)
res["peak RSS proxy",paf]="$(kib_mib "$(peak_rss_kib $pid_paf_proxy)") - - -"
res["peak RSS proxy",nginx]="$(kib_mib "$(peak_rss_kib $ngx_proxy_all)") - - -"
res["peak RSS proxy",caddy]="$(kib_mib "$(peak_rss_kib $pid_caddy_proxy)") - - -"
res["peak RSS proxy",haproxy]="$(kib_mib "$(peak_rss_kib $pid_hap)") - - -"
hap_hs_rss=$(kib_mib "$(peak_rss_kib $pid_hap_hs)")
paf_split="$(kib_mib "$(peak_rss_kib $pid_paf_http)") MiB plain HTTP + $(kib_mib "$(peak_rss_kib $pid_paf_https)") MiB HTTPS"

# --- tables ------------------------------------------------------------------
data=$work/results.txt
: >"$data"
for i in "${!row_names[@]}"; do
	name=${row_names[$i]}
	for s in "${servers[@]}"; do
		[ -n "${res[$name,$s]:-}" ] || continue
		echo "$name|${row_units[$i]}|$s|${res[$name,$s]// /|}" >>"$data"
	done
done
# Three tables from "ROW|UNIT|SERVER|VALUE|SRV|GEN|OTHER" lines: the medians
# with paf/best, every server's ratio to the best (and per CPU second), and
# the CPU each run used. Lower is better for memory, higher for the rest.
awk -F'|' -v servers="${servers[*]}" '
function fmt(v, u) { if (v == "") return "-"; return (u == "MB/s" || u == "MiB") ? sprintf("%.1f", v) : sprintf("%.0f", v) }
{
	if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1; unit[$1] = $2 }
	val[$1, $3] = $4; srv[$1, $3] = $5; gen[$1, $3] = $6; oth[$1, $3] = $7
}
END {
	ns = split(servers, S, " ")
	printf "%-16s %-13s", "row", "unit"
	for (j = 1; j <= ns; j++) printf " %9s", S[j]
	printf " %8s %9s\n", "best", "paf/best"
	for (i = 1; i <= n; i++) {
		r = order[i]; low = (unit[r] == "MiB"); best = ""
		for (j = 1; j <= ns; j++) {
			s = S[j]; if (!((r, s) in val)) continue
			if (s != "paf" && (best == "" || (low ? val[r, s] < val[r, best] : val[r, s] > val[r, best]))) best = s
		}
		bestv[r] = best
		printf "%-16s %-13s", r, unit[r]
		for (j = 1; j <= ns; j++) printf " %9s", ((r, S[j]) in val) ? fmt(val[r, S[j]], unit[r]) : "-"
		printf " %8s %9s\n", best, (best != "" && val[r, best] > 0 && (r, "paf") in val) ? sprintf("%.2f", val[r, "paf"] / val[r, best]) : "-"
	}
	printf "\n# ratio to the best peer of each row (best peer = 1.00; memory: lower is better, so above 1 is worse);\n"
	printf "# per-cpu: paf per CPU second of the server over the best peer per CPU second\n"
	printf "%-16s", "row"
	for (j = 1; j <= ns; j++) printf " %9s", S[j]
	printf " %9s\n", "per-cpu"
	for (i = 1; i <= n; i++) {
		r = order[i]; best = bestv[r]
		printf "%-16s", r
		for (j = 1; j <= ns; j++) {
			s = S[j]
			printf " %9s", ((r, s) in val && best != "" && val[r, best] > 0) ? sprintf("%.2f", val[r, s] / val[r, best]) : "-"
		}
		pc = "-"; bp = 0
		if ((r, "paf") in val && srv[r, "paf"] != "-" && srv[r, "paf"] > 0) {
			for (j = 2; j <= ns; j++) { s = S[j]; if ((r, s) in val && srv[r, s] > 0 && val[r, s] / srv[r, s] > bp) bp = val[r, s] / srv[r, s] }
			if (bp > 0) pc = sprintf("%.2f", val[r, "paf"] / srv[r, "paf"] / bp)
		}
		printf " %9s\n", pc
	}
	printf "\n# CPU %% of one core during each server'"'"'s median run: server/load generator/other\n"
	printf "# (other: the rest of the machine, the proxy backend excepted; above 0 is noise)\n"
	printf "%-16s", "row"
	for (j = 1; j <= ns; j++) printf " %12s", S[j]
	printf "\n"
	for (i = 1; i <= n; i++) {
		r = order[i]; if (unit[r] == "MiB") continue
		printf "%-16s", r
		for (j = 1; j <= ns; j++) { s = S[j]; printf " %12s", ((r, s) in val) ? srv[r, s] "/" gen[r, s] "/" oth[r, s] : "-" }
		printf "\n"
	}
}' "$data" >"$work/tables.txt"
max_other=$(awk -F'|' '$7 != "-" && $7 > m {m = $7} END {print m + 0}' "$data")

# --- report ------------------------------------------------------------------
W() { sed "s|$work|\$WORK|g"; } # the temporary directory, named once
{
	echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
	machine_info
	echo "paf:       $paf_rev ($(go version | cut -d' ' -f3-), CGO_ENABLED=0)"
	echo "nginx:     $(nginx -v 2>&1 | sed 's/^nginx version: //') (Debian nginx-light; $(nginx -V 2>&1 | awk '/built with OpenSSL/ {print "OpenSSL " $4}'))"
	echo "caddy:     $(caddy version | cut -d' ' -f1) (Debian caddy, built with $(caddy build-info 2>/dev/null | awk '$1 == "go" {print $2}'))"
	echo "haproxy:   $(haproxy -v | awk 'NR == 1 {print $3}') ($(haproxy -vv | awk -F' : ' '/^Running on OpenSSL version/ {split($2, a, " "); print a[1], a[2]}'))"
	echo "load:      wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'), h2load $(h2load --version 2>&1 | awk 'NR == 1 {print $NF}'), $(openssl version | cut -d' ' -f1-2)"
	echo "pinning:   PIN=$pin: servers on CPUs $server_cpus ($procs worker(s)/thread(s)/GOMAXPROCS each), load generators and the proxy backend on CPUs $load_cpus"
	echo "settings:  DURATION=$dur REPEAT=$repeat CONNS=$conns H2_CONNS=$h2conns H2_STREAMS=$h2streams HS_CONNS=$hsconns"
} >"$work/versions.txt"
{
	echo "paf files:      ${cmd_paf_http[*]}"
	echo "                ${cmd_paf_https[*]}"
	echo "paf proxy:      $work/paf route add localhost --backend http://127.0.0.1:${port[backend]} --routes $work/routes"
	echo "                ${cmd_paf_proxy[*]}"
	echo "backend:        ${cmd_backend[*]}"
	echo "nginx files:    ${cmd_nginx[*]}"
	echo "nginx proxy:    ${cmd_nginx_proxy[*]}"
	echo "caddy files:    ${cmd_caddy[*]}"
	echo "caddy proxy:    ${cmd_caddy_proxy[*]}"
	echo "haproxy proxy:  ${cmd_hap[*]}"
	echo "haproxy hs:     ${cmd_hap_hs[*]} (the same configuration on another port)"
	echo "wrk:            ${wrk_cmd[*]} -H 'Host: localhost' URL"
	echo "h2load:         ${h2_cmd[*]} URL"
	echo "handshakes:     ${hs_cmd[*]} https://127.0.0.1:PORT/4k.bin, repeated for DURATION"
} | W >"$work/commands.txt"
{
	echo "# nginx.conf"; cat "$work/nginx.conf"
	echo "# nginx-proxy.conf"; cat "$work/nginx-proxy.conf"
	echo "# Caddyfile"; cat "$work/Caddyfile"
	echo "# Caddyfile-proxy"; cat "$work/Caddyfile-proxy"
	echo "# haproxy.cfg"; cat "$work/haproxy.cfg"
} | W >"$work/configs.txt"

echo "# machine and versions"; cat "$work/versions.txt"; echo
echo "# commands"; cat "$work/commands.txt"; echo
echo "# tls (openssl s_client, no SNI)"; printf '%s\n' "${tls_lines[@]}"; echo
echo "# results: medians of $repeat; the best is the best peer of paf"
cat "$work/tables.txt"
echo "peak RSS: haproxy handshake instance $hap_hs_rss MiB; paf files $paf_split"
[ -s "$work/retries" ] && sed 's/^/retried: /' "$work/retries"
if [ "$max_other" -gt 20 ]; then
	echo "bench: other processes used up to $max_other% of a CPU during some runs: noisy machine, trust per-cpu more" >&2
fi

[ "$write_doc" = 1 ] || exit 0
{
	echo "## Side by side: paf, nginx, Caddy, HAProxy"
	echo
	echo "Written by \`bench/all.sh\` (\`DURATION=$dur REPEAT=$repeat bench/all.sh\`), $(date -u '+%Y-%m-%d %H:%M UTC');"
	echo "everything between the marker comments is replaced by its next run. Settings (environment):"
	echo "\`DURATION\`, \`REPEAT\`, \`ROWS\`, \`PROTOS\`, \`CONNS\`, \`H2_CONNS\`, \`H2_STREAMS\`, \`HS_CONNS\`, \`PIN\`,"
	echo "\`DOC\`, \`WRITE_DOC=0\` (trial runs); see the script's header."
	echo "All servers on loopback with the same files (4 KiB, 100 KiB, 10 MiB of random bytes),"
	echo "the same ECDSA P-256 certificate for localhost, $procs worker(s) / thread(s) / GOMAXPROCS"
	echo "each, access logs off, TLS 1.3 with $suite and $group negotiated by every TLS"
	echo "endpoint (checked). Before measuring, every URL of every server answered 200 with"
	echo "the file's exact bytes over HTTP/1.1, HTTP/1.1 over TLS and HTTP/2; any error or"
	echo "non-2xx during the load fails the run. Each row is measured $repeat time(s) for $dur s per"
	echo "server, the servers taking turns within the row; the table quotes each server's median."
	echo "HAProxy serves no files: it is in the proxy row and, as a TLS terminator in front of"
	echo "the proxy row's backend, in the handshake row."
	echo
	echo "- **4k** rows: responses/s; **100k** and **10m**: MB/s of body (10^6 bytes), counted from"
	echo "  the bytes received, partial responses included. http1: wrk over plain HTTP/1.1;"
	echo "  https1: wrk over TLS; h2: h2load ($h2conns connections x $h2streams streams)."
	echo "- **handshake**: full TLS 1.3 handshakes/s: h2load in batches of $hsconns new connections"
	echo "  (\`-n $hsconns -c $hsconns\`), each doing one full handshake (h2load does not resume"
	echo "  sessions) and one HTTP/2 request for 4k.bin, repeated for $dur s; the rate is the"
	echo "  connections over the time h2load reports for its batches."
	echo "- **4k proxy**: wrk over HTTPS/1.1 to each proxy, which forwards over plain HTTP/1.1"
	echo "  (keep-alive) to the same backend (\`paf serve\` on the load generator's CPU)."
	echo "- **peak RSS**: VmHWM after the run, summed over each server's processes (nginx:"
	echo "  master and workers; paf files: its plain-HTTP and its HTTPS process, since paf's"
	echo "  plain listener only redirects when HTTPS is on: $paf_split). The HAProxy"
	echo "  instance used for the handshake row peaked at $hap_hs_rss MiB."
	echo "- **paf/best**: paf's median over the best peer's (nginx, Caddy or HAProxy); per-cpu"
	echo "  divides each by its server's CPU time first, which is steadier on a shared machine."
	if [ -s "$work/retries" ]; then
		echo "- **Retried** (a load generator hung past DURATION + 30 s once; the second try counted):"
		sed 's/^/  - /' "$work/retries"
	fi
	if [ "$max_other" -gt 20 ]; then
		echo "- **Noise**: other processes used up to $max_other % of a CPU during some runs (the"
		echo "  third CPU figure): the servers did not always have their core to themselves."
	fi
	echo
	echo '```'
	cat "$work/versions.txt"
	echo '```'
	echo
	echo '```'
	cat "$work/tables.txt"
	echo '```'
	echo
	echo "Commands (\$WORK is the run's temporary directory):"
	echo
	echo '```'
	cat "$work/commands.txt"
	echo '```'
	echo
	echo "<details><summary>Server configurations</summary>"
	echo
	echo '```'
	cat "$work/configs.txt"
	echo '```'
	echo
	echo "</details>"
} >"$work/section.md"
python3 - "$doc" "$work/section.md" <<'PY'
import os, sys
doc, section = sys.argv[1], sys.argv[2]
begin = "<!-- bench/all.sh: begin (generated, replaced on each run) -->"
end = "<!-- bench/all.sh: end -->"
text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
block = begin + "\n" + open(section).read().rstrip("\n") + "\n" + end
if begin in text and end in text:
    i, j = text.index(begin), text.index(end) + len(end)
    text = text[:i] + block + text[j:]
else:
    # Before the first second-level heading, or at the end.
    i = text.find("\n## ")
    text = text + "\n" + block + "\n" if i < 0 else text[:i + 1] + block + "\n\n" + text[i + 1:]
tmp = doc + ".tmp"
with open(tmp, "w") as f:
    f.write(text)
os.replace(tmp, doc)
PY
echo "bench: wrote $doc" >&2
