package gitsource

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pafhq/paf/internal/testpeer"
)

// sshPeer is an sshd on loopback serving the fixture's repositories.
type sshPeer struct {
	dir  string
	port int
	user string
	// host keys (ed25519 and rsa) and user keys (ed25519, an encrypted
	// ecdsa, rsa), by name, as file paths.
	keys map[string]string
}

// startSSHD generates keys, writes an sshd_config and starts sshd.
func startSSHD(t *testing.T) *sshPeer {
	t.Helper()
	sshd := testpeer.Need(t, "sshd")
	keygen := testpeer.Need(t, "ssh-keygen")
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	p := &sshPeer{dir: t.TempDir(), port: freePort(t), user: u.Username, keys: map[string]string{}}
	gen := func(name, typ, pass string) {
		path := filepath.Join(p.dir, name)
		args := []string{"-q", "-t", typ, "-N", pass, "-C", name, "-f", path}
		if typ == "rsa" {
			args = append(args, "-b", "2048")
		}
		if out, err := exec.Command(keygen, args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %s: %v\n%s", name, err, out)
		}
		p.keys[name] = path
	}
	gen("host_ed25519", "ed25519", "")
	gen("host_rsa", "rsa", "")
	gen("user_ed25519", "ed25519", "")
	gen("user_ecdsa", "ecdsa", "correct horse")
	gen("user_rsa", "rsa", "")
	var auth []byte
	for _, k := range []string{"user_ed25519", "user_ecdsa", "user_rsa"} {
		b, err := os.ReadFile(p.keys[k] + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		auth = append(auth, b...)
	}
	writeFile(t, filepath.Join(p.dir, "authorized_keys"), string(auth))
	cfg := filepath.Join(p.dir, "sshd_config")
	writeFile(t, cfg, fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
LogLevel ERROR
`, p.port, p.keys["host_ed25519"], p.keys["host_rsa"], filepath.Join(p.dir, "authorized_keys"), filepath.Join(p.dir, "sshd.pid")))
	if os.Geteuid() == 0 {
		os.MkdirAll("/run/sshd", 0o755)
	}
	testpeer.StartDaemon(t, fmt.Sprintf("127.0.0.1:%d", p.port), sshd, "-D", "-e", "-f", cfg)
	return p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// knownHosts writes a known_hosts file with the given public key files for
// the peer's [127.0.0.1]:port.
func (p *sshPeer) knownHosts(t *testing.T, pubKeys ...string) string {
	t.Helper()
	var b strings.Builder
	for _, k := range pubKeys {
		pub, err := os.ReadFile(k + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "[127.0.0.1]:%d %s", p.port, pub)
	}
	f, err := os.CreateTemp(p.dir, "known_hosts")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(b.String())
	f.Close()
	return f.Name()
}

// fingerprint is `ssh-keygen -lf` of a key: the --ssh-authenticator form.
func (p *sshPeer) fingerprint(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command(testpeer.Need(t, "ssh-keygen"), "-lf", key+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 2 || !strings.HasPrefix(fields[1], "SHA256:") {
		t.Fatalf("ssh-keygen -lf: %q", out)
	}
	return fields[1]
}

func TestSSH(t *testing.T) {
	f := newFixture(t)
	p := startSSHD(t)
	url := fmt.Sprintf("ssh://%s@127.0.0.1:%d%s", p.user, p.port, f.bare)
	pass := filepath.Join(p.dir, "pass")
	writeFile(t, pass, "correct horse\n")
	wrongPass := filepath.Join(p.dir, "wrongpass")
	writeFile(t, wrongPass, "battery staple\n")

	ok := []struct {
		name string
		auth Auth
	}{
		{"known_hosts rsa only, ed25519 user key", Auth{SSHKey: p.keys["user_ed25519"], SSHKnownHosts: p.knownHosts(t, p.keys["host_rsa"])}},
		{"known_hosts both, rsa user key", Auth{SSHKey: p.keys["user_rsa"], SSHKnownHosts: p.knownHosts(t, p.keys["host_ed25519"], p.keys["host_rsa"])}},
		{"pinned ed25519, encrypted ecdsa user key", Auth{SSHKey: p.keys["user_ecdsa"], SSHKeyPassFile: pass, SSHAuthenticator: p.fingerprint(t, p.keys["host_ed25519"])}},
		{"plain key with a passphrase file", Auth{SSHKey: p.keys["user_ed25519"], SSHKeyPassFile: pass, SSHAuthenticator: p.fingerprint(t, p.keys["host_ed25519"])}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, Remote{URL: url}, tt.auth)
			checkTree(t, fetch(t, s), f.work, f.head())
		})
	}

	bad := []struct {
		name   string
		auth   Auth
		target error
		subs   []string
	}{
		{"unknown host", Auth{SSHKey: p.keys["user_ed25519"], SSHKnownHosts: p.knownHosts(t)},
			ErrHostKeyUnknown, []string{"not in", "ssh-ed25519 key " + p.fingerprint(t, p.keys["host_ed25519"]), fmt.Sprintf("ssh-keyscan -p %d 127.0.0.1", p.port), "--ssh-authenticator SHA256:"}},
		{"known_hosts mismatch", Auth{SSHKey: p.keys["user_ed25519"], SSHKnownHosts: p.knownHosts(t, p.keys["user_ed25519"])},
			ErrHostKeyMismatch, []string{p.fingerprint(t, p.keys["host_ed25519"]), p.fingerprint(t, p.keys["user_ed25519"])}},
		{"pin mismatch", Auth{SSHKey: p.keys["user_ed25519"], SSHAuthenticator: p.fingerprint(t, p.keys["user_rsa"])},
			ErrHostKeyMismatch, []string{"expects " + p.fingerprint(t, p.keys["user_rsa"]), p.fingerprint(t, p.keys["host_ed25519"])}},
		{"key not authorized", Auth{SSHKey: p.keys["host_rsa"], SSHAuthenticator: p.fingerprint(t, p.keys["host_ed25519"])},
			nil, []string{"unable to authenticate"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, Remote{URL: url}, tt.auth)
			_, err := s.Fetch(context.Background())
			wantErr(t, err, tt.target, tt.subs...)
		})
	}

	t.Run("wrong passphrase", func(t *testing.T) {
		_, err := New(Config{Remote: Remote{URL: url}, DataDir: t.TempDir(),
			Auth: Auth{SSHKey: p.keys["user_ecdsa"], SSHKeyPassFile: wrongPass, SSHAuthenticator: p.fingerprint(t, p.keys["host_ed25519"])}})
		wantErr(t, err, ErrBadPassphrase, "--ssh-key-pass-file "+wrongPass)
	})
	t.Run("encrypted key without passphrase", func(t *testing.T) {
		_, err := New(Config{Remote: Remote{URL: url}, DataDir: t.TempDir(),
			Auth: Auth{SSHKey: p.keys["user_ecdsa"], SSHAuthenticator: p.fingerprint(t, p.keys["host_ed25519"])}})
		wantErr(t, err, nil, "--ssh-key "+p.keys["user_ecdsa"], "encrypted", "--ssh-key-pass-file")
	})
	t.Run("publish", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "index.html"), "published over ssh\n")
		c, err := Publish(context.Background(), dir, PublishOptions{
			Remote: Remote{URL: url, Branch: "ssh-pub"},
			Auth:   Auth{SSHKey: p.keys["user_ed25519"], SSHKnownHosts: p.knownHosts(t, p.keys["host_ed25519"])},
		})
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if got := f.g.Run(f.bare, "rev-parse", "ssh-pub"); got != c {
			t.Errorf("remote ssh-pub = %s, want %s", got, c)
		}
	})
}
