#!/usr/bin/env bash
# Serves the same 4 KiB, 100 KiB and 10 MiB files with paf and with nginx,
# side by side on loopback, and measures both in the same run:
#   wrk    HTTP/1.1 plain and over TLS
#   h2load HTTP/2 over TLS
# It prints requests/s for each, the paf/nginx ratio, and how much CPU each
# server used, so a load generator that could not saturate a server shows.
# Results and the machine they came from go in docs/benchmarks.md.
#
# Usage: bench/serve.sh [DURATION_SECONDS]
#
# Settings (environment; the positional argument overrides DURATION):
#   DURATION   seconds per measurement (10)
#   CONNS      wrk connections (32)
#   H2_CONNS   h2load connections (16)
#   H2_STREAMS h2load concurrent streams per connection (8)
#   REPEAT     measurements per cell, the median is shown (1)
#   FILES      subset of "4k 100k 10m"
#   PROTOS     subset of "http1 https1 h2"
#   PIN        1 (default when nproc >= 2): the servers run on the first half
#              of the CPUs, the load generators on the other half, with
#              GOMAXPROCS and nginx's worker_processes both set to the
#              server half's size. 0: nothing pinned, GOMAXPROCS and
#              worker_processes both nproc, everything competes for all CPUs.
#   ACCESS_LOG 1: both servers write an access log line per request to a file
#              (paf --log-level info, nginx access_log); default 0, both off.
#   PERF_DIR   when set, `perf record` samples paf during each of paf's
#              measurements into PERF_DIR/<file>-<proto>.data (costs some
#              throughput: compare ratios only from runs without it).
#
# Needs: go, nginx (nginx-light), wrk, h2load (nghttp2-client), openssl,
# curl, python3; taskset (util-linux) when pinning, perf for PERF_DIR.
# Everything it starts is stopped on exit, and each measurement is bounded
# by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
# shellcheck source=bench/lib.sh
. bench/lib.sh

dur=${1:-${DURATION:-10}}
conns=${CONNS:-32}
h2conns=${H2_CONNS:-16}
h2streams=${H2_STREAMS:-8}
repeat=${REPEAT:-1}
access_log=${ACCESS_LOG:-0}
files=${FILES:-4k 100k 10m}
protos=${PROTOS:-http1 https1 h2}
ncpu=$(nproc)
pin=${PIN:-$([ "$ncpu" -ge 2 ] && echo 1 || echo 0)}
bench_posint "$dur" "$conns" "$h2conns" "$h2streams" "$repeat"

need=(go nginx wrk h2load openssl curl python3)
[ "$pin" = 1 ] && need+=(taskset)
[ -n "${PERF_DIR:-}" ] && need+=(perf)
bench_need "${need[@]}"

bench_cpus
# h2load needs at least one connection per thread.
h2threads=$((threads < h2conns ? threads : h2conns))
wthreads=$((threads < conns ? threads : conns))

work=$(mktemp -d)
# nginx's workers run as another user: the files must be readable by all.
chmod 755 "$work"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Incompressible content, so neither server's compression changes the bytes sent.
mkdir -p "$work/www"
head -c 4096 /dev/urandom >"$work/www/4k.bin"
head -c 102400 /dev/urandom >"$work/www/100k.bin"
head -c 10485760 /dev/urandom >"$work/www/10m.bin"
echo ok >"$work/www/index.html"

make_cert "$work"

paf_http=$(free_port); paf_https=$(free_port); ngx_http=$(free_port); ngx_https=$(free_port)

echo "# machine"
echo "cpus:      $ncpu x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo "kernel:    $(uname -sr)"
echo "go:        $(go version)"
echo "nginx:     $(nginx -v 2>&1 | sed 's/^nginx version: //')"
echo "openssl:   $(openssl version)"
echo "wrk:       $(wrk -v 2>&1 | head -1 || true)"
echo "h2load:    $(h2load --version 2>&1 | head -1)"
echo "load avg:  $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine adds noise)"
echo "pinning:   PIN=$pin servers on CPUs $server_cpus (GOMAXPROCS=$procs, worker_processes $procs), load generators on CPUs $load_cpus"
echo "settings:  DURATION=$dur CONNS=$conns H2_CONNS=$h2conns H2_STREAMS=$h2streams REPEAT=$repeat ACCESS_LOG=$access_log"
echo

