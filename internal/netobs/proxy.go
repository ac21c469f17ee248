package netobs

// Forward proxies (HTTPS_PROXY, HTTP_PROXY), as Go's net/http speaks to them, with every
// step timed and bounded:
//
//	proxy      https upstream                          plain http upstream
//	http://    CONNECT tunnel, upstream TLS inside     absolute-form requests (rt)
//	https://   TLS to the proxy, CONNECT inside it,    TLS to the proxy, absolute-form
//	           upstream TLS inside the tunnel          requests inside it (viaProxy)
//	socks5://  SOCKS5 CONNECT, upstream TLS inside     SOCKS5 CONNECT, requests inside (viaProxy)
//
// https upstreams are tunnelled by the Transport's own TLS dial (dialTLS, dialVia), so that
// the upstream's handshake stays observed and checked end to end, whatever the proxy.
// Plain http upstreams behind an https:// or socks5:// proxy go through a second
// http.Transport (viaProxy) whose dial functions only ever dial proxies' tunnels: for an
// http target behind an https proxy, net/http calls DialTLSContext with the proxy's
// address, not the upstream's, and the one DialTLSContext of rt could not tell that call
// from the dial of an https upstream at that address (it would ask the proxy for a tunnel
// to itself, and record the proxy's handshake as the upstream's).
//
// Through any proxy, a Sample's dns and connect are the proxy's, and connect also holds
// the proxy's TLS handshake (https://) and the CONNECT or SOCKS exchange; its tls is the
// upstream's own handshake only.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/proxy"
)

// ProxyFunc chooses the forward proxy for an upstream URL (scheme and host:port): nil
// for none. golang.org/x/net/http/httpproxy's Config.ProxyFunc is one (HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY, as the go command reads them).
type ProxyFunc func(*url.URL) (*url.URL, error)

// ProxyClass is the error class of a forward proxy that refused a tunnel, e.g.
// "proxy_407" (it wants credentials) or "proxy_403".
func ProxyClass(status int) string { return "proxy_" + strconv.Itoa(status) }

// Error classes of failures between holoproxy and a forward proxy that are not an HTTP
// status of the proxy's. Failures of the TLS handshake with an https:// proxy take the
// class of the same failure with an upstream, prefixed with "proxy_" (proxy_tls_cert,
// proxy_tls_alert:unknown_ca, proxy_tls_error), so that they are not taken for the
// upstream's.
const (
	// ClassProxySOCKSAuth is a SOCKS5 proxy that refused the credentials of the proxy URL,
	// or wants credentials the URL does not have.
	ClassProxySOCKSAuth = "proxy_socks_auth"
	// ClassProxySOCKS is a SOCKS5 proxy that refused the connection to the upstream (its
	// reply says why), or answered something other than SOCKS5.
	ClassProxySOCKS = "proxy_socks"
)

// CheckProxyURL reports whether p is a forward proxy the Transport speaks to: http://,
// https://, socks5:// or socks5h:// with a host. The error names the proxy without its
// credentials.
func CheckProxyURL(p *url.URL) error {
	switch p.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return fmt.Errorf("proxy %s: unsupported scheme %q: want http, https, socks5 or socks5h", proxyName(p), p.Scheme)
	}
	if p.Hostname() == "" {
		return fmt.Errorf("proxy %s: no host", proxyName(p))
	}
	return nil
}

// proxyName is how errors name a proxy: its scheme and host, never its credentials.
func proxyName(p *url.URL) string { return p.Scheme + "://" + p.Host }

// isSOCKS reports whether p is a SOCKS5 proxy.
func isSOCKS(p *url.URL) bool { return p.Scheme == "socks5" || p.Scheme == "socks5h" }

// proxyAddr returns host:port of a proxy URL, with the port of its scheme when it names
// none (as net/http: 80, 443, 1080 for SOCKS).
func proxyAddr(p *url.URL) string {
	if port := p.Port(); port != "" {
		return net.JoinHostPort(p.Hostname(), port)
	}
	port := "80"
	switch p.Scheme {
	case "https":
		port = "443"
	case "socks5", "socks5h":
		port = "1080"
	}
	return net.JoinHostPort(p.Hostname(), port)
}

