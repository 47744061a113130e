#!/usr/bin/env bash
# paf's own stress test at a large size, as the original paf's test.exe:
# N worker processes issuing M requests each, at most C at a time, against
# paf serve over HTTP and HTTPS, HTTP/1.1 and HTTP/2, small and large bodies.
# Any failed request fails the run. CI runs the same command at 50 x 200
# (cmd/paf TestGetStress); this script defaults to 100 x 200, 16 at a time.
#
# Usage: bench/stress.sh [WORKERS] [REQUESTS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
n=${1:-100} m=${2:-200} c=${3:-16}

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/www"
head -c 1024 /dev/urandom >"$work/www/small.bin"
head -c 1048576 /dev/urandom >"$work/www/large.bin"
CGO_ENABLED=0 go build -o "$work/paf" ./cmd/paf

http=$(free_port) https=$(free_port) h2c=$(free_port)
"$work/paf" serve --root "$work/www" --data-dir "$work/data" --poll 0 --log-level warn \
	--http 127.0.0.1:$http --https off 2>"$work/http.log" &
pids+=($!)
"$work/paf" serve --root "$work/www" --data-dir "$work/data" --poll 0 --log-level warn \
	--http off --https 127.0.0.1:$https 2>"$work/https.log" &
pids+=($!)
"$work/paf" serve --root "$work/www" --data-dir "$work/data2" --poll 0 --log-level warn \
	--http 127.0.0.1:$h2c --https off --h2c 2>"$work/h2c.log" &
pids+=($!)
for _ in $(seq 100); do
	[ -f "$work/data/ca/ca.pem" ] && curl -sf -o /dev/null --cacert "$work/data/ca/ca.pem" "https://localhost:$https/small.bin" &&
		curl -sf -o /dev/null "http://127.0.0.1:$http/small.bin" && break
	sleep 0.1
done
ca="$work/data/ca/ca.pem"

run() {
	echo "== paf stress -n $n -m $m -c $c $*"
	"$work/paf" stress -n "$n" -m "$m" -c "$c" "$@"
	echo
}
run --cacert "$ca" "https://localhost:$https/small.bin" "https://localhost:$https/large.bin"
run --cacert "$ca" --http1.1 "https://localhost:$https/small.bin" "https://localhost:$https/large.bin"
run "http://127.0.0.1:$http/small.bin" "http://127.0.0.1:$http/large.bin"
run --http2-prior-knowledge "http://127.0.0.1:$h2c/small.bin" "http://127.0.0.1:$h2c/large.bin"
