package netstack

import (
	"crypto/rand"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/client"
	"github.com/pafhq/paf/server"
	"github.com/pafhq/paf/stack"
)

// BenchmarkStacks fetches through paf's server and client on the host's
// loopback and on two userspace stacks joined by a Pipe, side by side in
// one run: bench/netstack.sh prints the ratios. Client and server share
// the process, and on the Pipe each packet crosses two userspace stacks,
// so the userspace rows pay for both ends.
func BenchmarkStacks(b *testing.B) {
	sizes := map[string]int{"4k": 4 << 10, "1m": 1 << 20}
	bodies := map[string][]byte{}
	for name, n := range sizes {
		bodies[name] = make([]byte, n)
		rand.Read(bodies[name])
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := bodies[r.URL.Path[1:]]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	type pair struct {
		srv, cli       stack.Stack
		srvHost, lhost string
	}
	stacks := []struct {
		name string
		make func(b *testing.B) pair
	}{
		{"host", func(b *testing.B) pair {
			return pair{srv: &stack.Host{}, cli: &stack.Host{}, srvHost: "127.0.0.1", lhost: "127.0.0.1"}
		}},
		{"netstack", func(b *testing.B) pair {
			l1, l2 := Pipe(1500)
			p := netip.MustParsePrefix
			srv, err := New(Config{Link: l1, Addresses: []netip.Prefix{p("10.0.0.1/24")}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { srv.Close() })
			cli, err := New(Config{Link: l2, Addresses: []netip.Prefix{p("10.0.0.2/24")}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { cli.Close() })
			return pair{srv: srv, cli: cli, srvHost: "10.0.0.1", lhost: "10.0.0.1"}
		}},
	}
	rows := []struct {
		name, size string
		tls        bool
		mode       client.Mode
		wantProto  string
	}{
		{"4k-http1", "4k", false, client.ModeHTTP1, "HTTP/1.1"},
		{"4k-h2-tls", "4k", true, client.ModeAuto, "HTTP/2.0"},
		{"1m-http1", "1m", false, client.ModeHTTP1, "HTTP/1.1"},
		{"1m-h2-tls", "1m", true, client.ModeAuto, "HTTP/2.0"},
	}
	for _, row := range rows {
		for _, s := range stacks {
			b.Run(row.name+"/"+s.name, func(b *testing.B) {
				p := s.make(b)
				ca, err := certs.OpenLocalCA(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				is, err := ca.Issuer([]string{p.srvHost})
				if err != nil {
					b.Fatal(err)
				}
				cfg := server.Config{Stack: p.srv, Handler: h, Certificates: is}
				scheme := "http"
				if row.tls {
					cfg.HTTPSAddr, scheme = net.JoinHostPort(p.lhost, "0"), "https"
				} else {
					cfg.HTTPAddr = net.JoinHostPort(p.lhost, "0")
				}
				srv := run(b, cfg)
				addr := srv.HTTPAddr()
				if row.tls {
					addr = srv.HTTPSAddr()
				}
				roots := x509.NewCertPool()
				roots.AddCert(ca.Certificate())
				tr := &client.Transport{Dialer: &client.Dialer{Stack: p.cli, Authenticator: &client.CertPool{Roots: roots}}, Mode: row.mode}
				b.Cleanup(tr.CloseIdleConnections)
				_, port, _ := net.SplitHostPort(addr.String())
				url := scheme + "://" + net.JoinHostPort(p.srvHost, port) + "/" + row.size
				c := &http.Client{Transport: tr, Timeout: time.Minute}
				want := int64(sizes[row.size])
				b.SetBytes(want)
				b.SetParallelism(4)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						resp, err := c.Get(url)
						if err != nil {
							b.Error(err)
							return
						}
						n, err := io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != http.StatusOK || n != want || resp.Proto != row.wantProto {
							b.Errorf("GET %s: %s %s, %d bytes, %v", url, resp.Proto, resp.Status, n, err)
							return
						}
					}
				})
			})
		}
	}
}
