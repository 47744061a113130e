package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxPushAttempts bounds how often one change is pushed when other
// instances keep pushing first.
const maxPushAttempts = 10

// view is a change being prepared on top of a snapshot: a copy of its
// files that the change edits.
type view struct {
	base    *snapshot
	files   map[string]blob
	changed bool
}

func newView(s *snapshot) *view {
	files := make(map[string]blob, len(s.files)+1)
	for k, b := range s.files {
		files[k] = b
	}
	return &view{base: s, files: files}
}

// get returns the value at key.
func (v *view) get(key string) ([]byte, bool, error) {
	b, ok := v.files[key]
	if !ok {
		return nil, false, nil
	}
	return b.data, true, b.err
}

// set puts value at key; a key that is a directory, or under a file, is
// refused, as a file system would.
func (v *view) set(key string, value []byte) error {
	if old, ok := v.files[key]; ok && old.err == nil && bytes.Equal(old.data, value) {
		return nil
	}
	for k := range v.files {
		if strings.HasPrefix(k, key+"/") {
			return fmt.Errorf("%s is a directory", key)
		}
	}
	for i := strings.IndexByte(key, '/'); i > 0; i = next(key, i) {
		if _, ok := v.files[key[:i]]; ok {
			return fmt.Errorf("%s is a file", key[:i])
		}
	}
	v.files[key] = blob{data: value}
	v.changed = true
	return nil
}

func next(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// del removes key and everything under it and returns how many files it
// removed.
func (v *view) del(key string) int {
	n := 0
	for k := range v.files {
		if k == key || strings.HasPrefix(k, key+"/") {
			delete(v.files, k)
			n++
		}
	}
	if n > 0 {
		v.changed = true
	}
	return n
}

// change edits a view and returns the commit message's subject; an error
// abandons the change. It may run several times, on successive heads.
type change func(v *view) (string, error)

// update applies fn to the current head, commits and pushes the result,
// and on a rejected push fetches and applies fn again to the new head.
// Nothing is committed when fn changes nothing. The tracking ref, and so
// what reads see, moves only when a push succeeds.
func (g *Git) update(ctx context.Context, op string, fn change) error {
	if err := g.acquire(ctx); err != nil {
		return fmt.Errorf("storage: %s in %s: %w", op, g, err)
	}
	defer g.release()
	var pushErr error
	stalled := 0
	for attempt := 0; attempt < maxPushAttempts; attempt++ {
		if attempt > 0 {
			backoff := min(50*time.Millisecond<<attempt, 2*time.Second)
			backoff = backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return fmt.Errorf("storage: %s in %s: %w (last push error: %v)", op, g, ctx.Err(), pushErr)
			case <-time.After(backoff):
			}
			before := g.snap.Load().head
			if err := g.fetchLocked(ctx); err != nil {
				return fmt.Errorf("storage: %s in %s: push failed (%v), then %w", op, g, pushErr, err)
			}
			if g.snap.Load().head == before {
				// Nobody else pushed: the push failed for another
				// reason (permissions, a hook). Do not insist.
				if stalled++; stalled >= 2 {
					break
				}
			}
		}
		base := g.snap.Load()
		v := newView(base)
		subject, err := fn(v)
		if err != nil {
			return err
		}
		if !v.changed {
			return nil
		}
		commit, when, err := g.commit(base, v, subject)
		if err != nil {
			return fmt.Errorf("storage: %s in %s: %w", op, g, err)
		}
		if pushErr = g.push(ctx, commit); pushErr != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("storage: %s in %s: %w", op, g, pushErr)
			}
			g.log.Debug("storage: push rejected or failed; fetching and applying the change again", "op", op, "attempt", attempt+1, "err", pushErr)
			continue
		}
		if err := g.repo.Storer.SetReference(plumbing.NewHashReference(g.trackingRef(), commit)); err != nil {
			// Pushed, but the clone missed it: the next fetch repairs it.
			g.log.Warn("storage: record pushed commit", "commit", commit, "err", err)
		}
		g.snap.Store(newSnapshot(commit, when, v.files))
		return nil
	}
	return fmt.Errorf("storage: %s in %s: push failed: %w", op, g, pushErr)
}

