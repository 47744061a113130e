package site

import "testing"

func TestAcceptEncoding(t *testing.T) {
	for _, c := range []struct {
		header string
		want   [numCodings + 1]int // br, zstd, gzip, identity
	}{
		{"gzip, deflate, br, zstd", [4]int{1000, 1000, 1000, 1}},
		{"br;q=0.5, gzip;q=0.9", [4]int{500, 0, 900, 1}},
		{"BR; Q=0.25 , GZIP", [4]int{250, 0, 1000, 1}},
		{"*", [4]int{1000, 1000, 1000, 1000}},
		{"*;q=0, identity", [4]int{0, 0, 0, 1000}},
		{"gzip;q=0, *;q=0.3", [4]int{300, 300, 0, 300}},
		{"identity;q=0, x-gzip", [4]int{0, 0, 1000, 0}},
		{"gzip;q=0.001", [4]int{0, 0, 1, 1}},
		{"gzip;q=1.000", [4]int{0, 0, 1000, 1}},
		{"gzip;q=abc, br;q=", [4]int{0, 0, 0, 1}},
		{"gzip;q=0.5;level=1", [4]int{0, 0, 500, 1}},
		{"", [4]int{0, 0, 0, 1}},
		{",,, ;q=1", [4]int{0, 0, 0, 1}},
	} {
		if got := acceptEncoding([]string{c.header}); got != c.want {
			t.Errorf("%q: %v, want %v", c.header, got, c.want)
		}
	}
}

func TestETagListMatch(t *testing.T) {
	const tag = `"abc"`
	for _, c := range []struct {
		header       string
		weak, strong bool
	}{
		{`"abc"`, true, true},
		{`W/"abc"`, true, false},
		{`"x", "abc"`, true, true},
		{`"x",W/"abc"`, true, false},
		{`*`, true, true},
		{`"abcd"`, false, false},
		{`abc`, false, false},
		{`"x", junk, "abc"`, true, true},
		{`"unterminated`, false, false},
		{``, false, false},
	} {
		if got := etagListMatch([]string{c.header}, tag, true); got != c.weak {
			t.Errorf("weak %q: %v", c.header, got)
		}
		if got := etagListMatch([]string{c.header}, tag, false); got != c.strong {
			t.Errorf("strong %q: %v", c.header, got)
		}
	}
}

func TestResolveLink(t *testing.T) {
	for _, c := range []struct {
		link, target, want string
		ok                 bool
	}{
		{"a.html", "b.html", "b.html", true},
		{"d/a.html", "../b.html", "b.html", true},
		{"d/a.html", "/x/y", "x/y", true},
		{"d/a.html", "./e/../f/", "d/f", true},
		{"d/a.html", "..", "", true},
		{"a.html", "../b", "", false},
		{"d/a.html", "../../b", "", false},
		{"a", "/../etc/passwd", "", false},
		{"a", "C:\\x", "", false},
		{"a", "x\\..\\..\\y", "", false},
		{"a", "c:/x", "", false},
		{"a", ".git/config", "", false},
		{"a", "x/.GIT", "", false},
		{"a", "", "", false},
	} {
		got, ok := resolveLink(c.link, c.target)
		if got != c.want || ok != c.ok {
			t.Errorf("resolveLink(%q, %q) = %q, %v; want %q, %v", c.link, c.target, got, ok, c.want, c.ok)
		}
	}
}
