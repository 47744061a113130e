# Shared helpers of the bench/ scripts; source it, do not run it.
# Nothing here starts a process that outlives the call.

# bench_need PROG... exits 1 naming the first PROG that is not on PATH.
bench_need() {
	local p
	for p in "$@"; do
		command -v "$p" >/dev/null || {
			echo "bench: $p not found (apt-get install nginx-light caddy haproxy wrk nghttp2-client openssl curl util-linux linux-perf)" >&2
			exit 1
		}
	done
}

# bench_posint VALUE... exits 2 unless every VALUE is a positive integer.
bench_posint() {
	local v
	for v in "$@"; do
		[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v: want a positive integer" >&2; exit 2; }
	done
}

# bench_cpus sets, from $pin and $ncpu, where servers and load generators
# run: with pin=1 (2 CPUs or more) the servers get the first half of the
# CPUs and wrk/h2load the second, so that each server has its cores to
# itself and the numbers stop depending on how the scheduler interleaves
# client and server. Sets procs (server workers), threads (load threads),
# srv and load (command prefixes), server_cpus and load_cpus.
bench_cpus() {
	if [ "$pin" = 1 ]; then
		local half=$((ncpu / 2))
		procs=$half
		server_cpus=0-$((half - 1))
		load_cpus=$half-$((ncpu - 1))
		srv=(taskset -c "$server_cpus")
		load=(taskset -c "$load_cpus")
		threads=$((ncpu - half))
	else
		procs=$ncpu
		srv=()
		load=()
		threads=1
		server_cpus=all
		load_cpus=all
	fi
}

# free_port prints a TCP port on 127.0.0.1 that was free a moment ago.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# make_cert DIR writes DIR/cert.pem and DIR/key.pem: a self-signed ECDSA
# P-256 certificate for localhost and 127.0.0.1, valid two days.
make_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
		-keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

# cpu_ticks PID... prints the user+system clock ticks the processes used so far.
cpu_ticks() {
	local p t=0
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || continue
		t=$((t + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
	done
	echo "$t"
}

# busy_ticks prints the clock ticks all CPUs spent busy so far (user, nice,
# system, irq, softirq, steal).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

# child_ticks FILE prints the CPU time of this shell's finished children, in
# ticks, from the output of `times` saved in FILE (`times` in a command
# substitution would report the substitution's own children).
child_ticks() {
	awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
		printf "%.0f\n", t * hz
	}' "$1"
}

# peak_rss_kib PID... prints the sum of the processes' peak resident set
# (VmHWM) in KiB; processes that are gone count 0.
peak_rss_kib() {
	local p t=0 v
	for p in "$@"; do
		v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# median prints the line of stdin whose first field is the median (the
# lower middle one for an even count).
median() { sort -g | awk '{l[NR] = $0} END {print l[int((NR + 1) / 2)]}'; }

# tls_params PORT ALPN prints what an OpenSSL client without SNI negotiates
# with the server on 127.0.0.1:PORT: "VERSION CIPHER GROUP ALPN".
tls_params() {
	timeout 10 openssl s_client -connect "127.0.0.1:$1" -alpn "$2" </dev/null 2>/dev/null |
		awk '/^New, / {v = $2; sub(/,$/, "", v); c = $NF} /^Server Temp Key:/ {g = $4; sub(/,$/, "", g)}
			/^ALPN protocol:/ {a = $3} END {print v, c, g, a}'
}

# machine_info prints the CPU, kernel and load lines shared by the reports.
machine_info() {
	echo "cpus:      $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "kernel:    $(uname -sr)"
	echo "load avg:  $(cut -d' ' -f1-3 /proc/loadavg) at start (other work on the machine adds noise)"
}
