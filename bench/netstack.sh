#!/usr/bin/env bash
# Measures paf's server and client on the host's loopback and on its
# userspace TCP/IP stack (netstack, two stacks joined in memory) side by
# side, in one `go test -bench` run, and prints the median throughput of
# each and the netstack/host ratio. Results go in docs/benchmarks.md.
#
# Usage: bench/netstack.sh
#
# Settings (environment):
#   COUNT      runs of each benchmark, the median is shown (5)
#   BENCHTIME  go test -benchtime per run (1s)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
benchtime=${BENCHTIME:-1s}
[[ $count =~ ^[1-9][0-9]*$ ]] || { echo "COUNT: want a positive integer, got '$count'" >&2; exit 2; }

echo "# go test -run '^\$' -bench '^BenchmarkStacks\$' -benchtime $benchtime -count $count ./netstack/"
if ! out=$(go test -run '^$' -bench '^BenchmarkStacks$' -benchtime "$benchtime" -count "$count" ./netstack/ 2>&1); then
	printf '%s\n' "$out" >&2
	exit 1
fi
printf '%s\n' "$out" | grep -E '^(goos|goarch|cpu):' || true
printf '%s\n' "$out" | awk '
	/^BenchmarkStacks\// {
		split($1, p, "/"); row = p[2]; st = p[3]; sub(/-[0-9]+$/, "", st)
		for (i = 2; i <= NF; i++) if ($(i+1) == "MB/s") v = $i
		n[row, st]++; val[row, st, n[row, st]] = v
		if (!(row in seen)) { seen[row] = 1; order[++rows] = row }
	}
	function median(row, st,    k, m, a, i, j, t) {
		m = n[row, st]
		for (i = 1; i <= m; i++) a[i] = val[row, st, i]
		for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
	}
	END {
		if (rows == 0) { print "no benchmark results" > "/dev/stderr"; exit 1 }
		printf "%-12s %14s %14s %16s\n", "row", "host MB/s", "netstack MB/s", "netstack/host"
		for (r = 1; r <= rows; r++) {
			h = median(order[r], "host"); s = median(order[r], "netstack")
			printf "%-12s %14.1f %14.1f %16.2f\n", order[r], h, s, (h > 0 ? s / h : 0)
		}
	}'
