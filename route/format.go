package route

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Format renders r as a route file that Parse reads back to an equal Route.
// Keys at their default value are left out, so a file written by
// `paf route add` shows only what was chosen. Output is deterministic: the
// same Route always formats to the same bytes.
func Format(r *Route) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Route for %s, read by paf proxy. Format: docs/routes.md.\n", r.Host)
	if r.Passthrough {
		b.WriteString("passthrough = true\n")
	}
	if len(r.Backends) > 0 {
		urls := make([]string, len(r.Backends))
		for i, be := range r.Backends {
			urls[i] = be.URL
		}
		b.WriteString("backends = " + strArray(urls) + "\n")
	}
	if r.Site != "" {
		b.WriteString("site = " + quote(r.Site) + "\n")
	}
	if r.LB != "" && r.LB != RoundRobin {
		b.WriteString("lb = " + quote(string(r.LB)) + "\n")
	}
	if r.ALPN != nil && !slices.Equal(r.ALPN, []string{"h2", "http/1.1"}) {
		b.WriteString("alpn = " + strArray(r.ALPN) + "\n")
	}
	if r.Certificate != "" && r.Certificate != CertDefault {
		b.WriteString("certificate = " + quote(string(r.Certificate)) + "\n")
	}
	if r.MaxBody > 0 {
		b.WriteString("max_body = " + quote(formatSize(r.MaxBody)) + "\n")
	}
	if !r.WebSocket {
		b.WriteString("websocket = false\n")
	}
	if r.ProxyProtocol != "" {
		b.WriteString("proxy_protocol = " + quote(r.ProxyProtocol) + "\n")
	}

	table := func(name string, kv [][2]string) {
		if len(kv) == 0 {
			return
		}
		b.WriteString("\n[" + name + "]\n")
		for _, p := range kv {
			b.WriteString(p[0] + " = " + p[1] + "\n")
		}
	}
	var kv [][2]string
	durKV := func(k string, d, def time.Duration) {
		if d != 0 && d != def {
			kv = append(kv, [2]string{k, quote(d.String())})
		}
	}
	durKV("dial", r.Timeouts.Dial, DefaultDialTimeout)
	durKV("response_header", r.Timeouts.ResponseHeader, DefaultResponseHeaderTimeout)
	durKV("idle", r.Timeouts.Idle, DefaultIdleTimeout)
	table("timeouts", kv)

	kv = nil
	if r.Health.Path != "" {
		kv = append(kv, [2]string{"path", quote(r.Health.Path)})
	}
	durKV("interval", r.Health.Interval, 0)
	if r.Health.Fails != 0 && r.Health.Fails != DefaultFails {
		kv = append(kv, [2]string{"fails", strconv.Itoa(r.Health.Fails)})
	}
	durKV("fail_duration", r.Health.FailDuration, DefaultFailDuration)
	table("health", kv)

	kv = nil
	if r.TLS.CAFile != "" {
		kv = append(kv, [2]string{"ca", quote(r.TLS.CAFile)})
	}
	if r.TLS.ServerName != "" {
		kv = append(kv, [2]string{"server_name", quote(r.TLS.ServerName)})
	}
	if r.TLS.Insecure {
		kv = append(kv, [2]string{"insecure", "true"})
	}
	table("tls", kv)

	for _, t := range []struct {
		name string
		hs   []Header
	}{{"request_headers", r.RequestHeaders}, {"response_headers", r.ResponseHeaders}} {
		kv = nil
		for _, h := range t.hs {
			k := h.Name
			for i := 0; i < len(k); i++ {
				if !isBare(k[i]) {
					k = quote(k)
					break
				}
			}
			kv = append(kv, [2]string{k, quote(h.Value)})
		}
		table(t.name, kv)
	}
	return []byte(b.String())
}

// quote renders s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func strArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// formatSize renders a byte count with the largest exact binary unit.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
