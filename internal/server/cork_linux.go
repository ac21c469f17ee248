package server

import "syscall"

// setCork sets TCP_CORK on a socket: while it is on, the kernel sends only full packets.
func setCork(fd, v int) error {
	return syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_CORK, v)
}
