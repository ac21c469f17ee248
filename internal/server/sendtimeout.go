package server

import (
	"net"
	"time"
)

// SendTimeoutListener returns ln with a send timeout on every TCP connection it accepts:
// the kernel closes a connection whose sent data stays unacknowledged, or cannot leave
// because the client keeps its window closed, for longer than d (TCP_USER_TIMEOUT, the
// progress-based bound nginx's send_timeout gives). A client that stops reading an answer,
// or vanishes in the middle of a large zip, then no longer holds the connection and the
// goroutine writing to it: the write fails. A slow client that keeps taking bytes is never
// cut. d <= 0 returns ln; where the system has no such option (not Linux), so does it.
func SendTimeoutListener(ln net.Listener, d time.Duration) net.Listener {
	if d <= 0 || !sendTimeoutSupported {
		return ln
	}
	return &sendTimeoutListener{Listener: ln, ms: int(max(d.Milliseconds(), 1))}
}

type sendTimeoutListener struct {
	net.Listener
	ms int
}

func (l *sendTimeoutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { setSendTimeout(int(fd), l.ms) }) // best effort
		}
	}
	return c, nil
}
