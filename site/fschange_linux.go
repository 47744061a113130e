package site

import (
	"io/fs"
	"syscall"
)

// changeOf reads a file's inode and status-change time.
func changeOf(info fs.FileInfo) fileChange {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return fileChange{ino: st.Ino, ctime: st.Ctim.Nano()}
	}
	return fileChange{}
}
