package gitsource

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Auth holds the SSH and HTTPS options shared by --remote, paf publish and
// --certs-remote. The zero value suits git://, file:// and https remotes
// trusted by the system roots; ssh remotes need at least SSHKey.
type Auth struct {
	// SSHKey is --ssh-key: an OpenSSH (or PEM) private key, ed25519,
	// ECDSA or RSA.
	SSHKey string
	// SSHKeyPassFile is --ssh-key-pass-file: a file holding the
	// passphrase of an encrypted SSHKey. One trailing newline (\n or
	// \r\n) is stripped. Empty means the key is not encrypted.
	SSHKeyPassFile string
	// SSHKnownHosts is --ssh-known-hosts: the known_hosts file the
	// server's key is checked against. Empty means ~/.ssh/known_hosts.
	// It is read again at every connection, so a host added to it is
	// picked up without a restart.
	SSHKnownHosts string
	// SSHAuthenticator is --ssh-authenticator: a host key fingerprint,
	// SHA256:<base64>, as `ssh-keygen -lf` prints it. When set it
	// replaces known_hosts: only a server presenting exactly that key is
	// accepted. Pin the server's ed25519 key when it has one: paf
	// prefers ed25519, then ECDSA, then RSA host keys.
	SSHAuthenticator string
	// CAFile is --git-ca: PEM certificates trusted for https remotes in
	// addition to the system roots.
	CAFile string
}

// Timeouts bounding network operations, so that a dead or stalled remote
// cannot hang paf.
const (
	connectTimeout = 15 * time.Second
	listTimeout    = 30 * time.Second
	fetchTimeout   = 2 * time.Minute
	pushTimeout    = 2 * time.Minute
	publishTimeout = 5 * time.Minute
)

// preferredHostKeyAlgos orders host key algorithms when a fingerprint is
// pinned: the server picks the first one it has, and the pin must match
// that key.
var preferredHostKeyAlgos = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA,
}

// resolvedAuth is an Auth checked and loaded for one remote: what the
// transports need, ready to use.
type resolvedAuth struct {
	method   transport.AuthMethod // nil except for ssh
	caBundle []byte
}

// resolve validates a against the remote: files readable and parseable,
// passphrase right, fingerprint well formed. Errors name the option.
func (a Auth) resolve(r Remote) (*resolvedAuth, error) {
	ra := &resolvedAuth{}
	if a.CAFile != "" {
		b, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--git-ca %s: %w", a.CAFile, err)
		}
		if err := checkPEMCerts(b); err != nil {
			return nil, fmt.Errorf("--git-ca %s: %w", a.CAFile, err)
		}
		ra.caBundle = b
	}
	if a.SSHKeyPassFile != "" && a.SSHKey == "" {
		return nil, fmt.Errorf("--ssh-key-pass-file %s: given without --ssh-key", a.SSHKeyPassFile)
	}
	var signer ssh.Signer
	if a.SSHKey != "" {
		var err error
		if signer, err = loadSigner(a.SSHKey, a.SSHKeyPassFile); err != nil {
			return nil, err
		}
	}
	var pin string
	if a.SSHAuthenticator != "" {
		var err error
		if pin, err = parseFingerprint(a.SSHAuthenticator); err != nil {
			return nil, fmt.Errorf("--ssh-authenticator %q: %w", a.SSHAuthenticator, err)
		}
	}
	knownHosts := a.SSHKnownHosts
	if knownHosts != "" || (r.scheme() == "ssh" && pin == "") {
		if knownHosts == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, fmt.Errorf("--ssh-known-hosts: no file given and no home directory: %w", err)
			}
			knownHosts = filepath.Join(home, ".ssh", "known_hosts")
		}
		if _, err := knownhosts.New(knownHosts); err != nil {
			return nil, fmt.Errorf("--ssh-known-hosts %s: %w", knownHosts, err)
		}
	}
	if r.scheme() != "ssh" {
		return ra, nil
	}
	if signer == nil {
		return nil, fmt.Errorf("--ssh-key: required for ssh remote %s", r.Redacted())
	}
	ep, err := transport.NewEndpoint(r.URL)
	if err != nil {
		return nil, fmt.Errorf("gitsource: remote %s: %w", r.Redacted(), err)
	}
	user := ep.User
	if user == "" {
		user = "git"
	}
	port := ep.Port
	if port <= 0 {
		port = 22
	}
	ra.method = &sshAuth{
		user:       user,
		signer:     signer,
		hostPort:   net.JoinHostPort(ep.Host, strconv.Itoa(port)),
		knownHosts: knownHosts,
		pin:        pin,
	}
	return ra, nil
}

// checkPEMCerts reports whether b holds at least one PEM certificate and
// nothing unparseable.
func checkPEMCerts(b []byte) error {
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate found")
	}
	return nil
}

