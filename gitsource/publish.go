package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/memory"
)

// PublishOptions configures Publish.
type PublishOptions struct {
	// Remote is the repository and branch to publish to. An empty Branch
	// means the branch the remote's HEAD points to, or "main" when the
	// remote has no branch at all.
	Remote Remote
	// Auth holds the SSH and HTTPS options for Remote.
	Auth Auth
	// Message is the commit message. Empty means "Publish with paf".
	Message string
	// AllowEmpty permits publishing a directory without any file, which
	// is otherwise refused as a likely mistake (a wrong path, a failed
	// build).
	AllowEmpty bool
	// Author is "Name <email>", used as author and committer. Empty
	// means "paf <paf@localhost>".
	Author string
	// Timeout bounds the whole publication. Zero means five minutes.
	Timeout time.Duration
}

// DefaultAuthor is the identity of commits made without an author given
// (PublishOptions.Author, storage.GitConfig.Author).
const DefaultAuthor = "paf <paf@localhost>"

// Publish commits the content of dir on top of the remote branch and pushes
// it, without forcing: the branch is created when it does not exist, and a
// concurrent update of it makes the push fail rather than be overwritten.
// Regular files keep their executable bit, symbolic links are stored as
// links, .git entries and empty directories are left out. It returns the
// new commit. When the tree equals the branch head's, nothing is pushed:
// Publish returns the head commit and an error wrapping ErrNothingToPublish.
func Publish(ctx context.Context, dir string, opts PublishOptions) (commit string, err error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = publishTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		commit string
		err    error
	}
	done := make(chan result, 1)
	// Some transport steps (an ssh handshake) do not watch the context:
	// run the work aside so that Publish returns when ctx ends whatever
	// the remote does. The work only touches memory storage.
	go func() {
		c, err := publish(ctx, dir, opts)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.commit, r.err
	case <-ctx.Done():
		select {
		case r := <-done:
			return r.commit, r.err
		default:
		}
		return "", fmt.Errorf("gitsource: publish %s to %s: %w", dir, Remote{URL: opts.Remote.URL}.Redacted(), ctx.Err())
	}
}

// publish does Publish's work.
func publish(ctx context.Context, dir string, opts PublishOptions) (commit string, err error) {
	r, auth, err := resolveRemote(opts.Remote, opts.Auth, "--remote")
	if err != nil {
		return "", err
	}
	author := opts.Author
	if author == "" {
		author = DefaultAuthor
	}
	sig, err := ParseAuthor(author)
	if err != nil {
		return "", fmt.Errorf("gitsource: %w", err)
	}
	msg := opts.Message
	if msg == "" {
		msg = "Publish with paf"
	}
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}

	st := memory.NewStorage()
	treeHash, n, err := writeDirTree(st, dir, ".")
	if err != nil {
		return "", err
	}
	if n == 0 && !opts.AllowEmpty {
		return "", fmt.Errorf("gitsource: publish %s: directory has no files (use --allow-empty to publish an empty site)", dir)
	}

	refs, err := listForPublish(ctx, r, auth)
	if err != nil {
		return "", err
	}
	branch := r.Branch
	if branch == "" {
		branch = "main"
		if hasBranches(refs) {
			if branch, _, err = pickBranch(r, refs); err != nil {
				return "", err
			}
		}
	}
	ref := plumbing.NewBranchReferenceName(branch)
	rem := git.NewRemote(st, &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})

	var parents []plumbing.Hash
	if head, ok := refs[ref]; ok {
		spec := config.RefSpec(fmt.Sprintf("+%s:refs/remotes/origin/%s", ref, branch))
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		err := retryLocal(fctx, r, func() error {
			return rem.FetchContext(fctx, &git.FetchOptions{
				RemoteName: "origin", RefSpecs: []config.RefSpec{spec},
				Auth: auth.method, CABundle: auth.caBundle, Tags: git.NoTags, Force: true,
			})
		})
		cancel()
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return "", remoteError("publish: fetch", r, err)
		}
		parent, err := object.GetCommit(st, head.Hash())
		if err != nil {
			return "", fmt.Errorf("gitsource: publish %s: head %s: %w", r, head.Hash(), err)
		}
		if parent.TreeHash == treeHash {
			return parent.Hash.String(), fmt.Errorf("gitsource: publish %s to %s#%s: %w (tree equals commit %s)",
				dir, r.Redacted(), branch, ErrNothingToPublish, parent.Hash)
		}
		parents = []plumbing.Hash{parent.Hash}
	}

	sig.When = time.Now()
	c := &object.Commit{
		Author:       sig,
		Committer:    sig,
		Message:      msg,
		TreeHash:     treeHash,
		ParentHashes: parents,
	}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return "", fmt.Errorf("gitsource: publish: encode commit: %w", err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		return "", fmt.Errorf("gitsource: publish: store commit: %w", err)
	}
	if err := st.SetReference(plumbing.NewHashReference(ref, h)); err != nil {
		return "", fmt.Errorf("gitsource: publish: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	err = rem.PushContext(pctx, &git.PushOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(fmt.Sprintf("%s:%s", ref, ref))},
		Auth:       auth.method,
		CABundle:   auth.caBundle,
	})
	if err != nil {
		return "", remoteError("publish: push", Remote{URL: r.URL, Branch: branch}, err)
	}
	return h.String(), nil
}

