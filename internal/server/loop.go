package server

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

// checkHops returns the instances a request passed (the values of its hop header), or an
// error when this instance is among them or the list is longer than MaxHops.
func (s *Server) checkHops(values []string) ([]string, error) {
	var hops []string
	for _, v := range values {
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				hops = append(hops, id)
			}
		}
	}
	for _, id := range hops {
		if id == s.cfg.InstanceID {
			return nil, fmt.Errorf("loop detected: this request already passed holoproxy instance %s (%s: %s)", id, HopHeader, strings.Join(hops, ", "))
		}
	}
	if len(hops) >= s.cfg.MaxHops {
		return nil, fmt.Errorf("loop suspected: this request passed %d proxies (%s: %s)", len(hops), HopHeader, strings.Join(hops, ", "))
	}
	return hops, nil
}

// ErrSelfUpstream is the error of CheckNotSelf for an upstream that is this server.
var ErrSelfUpstream = errors.New("upstream is this server's own listen address")

// CheckNotSelf refuses a chain with an upstream URL that points at listenAddr, the address
// this server listens on ("127.0.0.1:7070", ":7070", "[::]:7070", "localhost:7070"): such a
// chain would send every miss back to the server itself. Loopback forms (localhost,
// 127.0.0.0/8, ::1) are treated as one host, and a server listening on the unspecified
// address (":7070", "0.0.0.0:7070", "[::]:7070") is also reached through any of them or
// through the addresses of this machine's interfaces. Other host names are not resolved.
func CheckNotSelf(listenAddr string, chain *goproxy.Chain) error {
	lhost, lport, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", listenAddr, err)
	}
	if chain == nil {
		return nil
	}
	for _, c := range chain.Clients() {
		u, err := url.Parse(c.Name())
		if err != nil {
			return fmt.Errorf("upstream %q: %w", c.Name(), err)
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		if port != lport {
			continue
		}
		if sameHost(lhost, u.Hostname()) {
			return fmt.Errorf("upstream %s: %w %s", c.Name(), ErrSelfUpstream, listenAddr)
		}
	}
	return nil
}

// sameHost reports whether a connection to upstream host up reaches a listener on host l.
func sameHost(l, up string) bool {
	if strings.EqualFold(l, up) {
		return true
	}
	lu, ll := unspecified(l), loopback(l)
	uu, ul := unspecified(up), loopback(up)
	switch {
	case ll && (ul || uu):
		return true // all loopback forms are one host; dialling 0.0.0.0 reaches loopback
	case lu:
		return ul || uu || localAddr(up)
	}
	return false
}

func unspecified(h string) bool {
	if h == "" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}

func loopback(h string) bool {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// localAddr reports whether h is an IP literal of one of this machine's interfaces.
func localAddr(h string) bool {
	ip := net.ParseIP(h)
	if ip == nil {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