// loadSigner reads the private key, decrypting it with the passphrase
// file's content when it is encrypted. A passphrase given for a plain key
// is ignored.
func loadSigner(keyFile, passFile string) (ssh.Signer, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--ssh-key %s: %w", keyFile, err)
	}
	s, err := ssh.ParsePrivateKey(b)
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		if err != nil {
			return nil, fmt.Errorf("--ssh-key %s: %w", keyFile, err)
		}
		return s, nil
	}
	if passFile == "" {
		return nil, fmt.Errorf("--ssh-key %s: key is encrypted; give its passphrase with --ssh-key-pass-file", keyFile)
	}
	pass, err := os.ReadFile(passFile)
	if err != nil {
		return nil, fmt.Errorf("--ssh-key-pass-file %s: %w", passFile, err)
	}
	pass = bytes.TrimSuffix(pass, []byte("\n"))
	pass = bytes.TrimSuffix(pass, []byte("\r"))
	s, err = ssh.ParsePrivateKeyWithPassphrase(b, pass)
	if errors.Is(err, x509.IncorrectPasswordError) {
		return nil, fmt.Errorf("--ssh-key-pass-file %s: %w for --ssh-key %s", passFile, ErrBadPassphrase, keyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("--ssh-key %s: %w", keyFile, err)
	}
	return s, nil
}

// parseFingerprint checks a SHA256:<base64> fingerprint and returns it in
// the canonical form ssh.FingerprintSHA256 produces (unpadded base64).
func parseFingerprint(s string) (string, error) {
	b64, ok := strings.CutPrefix(s, "SHA256:")
	if !ok {
		return "", errors.New("want SHA256:<base64>, as `ssh-keygen -lf` prints it")
	}
	b64 = strings.TrimRight(b64, "=")
	sum, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("bad base64: %w", err)
	}
	if len(sum) != 32 {
		return "", fmt.Errorf("digest is %d bytes, want 32", len(sum))
	}
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum), nil
}

// sshAuth is go-git's ssh.AuthMethod for paf: public key authentication
// with a strict host key check (pinned fingerprint or known_hosts) and a
// connect timeout.
type sshAuth struct {
	user       string
	signer     ssh.Signer
	hostPort   string // host:port of the remote, for known_hosts algorithms
	knownHosts string // used when pin is empty
	pin        string // SHA256:... or empty
}

var _ gitssh.AuthMethod = (*sshAuth)(nil)

// Name implements transport.AuthMethod.
func (a *sshAuth) Name() string { return gitssh.PublicKeysName }

// String implements transport.AuthMethod.
func (a *sshAuth) String() string {
	return fmt.Sprintf("user: %s, key: %s", a.user, ssh.FingerprintSHA256(a.signer.PublicKey()))
}

// ClientConfig implements go-git's ssh.AuthMethod. It is called for every
// connection, so known_hosts is read afresh each time.
func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	cfg := &ssh.ClientConfig{
		User:    a.user,
		Auth:    []ssh.AuthMethod{ssh.PublicKeys(a.signer)},
		Timeout: connectTimeout,
	}
	if a.pin != "" {
		pin := a.pin
		cfg.HostKeyAlgorithms = preferredHostKeyAlgos
		cfg.HostKeyCallback = func(host string, _ net.Addr, key ssh.PublicKey) error {
			got := ssh.FingerprintSHA256(key)
			if got != pin {
				return fmt.Errorf("%w for %s: --ssh-authenticator expects %s, server presented %s key %s",
					ErrHostKeyMismatch, host, pin, key.Type(), got)
			}
			return nil
		}
		return cfg, nil
	}
	db, err := gitssh.NewKnownHostsDb(a.knownHosts)
	if err != nil {
		return nil, fmt.Errorf("--ssh-known-hosts %s: %w", a.knownHosts, err)
	}
	cfg.HostKeyAlgorithms = db.HostKeyAlgorithms(a.hostPort)
	if len(cfg.HostKeyAlgorithms) == 0 {
		// Unknown host: ask for the key a pin would most likely name, so
		// that the error shows its fingerprint.
		cfg.HostKeyAlgorithms = preferredHostKeyAlgos
	}
	check := db.HostKeyCallback()
	file := a.knownHosts
	cfg.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := check(host, remote, key)
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return err
		}
		got := ssh.FingerprintSHA256(key)
		if len(ke.Want) == 0 {
			h, p, splitErr := net.SplitHostPort(host)
			if splitErr != nil {
				h, p = host, "22"
			}
			return fmt.Errorf("%w: host %s is not in %s (it presented %s key %s); add it with `ssh-keyscan -p %s %s >> %s` after checking the key, or pin it with --ssh-authenticator %s",
				ErrHostKeyUnknown, host, file, key.Type(), got, p, h, file, got)
		}
		want := make([]string, 0, len(ke.Want))
		for _, k := range ke.Want {
			want = append(want, fmt.Sprintf("%s:%d %s", k.Filename, k.Line, ssh.FingerprintSHA256(k.Key)))
		}
		return fmt.Errorf("%w for %s: server presented %s key %s, %s expects %s",
			ErrHostKeyMismatch, host, key.Type(), got, file, strings.Join(want, ", "))
	}
	return cfg, nil
}
