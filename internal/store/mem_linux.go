package store

import (
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// MemTemp returns a new empty file that lives in memory only (memfd_create(2)), for an
// answer the store cannot take (its disk is full or read-only): the fill writes, checks and
// serves it like a temporary file of the store, but it is never committed, and closing
// its last descriptor frees its memory. Its name opens it again while it is open
// (/proc/self/fd/N), which zip checks need.
func MemTemp() (*os.File, error) {
	fd, err := unix.MemfdCreate("holoproxy-answer", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, &fs.PathError{Op: "memfd_create", Path: "holoproxy-answer", Err: err}
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("/proc/self/fd/%d", fd)), nil
}
