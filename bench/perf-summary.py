#!/usr/bin/env python3
"""Summarises a `perf record -g` profile of paf (as bench/serve.sh PERF_DIR=...
writes them) by where the time goes: each sample is charged to the first
frame, from the leaf up, that belongs to a known category, so kernel time
is charged to the system call that entered the kernel and a memmove to the
TLS or HTTP code that called it. Then the top symbols by self time.

Usage: bench/perf-summary.py FILE.data [TOP]
"""
import collections
import re
import subprocess
import sys

# Categories, tried in order on each frame from the leaf up: the first frame
# matching any prefix decides. System call wrappers (syscall.Syscall, ...)
# match nothing, so the kernel time below them goes to the Go operation above.
CATEGORIES = [
    ("write syscalls (kernel TCP send, loopback delivery to the client)",
     ["internal/poll.(*FD).Write", "syscall.write", "internal/poll.(*FD).Writev",
      "internal/poll.SendFile", "internal/poll.(*FD).WriteTo", "syscall.sendfile"]),
    ("read syscalls (socket and file)", ["internal/poll.(*FD).Read", "syscall.read", "internal/poll.(*FD).Pread"]),
    ("netpoll (epoll_wait)", ["runtime.netpoll"]),
    ("futex (thread sleep/wake)", ["runtime.futex"]),
    ("clock", ["runtime.nanotime", "runtime.walltime", "time.now", "time.runtimeNow", "__vdso_clock_gettime"]),
    ("AES-GCM", ["crypto/internal/fips140/aes", "crypto/aes", "crypto/cipher"]),
    ("goroutine stack growth", ["runtime.newstack", "runtime.morestack", "runtime.copystack"]),
    ("GC", ["runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.gcDrain", "runtime.markroot",
            "runtime.scanobject", "runtime.bgsweep", "runtime.bgscavenge", "runtime.gcStart", "runtime.sweepone"]),
    ("allocation", ["runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice",
                    "runtime.makemap", "runtime.mapassign", "runtime.concatstring", "runtime.slicebytetostring"]),
    ("scheduler, goroutines, channels, locks",
     ["runtime.schedule", "runtime.findRunnable", "runtime.park_m", "runtime.goready", "runtime.selectgo",
      "runtime.chansend", "runtime.chanrecv", "runtime.newproc", "runtime.goexit0", "runtime.mcall",
      "runtime.gopark", "runtime.ready", "runtime.lock2", "runtime.unlock2", "runtime.selectnb",
      "runtime.mstart", "runtime.sysmon", "runtime.gosched", "runtime.casgstatus", "runtime.exitsyscall",
      "runtime.entersyscall", "runtime.reentersyscall", "internal/sync.", "sync.", "runtime.acquireSudog",
      "runtime.releaseSudog"]),
    ("paf (site, server)", ["github.com/pafhq/paf/"]),
    ("access log (slog)", ["log/slog."]),
    ("TLS record layer", ["crypto/tls."]),
    ("HTTP/2 framing, HPACK", ["net/http.(*http2", "net/http.http2", "vendor/golang.org/x/net/http2"]),
    ("net/http HTTP/1 (parsing, headers, bufio)", ["net/http.", "bufio.", "net/textproto.", "net/url."]),
]


def stacks(path):
    """Yields each sample's frames, leaf first, without offsets."""
    out = subprocess.run(["perf", "script", "-i", path], capture_output=True, text=True, check=True).stdout
    cur = []
    for line in out.splitlines():
        if not line.strip():
            if cur:
                yield cur
            cur = []
            continue
        if line[0] in " \t":
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                sym = parts[1].rsplit(" (", 1)[0]
                cur.append(re.sub(r"\+0x[0-9a-f]+$", "", sym))
    if cur:
        yield cur


def category(frames):
    for f in frames:
        for name, prefixes in CATEGORIES:
            if f.startswith(tuple(prefixes)):
                return name
    if any(f.startswith(("syscall.", "internal/runtime/syscall")) for f in frames):
        return "other syscalls"
    if not any(f.startswith(("runtime.", "net", "crypto/", "github.com/", "internal/", "bufio.")) for f in frames):
        return "kernel only (interrupts, softirq)"
    return "other Go"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    cats, selfs, n = collections.Counter(), collections.Counter(), 0
    for s in stacks(sys.argv[1]):
        n += 1
        cats[category(s)] += 1
        selfs[s[0]] += 1
    if n == 0:
        sys.exit(f"{sys.argv[1]}: no samples")
    print(f"{sys.argv[1]}: {n} samples")
    for name, v in cats.most_common():
        print(f"  {100 * v / n:5.1f}%  {name}")
    print("  top symbols (self):")
    for name, v in selfs.most_common(top):
        print(f"  {100 * v / n:5.1f}%  {name}")


if __name__ == "__main__":
    main()
