//go:build !unix

package store

import "os"

// haveFlock reports whether lockDir locks.
const haveFlock = false

// lockDir opens dir without a lock: this system has no flock. Every process directory
// then looks abandoned to the next store opened on the same root, as every temporary
// file did before there were process directories.
func lockDir(dir string) (f *os.File, busy bool, err error) {
	f, err = os.Open(dir)
	return f, false, err
}
