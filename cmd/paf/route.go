package main

import (
	"context"
	"io"
)

// routeCmd runs `paf route add|rm|ls`.
func routeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return usageErr("paf route: not yet implemented")
}
