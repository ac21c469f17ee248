package lab

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// SOCKS5 is a SOCKS5 proxy (RFC 1928, CONNECT only) on loopback, with optional
// username/password authentication (RFC 1929): the socks5:// and socks5h:// egress proxy
// of the tests. Like ForwardProxy it connects only the targets it has routes for, to the
// loopback addresses they map to ("proxy-a.test:443" for a name the client left to the
// proxy, "127.0.0.2:443" for an address it resolved itself), and refuses any other with
// reply 2 (not allowed by ruleset).
//
// It is written here because no maintained Go library providing a SOCKS5 server is
// available to the project (golang.org/x/net/proxy is a client only); it is test code,
// as small as the tests need, and speaks to loopback only.
type SOCKS5 struct {
	ln   net.Listener
	addr string

	mu         sync.Mutex
	routes     map[string]string // host:port -> loopback address
	user, pass string
	requests   []string
	wg         sync.WaitGroup
	conns      map[net.Conn]bool
}

// StartSOCKS5 starts a SOCKS5 proxy with no routes and stops it, and every connection it
// carries, at the end of tb.
func StartSOCKS5(tb testing.TB) *SOCKS5 {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &SOCKS5{ln: ln, addr: ln.Addr().String(), routes: map[string]string{}, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.serve()
	tb.Cleanup(s.close)
	return s
}

// Addr returns the proxy's host:port, for socks5://ADDR or socks5h://ADDR.
func (s *SOCKS5) Addr() string { return s.addr }

// Route makes hostport (a name or an address, and a port) lead to addr.
func (s *SOCKS5) Route(hostport, addr string) {
	s.mu.Lock()
	s.routes[hostport] = addr
	s.mu.Unlock()
}

// RequireAuth makes every connection authenticate with user and pass.
func (s *SOCKS5) RequireAuth(user, pass string) {
	s.mu.Lock()
	s.user, s.pass = user, pass
	s.mu.Unlock()
}

// Requests returns "CONNECT target" of every CONNECT the proxy received after
// authentication, with the target as the client sent it (a name or an address).
func (s *SOCKS5) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func (s *SOCKS5) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil // closed: track refuses new connections
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *SOCKS5) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c, true) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			defer c.Close()
			s.handle(c)
		}()
	}
}

// track adds or removes c from the open connections; false when the proxy is closed.
func (s *SOCKS5) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.conns == nil {
		return false
	}
	s.conns[c] = true
	return true
}

// SOCKS5 constants of RFC 1928 and RFC 1929.
const (
	socksVersion      = 5
	socksNoAuth       = 0
	socksUserPass     = 2
	socksNoAcceptable = 0xff
	socksConnect      = 1
	socksIPv4         = 1
	socksFQDN         = 3
	socksIPv6         = 4
	replySucceeded    = 0
	replyNotAllowed   = 2
	replyHostUnreach  = 4
	replyCmdNotSupp   = 7
)

func (s *SOCKS5) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second)) // the handshake; the tunnel has none
	br := bufio.NewReader(c)
	s.mu.Lock()
	user, pass := s.user, s.pass
	s.mu.Unlock()

	// Greeting: version, methods.
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(br, hdr); err != nil || hdr[0] != socksVersion {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return
	}
	want := byte(socksNoAuth)
	if user != "" {
		want = socksUserPass
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered {
		c.Write([]byte{socksVersion, socksNoAcceptable})
		return
	}
	if _, err := c.Write([]byte{socksVersion, want}); err != nil {
		return
	}
	if want == socksUserPass {
		u, p, err := readUserPass(br)
		if err != nil {
			return
		}
		if u != user || p != pass {
			c.Write([]byte{1, 1}) // failure; the connection is closed
			return
		}
		if _, err := c.Write([]byte{1, 0}); err != nil {
			return
		}
	}

	// Request: version, command, reserved, address.
	req := make([]byte, 4)
	if _, err := io.ReadFull(br, req); err != nil || req[0] != socksVersion {
		return
	}
	target, err := readSOCKSAddr(br, req[3])
	if err != nil {
		return
	}
	if req[1] != socksConnect {
		socksReply(c, replyCmdNotSupp)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, "CONNECT "+target)
	addr, ok := s.routes[target]
	s.mu.Unlock()
	if !ok {
		socksReply(c, replyNotAllowed)
		return
	}
	up, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		socksReply(c, replyHostUnreach)
		return
	}
	defer up.Close()
	if !s.track(up, true) {
		return
	}
	defer s.track(up, false)
	if err := socksReply(c, replySucceeded); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	go pipe(up, br, up)
	pipe(c, up, c)
}

func readUserPass(r io.Reader) (user, pass string, err error) {
	b := make([]byte, 2)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", "", err
	}
	if b[0] != 1 {
		return "", "", errors.New("bad username/password version")
	}
	u := make([]byte, b[1])
	if _, err := io.ReadFull(r, u); err != nil {
		return "", "", err
	}
	if _, err := io.ReadFull(r, b[:1]); err != nil {
		return "", "", err
	}
	p := make([]byte, b[0])
	if _, err := io.ReadFull(r, p); err != nil {
		return "", "", err
	}
	return string(u), string(p), nil
}

// readSOCKSAddr reads an address of type atyp and its port, as host:port.
func readSOCKSAddr(r io.Reader, atyp byte) (string, error) {
	var host string
	switch atyp {
	case socksIPv4, socksIPv6:
		ip := make(net.IP, net.IPv4len)
		if atyp == socksIPv6 {
			ip = make(net.IP, net.IPv6len)
		}
		if _, err := io.ReadFull(r, ip); err != nil {
			return "", err
		}
		host = ip.String()
	case socksFQDN:
		n := make([]byte, 1)
		if _, err := io.ReadFull(r, n); err != nil {
			return "", err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(r, name); err != nil {
			return "", err
		}
		host = string(name)
	default:
		return "", fmt.Errorf("address type %d", atyp)
	}
	port := make([]byte, 2)
	if _, err := io.ReadFull(r, port); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port)))), nil
}

// socksReply answers a request with code and a zero bound address.
func socksReply(w io.Writer, code byte) error {
	_, err := w.Write([]byte{socksVersion, code, 0, socksIPv4, 0, 0, 0, 0, 0, 0})
	return err
}
