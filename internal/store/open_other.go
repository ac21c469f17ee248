//go:build !unix

package store

import "os"

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
