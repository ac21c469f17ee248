package server

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// SendTimeoutListener returns ln with a send timeout on every TCP connection it accepts:
// the kernel closes a connection whose sent data stays unacknowledged, or cannot leave
// because the client keeps its window closed, for longer than d (TCP_USER_TIMEOUT, the
// progress-based bound nginx's send_timeout gives). A client that stops reading an answer,
// or vanishes in the middle of a large zip, then no longer holds the connection and the
// goroutine writing to it: the write fails. A slow client that keeps taking bytes is never
// cut. Each connection closed so is counted in holoproxy_server_send_timeouts_total. d <= 0
// returns ln; where the system has no such option (not Linux), so does it.
func (s *Server) SendTimeoutListener(ln net.Listener, d time.Duration) net.Listener {
	if d <= 0 || !sendTimeoutSupported {
		return ln
	}
	return &sendTimeoutListener{Listener: ln, ms: int(max(d.Milliseconds(), 1)), s: s}
}

type sendTimeoutListener struct {
	net.Listener
	ms int
	s  *Server
}

func (l *sendTimeoutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	if rc, err := tc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { setSendTimeout(int(fd), l.ms) }) // best effort
	}
	return &sendTimeoutConn{TCPConn: tc, s: l.s}, nil
}

// sendTimeoutConn counts its connection when the kernel aborts it for the send timeout.
// The abort's error (ETIMEDOUT) goes to whichever system call on the socket comes first:
// the write that waits for the client, or a read (net/http reads in the background while
// a handler runs, and that write then gets EPIPE), so reads and writes are both watched.
// It embeds the *net.TCPConn: sendfile (ReadFrom), SyscallConn and CloseWrite are its.
type sendTimeoutConn struct {
	*net.TCPConn
	s       *Server
	counted atomic.Bool
}

func (c *sendTimeoutConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	c.check(err)
	return n, err
}

func (c *sendTimeoutConn) Write(p []byte) (int, error) {
	n, err := c.TCPConn.Write(p)
	c.check(err)
	return n, err
}

// ReadFrom is the TCPConn's (sendfile for a file), watched.
func (c *sendTimeoutConn) ReadFrom(r io.Reader) (int64, error) {
	n, err := c.TCPConn.ReadFrom(r)
	c.check(err)
	return n, err
}

func (c *sendTimeoutConn) check(err error) {
	if err != nil && errors.Is(err, syscall.ETIMEDOUT) && c.counted.CompareAndSwap(false, true) {
		c.s.metrics.sendTimeouts.Inc()
	}
}
