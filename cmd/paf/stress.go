package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pafclient "github.com/pafhq/paf/client"
	"github.com/pafhq/paf/stack"
)

// stressOptions is a parsed `paf stress` command line.
type stressOptions struct {
	workers, requests, concurrency int
	http1, priorKnowledge          bool
	cacert, pin                    string
	insecure                       bool
	newConn                        bool
	timeout                        time.Duration
	worker                         bool
	urls                           []string
}

func stressFlags() (*flag.FlagSet, *stressOptions) {
	o := &stressOptions{}
	fs := flag.NewFlagSet("paf stress", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.workers, "n", 50, "number of worker `PROCESSES`")
	fs.IntVar(&o.requests, "m", 200, "`REQUESTS` each worker makes, one after the other")
	fs.IntVar(&o.concurrency, "c", 10, "at most `C` workers running at a time")
	fs.BoolVar(&o.http1, "http1.1", false, "speak HTTP/1.1 only")
	fs.BoolVar(&o.priorKnowledge, "http2-prior-knowledge", false, "speak HTTP/2 only (h2c in clear text)")
	fs.StringVar(&o.cacert, "cacert", "", "trust the CA certificates in `FILE` alone")
	fs.StringVar(&o.pin, "pin", "", "trust the server whose certificate or key has this `SPEC` (cert:sha256:... or key:sha256:...)")
	fs.BoolVar(&o.insecure, "k", false, "trust any server")
	fs.BoolVar(&o.newConn, "new-conn", false, "open a connection per request instead of keeping it alive")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "time allowed for each request")
	fs.BoolVar(&o.worker, "worker", false, "run as one worker process (used by paf stress itself)")
	return fs, o
}

const stressUsage = `Usage: paf stress [flags] URL...

Stress-tests a server as paf's original test suite did: -n worker processes
(not goroutines: real parallelism, separate runtimes) each make -m requests
to the URLs in turn, at most -c workers at a time. Every response must be a
2xx whose body arrives complete; any failure fails the run (exit 1). It
prints the total time, the slowest, fastest and mean request and a latency
histogram.

Flags:
`

// stress runs `paf stress` and returns its exit code: 0 when every request
// succeeded, 1 when any failed, 2 for usage errors.
func stress(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, o := stressFlags()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, stressUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "paf stress: %v (see `paf stress -h`)\n", err)
		return 2
	}
	o.urls = fs.Args()
	switch {
	case len(o.urls) == 0:
		fmt.Fprintln(stderr, "paf stress: no URL given (see `paf stress -h`)")
		return 2
	case o.workers < 1 || o.requests < 1 || o.concurrency < 1:
		fmt.Fprintln(stderr, "paf stress: -n, -m and -c must be at least 1")
		return 2
	case o.http1 && o.priorKnowledge:
		fmt.Fprintln(stderr, "paf stress: --http1.1 and --http2-prior-knowledge exclude each other")
		return 2
	}
	for _, u := range o.urls {
		if _, err := parseURL(u); err != nil {
			fmt.Fprintf(stderr, "paf stress: %v\n", err)
			return 2
		}
	}
	if o.worker {
		return stressWorker(ctx, o, stdout, stderr)
	}
	return stressRun(ctx, o, args, stdout, stderr)
}

