//go:build unix

package store

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// haveFlock reports whether lockDir locks.
const haveFlock = true

// lockDir opens dir and takes an exclusive flock on it without waiting: held, it tells
// every other process opening the store that dir's owner is alive. The kernel releases it
// when the owner exits, however it exits. busy reports that another holds it. Where the
// file system has no locks, dir is returned open and unlocked.
func lockDir(dir string) (f *os.File, busy bool, err error) {
	f, err = os.Open(dir)
	if err != nil {
		return nil, false, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL):
		// A file system without locks (some NFS setups): the directory is taken unlocked,
		// and looks abandoned to others, as every temporary file did before.
	default:
		f.Close()
		return nil, errors.Is(err, unix.EWOULDBLOCK), err
	}
	return f, false, nil
}
