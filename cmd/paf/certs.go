package main

import (
	"context"
	"io"
)

// certsCmd runs `paf certs ls|add|rm`.
func certsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return usageErr("paf certs: not yet implemented")
}
