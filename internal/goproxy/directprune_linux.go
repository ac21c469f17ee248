package goproxy

import (
	"io/fs"
	"syscall"
	"time"
)

// lastUse is the later of a file's access and modification times.
func lastUse(fi fs.FileInfo) time.Time {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fi.ModTime()
	}
	if at := time.Unix(st.Atim.Sec, st.Atim.Nsec); at.After(fi.ModTime()) {
		return at
	}
	return fi.ModTime()
}
