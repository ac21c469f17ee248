package netobs

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// connDials remembers the dial figures (DNS, connect, TLS) of each new connection until a
// request first uses it. net/http dials under the context of the request that asked for a
// connection but may hand the connection to another request (HTTP/2 and pooled HTTP/1
// both do when requests start together), so the figures belong to the connection, not to
// the dialling request: GotConn with Reused false takes them from here.
type connDials struct {
	n  atomic.Int32 // len(m), read without the lock: most requests get a reused connection
	mu sync.Mutex
	m  map[net.Conn]connDial
}

type connDial struct {
	fig dialFigures
	at  time.Time
}

// connDialTTL bounds how long the figures of a connection no request used are kept: a
// dial that lost a race is closed by net/http at once.
const connDialTTL = time.Minute

// put records the figures of conn's dial.
func (c *connDials) put(conn net.Conn, fig dialFigures) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[net.Conn]connDial{}
	}
	if len(c.m) >= 64 {
		for k, v := range c.m {
			if now.Sub(v.at) > connDialTTL {
				delete(c.m, k)
			}
		}
	}
	c.m[conn] = connDial{fig: fig, at: now}
	c.n.Store(int32(len(c.m)))
}

// take returns and forgets the figures of conn's dial.
func (c *connDials) take(conn net.Conn) (dialFigures, bool) {
	if c.n.Load() == 0 {
		// Nothing filed: spare the lock and the map lookup. A put that files conn
		// happened before net/http handed conn to any request.
		return dialFigures{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.m[conn]
	if ok {
		delete(c.m, conn)
		c.n.Store(int32(len(c.m)))
	}
	return d.fig, ok
}