// listForPublish lists the remote's references; an empty remote is a
// valid target and yields no references.
func listForPublish(ctx context.Context, r Remote, auth *resolvedAuth) (map[plumbing.ReferenceName]*plumbing.Reference, error) {
	refs, err := listRemote(ctx, r, auth)
	if errors.Is(err, ErrBranchNotFound) { // remoteError's rendering of an empty remote
		return map[plumbing.ReferenceName]*plumbing.Reference{}, nil
	}
	return refs, err
}

func hasBranches(refs map[plumbing.ReferenceName]*plumbing.Reference) bool {
	for n := range refs {
		if n.IsBranch() {
			return true
		}
	}
	return false
}

var authorRE = regexp.MustCompile(`^\s*([^<>]*?)\s*<([^<>\s]*)>\s*$`)

// ParseAuthor parses a commit author, "Name <email>"; the error names
// what was given and what is wanted, for the caller to prefix.
func ParseAuthor(s string) (object.Signature, error) {
	m := authorRE.FindStringSubmatch(s)
	if m == nil || m[1] == "" || m[2] == "" {
		return object.Signature{}, fmt.Errorf("author %q: want \"Name <email>\"", s)
	}
	return object.Signature{Name: m[1], Email: m[2]}, nil
}

// writeDirTree stores the tree of root/rel and everything below it in st
// and returns its hash and the number of files and links in it.
func writeDirTree(st storer.EncodedObjectStorer, root, rel string) (plumbing.Hash, int, error) {
	dir := filepath.Join(root, rel)
	des, err := os.ReadDir(dir)
	if err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("gitsource: publish: read directory %s: %w", dir, err)
	}
	var entries []object.TreeEntry
	total := 0
	for _, de := range des {
		name := de.Name()
		if name == ".git" {
			continue
		}
		path := filepath.Join(dir, name)
		var (
			h    plumbing.Hash
			mode filemode.FileMode
		)
		switch t := de.Type(); {
		case t.IsDir():
			sub, n, err := writeDirTree(st, root, filepath.Join(rel, name))
			if err != nil {
				return plumbing.ZeroHash, 0, err
			}
			if n == 0 {
				continue // git stores no empty directories
			}
			h, mode, total = sub, filemode.Dir, total+n
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return plumbing.ZeroHash, 0, fmt.Errorf("gitsource: publish: %w", err)
			}
			if h, err = storeBlob(st, strings.NewReader(target), int64(len(target))); err != nil {
				return plumbing.ZeroHash, 0, fmt.Errorf("gitsource: publish: %s: %w", path, err)
			}
			mode, total = filemode.Symlink, total+1
		case t.IsRegular():
			f, err := os.Open(path)
			if err != nil {
				return plumbing.ZeroHash, 0, fmt.Errorf("gitsource: publish: %w", err)
			}
			fi, err := f.Stat()
			if err == nil {
				h, err = storeBlob(st, f, fi.Size())
			}
			f.Close()
			if err != nil {
				return plumbing.ZeroHash, 0, fmt.Errorf("gitsource: publish: %s: %w", path, err)
			}
			mode = filemode.Regular
			if fi.Mode().Perm()&0o111 != 0 {
				mode = filemode.Executable
			}
			total++
		default:
			return plumbing.ZeroHash, 0, fmt.Errorf("gitsource: publish: %s: unsupported file type %s", path, t)
		}
		entries = append(entries, object.TreeEntry{Name: name, Mode: mode, Hash: h})
	}
	// Git orders tree entries by name, a directory as if its name ended
	// in "/".
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(entries, func(i, j int) bool { return key(entries[i]) < key(entries[j]) })
	obj := st.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("gitsource: publish: encode tree %s: %w", dir, err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("gitsource: publish: store tree %s: %w", dir, err)
	}
	return h, total, nil
}

// storeBlob stores size bytes from r as a blob; a file that changes size
// while read is an error rather than a silently truncated blob.
func storeBlob(st storer.EncodedObjectStorer, r io.Reader, size int64) (plumbing.Hash, error) {
	obj := st.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(size)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	n, err := io.Copy(w, io.LimitReader(r, size+1))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if n != size {
		return plumbing.ZeroHash, fmt.Errorf("changed size while read (%d bytes, expected %d)", n, size)
	}
	return st.SetEncodedObject(obj)
}
