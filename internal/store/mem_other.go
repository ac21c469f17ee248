//go:build !linux

package store

import (
	"errors"
	"os"
)

// MemTemp would return a file in memory; only Linux has memfd_create(2).
func MemTemp() (*os.File, error) {
	return nil, errors.ErrUnsupported
}
