package server

import "golang.org/x/sys/unix"

const sendTimeoutSupported = true

func setSendTimeout(fd, ms int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
}
