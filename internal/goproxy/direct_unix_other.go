//go:build unix && !linux

package goproxy

import "syscall"

// setParentDeathSignal does nothing where the kernel has no parent-death signal.
func setParentDeathSignal(*syscall.SysProcAttr) {}

// groupRunning reports whether a process of group pgid, zombies included, still exists.
func groupRunning(pgid int) bool { return syscall.Kill(-pgid, 0) != syscall.ESRCH }
