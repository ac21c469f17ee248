package netobs

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ProxyFunc chooses the forward proxy for an upstream URL (scheme and host:port): nil
// for none. golang.org/x/net/http/httpproxy's Config.ProxyFunc is one (HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY, as the go command reads them).
type ProxyFunc func(*url.URL) (*url.URL, error)

// ProxyClass is the error class of a forward proxy that refused a tunnel, e.g.
// "proxy_407" (it wants credentials) or "proxy_403".
func ProxyClass(status int) string { return "proxy_" + strconv.Itoa(status) }

// checkProxyURL accepts the forward proxies the Transport speaks to: http:// ones.
func checkProxyURL(p *url.URL) error {
	if p.Scheme != "http" || p.Host == "" {
		return fmt.Errorf("proxy %s://%s: only http:// forward proxies are supported", p.Scheme, p.Host)
	}
	return nil
}

// proxyAddr returns host:port of a proxy URL, port 80 when it names none.
func proxyAddr(p *url.URL) string {
	if p.Port() != "" {
		return p.Host
	}
	return net.JoinHostPort(p.Hostname(), "80")
}

// httpProxy is http.Transport's Proxy: plain http upstreams go through the proxy as
// absolute-form requests (dialled by the Transport's own dial, so the proxy's lookup and
// connect are timed); https upstreams are tunnelled by dialTLS instead, so that their TLS
// handshake stays the Transport's own, timed and classified.
func (t *Transport) httpProxy(req *http.Request) (*url.URL, error) {
	if req.URL.Scheme != "http" {
		return nil, nil
	}
	p, err := t.cfg.Proxy(req.URL)
	if err != nil || p == nil {
		return nil, err
	}
	if err := checkProxyURL(p); err != nil {
		return nil, &Error{Class: ClassOther, Phase: PhaseConnect, Err: err}
	}
	return p, nil
}

// dialVia opens the TCP connection an https upstream at addr is reached over: to addr
// itself, or a CONNECT tunnel through the forward proxy the Proxy function names for it.
// Through a proxy, the Sample's dns and connect are the proxy's, and connect also holds
// the CONNECT exchange.
func (t *Transport) dialVia(ctx context.Context, network, addr string) (net.Conn, error) {
	if t.cfg.Proxy == nil {
		return t.dialer.DialContext(ctx, network, addr)
	}
	p, err := t.cfg.Proxy(&url.URL{Scheme: "https", Host: addr})
	if err != nil {
		return nil, &Error{Class: ClassOther, Phase: PhaseConnect, Err: fmt.Errorf("choosing a proxy for %s: %w", addr, err)}
	}
	if p == nil {
		return t.dialer.DialContext(ctx, network, addr)
	}
	if err := checkProxyURL(p); err != nil {
		return nil, &Error{Class: ClassOther, Phase: PhaseConnect, Err: err}
	}
	conn, err := t.dialer.DialContext(ctx, network, proxyAddr(p))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	tunnel, err := t.connect(ctx, conn, p, addr)
	if rec := RecorderFrom(ctx); rec != nil {
		rec.addConnect(time.Since(start))
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tunnel, nil
}

// connect asks the proxy on conn for a tunnel to addr, within the connect timeout.
func (t *Transport) connect(ctx context.Context, conn net.Conn, p *url.URL, addr string) (net.Conn, error) {
	timeout := durOr(t.cfg.ConnectTimeout, 10*time.Second)
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if u := p.User; u != nil {
		pass, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	fail := func(class string, err error) (net.Conn, error) {
		if ctx.Err() != nil {
			return nil, &Error{Class: ClassCanceled, Phase: PhaseConnect, Err: ctx.Err()}
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			class = ClassTCPTimeout
			err = fmt.Errorf("%w: %w", errConnectTimeout, err)
		}
		return nil, &Error{Class: class, Phase: PhaseConnect, Err: fmt.Errorf("proxy %s: CONNECT %s: %w", p.Host, addr, err)}
	}
	if err := req.Write(conn); err != nil {
		return fail(ClassOf(err), err)
	}
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fail(ClassOf(err), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(ProxyClass(resp.StatusCode), fmt.Errorf("answered %s", resp.Status))
	}
	conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		// The proxy sent bytes of the tunnel with its answer: they are the upstream's.
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

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
