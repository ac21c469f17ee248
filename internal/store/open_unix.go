//go:build unix

package store

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openRead opens a stored file for reading. os.Open would also try to add the file to the
// network poller (an epoll_ctl that fails for a regular file, and four fcntl calls around
// it); a stored file is only read with blocking reads or sent with sendfile, so the plain
// open(2) and os.NewFile (one fcntl) do: two system calls per answer instead of six.
func openRead(name string) (*os.File, error) {
	return openFile(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
}

// createExcl creates name, which must not exist, for reading and writing, without the
// poller (see openRead): os.CreateTemp's file costs the same five extra system calls.
func createExcl(name string) (*os.File, error) {
	return openFile(name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o600)
}

func openFile(name string, flag int, perm uint32) (*os.File, error) {
	for {
		fd, err := syscall.Open(name, flag, perm)
		if err == nil {
			return os.NewFile(uintptr(fd), name), nil
		}
		if err != syscall.EINTR {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
}

// Reopen returns a second descriptor of the open file f (dup), which reads it at offsets
// (ReadAt) after f is closed and its name renamed or removed. Its offset is shared with f:
// read it with ReadAt only.
func Reopen(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var derr error
	if err := rc.Control(func(old uintptr) { fd, derr = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, &fs.PathError{Op: "dup", Path: f.Name(), Err: derr}
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// rename renames a file; os.Rename first checks with lstat that newpath is not a
// directory, a path lookup a store's keys never need (a directory there fails the rename).
func rename(oldpath, newpath string) error {
	if err := syscall.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// Unwritable reports whether err says that the file system refuses new data for a while,
// whatever is tried: it is full (ENOSPC), over a quota (EDQUOT) or read-only (EROFS).
func Unwritable(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS)
}
