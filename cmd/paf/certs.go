package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/gitsource"
	"github.com/pafhq/paf/storage"
)

// certStoreOptions are the flags saying where ACME accounts, certificates
// and manual certificates are kept, shared by paf serve and paf certs.
type certStoreOptions struct {
	dir       string
	remote    string
	passFile  string
	lockLease time.Duration
}

// certStoreFlags registers --certs, --certs-remote and --certs-pass-file.
// The SSH/HTTPS options of --certs-remote are gitAuthFlags', registered by
// the caller.
func certStoreFlags(fs *flag.FlagSet, o *certStoreOptions) {
	fs.StringVar(&o.dir, "certs", "", "keep ACME accounts, certificates and keys in `DIR` (default <data-dir>/certs)")
	fs.StringVar(&o.remote, "certs-remote", "", "keep them in a Git branch instead, shared by every instance using it: `URL[#BRANCH]` (with the SSH/HTTPS options of --remote); needs a passphrase")
	fs.StringVar(&o.passFile, "certs-pass-file", "", "`FILE` holding the passphrase private keys are encrypted with before they are stored (or env PAF_CERTS_PASS); required with --certs-remote")
	fs.DurationVar(&o.lockLease, "certs-lock-lease", 60*time.Second, "with --certs-remote, how long a lock (such as an instance ordering a certificate) outlives its holder's last renewal; a crashed holder's lock is taken over after it")
}

// configured reports whether the operator named a certificate store, as
// opposed to the default directory.
func (o *certStoreOptions) configured() bool { return o.dir != "" || o.remote != "" }

