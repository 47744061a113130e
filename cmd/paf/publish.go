package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/pafhq/paf/gitsource"
)

type publishOptions struct {
	remote     string
	auth       gitsource.Auth
	message    string
	allowEmpty bool
	author     string
}

func publishFlags() (*flag.FlagSet, *publishOptions) {
	o := &publishOptions{}
	fs := flag.NewFlagSet("paf publish", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.remote, "remote", "", "the Git branch to publish to: `URL[#BRANCH]` (default branch: the remote's HEAD)")
	gitAuthFlags(fs, &o.auth)
	fs.StringVar(&o.message, "message", "", "commit `MESSAGE` (default: \"Publish DIR with paf\")")
	fs.BoolVar(&o.allowEmpty, "allow-empty", false, "publish even an empty directory (deleting the branch's content)")
	fs.StringVar(&o.author, "author", "", "commit author, `\"Name <email>\"` (default \"paf <paf@localhost>\")")
	return fs, o
}

func publish(ctx context.Context, args []string, stdout io.Writer) error {
	fs, o := publishFlags()
	// Accept the directory before or after the flags, as users type both.
	var dir string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		dir, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	rest := fs.Args()
	if dir == "" && len(rest) > 0 {
		dir, rest = rest[0], rest[1:]
	}
	switch {
	case dir == "":
		return usageErr("missing DIR: paf publish DIR --remote URL[#BRANCH]")
	case len(rest) > 0:
		return usageErr("unexpected argument %q after DIR", rest[0])
	case o.remote == "":
		return usageErr("--remote: required")
	}
	remote, err := gitsource.ParseRemote(o.remote)
	if err != nil {
		return fmt.Errorf("--remote: %w", err)
	}
	msg := o.message
	if msg == "" {
		msg = "Publish " + dir + " with paf"
	}
	res, err := gitsource.Publish(ctx, dir, gitsource.PublishOptions{
		Remote:     remote,
		Auth:       o.auth,
		Message:    msg,
		AllowEmpty: o.allowEmpty,
		Author:     o.author,
	})
	if errors.Is(err, gitsource.ErrNothingToPublish) {
		fmt.Fprintf(stdout, "nothing to publish: %s already has this content at %s\n", remote, res)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %s to %s as %s\n", dir, remote, res)
	return nil
}
