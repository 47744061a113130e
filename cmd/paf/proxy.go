package main

import (
	"context"
	"io"
)

// proxyCmd runs `paf proxy`, the TLS-terminating reverse proxy.
func proxyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return usageErr("paf proxy: not yet implemented")
}
