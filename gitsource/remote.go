package gitsource

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// Remote is a parsed --remote URL[#BRANCH]: where the site lives and which
// branch of it to serve or publish to.
type Remote struct {
	// URL is the repository's address as go-git understands it: a
	// file://, git://, http://, https:// or ssh:// URL, or an scp-like
	// [user@]host:path. Plain paths are made absolute so that the clone
	// cache key does not depend on the working directory.
	URL string
	// Branch is the branch name without "refs/heads/". The zero value
	// means the branch the remote's HEAD points to.
	Branch string
}

// schemes are the URL schemes paf speaks; anything else is refused before a
// transport is ever involved.
var schemes = map[string]bool{"file": true, "git": true, "http": true, "https": true, "ssh": true}

// ParseRemote parses a --remote value, URL[#BRANCH]. It accepts file:// URLs
// and plain paths (made absolute), git://, http://, https://, ssh:// URLs and
// scp-like [user@]host:path, and rejects other schemes and malformed input
// with an error naming the problem.
func ParseRemote(s string) (Remote, error) {
	fail := func(format string, a ...any) (Remote, error) {
		return Remote{}, fmt.Errorf("gitsource: remote %q: %s", Redact(s), fmt.Sprintf(format, a...))
	}
	raw := strings.TrimSpace(s)
	if raw == "" {
		return fail("empty")
	}
	if strings.ContainsAny(raw, "\x00\n\r") {
		return fail("contains control characters")
	}
	var r Remote
	if i := strings.LastIndexByte(raw, '#'); i >= 0 {
		branch := strings.TrimPrefix(raw[i+1:], "refs/heads/")
		raw = raw[:i]
		if branch == "" {
			return fail("empty branch after #")
		}
		if err := plumbing.NewBranchReferenceName(branch).Validate(); err != nil {
			return fail("invalid branch name %q", branch)
		}
		r.Branch = branch
	}
	if raw == "" {
		return fail("no URL before #")
	}
	switch {
	case strings.Contains(raw, "://"):
		u, err := url.Parse(raw)
		if err != nil {
			return fail("%v", errors.Unwrap(err))
		}
		scheme := strings.ToLower(u.Scheme)
		if !schemes[scheme] {
			return fail("unsupported scheme %q (want file, git, http, https or ssh)", u.Scheme)
		}
		if u.RawQuery != "" && scheme != "http" && scheme != "https" {
			return fail("unexpected query %q", u.RawQuery)
		}
		if scheme == "file" {
			if u.Host != "" && u.Host != "localhost" {
				return fail("file URL with host %q (want file:///absolute/path)", u.Host)
			}
			if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
				return fail("file URL without absolute path")
			}
			r.URL = "file://" + filepath.Clean(u.Path)
			return r, nil
		}
		if u.Hostname() == "" {
			return fail("no host")
		}
		if u.Port() != "" {
			if p := u.Port(); len(p) > 5 || p == "0" {
				return fail("invalid port %q", p)
			}
		}
		if u.Path == "" || u.Path == "/" {
			return fail("no repository path")
		}
		if scheme == "ssh" || scheme == "git" {
			if _, ok := u.User.Password(); ok {
				return fail("passwords are not supported in %s URLs", scheme)
			}
		}
		r.URL = raw
		return r, nil
	case isSCPLike(raw):
		user, rest := "", raw
		if i := strings.IndexByte(rest, '@'); i >= 0 && i < strings.IndexByte(rest, ':') {
			user, rest = rest[:i], rest[i+1:]
			if user == "" {
				return fail("empty user before @")
			}
		}
		host, path, _ := strings.Cut(rest, ":")
		if host == "" || strings.ContainsAny(host, " \t[]") {
			return fail("invalid host %q", host)
		}
		if path == "" {
			return fail("no repository path after %q", host+":")
		}
		r.URL = raw
		return r, nil
	default:
		abs, err := filepath.Abs(raw)
		if err != nil {
			return fail("%v", err)
		}
		r.URL = abs
		return r, nil
	}
}

// isSCPLike reports whether s is git's scp-like syntax: a colon before any
// slash, as git itself decides between a path and a host.
func isSCPLike(s string) bool {
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return false
	}
	slash := strings.IndexByte(s, '/')
	return slash < 0 || colon < slash
}

// scheme returns the transport scheme of the remote: "file", "git",
// "http", "https" or "ssh" (scp-like addresses are ssh).
func (r Remote) scheme() string {
	if i := strings.Index(r.URL, "://"); i >= 0 {
		return strings.ToLower(r.URL[:i])
	}
	if r.URL != "" && !strings.HasPrefix(r.URL, "/") && isSCPLike(r.URL) {
		return "ssh"
	}
	return "file"
}

// Redacted returns the URL with any password replaced, for logs and
// Tree.Source.
func (r Remote) Redacted() string {
	if strings.Contains(r.URL, "://") {
		if u, err := url.Parse(r.URL); err == nil {
			return u.Redacted()
		}
	}
	return r.URL
}

// Redact returns a --remote value as given, URL[#BRANCH], with any
// password in it hidden: for messages about values that may not parse.
func Redact(s string) string {
	u, frag, _ := strings.Cut(s, "#")
	r := Remote{URL: u}.Redacted()
	if frag != "" {
		return r + "#" + frag
	}
	return r
}

// String returns URL#BRANCH (or just the URL when the branch is the
// remote's HEAD), with passwords redacted.
func (r Remote) String() string {
	if r.Branch == "" {
		return r.Redacted()
	}
	return r.Redacted() + "#" + r.Branch
}