CGO_ENABLED=0 go build -o "$work/paf" ./cmd/paf
# Two paf processes: with HTTPS on, paf's plain listener only redirects.
# --log-level warn turns the access log off, as access_log off does for nginx.
if [ "$access_log" = 1 ]; then
	paf_level=info ngx_access="$work/nginx-access.log"
else
	paf_level=warn ngx_access=off
fi
paf_http_cmd=(env GOMAXPROCS=$procs "${srv[@]}" "$work/paf" serve --root "$work/www" --data-dir "$work/data" --poll 0 --log-level $paf_level
	--http 127.0.0.1:$paf_http --https off)
paf_https_cmd=(env GOMAXPROCS=$procs "${srv[@]}" "$work/paf" serve --root "$work/www" --data-dir "$work/data" --poll 0 --log-level $paf_level
	--http off --https 127.0.0.1:$paf_https --tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
"${paf_http_cmd[@]}" 2>"$work/paf-http.log" &
pid_paf_http=$!
pids+=($pid_paf_http)
"${paf_https_cmd[@]}" 2>"$work/paf-https.log" &
pid_paf_https=$!
pids+=($pid_paf_https)

# nginx gets the usual static-file tuning: sendfile, tcp_nopush, and an
# open file cache (paf keeps small files in memory and large ones' metadata).
cat >"$work/nginx.conf" <<NGINX
worker_processes $procs;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
	access_log $ngx_access;
	sendfile on;
	tcp_nopush on;
	open_file_cache max=64;
	open_file_cache_valid 60s;
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
nginx_cmd=("${srv[@]}" nginx -e "$work/nginx.err" -c "$work/nginx.conf")
"${nginx_cmd[@]}"

ready=0
for _ in $(seq 1 100); do
	if curl -sfk -m 2 -o /dev/null "https://127.0.0.1:$paf_https/index.html" &&
		curl -sf -m 2 -o /dev/null "http://127.0.0.1:$paf_http/index.html" &&
		curl -sfk -m 2 -o /dev/null "https://127.0.0.1:$ngx_https/index.html"; then
		ready=1
		break
	fi
	sleep 0.1
done
[ "$ready" = 1 ] || { echo "bench: servers did not come up" >&2; cat "$work"/paf-*.log "$work/nginx.err" >&2; exit 1; }
ngx_workers=$(pgrep -P "$(cat "$work/nginx.pid")" | tr '\n' ' ')

# Both servers must answer 200 with the same bytes before anything is measured:
# a 403 or 404 is fast and would make a meaningless benchmark.
for f in 4k 100k 10m; do
	want=$(sha256sum <"$work/www/$f.bin")
	for url in "http://127.0.0.1:$paf_http/$f.bin" "https://127.0.0.1:$paf_https/$f.bin" \
		"http://127.0.0.1:$ngx_http/$f.bin" "https://127.0.0.1:$ngx_https/$f.bin"; do
		got=$(curl -sfk -m 60 "$url" | sha256sum) || { echo "bench: $url failed" >&2; exit 1; }
		[ "$got" = "$want" ] || { echo "bench: $url served other bytes" >&2; exit 1; }
	done
done

echo "# servers"
echo "paf http:  ${paf_http_cmd[*]}"
echo "paf https: ${paf_https_cmd[*]}"
echo "nginx:     ${nginx_cmd[*]} (workers: $ngx_workers)"
sed 's/^/    /' "$work/nginx.conf"
# What the load generators negotiate: both use OpenSSL, whose offer both
# servers see; the cipher each server picks changes the crypto cost per byte.
for s in "paf $paf_https" "nginx $ngx_https"; do
	set -- $s
	for alpn in http/1.1 h2; do
		neg=$(timeout 10 openssl s_client -connect 127.0.0.1:$2 -servername localhost -alpn $alpn </dev/null 2>/dev/null |
			awk '/^New, / {v=$2; c=$NF} /^ALPN protocol:/ {a=$3} END {print v, c, "ALPN", a}')
		echo "tls:       $1 offered $alpn: $neg"
	done
done
echo

hz=$(getconf CLK_TCK)

# wrk reports the exact bytes and duration through this script. Its default
# 2 s timeout would count slow 10 MiB responses on a busy machine as errors.
cat >"$work/bytes.lua" <<'LUA'
done = function(summary, latency, requests)
	io.write(string.format("BYTES %d USEC %d\n", summary.bytes, summary.duration))
end
LUA
wrk_cmd=("${load[@]}" wrk -t"$wthreads" -c"$conns" -d"${dur}s" --timeout 60s -s "$work/bytes.lua")
h2_cmd=("${load[@]}" h2load -D "$dur" -c "$h2conns" -m "$h2streams" -t "$h2threads")

# measure URL PROTO NAME SIZE PIDS... runs one load test against URL, served
# by the processes PIDS, and prints "REQS_PER_SEC SERVER_CPU GEN_CPU OTHER_CPU".
# The rate counts bytes, not completed responses: bytes received during the
# run (partial responses included) over SIZE, the bytes of one response
# (headers and body for HTTP/1.1, body for HTTP/2, whose header bytes HPACK
# shrinks). Counting completed responses would drop the responses still in
# flight when the run stops: with 128 HTTP/2 streams of 10 MiB that is a
# large, server-dependent share of the run. The CPU figures are CPU time in
# percent of the run's wall time (100 = one core busy) used by the server, by
# the load generator, and by anything else on the machine (with PERF_DIR,
# perf's own time lands in the load generator's or the machine's share).
measure() {
	local url=$1 proto=$2 name=$3 size=$4 perfpid=
	shift 4
	local t0 t1 s0 s1 g0 g1 b0 b1 rps out=$work/load.out
	if [ -n "${PERF_DIR:-}" ] && [ "$name" = paf ]; then
		mkdir -p "$PERF_DIR"
		perf record -q -e cpu-clock -g -p "$1" -o "$PERF_DIR/$cur_file-$proto.data" -- sleep "$dur" 2>/dev/null &
		perfpid=$!
		sleep 0.5 # let perf attach to every thread before the load starts
	fi
	times >"$work/times"; g0=$(child_ticks "$work/times"); t0=$(cpu_ticks "$@"); b0=$(busy_ticks); s0=$(date +%s%N)
	case $proto in
	h2)
		"${h2_cmd[@]}" "$url" >"$out" 2>&1 || { echo "bench: h2load $url failed:" >&2; cat "$out" >&2; exit 1; }
		# DATA bytes received, partial responses included, over the run's time.
		rps=$(awk -v size="$size" '/^finished in/ {secs = $3 + 0}
			/^traffic:/ {for (i = 1; i <= NF; i++) if ($i == "data") {b = $(i - 1); gsub(/[()]/, "", b)}}
			END {if (secs > 0 && b > 0) printf "%.2f", b / size / secs}' "$out")
		# A run with failed requests measures errors, not serving.
		awk '/^requests:/ {if ($10 + $12 + $14 > 0) exit 1}' "$out" || { echo "bench: h2load $url: $(grep '^requests:' "$out")" >&2; exit 1; }
		awk '/^status codes:/ {if ($5 + $7 + $9 > 0) exit 1}' "$out" || { echo "bench: h2load $url: $(grep '^status codes:' "$out")" >&2; exit 1; }
		;;
	*)
		"${wrk_cmd[@]}" "$url" >"$out" 2>&1 || { echo "bench: wrk $url failed:" >&2; cat "$out" >&2; exit 1; }
		# Bytes received, partial responses included, over the run's time.
		rps=$(awk -v size="$size" '/^BYTES / {if ($4 > 0) printf "%.2f", $2 / size / ($4 / 1e6)}' "$out")
		if grep -q 'Non-2xx\|Socket errors' "$out"; then
			echo "bench: wrk $url: $(grep 'Non-2xx\|Socket errors' "$out")" >&2
			exit 1
		fi
		;;
	esac
	times >"$work/times"; g1=$(child_ticks "$work/times"); t1=$(cpu_ticks "$@"); b1=$(busy_ticks); s1=$(date +%s%N)
	if [ -n "$perfpid" ]; then wait "$perfpid" || true; fi
	[ -n "$rps" ] || { echo "bench: no rate in the output of the load generator:" >&2; cat "$out" >&2; exit 1; }
	awk -v r="$rps" -v t=$((t1 - t0)) -v g=$((g1 - g0)) -v b=$((b1 - b0)) -v hz="$hz" -v ns=$((s1 - s0)) 'BEGIN {
		w = hz * ns / 1e9 / 100
		o = b - t - g; if (o < 0) o = 0
		printf "%s %.0f %.0f %.0f\n", r, t / w, g / w, o / w
	}'
}

