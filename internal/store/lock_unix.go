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
// when the owner exits, however it exits. busy reports that another holds it.
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
	if err != nil {
		f.Close()
		return nil, errors.Is(err, unix.EWOULDBLOCK), err
	}
	return f, false, nil
}
