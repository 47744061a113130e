package site

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"
)

// treeTime is the commit time of the test trees.
var treeTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// memFile is a file of a test tree: content, or a link target when link
// is set.
type memFile struct {
	content string
	link    string
}

// memTree builds a Tree from memory; its Open returns readers over the
// strings and its Revision is derived from the content.
func memTree(files map[string]memFile) *Tree {
	t := &Tree{Source: "memory", Time: treeTime}
	h := sha256.New()
	var keys []string
	for p := range files {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	for _, p := range keys {
		f := files[p]
		if f.link != "" {
			t.Entries = append(t.Entries, Entry{Path: p, Kind: Symlink, Target: f.link})
			io.WriteString(h, p+"->"+f.link+"\n")
			continue
		}
		sum := sha256.Sum256([]byte(f.content))
		content := f.content
		t.Entries = append(t.Entries, Entry{
			Path: p, Kind: File, Size: int64(len(content)), Hash: hex.EncodeToString(sum[:]),
			Open: func() (io.ReadSeekCloser, error) { return nopCloser{bytes.NewReader([]byte(content))}, nil },
		})
		io.WriteString(h, p+"="+hex.EncodeToString(sum[:])+"\n")
	}
	t.Revision = hex.EncodeToString(h.Sum(nil))
	return t
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func mustBuild(t testing.TB, tree *Tree, opts Options) *Snapshot {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Build(context.Background(), tree, opts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return s
}

// A testServer is h served over one protocol with a client that does not
// decompress or follow redirects.
type testServer struct {
	name   string
	proto  string // expected resp.Proto
	srv    *httptest.Server
	client *http.Client
}

// servers starts h over HTTP/1.1 (cleartext) and HTTP/2 (TLS).
func servers(t *testing.T, h http.Handler) []testServer {
	t.Helper()
	h1 := httptest.NewServer(h)
	t.Cleanup(h1.Close)
	h2 := httptest.NewUnstartedServer(h)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	var out []testServer
	for _, s := range []struct {
		name, proto string
		srv         *httptest.Server
	}{{"h1", "HTTP/1.1", h1}, {"h2", "HTTP/2.0", h2}} {
		c := s.srv.Client()
		tr := c.Transport.(*http.Transport).Clone()
		tr.DisableCompression = true
		if s.proto == "HTTP/2.0" {
			tr.ForceAttemptHTTP2 = true
		}
		t.Cleanup(tr.CloseIdleConnections)
		out = append(out, testServer{s.name, s.proto, s.srv, &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}})
	}
	return out
}

// do sends a request and returns the response with its body read.
func (ts testServer) do(t *testing.T, method, path string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if resp.Proto != ts.proto {
		t.Fatalf("%s %s: proto %s, want %s", method, path, resp.Proto, ts.proto)
	}
	return resp, body
}

// rawRequest writes requestLine and a Host header on a fresh TCP
// connection to the HTTP/1.1 server at addr and returns the response.
func rawRequest(t *testing.T, addr, requestLine string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, requestLine+"\r\nHost: localhost\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", requestLine, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}
