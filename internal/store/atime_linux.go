package store

import (
	"io/fs"
	"syscall"
	"time"
)

// accessTime returns the access time of a file's FileInfo.
func accessTime(fi fs.FileInfo) time.Time {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Time{}
	}
	return time.Unix(st.Atim.Sec, st.Atim.Nsec)
}
