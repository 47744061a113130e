package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pafhq/paf/gitsource"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// gitAuthFlags registers the SSH and HTTPS options shared by every command
// that talks to a Git remote.
func gitAuthFlags(fs *flag.FlagSet, a *gitsource.Auth) {
	fs.StringVar(&a.SSHKey, "ssh-key", "", "OpenSSH private `FILE` (ed25519, ECDSA or RSA) for ssh:// and user@host:path remotes")
	fs.StringVar(&a.SSHKeyPassFile, "ssh-key-pass-file", "", "`FILE` holding the passphrase of an encrypted --ssh-key")
	fs.StringVar(&a.SSHKnownHosts, "ssh-known-hosts", "", "known_hosts `FILE` the remote's host key is checked against (default ~/.ssh/known_hosts)")
	fs.StringVar(&a.SSHAuthenticator, "ssh-authenticator", "", "pin the remote's host key to this `SHA256:<base64>` fingerprint (as `ssh-keygen -lf` prints it) instead of known_hosts")
	fs.StringVar(&a.CAFile, "git-ca", "", "PEM `FILE` of CA certificates trusted for https:// remotes (default: the system roots)")
}

// defaultDataDir is $XDG_STATE_HOME/paf, else ~/.local/state/paf.
func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "paf")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "paf")
	}
	return filepath.Join(os.TempDir(), "paf-state")
}

// usageErr wraps a flag problem so that run exits with 2.
func usageErr(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// parseFlags parses args and turns flag's own errors into one-line usage
// errors naming the flag. -h and --help print the command's flags to
// stdout.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprintf(stdout, "Usage of %s:\n", fs.Name())
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return usageErr("%v (see `paf help %s`)", err, strings.TrimPrefix(fs.Name(), "paf "))
	}
	return nil
}
