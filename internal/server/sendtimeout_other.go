//go:build !linux

package server

const sendTimeoutSupported = false

func setSendTimeout(fd, ms int) error { return nil }
