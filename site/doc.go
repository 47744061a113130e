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
// A Snapshot serves only the entries of its Tree: request paths are looked
// up in a map, never joined to a filesystem path, and any path that is not
// in canonical form (dot segments, empty segments, backslashes, NUL, encoded
// slashes) or that names something under .git is refused before the lookup.
package site