echo "# load"
echo "http1:     ${wrk_cmd[*]} http://127.0.0.1:PORT/FILE.bin"
echo "https1:    ${wrk_cmd[*]} https://127.0.0.1:PORT/FILE.bin"
echo "h2:        ${h2_cmd[*]} https://127.0.0.1:PORT/FILE.bin"
echo
echo "# results: requests/s (median of $repeat); per-cpu: the ratio of requests per CPU second"
echo "# of each server; CPU % of one core during the paf / nginx run (srv: the server; gen:"
echo "# wrk or h2load, near 100 x threads means the load generator was the limit; other: the"
echo "# rest of the machine, which took CPU from the server: anything but 0 is noise)"

printf '%-6s %-6s %10s %10s %9s %8s %9s %9s %9s\n' file proto paf nginx paf/nginx per-cpu srv-cpu% gen-cpu% other%
busy=0
for f in $files; do
	cur_file=$f
	for proto in $protos; do
		case $proto in
		http1) pu="http://127.0.0.1:$paf_http/$f.bin"; nu="http://127.0.0.1:$ngx_http/$f.bin"; ppid=$pid_paf_http ;;
		https1 | h2) pu="https://127.0.0.1:$paf_https/$f.bin"; nu="https://127.0.0.1:$ngx_https/$f.bin"; ppid=$pid_paf_https ;;
		*) echo "bench: unknown protocol $proto" >&2; exit 2 ;;
		esac
		# Bytes of one response: the file, plus the header for HTTP/1.1.
		body=$(stat -c %s "$work/www/$f.bin")
		psize=$body nsize=$body
		if [ "$proto" != h2 ]; then
			psize=$((body + $(curl -sk -m 60 -o /dev/null -w '%{size_header}' "$pu")))
			nsize=$((body + $(curl -sk -m 60 -o /dev/null -w '%{size_header}' "$nu")))
		fi
		pres=() nres=()
		for _ in $(seq 1 "$repeat"); do
			r=$(measure "$pu" "$proto" paf "$psize" "$ppid") || exit 1
			pres+=("$r")
			# shellcheck disable=SC2086 # one argument per worker
			r=$(measure "$nu" "$proto" nginx "$nsize" $ngx_workers) || exit 1
			nres+=("$r")
		done
		read -r p pc pg po <<<"$(printf '%s\n' "${pres[@]}" | median)"
		read -r n nc ng no <<<"$(printf '%s\n' "${nres[@]}" | median)"
		ratio=$(awk -v p="$p" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", p / n; else print "n/a" }')
		percpu=$(awk -v p="$p" -v n="$n" -v pc="$pc" -v nc="$nc" 'BEGIN { if (n > 0 && pc > 0 && nc > 0) printf "%.2f", (p / pc) / (n / nc); else print "n/a" }')
		printf '%-6s %-6s %10s %10s %9s %8s %9s %9s %9s\n' "$f" "$proto" "$p" "$n" "$ratio" "$percpu" "$pc/$nc" "$pg/$ng" "$po/$no"
		[ "$po" -le 20 ] && [ "$no" -le 20 ] || busy=1
	done
done
if [ "$busy" = 1 ]; then
	echo "bench: other processes used more than 20% of a CPU during some runs: the servers did not" >&2
	echo "bench: have their CPU to themselves; trust per-cpu more than paf/nginx, or rerun on a quiet machine" >&2
fi
