// Package demo holds the small site paf serves when it is given no source,
// so that a newcomer running `paf` sees a real page at once: what paf is and
// how to serve their own site.
package demo

import (
	"embed"
	"io/fs"

	"github.com/pafhq/paf/site"
)

//go:embed site
var files embed.FS

// FS returns the demo site's files, rooted at the site's top directory.
func FS() fs.FS {
	sub, err := fs.Sub(files, "site")
	if err != nil {
		// fs.Sub fails only on an invalid path, and "site" is a constant.
		panic(err)
	}
	return sub
}

// Source returns the demo site as a site.Source.
func Source() site.Source {
	return site.FromFS("embedded demo site", FS())
}
