//go:build !unix

package store

import "os"

// openRead opens a stored file for reading.
func openRead(name string) (*os.File, error) { return os.Open(name) }
