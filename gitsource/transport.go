package gitsource

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
)

// init replaces go-git's "file" transport, which execs git-upload-pack and
// git-receive-pack, with go-git's in-process server, so that file:// and
// plain-path remotes work in a static paf binary on a host without git.
//
// client.InstallProtocol mutates a go-git package-level map: it is the only
// way to choose the transport for a scheme, so it is done exactly once,
// here, before any goroutine can use a transport. Every user of go-git in
// the process then gets the in-process file transport, which is what paf
// wants everywhere.
func init() {
	client.InstallProtocol("file", server.NewClient(gitDirLoader{server.NewFilesystemLoader(osfs.New(""))}))
}

// gitDirLoader makes the in-process server accept a non-bare repository
// path, as git does: go-git's filesystem loader only finds bare ones (it
// would open the work tree itself as the git directory).
type gitDirLoader struct{ next server.Loader }

// Load implements server.Loader.
func (l gitDirLoader) Load(ep *transport.Endpoint) (storer.Storer, error) {
	fs := osfs.New("")
	if fi, err := fs.Stat(fs.Join(ep.Path, ".git")); err == nil && fi.IsDir() {
		if _, err := fs.Stat(fs.Join(ep.Path, "config")); err != nil {
			e := *ep
			e.Path = fs.Join(ep.Path, ".git")
			return l.next.Load(&e)
		}
	}
	return l.next.Load(ep)
}

// retryLocal runs op, again up to twice, when the remote is a local
// repository and op failed on a reference being written: go-git's
// in-process server lists refs/ including git's *.lock files, which are
// empty for a moment while git updates a ref.
func retryLocal(ctx context.Context, r Remote, op func() error) error {
	err := op()
	for i := 0; i < 2 && err != nil && r.scheme() == "file" && isRefRace(err); i++ {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
		err = op()
	}
	return err
}

func isRefRace(err error) bool {
	return errors.Is(err, dotgit.ErrEmptyRefFile) || strings.Contains(err.Error(), dotgit.ErrEmptyRefFile.Error())
}
