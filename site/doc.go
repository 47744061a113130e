// Package site turns a Tree delivered by a Source (a Git branch, a
// directory, an embedded demo) into an immutable Snapshot that answers HTTP
// requests, and keeps a live Site pointing at the newest one.
//
// Everything a response needs — bytes, compressed variants, Content-Type,
// ETag, Last-Modified, Content-Length — is computed once when a Snapshot is
// built, so serving a file is a map lookup, a few header assignments and a
// write. A new version of the site is built in full beside the old one and
// swapped in atomically; requests already running finish from the snapshot
// they started with.
//
// # Serving
//
// GET /p serves p, else redirects /p to /p/ when p/index.html exists; /p/
// serves p/index.html. There are no directory listings. Only GET and HEAD
// are served (OPTIONS answers 204); other methods get 405.
//
// Compressible files are compressed at build time with brotli, zstd and
// gzip, each kept only when meaningfully smaller; sibling files x.br,
// x.zst and x.gz stand in for the built variants of x. Accept-Encoding
// q-values choose, brotli then zstd then gzip on ties. Every
// representation has its own strong ETag ("<hash>", "<hash>-br", ...).
// Range requests are answered from the uncompressed bytes.
//
// # Symbolic links
//
// A link is answered with 301 to its target, resolved against the link's
// directory, or against the site root when the target starts with a slash.
// A link to a directory redirects to the directory with a trailing slash,
// and paths below the link redirect below the directory. A target that
// climbs above the root, looks like a path of another system (backslash,
// drive letter), lies under .git, or names nothing in the tree answers
// 404: so an absolute filesystem target such as /etc/passwd is 404 unless
// the site itself has etc/passwd. A target that is an absolute http or
// https URL is redirected to as is, as unipi does: the site's author
// chose it.
//
// # What is never served
//
// A Snapshot serves only the entries of its Tree: request paths are looked
// up in a map, never joined to a filesystem path, and any path that is not
// in canonical form (dot segments, empty segments, backslashes, control
// characters, encoded slashes, backslashes or NUL) gets 400 before the
// lookup; anything under .git, in any case, gets 404.
package site
