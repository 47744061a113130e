package main

import (
	"context"
	"fmt"
	"io"
)

// get runs `paf get`, a curl-like client, and returns its exit code, which
// follows curl's.
func get(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "paf get: not yet implemented")
	return 2
}