// stressWorker makes o.requests requests and prints one line per request:
// "ok NANOSECONDS BYTES" or "fail MESSAGE".
func stressWorker(ctx context.Context, o *stressOptions, stdout, stderr io.Writer) int {
	var auth pafclient.Authenticator = pafclient.SystemRoots{}
	switch {
	case o.insecure:
		auth = pafclient.Insecure{}
	case o.pin != "":
		p, err := pafclient.ParsePin(o.pin)
		if err != nil {
			fmt.Fprintf(stderr, "paf stress: --pin: %v\n", err)
			return 2
		}
		auth = p
	case o.cacert != "":
		a, err := pafclient.CAFile(o.cacert)
		if err != nil {
			fmt.Fprintf(stderr, "paf stress: %v\n", err)
			return 2
		}
		auth = a
	}
	mode := pafclient.ModeAuto
	if o.http1 {
		mode = pafclient.ModeHTTP1
	} else if o.priorKnowledge {
		mode = pafclient.ModeHTTP2PriorKnowledge
	}
	tr := &pafclient.Transport{
		Dialer:            &pafclient.Dialer{Stack: &stack.Host{}, Authenticator: auth},
		Mode:              mode,
		DisableKeepAlives: o.newConn,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	failed := false
	for i := range o.requests {
		u, _ := parseURL(o.urls[i%len(o.urls)])
		d, n, err := stressOne(ctx, hc, u.String(), o.timeout)
		if err != nil {
			failed = true
			fmt.Fprintf(w, "fail %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Fprintf(w, "ok %d %d\n", d.Nanoseconds(), n)
	}
	if failed {
		return 1
	}
	return 0
}

// stressOne makes one timed GET and checks it.
func stressOne(ctx context.Context, hc *http.Client, url string, timeout time.Duration) (time.Duration, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	d := time.Since(start)
	switch {
	case err != nil:
		return 0, n, fmt.Errorf("GET %s: reading the body: %w", url, err)
	case resp.StatusCode/100 != 2:
		return 0, n, fmt.Errorf("GET %s: %s", url, resp.Status)
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		return 0, n, fmt.Errorf("GET %s: %d bytes of %d", url, n, resp.ContentLength)
	}
	return d, n, nil
}

// stressRun starts the worker processes and reports.
func stressRun(ctx context.Context, o *stressOptions, args []string, stdout, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "paf stress: finding paf's own binary for the workers: %v\n", err)
		return 1
	}
	var (
		mu       sync.Mutex
		lats     []time.Duration
		bytes    int64
		failures []string
	)
	fail := func(format string, a ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	sem := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range o.workers {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			fail("interrupted before worker %d started", i)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cmd := exec.CommandContext(ctx, exe, append([]string{"stress", "--worker"}, args...)...)
			var errBuf strings.Builder
			cmd.Stderr = &errBuf
			out, err := cmd.StdoutPipe()
			if err != nil {
				fail("worker %d: %v", i, err)
				return
			}
			if err := cmd.Start(); err != nil {
				fail("worker %d: %v", i, err)
				return
			}
			got, failed := 0, false
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				got++
				if len(f) == 3 && f[0] == "ok" {
					ns, err1 := strconv.ParseInt(f[1], 10, 64)
					n, err2 := strconv.ParseInt(f[2], 10, 64)
					if err1 == nil && err2 == nil {
						mu.Lock()
						lats = append(lats, time.Duration(ns))
						bytes += n
						mu.Unlock()
						continue
					}
				}
				failed = true
				fail("worker %d: %s", i, sc.Text())
			}
			werr := cmd.Wait()
			if got != o.requests {
				fail("worker %d reported %d requests of %d: %v %s", i, got, o.requests, werr, strings.TrimSpace(errBuf.String()))
			} else if werr != nil && !failed {
				fail("worker %d: %v %s", i, werr, strings.TrimSpace(errBuf.String()))
			}
		}()
	}
	wg.Wait()
	total := time.Since(start)
	printStressReport(stdout, o, lats, bytes, total)
	if len(failures) > 0 {
		for i, f := range failures {
			if i == 10 {
				fmt.Fprintf(stderr, "paf stress: ... and %d more failures\n", len(failures)-10)
				break
			}
			fmt.Fprintf(stderr, "paf stress: %s\n", f)
		}
		fmt.Fprintf(stderr, "paf stress: FAILED: %d of %d requests failed\n", o.workers*o.requests-len(lats), o.workers*o.requests)
		return 1
	}
	return 0
}

// printStressReport prints the summary and a ten-bucket latency histogram
// from the fastest to the slowest request.
func printStressReport(w io.Writer, o *stressOptions, lats []time.Duration, bytes int64, total time.Duration) {
	fmt.Fprintf(w, "%d requests ok of %d (%d workers × %d, %d at a time), %d bytes\n",
		len(lats), o.workers*o.requests, o.workers, o.requests, o.concurrency, bytes)
	fmt.Fprintf(w, "Total:    %.4f s\n", total.Seconds())
	if len(lats) == 0 {
		return
	}
	slices.Sort(lats)
	var sum time.Duration
	for _, l := range lats {
		sum += l
	}
	fast, slow := lats[0], lats[len(lats)-1]
	fmt.Fprintf(w, "Slowest:  %.4f s\nFastest:  %.4f s\nAverage:  %.4f s\n", slow.Seconds(), fast.Seconds(), (sum / time.Duration(len(lats))).Seconds())
	fmt.Fprintf(w, "Requests/sec: %.1f\n", float64(len(lats))/total.Seconds())
	const buckets = 10
	width := (slow - fast) / buckets
	if width <= 0 {
		width = 1
	}
	counts := make([]int, buckets)
	for _, l := range lats {
		b := min(int((l-fast)/width), buckets-1)
		counts[b]++
	}
	most := slices.Max(counts)
	fmt.Fprintln(w, "Latency histogram:")
	for i, c := range counts {
		bar := 0
		if most > 0 {
			bar = c * 40 / most
		}
		fmt.Fprintf(w, "  %.4f s [%7d] |%s\n", (fast + time.Duration(i+1)*width).Seconds(), c, strings.Repeat("■", bar))
	}
}