// proxyFor returns the checked proxy for target (an upstream URL with scheme and
// host:port), nil for none.
func (t *Transport) proxyFor(target *url.URL) (*url.URL, error) {
	if t.cfg.Proxy == nil {
		return nil, nil
	}
	p, err := t.cfg.Proxy(target)
	if err != nil {
		return nil, &Error{Class: ClassOther, Phase: PhaseConnect, Err: fmt.Errorf("choosing a proxy for %s: %w", target.Host, err)}
	}
	if p == nil {
		return nil, nil
	}
	if err := CheckProxyURL(p); err != nil {
		return nil, &Error{Class: ClassOther, Phase: PhaseConnect, Err: err}
	}
	return p, nil
}

// viaProxyFor reports whether a request goes through viaProxy: a plain http upstream
// behind an https:// or SOCKS5 proxy.
func (t *Transport) viaProxyFor(req *http.Request) bool {
	if t.viaProxy == nil || req.URL.Scheme != "http" {
		return false
	}
	p, err := t.cfg.Proxy(req.URL)
	return err == nil && p != nil && (p.Scheme == "https" || isSOCKS(p))
}

// httpProxy is rt's Proxy: plain http upstreams behind an http:// proxy go through it as
// absolute-form requests (dialled by the Transport's own dial, so the proxy's lookup and
// connect are timed); https upstreams are tunnelled by dialTLS instead, so that their TLS
// handshake stays the Transport's own, timed and classified. RoundTrip sends plain http
// upstreams behind other proxies to viaProxy: one reaching rt is refused rather than sent
// around its proxy.
func (t *Transport) httpProxy(req *http.Request) (*url.URL, error) {
	if req.URL.Scheme != "http" {
		return nil, nil
	}
	p, err := t.proxyFor(req.URL)
	if err != nil || p == nil {
		return nil, err
	}
	if p.Scheme != "http" {
		return nil, &Error{Class: ClassOther, Phase: PhaseConnect, Err: fmt.Errorf("proxy %s: not usable for %s here", proxyName(p), req.URL.Host)}
	}
	return p, nil
}

// viaProxyProxy is viaProxy's Proxy: an https:// proxy, to which net/http sends
// absolute-form requests over the TLS connection dialProxyTLS opens. For a SOCKS5 proxy it
// returns nil: dialSOCKSUpstream then dials the upstream through it.
func (t *Transport) viaProxyProxy(req *http.Request) (*url.URL, error) {
	p, err := t.proxyFor(req.URL)
	if err != nil || p == nil || p.Scheme != "https" {
		return nil, err
	}
	return p, nil
}

// dialVia opens the connection an https upstream at addr is reached over: to addr
// itself, or a tunnel through the forward proxy the Proxy function names for it.
func (t *Transport) dialVia(ctx context.Context, network, addr string) (net.Conn, error) {
	p, err := t.proxyFor(&url.URL{Scheme: "https", Host: addr})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return t.dialer.DialContext(ctx, network, addr)
	}
	if isSOCKS(p) {
		return t.dialSOCKS(ctx, network, p, addr)
	}
	conn, err := t.dialer.DialContext(ctx, network, proxyAddr(p))
	if err != nil {
		return nil, err
	}
	return t.proxyExchange(ctx, conn, p, func(pctx context.Context, c net.Conn) (net.Conn, error) {
		return t.connect(pctx, c, p, addr)
	})
}

// dialProxyTLS is viaProxy's DialTLSContext: net/http calls it with the address of the
// https:// proxy of a plain http upstream (never an upstream's), and sends absolute-form
// requests over the TLS connection it returns.
func (t *Transport) dialProxyTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	dialStarts(ctx)
	p := &url.URL{Scheme: "https", Host: addr}
	conn, err := t.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c, err := t.proxyExchange(ctx, conn, p, nil)
	if err == nil {
		t.fileDial(ctx, c)
	}
	return c, err
}

