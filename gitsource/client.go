package gitsource

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Access is a remote checked and loaded together with its Auth, for other
// packages that drive go-git themselves (the certificate storage pushes
// commits of its own) while keeping exactly the SSH host key checks, key
// loading and CA handling of --remote.
type Access struct {
	// Remote is the parsed remote; Branch is as given (empty means the
	// remote's HEAD).
	Remote Remote
	// AuthMethod goes into go-git's FetchOptions, PushOptions and
	// ListOptions. It is nil except for ssh remotes.
	AuthMethod transport.AuthMethod
	// CABundle goes into the same options' CABundle: extra PEM roots for
	// https remotes (--git-ca), or nil.
	CABundle []byte
}

// NewAccess validates r and a as New does for a Source (remote syntax,
// branch name, key, passphrase, known_hosts, fingerprint, CA file) and
// returns what go-git needs to reach the remote. Errors name the option.
func NewAccess(r Remote, a Auth) (*Access, error) {
	if r.URL == "" {
		return nil, errors.New("gitsource: remote: empty URL")
	}
	pr, ra, err := resolveRemote(r, a, "gitsource: remote")
	if err != nil {
		return nil, err
	}
	return &Access{Remote: pr, AuthMethod: ra.method, CABundle: ra.caBundle}, nil
}

// resolveRemote parses r (its syntax, its branch name) and resolves a for
// it: what every way of reaching a remote checks first. An invalid branch
// name is reported as "<label> <remote>: invalid branch name".
func resolveRemote(r Remote, a Auth, label string) (Remote, *resolvedAuth, error) {
	pr, err := ParseRemote(r.URL)
	if err != nil {
		return Remote{}, nil, err
	}
	if r.Branch != "" {
		if err := plumbing.NewBranchReferenceName(r.Branch).Validate(); err != nil {
			return Remote{}, nil, fmt.Errorf("%s %s: invalid branch name %q", label, r.Redacted(), r.Branch)
		}
		pr.Branch = r.Branch
	}
	ra, err := a.resolve(pr)
	if err != nil {
		return Remote{}, nil, err
	}
	return pr, ra, nil
}

// Retry runs op, and again up to twice when the remote is a local
// repository and op failed on a reference git was writing at that moment
// (go-git's in-process file transport sees git's empty *.lock files).
// Other remotes and errors get a single run.
func (a *Access) Retry(ctx context.Context, op func() error) error {
	return retryLocal(ctx, a.Remote, op)
}

// Error wraps a transport error with the operation and the redacted
// remote, rephrasing the common ones as Source does (an empty remote
// repository wraps ErrBranchNotFound).
func (a *Access) Error(op string, err error) error {
	return remoteError(op, a.Remote, err)
}
