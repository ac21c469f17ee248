//go:build !linux

package server

import "errors"

// setCork is Linux's TCP_CORK; elsewhere answers go out uncorked.
func setCork(fd, v int) error { return errors.ErrUnsupported }