// passphrase reads --certs-pass-file or PAF_CERTS_PASS; nil when neither is
// given. Giving both is refused so that no one wonders which one wins.
func (o *certStoreOptions) passphrase() ([]byte, error) {
	env := os.Getenv("PAF_CERTS_PASS")
	switch {
	case o.passFile != "" && env != "":
		return nil, usageErr("--certs-pass-file and PAF_CERTS_PASS: give one, not both")
	case o.passFile != "":
		b, err := os.ReadFile(o.passFile)
		if err != nil {
			return nil, fmt.Errorf("--certs-pass-file: %w", err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if strings.TrimSpace(s) == "" {
			return nil, fmt.Errorf("--certs-pass-file %s: the file is empty", o.passFile)
		}
		return []byte(s), nil
	case env != "":
		return []byte(env), nil
	}
	return nil, nil
}

// openedStore is an open certificate store.
type openedStore struct {
	certmagic.Storage
	// where describes the store for logs and `paf certs ls`.
	where string
	// close releases it (stops a Git store's background fetches).
	close func()
	// plaintext is set for a directory without a passphrase: private keys
	// are written as mode-0600 PEM files.
	plaintext bool
}

// warnPlaintext says, before anything is written, that private keys will
// be stored unencrypted.
func (st *openedStore) warnPlaintext(log *slog.Logger) {
	if st.plaintext {
		log.Warn("private keys will be stored unencrypted (mode 0600): give --certs-pass-file FILE or env PAF_CERTS_PASS to encrypt them", "certs", st.where)
	}
}

// openCertStore builds the certmagic.Storage the flags name: a directory
// (--certs, default <data-dir>/certs) or a Git branch (--certs-remote,
// with auth), wrapped in encryption of private keys when a passphrase is
// given (required for a Git branch).
func openCertStore(ctx context.Context, o *certStoreOptions, dataDir string, auth gitsource.Auth, log *slog.Logger) (*openedStore, error) {
	if o.dir != "" && o.remote != "" {
		return nil, usageErr("--certs and --certs-remote: give one, not both")
	}
	pass, err := o.passphrase()
	if err != nil {
		return nil, err
	}
	if o.remote != "" {
		if pass == nil {
			return nil, usageErr("--certs-remote needs a passphrase to encrypt private keys: --certs-pass-file FILE or env PAF_CERTS_PASS")
		}
		return openGitCertStore(ctx, o, dataDir, auth, pass, log)
	}
	dir := o.dir
	if dir == "" {
		if dataDir == "" {
			return nil, usageErr("--data-dir: must not be empty")
		}
		dir = filepath.Join(dataDir, "certs")
	}
	var st certmagic.Storage = &certmagic.FileStorage{Path: dir}
	where := dir
	if pass != nil {
		if st, err = encryptCertStore(ctx, st, pass); err != nil {
			return nil, fmt.Errorf("--certs %s: %w", dir, err)
		}
		where += " (keys encrypted)"
	}
	return &openedStore{Storage: st, where: where, close: func() {}, plaintext: pass == nil}, nil
}

// certsUsage is paf certs' help.
const certsUsage = `Usage:
  paf certs ls [flags]                      list stored certificates
  paf certs add --cert FILE --key FILE [flags]
                                            store a manual certificate, served for
                                            its names and never renewed by ACME
  paf certs rm NAME [flags]                 remove the certificates stored for NAME

Flags (all subcommands):
`

// certsFlags returns the flag set of a paf certs subcommand.
func certsFlags(sub string) (*flag.FlagSet, *certStoreOptions, *gitsource.Auth, *string) {
	fs := flag.NewFlagSet("paf certs "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := &certStoreOptions{}
	auth := &gitsource.Auth{}
	dataDir := new(string)
	certStoreFlags(fs, o)
	gitAuthFlags(fs, auth)
	fs.StringVar(dataDir, "data-dir", defaultDataDir(), "`DIR` holding the default --certs directory and the --certs-remote clone")
	return fs, o, auth, dataDir
}

// certsCmd runs `paf certs ls|add|rm`.
func certsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, certsUsage)
		flags, _, _, _ := certsFlags("ls")
		flags.SetOutput(stdout)
		flags.PrintDefaults()
		if len(args) == 0 {
			return usageErr("want a subcommand: ls, add or rm")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	flags, o, auth, dataDir := certsFlags(sub)
	var certFile, keyFile string
	switch sub {
	case "ls", "rm":
	case "add":
		flags.StringVar(&certFile, "cert", "", "certificate chain PEM `FILE`: the leaf first, then each issuer")
		flags.StringVar(&keyFile, "key", "", "private key PEM `FILE` of the leaf")
	default:
		return usageErr("unknown subcommand %q: want ls, add or rm", sub)
	}
	// Flags may follow the NAME of rm, as in `paf certs rm NAME --certs DIR`.
	var positional []string
	for {
		if err := parseFlags(flags, args, stdout); err != nil {
			return err
		}
		if flags.NArg() == 0 {
			break
		}
		positional = append(positional, flags.Arg(0))
		args = flags.Args()[1:]
	}
	var name string
	switch sub {
	case "ls", "add":
		if len(positional) > 0 {
			return usageErr("unexpected argument %q", positional[0])
		}
	case "rm":
		if len(positional) != 1 {
			return usageErr("want exactly one NAME to remove (see `paf certs ls`)")
		}
		name = positional[0]
	}
	if sub == "add" && (certFile == "" || keyFile == "") {
		return usageErr("add: give --cert FILE and --key FILE")
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := openCertStore(ctx, o, *dataDir, *auth, log)
	if err != nil {
		return err
	}
	defer st.close()
	if sub == "add" {
		st.warnPlaintext(log)
	}

	switch sub {
	case "ls":
		list, err := certs.ListStored(ctx, st)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintf(stderr, "no certificates stored in %s\n", st.where)
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKIND\tISSUER\tNOT AFTER\tSTORED IN")
		now := time.Now()
		for _, c := range list {
			kind := "acme"
			if c.Manual {
				kind = "manual"
			}
			notAfter := c.NotAfter.UTC().Format(time.RFC3339)
			if now.After(c.NotAfter) {
				notAfter += " (expired)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s: %s\n", c.Name, kind, c.Issuer, notAfter, st.where, c.Key)
		}
		return tw.Flush()
	case "add":
		c, err := certs.AddManual(ctx, st, certs.Pair{CertFile: certFile, KeyFile: keyFile})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "stored manual certificate for %s (issuer %s, expires %s) in %s: %s\n",
			strings.Join(c.Names, ", "), c.Issuer, c.NotAfter.UTC().Format(time.RFC3339), st.where, c.Key)
		return nil
	case "rm":
		removed, err := certs.RemoveStored(ctx, st, name)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (see `paf certs ls`)", err)
		}
		if err != nil {
			return err
		}
		for _, c := range removed {
			kind := "ACME"
			if c.Manual {
				kind = "manual"
			}
			fmt.Fprintf(stdout, "removed %s certificate for %s from %s: %s\n", kind, strings.Join(c.Names, ", "), st.where, c.Key)
		}
		return nil
	}
	return nil
}

// acmeOptions are paf serve's ACME flags.
type acmeOptions struct {
	enabled     bool
	ca          string
	production  bool
	email       string
	caRoot      string
	keyType     string
	eabKID      string
	eabHMAC     string
	eabHMACFile string
	challenge   string
	renewCheck  time.Duration
}

// acmeFlags registers paf serve's ACME flags.
func acmeFlags(fs *flag.FlagSet, o *acmeOptions) {
	fs.BoolVar(&o.enabled, "acme", false, "obtain and renew certificates for every --hostname from an ACME CA (Let's Encrypt staging unless --production or --acme-ca); implies agreeing to the CA's terms")
	fs.StringVar(&o.ca, "acme-ca", "", "ACME directory `URL` (default "+certs.LetsEncryptStaging+")")
	fs.BoolVar(&o.production, "production", false, "use Let's Encrypt's production CA ("+certs.LetsEncryptProduction+"), whose certificates browsers trust")
	fs.StringVar(&o.email, "acme-email", "", "contact `ADDRESS` of the ACME account, for the CA's expiry warnings")
	fs.StringVar(&o.caRoot, "acme-ca-root", "", "PEM `FILE` of a root to trust for the CA's own HTTPS API (private or test CAs such as Pebble); default: the system roots")
	fs.StringVar(&o.keyType, "acme-key-type", certs.KeyTypes[0], "certificate key `TYPE`: "+strings.Join(certs.KeyTypes, ", "))
	fs.StringVar(&o.eabKID, "acme-eab-kid", "", "external account binding key `ID`, for CAs that require one")
	fs.StringVar(&o.eabHMAC, "acme-eab-hmac", "", "external account binding HMAC `KEY` (base64url), with --acme-eab-kid")
	fs.StringVar(&o.eabHMACFile, "acme-eab-hmac-file", "", "read the external account binding HMAC key from `FILE`")
	fs.StringVar(&o.challenge, "acme-challenge", "", "use only this challenge `TYPE`: http-01 (on --http) or tls-alpn-01 (on --https); default both")
	fs.DurationVar(&o.renewCheck, "acme-renew-check", certmagic.DefaultRenewCheckInterval, "how often certificates are checked for renewal (keep it well under a third of their lifetime)")
}

// acmeManager builds the ACME certificate manager of paf serve --acme,
// over the store the --certs flags name. The store is closed when ctx is
// done.
func (o *serveOptions) acmeManager(ctx context.Context, log *slog.Logger) (*certs.ACME, error) {
	if len(o.hostnames) == 0 {
		return nil, usageErr("--acme needs at least one --hostname to obtain a certificate for")
	}
	if len(o.tlsCerts) > 0 {
		return nil, usageErr("--acme and --tls-cert: give one (store manual certificates with `paf certs add` to serve them next to ACME ones)")
	}
	cfg, st, err := o.certFlags().acmeConfig(ctx, log)
	if err != nil {
		return nil, err
	}
	cfg.Hostnames = o.hostnames
	m, err := newACME(ctx, cfg)
	if err != nil {
		st.close()
		return nil, err
	}
	log.Info("ACME certificates", "ca", cfg.CA, "names", strings.Join(o.hostnames, ","), "storage", st.where)
	go func() {
		<-ctx.Done()
		m.Close()
		st.close()
	}()
	return m, nil
}

// certFlags returns the certificate flags paf serve shares with paf proxy.
func (o *serveOptions) certFlags() certFlagSet {
	return certFlagSet{acme: &o.acme, store: &o.certStore, dataDir: o.dataDir, auth: o.auth, httpAddr: o.listen.httpAddr}
}

// storedManual loads the manual certificates of the certificate store.
func (o *serveOptions) storedManual(ctx context.Context, log *slog.Logger) (*certs.Manual, error) {
	return o.certFlags().storedManual(ctx, log)
}

// openGitCertStore opens the Git branch --certs-remote names, its clone
// kept under <data-dir>/certs-remote, with private keys encrypted with
// pass. A wrong passphrase fails here, before anything is written.
func openGitCertStore(ctx context.Context, o *certStoreOptions, dataDir string, auth gitsource.Auth, pass []byte, log *slog.Logger) (*openedStore, error) {
	remote, err := gitsource.ParseRemote(o.remote)
	if err != nil {
		return nil, usageErr("--certs-remote: %v", err)
	}
	if o.lockLease <= 0 {
		return nil, usageErr("--certs-lock-lease %v: must be positive", o.lockLease)
	}
	g, err := storage.OpenGit(ctx, storage.GitConfig{
		Remote:    remote,
		Auth:      auth,
		Dir:       filepath.Join(dataDir, "certs-remote"),
		LockLease: o.lockLease,
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("--certs-remote %s: %w", gitsource.Redact(o.remote), err)
	}
	enc, err := storage.Encrypt(ctx, g, pass)
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("--certs-remote %s: %w", gitsource.Redact(o.remote), err)
	}
	return &openedStore{Storage: enc, where: g.String(), close: func() { g.Close() }}, nil
}

// encryptCertStore wraps st so that private keys are encrypted with pass.
func encryptCertStore(ctx context.Context, st certmagic.Storage, pass []byte) (certmagic.Storage, error) {
	return storage.Encrypt(ctx, st, pass)
}
