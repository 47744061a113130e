package route

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics, fails only with a *route.Error, and a
// route it accepts formats (Format) to a file that parses back to an
// equal route, field for field, which formats to the same bytes.
//
// Seeds: the f.Add calls below and testdata/fuzz/FuzzParse. Run with
//
//	go test ./route/ -run '^$' -fuzz '^FuzzParse$' -fuzztime 20s
func FuzzParse(f *testing.F) {
	f.Add("blog.example.org.toml", []byte(full))
	f.Add("a.test.toml", []byte(`backends = ["http://127.0.0.1:1"]`))
	f.Add("a.test.toml", []byte("passthrough = true\nbackends = ['tcp://[::1]:443']\nproxy_protocol = \"v1\"\n"))
	f.Add("routes/x.example.toml", []byte("site = \"https://g.example/x.git#pages\"\n[response_headers]\n\"X-A\" = \"\\u00e9\\t\"\n"))
	f.Add("a.test.toml", []byte("backends = [\"http://x\",]\nmax_body = \"1GiB\"\n[health]\npath = \"/h\"\ninterval = \"1s\"\nfails = 9223372036854775807\n"))
	f.Add("A_B.toml", []byte("backends = [\"http://x\"]\nbackends = [\"http://y\"]\n"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		r, err := Parse(name, data)
		if err != nil {
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("error %T is not a *route.Error: %v", err, err)
			}
			if r != nil {
				t.Fatalf("Parse returned a route and an error: %v", err)
			}
			return
		}
		out := Format(r)
		back, err := Parse(r.Host+Ext, out)
		if err != nil {
			t.Fatalf("formatted route does not parse: %v\n--- input\n%s\n--- formatted\n%s", err, data, out)
		}
		if !back.Equal(r) {
			t.Fatalf("round trip differs\n--- formatted\n%s\n--- formatted again\n%s", out, Format(back))
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip loses something Format does not show\n--- parsed  %#v\n--- reparsed %#v\n--- formatted\n%s", r, back, out)
		}
	})
}