// commit writes the view's new blobs, its tree and a commit on top of
// base; it fills in the blobs' hashes in v.
func (g *Git) commit(base *snapshot, v *view, subject string) (plumbing.Hash, time.Time, error) {
	st := g.repo.Storer
	root := &dirNode{}
	for k, b := range v.files {
		if b.hash.IsZero() {
			obj := st.NewEncodedObject()
			obj.SetType(plumbing.BlobObject)
			obj.SetSize(int64(len(b.data)))
			w, err := obj.Writer()
			if err != nil {
				return plumbing.ZeroHash, time.Time{}, err
			}
			_, err = w.Write(b.data)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return plumbing.ZeroHash, time.Time{}, fmt.Errorf("write blob %s: %w", k, err)
			}
			if b.hash, err = st.SetEncodedObject(obj); err != nil {
				return plumbing.ZeroHash, time.Time{}, fmt.Errorf("write blob %s: %w", k, err)
			}
			v.files[k] = b
		}
		root.add(strings.Split(k, "/"), b.hash)
	}
	tree, err := root.write(g)
	if err != nil {
		return plumbing.ZeroHash, time.Time{}, err
	}
	sig := g.sig
	sig.When = time.Now()
	c := &object.Commit{
		Author:    sig,
		Committer: sig,
		Message:   fmt.Sprintf("%s by %s\n", subject, g.who),
		TreeHash:  tree,
	}
	if !base.head.IsZero() {
		c.ParentHashes = []plumbing.Hash{base.head}
	}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, time.Time{}, fmt.Errorf("encode commit: %w", err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, time.Time{}, fmt.Errorf("write commit: %w", err)
	}
	return h, sig.When, nil
}

// dirNode is a directory of the tree being written.
type dirNode struct {
	files map[string]plumbing.Hash
	dirs  map[string]*dirNode
}

func (d *dirNode) add(parts []string, h plumbing.Hash) {
	if len(parts) == 1 {
		if d.files == nil {
			d.files = map[string]plumbing.Hash{}
		}
		d.files[parts[0]] = h
		return
	}
	if d.dirs == nil {
		d.dirs = map[string]*dirNode{}
	}
	sub := d.dirs[parts[0]]
	if sub == nil {
		sub = &dirNode{}
		d.dirs[parts[0]] = sub
	}
	sub.add(parts[1:], h)
}

// write stores the tree of d and its subtrees, entries in Git's order (a
// directory sorts as if its name ended in "/").
func (d *dirNode) write(g *Git) (plumbing.Hash, error) {
	var entries []object.TreeEntry
	for name, h := range d.files {
		entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: h})
	}
	for name, sub := range d.dirs {
		h, err := sub.write(g)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
	}
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(entries, func(i, j int) bool { return key(entries[i]) < key(entries[j]) })
	obj := g.repo.Storer.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode tree: %w", err)
	}
	h, err := g.repo.Storer.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write tree: %w", err)
	}
	return h, nil
}

// push sends commit to the branch without force: the remote refuses it
// unless its branch is still at the commit's parent (or absent, for a
// first commit).
func (g *Git) push(ctx context.Context, commit plumbing.Hash) error {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	local := plumbing.NewBranchReferenceName(g.branch)
	if err := g.repo.Storer.SetReference(plumbing.NewHashReference(local, commit)); err != nil {
		return fmt.Errorf("set %s: %w", local, err)
	}
	rem := git.NewRemote(g.repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{g.access.Remote.URL}})
	err := rem.PushContext(ctx, &git.PushOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(fmt.Sprintf("%s:%s", local, local))},
		Auth:       g.access.AuthMethod,
		CABundle:   g.access.CABundle,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return g.access.Error("push", err)
	}
	return nil
}

// Store implements certmagic.Storage: one commit, "store KEY (WHAT)".
// Storing the value a key already has commits nothing.
func (g *Git) Store(ctx context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("storage: store: %w", err)
	}
	if len(value) > maxValue {
		return fmt.Errorf("storage: store %s: %d bytes (limit %d)", key, len(value), maxValue)
	}
	value = append([]byte(nil), value...)
	return g.update(ctx, "store "+key, func(v *view) (string, error) {
		_, existed, _ := v.get(key)
		if err := v.set(key, value); err != nil {
			return "", fmt.Errorf("storage: store %s in %s: %w", key, g, err)
		}
		verb := "add"
		if existed {
			verb = "update"
		}
		return fmt.Sprintf("%s %s (%s, %d bytes)", verb, key, describe(key), len(value)), nil
	})
}

// Delete implements certmagic.Storage: one commit removing key and
// everything under it; a missing key commits nothing and is no error.
func (g *Git) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("storage: delete: %w", err)
	}
	return g.update(ctx, "delete "+key, func(v *view) (string, error) {
		switch n := v.del(key); n {
		case 0:
			return "", nil
		case 1:
			if _, ok := v.base.files[key]; ok {
				return fmt.Sprintf("delete %s (%s)", key, describe(key)), nil
			}
			fallthrough
		default:
			return fmt.Sprintf("delete %s/ (%d files)", key, n), nil
		}
	})
}
