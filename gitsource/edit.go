package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
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

// FileChange is one file CommitFiles writes or deletes.
type FileChange struct {
	// Path is slash-separated, relative to the repository root, clean.
	Path string
	// Data is the new content of a regular file (mode 0644).
	Data []byte
	// Delete removes the file instead; deleting a file the branch does
	// not have is an error wrapping fs.ErrNotExist.
	Delete bool
}

// maxCommitAttempts bounds CommitFiles' fetch-reapply-push rounds when a
// concurrent writer keeps winning the race.
const maxCommitAttempts = 4

// CommitFiles applies changes on top of the remote branch's head, commits
// and pushes, without forcing. Unlike Publish it leaves every other file of
// the branch as it is, so small edits (one route file, one certificate) by
// several writers compose. A push rejected because the branch moved
// meanwhile is retried on the new head, a few times. When the changes leave
// the tree as it was, nothing is pushed and the error wraps
// ErrNothingToPublish. opts.AllowEmpty is ignored.
func CommitFiles(ctx context.Context, opts PublishOptions, changes []FileChange) (commit string, err error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = publishTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, c := range changes {
		if !validPath(c.Path) {
			return "", fmt.Errorf("gitsource: commit: invalid path %q", c.Path)
		}
	}
	type result struct {
		commit string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var c string
		var err error
		for i := 0; i < maxCommitAttempts; i++ {
			var retry bool
			c, retry, err = commitFiles(ctx, opts, changes)
			if !retry || ctx.Err() != nil {
				break
			}
		}
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.commit, r.err
	case <-ctx.Done():
		return "", fmt.Errorf("gitsource: commit to %s: %w", Remote{URL: opts.Remote.URL}.Redacted(), ctx.Err())
	}
}

// ReadFiles returns the regular files directly inside dir ("" or "." for
// the root) of the remote branch's head, by name, and the head commit. A
// remote without the branch yields no files and an empty commit, so that
// a new repository reads as empty. It keeps nothing on disk.
func ReadFiles(ctx context.Context, remote Remote, auth Auth, dir string) (files map[string][]byte, commit string, err error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	st, r, _, head, _, err := fetchHead(ctx, PublishOptions{Remote: remote, Auth: auth})
	if err != nil || head == nil {
		return map[string][]byte{}, "", err
	}
	tree, err := head.Tree()
	if err != nil {
		return nil, "", fmt.Errorf("gitsource: read %s: %w", r.Redacted(), err)
	}
	dir = strings.Trim(path.Clean("/"+dir), "/")
	if dir != "" {
		if tree, err = tree.Tree(dir); err != nil {
			if errors.Is(err, object.ErrDirectoryNotFound) {
				return map[string][]byte{}, head.Hash.String(), nil
			}
			return nil, "", fmt.Errorf("gitsource: read %s: %s: %w", r.Redacted(), dir, err)
		}
	}
	files = map[string][]byte{}
	for _, e := range tree.Entries {
		if e.Mode != filemode.Regular && e.Mode != filemode.Executable {
			continue
		}
		b, err := readBlob(st, e.Hash)
		if err != nil {
			return nil, "", fmt.Errorf("gitsource: read %s: %s: %w", r.Redacted(), e.Name, err)
		}
		files[e.Name] = b
	}
	return files, head.Hash.String(), nil
}