// dialSOCKSUpstream is viaProxy's DialContext: net/http calls it with the address of a
// plain http upstream behind a SOCKS5 proxy (viaProxyProxy names no proxy for those).
func (t *Transport) dialSOCKSUpstream(ctx context.Context, network, addr string) (net.Conn, error) {
	dialStarts(ctx)
	p, err := t.proxyFor(&url.URL{Scheme: "http", Host: addr})
	if err != nil {
		return nil, err
	}
	if p == nil || !isSOCKS(p) {
		return nil, &Error{Class: ClassOther, Phase: PhaseConnect, Err: fmt.Errorf("%s: no SOCKS5 proxy chosen for it", addr)}
	}
	c, err := t.dialSOCKS(ctx, network, p, addr)
	if err == nil {
		t.fileDial(ctx, c)
	}
	return c, err
}

// fileDial files the dial figures of the request's Recorder under c.
func (t *Transport) fileDial(ctx context.Context, c net.Conn) {
	if rec := RecorderFrom(ctx); rec != nil {
		t.dials.put(c, rec.dialSnapshot())
	}
}

// proxyExchange runs what follows the TCP connect to proxy p on conn: the TLS handshake
// with an https:// proxy, then exchange (nil for none) over the result. Both run within a
// connect timeout of their own, the handshake also within the TLS timeout, and the whole
// is added to the Sample's connect. conn is closed on failure.
func (t *Transport) proxyExchange(ctx context.Context, conn net.Conn, p *url.URL, exchange func(context.Context, net.Conn) (net.Conn, error)) (net.Conn, error) {
	start := time.Now()
	pctx, cancel := context.WithTimeoutCause(ctx, durOr(t.cfg.ConnectTimeout, 10*time.Second), errConnectTimeout)
	defer cancel()
	c, err := conn, error(nil)
	if p.Scheme == "https" {
		c, err = t.proxyTLS(pctx, conn, p)
	}
	if err == nil && exchange != nil {
		c, err = exchange(pctx, c)
	}
	if rec := RecorderFrom(ctx); rec != nil {
		rec.addConnect(time.Since(start))
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// errProxyTLSTimeout is the cause of a TLS handshake with a proxy cut by the TLS timeout.
var errProxyTLSTimeout = errors.New("TLS handshake timeout")

// proxyTLS runs the TLS handshake with an https:// proxy: its certificate is checked
// against the roots upstreams are (the system's and CAFile), for the proxy's host name.
// Only HTTP/1.1 is offered: CONNECT and absolute-form requests are HTTP/1 here, as in
// net/http.
func (t *Transport) proxyTLS(pctx context.Context, conn net.Conn, p *url.URL) (net.Conn, error) {
	cfg := t.tls.Clone()
	cfg.ServerName = p.Hostname()
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeoutCause(pctx, durOr(t.cfg.TLSTimeout, 10*time.Second), errProxyTLSTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		class := ClassOf(err)
		switch {
		case strings.HasPrefix(class, "tls_"):
			class = "proxy_" + class
		case class == ClassOther:
			class = "proxy_" + ClassTLSOther
		}
		if context.Cause(hctx) == errProxyTLSTimeout && pctx.Err() == nil {
			class, err = ClassTimeout, fmt.Errorf("%w: %w", errProxyTLSTimeout, err)
		}
		return nil, proxyError(pctx, p, "TLS handshake", class, err)
	}
	return tc, nil
}

// proxyError is the failure of a step with proxy p under pctx (the proxy exchange's
// context, bounded by the connect timeout): canceled when the caller's context ended,
// tcp_timeout when the connect timeout did, else class.
func proxyError(pctx context.Context, p *url.URL, step, class string, err error) error {
	var ne net.Error
	switch cause := context.Cause(pctx); {
	case cause != nil && cause != errConnectTimeout:
		return &Error{Class: ClassCanceled, Phase: PhaseConnect, Err: fmt.Errorf("proxy %s: %s: %w", proxyName(p), step, pctx.Err())}
	case cause == errConnectTimeout, errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, errProxyTLSTimeout):
		// The connection's deadline is the context's: it may fire before the context
		// reports its cause, so a network timeout here is the connect timeout too.
		class, err = ClassTCPTimeout, fmt.Errorf("%w: %w", errConnectTimeout, err)
	}
	return &Error{Class: class, Phase: PhaseConnect, Err: fmt.Errorf("proxy %s: %s: %w", proxyName(p), step, err)}
}

// connect asks the http:// or https:// proxy on conn for a tunnel to addr, within pctx.
func (t *Transport) connect(pctx context.Context, conn net.Conn, p *url.URL, addr string) (net.Conn, error) {
	if d, ok := pctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(pctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if u := p.User; u != nil {
		pass, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	step := "CONNECT " + addr
	if err := req.Write(conn); err != nil {
		return nil, proxyError(pctx, p, step, ClassOf(err), err)
	}
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, proxyError(pctx, p, step, ClassOf(err), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, proxyError(pctx, p, step, ProxyClass(resp.StatusCode), fmt.Errorf("answered %s", resp.Status))
	}
	if !stop() {
		// pctx ended just as the answer came: the deadline may be in the past already.
		return nil, proxyError(pctx, p, step, ClassCanceled, pctx.Err())
	}
	conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		// The proxy sent bytes of the tunnel with its answer: they are the upstream's.
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// dialSOCKS opens a SOCKS5 tunnel to addr through p (golang.org/x/net/proxy speaks the
// protocol). socks5:// and socks5h:// both send the upstream's name to the proxy, which
// resolves it: net/http does so for both, and so does the go command, whose environment
// holoproxy shares (curl resolves names itself for socks5://; a client whose go command
// works through the proxy must not find holoproxy failing on a name only the proxy's side
// resolves). The Sample's dns is the lookup of the proxy's name.
func (t *Transport) dialSOCKS(ctx context.Context, network string, p *url.URL, addr string) (net.Conn, error) {
	conn, err := t.dialer.DialContext(ctx, network, proxyAddr(p))
	if err != nil {
		return nil, err
	}
	return t.proxyExchange(ctx, conn, p, func(pctx context.Context, c net.Conn) (net.Conn, error) {
		var auth *proxy.Auth
		if u := p.User; u != nil {
			pass, _ := u.Password()
			auth = &proxy.Auth{User: u.Username(), Password: pass}
		}
		d, err := proxy.SOCKS5("tcp", proxyAddr(p), auth, openConn{c})
		cd, ok := d.(proxy.ContextDialer)
		if err != nil || !ok {
			return nil, proxyError(pctx, p, "SOCKS5", ClassOther, fmt.Errorf("no SOCKS5 dialer: %v", err))
		}
		tunnel, err := cd.DialContext(pctx, "tcp", addr)
		if err != nil {
			class := ClassProxySOCKS
			if strings.Contains(err.Error(), "authentication") { // x/net's texts for method and credential refusals
				class = ClassProxySOCKSAuth
			}
			return nil, proxyError(pctx, p, "SOCKS5 CONNECT "+addr, class, socksCause(err))
		}
		return tunnel, nil
	})
}

// socksCause drops the *net.OpError x/net/proxy wraps every failure in: its text repeats
// the addresses the message says already.
func socksCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// openConn is the forward dialer of a SOCKS5 dialer whose connection to the proxy is open
// already (dialled, timed and recorded by the Transport's Dialer).
type openConn struct{ c net.Conn }

func (o openConn) Dial(string, string) (net.Conn, error) { return o.c, nil }

func (o openConn) DialContext(context.Context, string, string) (net.Conn, error) { return o.c, nil }

// bufferedConn is a connection whose first bytes were read into r already.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r.Buffered() > 0 {
		return c.r.Read(p)
	}
	return c.Conn.Read(p)
}
