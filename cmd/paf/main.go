// Command paf self-hosts websites: it serves a static site from a Git
// branch, a directory or its built-in demo over HTTP/1.1, HTTP/2 and TLS.
//
// Run `paf help` for the subcommands and their flags. This command only
// parses flags and wires paf's packages together; the work is done in them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	// Extended CONNECT (RFC 8441) on paf's HTTP/2 listeners, so that
	// browsers can open WebSockets through paf proxy over h2. net/http
	// reads the switch from GODEBUG in its own init: this package, which
	// sorts before net/http and does not depend on it, sets it first.
	_ "github.com/pafhq/paf/internal/xconnect"
)

// version is set at link time with -ldflags "-X main.version=v1.2.3"; the
// module version from the build info is used otherwise.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts a graceful shutdown; from then on the
	// signals have their default action again, so a second one ends paf
	// at once, as a second Ctrl-C does Caddy.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is an error caused by how paf was invoked; it exits with 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// run executes one paf command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, stdout, stderr)
	case "publish":
		err = publish(ctx, args, stdout)
	case "get":
		return get(ctx, args, stdout, stderr)
	case "stress":
		return stress(ctx, args, stdout, stderr)
	case "certs":
		err = certsCmd(ctx, args, stdout, stderr)
	case "proxy":
		err = proxyCmd(ctx, args, stdout, stderr)
	case "route":
		err = routeCmd(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "paf", buildVersion())
		return 0
	case "help", "-h", "--help":
		return help(args, stdout)
	default:
		fmt.Fprintf(stderr, "paf: unknown command %q; run `paf help`\n", cmd)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(*usageError)):
		fmt.Fprintf(stderr, "paf %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "paf %s: %v\n", cmd, err)
		return 1
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

const helpText = `paf self-hosts websites: a static site from a Git branch, a directory or its
built-in demo, served over HTTP/1.1, HTTP/2 and TLS.

Usage:
  paf [serve] [flags]          serve a site (the default command)
  paf publish DIR --remote URL[#BRANCH] [flags]
                               commit DIR as the branch's new tree and push it
  paf proxy --routes DIR | --routes-remote URL[#BRANCH] [flags]
                               a TLS-terminating reverse proxy for many hostnames
  paf route add|rm|ls ...      edit the proxy's routes, in a directory or in Git
  paf certs ls|add|rm ...      list, add or remove stored certificates
  paf get URL [flags]          a curl-like client speaking HTTP/1.1 and HTTP/2
  paf stress -n N -m M -c C URL...
                               N worker processes, M requests each, C at a time
  paf version                  print the version
  paf help [command]           print this help, or a command's flags

With no source flag, paf serve serves its embedded demo site on
http://127.0.0.1:8080 and https://localhost:8443.

Run "paf COMMAND -h" for a command's flags.
`

func help(args []string, stdout io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			fs, _ := serveFlags()
			fs.SetOutput(stdout)
			fmt.Fprintln(stdout, "Usage: paf serve [flags]")
			fs.PrintDefaults()
			return 0
		case "publish":
			fs, _ := publishFlags()
			fs.SetOutput(stdout)
			fmt.Fprintln(stdout, "Usage: paf publish DIR --remote URL[#BRANCH] [flags]")
			fs.PrintDefaults()
			return 0
		}
	}
	fmt.Fprint(stdout, helpText)
	return 0
}