// fetchHead resolves opts' remote and branch and fetches the branch head
// into a memory storage. head is nil when the branch does not exist yet.
func fetchHead(ctx context.Context, opts PublishOptions) (st *memory.Storage, r Remote, auth *resolvedAuth, head *object.Commit, branch string, err error) {
	if r, auth, err = resolveRemote(opts.Remote, opts.Auth, "gitsource: remote"); err != nil {
		return
	}
	refs, err := listForPublish(ctx, r, auth)
	if err != nil {
		return
	}
	branch = r.Branch
	if branch == "" {
		branch = "main"
		if hasBranches(refs) {
			if branch, _, err = pickBranch(r, refs); err != nil {
				return
			}
		}
	}
	st = memory.NewStorage()
	ref := plumbing.NewBranchReferenceName(branch)
	h, ok := refs[ref]
	if !ok {
		return st, r, auth, nil, branch, nil
	}
	rem := git.NewRemote(st, &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
	spec := config.RefSpec(fmt.Sprintf("+%s:refs/remotes/origin/%s", ref, branch))
	err = retryLocal(ctx, r, func() error {
		return rem.FetchContext(ctx, &git.FetchOptions{
			RemoteName: "origin", RefSpecs: []config.RefSpec{spec},
			Auth: auth.method, CABundle: auth.caBundle, Tags: git.NoTags, Force: true,
		})
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		err = remoteError("fetch", r, err)
		return
	}
	head, err = object.GetCommit(st, h.Hash())
	if err != nil {
		err = fmt.Errorf("gitsource: %s: head %s: %w", r.Redacted(), h.Hash(), err)
	}
	return st, r, auth, head, branch, err
}

// commitFiles makes one attempt; retry reports a push lost to a concurrent
// update.
func commitFiles(ctx context.Context, opts PublishOptions, changes []FileChange) (commit string, retry bool, err error) {
	author := opts.Author
	if author == "" {
		author = DefaultAuthor
	}
	sig, err := ParseAuthor(author)
	if err != nil {
		return "", false, fmt.Errorf("gitsource: %w", err)
	}
	msg := opts.Message
	if msg == "" {
		msg = "Update with paf"
	}
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	st, r, auth, head, branch, err := fetchHead(fctx, opts)
	cancel()
	if err != nil {
		return "", false, err
	}
	base := plumbing.ZeroHash
	var parents []plumbing.Hash
	if head != nil {
		base = head.TreeHash
		parents = []plumbing.Hash{head.Hash}
	}
	treeHash := base
	for _, c := range changes {
		var data []byte
		if !c.Delete {
			data = c.Data
			if data == nil {
				data = []byte{}
			}
		}
		if treeHash, err = editTree(st, treeHash, strings.Split(c.Path, "/"), data); err != nil {
			return "", false, fmt.Errorf("gitsource: commit %s to %s#%s: %w", c.Path, r.Redacted(), branch, err)
		}
	}
	if treeHash == base && head != nil {
		return head.Hash.String(), false, fmt.Errorf("gitsource: commit to %s#%s: %w (tree equals commit %s)",
			r.Redacted(), branch, ErrNothingToPublish, head.Hash)
	}
	if treeHash.IsZero() {
		// An empty tree: every file deleted. Store the empty tree object.
		obj := st.NewEncodedObject()
		if err := (&object.Tree{}).Encode(obj); err != nil {
			return "", false, err
		}
		if treeHash, err = st.SetEncodedObject(obj); err != nil {
			return "", false, err
		}
	}
	sig.When = time.Now()
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: treeHash, ParentHashes: parents}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return "", false, fmt.Errorf("gitsource: commit: encode: %w", err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		return "", false, fmt.Errorf("gitsource: commit: store: %w", err)
	}
	ref := plumbing.NewBranchReferenceName(branch)
	if err := st.SetReference(plumbing.NewHashReference(ref, h)); err != nil {
		return "", false, fmt.Errorf("gitsource: commit: %w", err)
	}
	rem := git.NewRemote(st, &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
	pctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	err = rem.PushContext(pctx, &git.PushOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(fmt.Sprintf("%s:%s", ref, ref))},
		Auth:       auth.method,
		CABundle:   auth.caBundle,
	})
	if err != nil {
		return "", isPushRace(err), remoteError("commit: push", Remote{URL: r.URL, Branch: branch}, err)
	}
	return h.String(), false, nil
}

// isPushRace reports whether a push failed because the branch moved
// between fetch and push: worth fetching again and reapplying.
func isPushRace(err error) bool {
	if errors.Is(err, plumbing.ErrObjectNotFound) || errors.Is(err, git.ErrForceNeeded) {
		return true
	}
	s := err.Error()
	for _, m := range []string{"non-fast-forward", "fetch first", "rejected", "failed to update ref", "object not found", "cannot lock ref"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// editTree returns the hash of tree base (zero: empty) with the file at
// parts set to data, or removed when data is nil; directories left empty
// disappear, as in Git.
func editTree(st storer.EncodedObjectStorer, base plumbing.Hash, parts []string, data []byte) (plumbing.Hash, error) {
	var entries []object.TreeEntry
	if !base.IsZero() {
		t, err := object.GetTree(st, base)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = append(entries, t.Entries...)
	}
	name := parts[0]
	idx := -1
	for i, e := range entries {
		if e.Name == name {
			idx = i
			break
		}
	}
	var newEntry *object.TreeEntry
	if len(parts) > 1 {
		sub := plumbing.ZeroHash
		if idx >= 0 {
			if entries[idx].Mode != filemode.Dir {
				return plumbing.ZeroHash, fmt.Errorf("%s is not a directory", name)
			}
			sub = entries[idx].Hash
		} else if data == nil {
			return plumbing.ZeroHash, fmt.Errorf("%s: %w", strings.Join(parts, "/"), fs.ErrNotExist)
		}
		h, err := editTree(st, sub, parts[1:], data)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if !h.IsZero() {
			newEntry = &object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}
		}
	} else {
		if data == nil && idx < 0 {
			return plumbing.ZeroHash, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		if idx >= 0 && entries[idx].Mode == filemode.Dir {
			return plumbing.ZeroHash, fmt.Errorf("%s is a directory", name)
		}
		if data != nil {
			h, err := storeBlob(st, strings.NewReader(string(data)), int64(len(data)))
			if err != nil {
				return plumbing.ZeroHash, err
			}
			newEntry = &object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: h}
		}
	}
	if idx >= 0 {
		entries = append(entries[:idx], entries[idx+1:]...)
	}
	if newEntry != nil {
		entries = append(entries, *newEntry)
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, nil
	}
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(entries, func(i, j int) bool { return key(entries[i]) < key(entries[j]) })
	obj := st.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

// readBlob returns a blob's content.
func readBlob(st storer.EncodedObjectStorer, h plumbing.Hash) ([]byte, error) {
	b, err := object.GetBlob(st, h)
	if err != nil {
		return nil, err
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}
