//go:build !unix

package store

import (
	"errors"
	"os"
	"syscall"
)

// openRead opens a stored file for reading.
func openRead(name string) (*os.File, error) { return os.Open(name) }

// createExcl creates name, which must not exist, for reading and writing.
func createExcl(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
}

// Reopen opens f's file a second time, for reading at offsets (ReadAt).
func Reopen(f *os.File) (*os.File, error) { return os.Open(f.Name()) }

// rename renames a file.
func rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// Unwritable reports whether err says that the file system refuses new data for a while:
// it is full or read-only.
func Unwritable(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EROFS)
}
