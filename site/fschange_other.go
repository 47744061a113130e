//go:build !linux

package site

import "io/fs"

// changeOf knows nothing beyond size and mtime off Linux.
func changeOf(fs.FileInfo) fileChange { return fileChange{} }
