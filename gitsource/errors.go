package gitsource

import "errors"

// Sentinel errors, matched with errors.Is, so that callers (the paf command,
// its health reporting) can tell a misconfiguration from a passing network
// problem without parsing messages.
var (
	// ErrBranchNotFound means the remote has no branch of the requested
	// name (or its HEAD points nowhere).
	ErrBranchNotFound = errors.New("branch not found")
	// ErrHostKeyUnknown means the SSH server's host key is in neither the
	// known_hosts file nor pinned; paf never accepts an unknown key.
	ErrHostKeyUnknown = errors.New("ssh host key unknown")
	// ErrHostKeyMismatch means the SSH server presented a key other than
	// the one known_hosts or --ssh-authenticator expects.
	ErrHostKeyMismatch = errors.New("ssh host key mismatch")
	// ErrBadPassphrase means --ssh-key-pass-file does not decrypt --ssh-key.
	ErrBadPassphrase = errors.New("wrong passphrase")
	// ErrNothingToPublish is returned by Publish, together with the
	// existing head commit, when the directory's tree equals the branch's.
	ErrNothingToPublish = errors.New("nothing to publish")
)
