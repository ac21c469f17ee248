package lab

import (
	"crypto/tls"
	"encoding/base64"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"sync"
	"testing"
	"time"
)

// ForwardProxy is an HTTP forward proxy on loopback, as a company's egress proxy: it
// tunnels CONNECT requests and forwards absolute-form requests, to the loopback addresses
// it maps made-up names to ("proxy-a.test:443"), so that clients reach those names through
// it with nothing looked up in DNS. Anything else it refuses with 403 (an egress proxy's
// allow list). It may require basic credentials (407 without them).
type ForwardProxy struct {
	srv *http.Server
	url string

	mu         sync.Mutex
	routes     map[string]string // host:port -> loopback address
	user, pass string
	requests   []string
}

// proxyVars are the environment variables that choose a forward proxy (net/http and the
// go command read the upper- and lower-case forms, curl and so git the lower-case ones).
var proxyVars = []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"}

// NoForwardProxies unsets the forward proxy variables of the test process, for the tests
// of programs that honour them: tests talk only to loopback and to their own namespaces,
// and a developer's company proxy must not carry (nor refuse) their requests. A test that
// wants a proxy sets it on the command it starts (GitServer.Env, ForwardProxy.URL).
func NoForwardProxies() {
	for _, v := range proxyVars {
		os.Unsetenv(v)
	}
}

// StartForwardProxy starts a ForwardProxy with no routes and stops it at the end of tb.
func StartForwardProxy(tb testing.TB) *ForwardProxy {
	tb.Helper()
	return startForwardProxy(tb, nil)
}

// StartForwardProxyTLS starts a ForwardProxy that clients reach over TLS (an https://
// proxy), with a certificate for 127.0.0.1 that ca issues. It speaks HTTP/1.1 only, as
// egress proxies do to CONNECT and absolute-form requests.
func StartForwardProxyTLS(tb testing.TB, ca *CA) *ForwardProxy {
	tb.Helper()
	cert, err := ca.Issue("127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	return startForwardProxy(tb, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
}

func startForwardProxy(tb testing.TB, cfg *tls.Config) *ForwardProxy {
	p := &ForwardProxy{routes: map[string]string{}}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p.url = "http://" + ln.Addr().String()
	if cfg != nil {
		p.url = "https://" + ln.Addr().String()
		ln = tls.NewListener(ln, cfg)
		p.srv.ErrorLog = log.New(io.Discard, "", 0) // clients that distrust it are what some tests want
	}
	go p.srv.Serve(ln)
	tb.Cleanup(func() { p.srv.Close() })
	return p
}

// URL returns the proxy's URL (http://127.0.0.1:port, or https:// over TLS).
func (p *ForwardProxy) URL() string { return p.url }

// Route makes hostport (a made-up name and a port) lead to addr.
func (p *ForwardProxy) Route(hostport, addr string) {
	p.mu.Lock()
	p.routes[hostport] = addr
	p.mu.Unlock()
}

// RequireAuth makes every request need the basic credentials user and pass.
func (p *ForwardProxy) RequireAuth(user, pass string) {
	p.mu.Lock()
	p.user, p.pass = user, pass
	p.mu.Unlock()
}

// Requests returns "METHOD target" of every request the proxy received, e.g.
// "CONNECT proxy-a.test:443" or "GET http://proxy-b.test/m/@v/list".
func (p *ForwardProxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

func (p *ForwardProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Host
	if r.Method != http.MethodConnect {
		target = r.URL.String()
	}
	p.mu.Lock()
	p.requests = append(p.requests, r.Method+" "+target)
	user, pass := p.user, p.pass
	hostport := r.Host
	if r.Method != http.MethodConnect && r.URL.Port() == "" {
		hostport = r.URL.Hostname() + ":80"
	}
	addr, ok := p.routes[hostport]
	p.mu.Unlock()
	if user != "" {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
		if r.Header.Get("Proxy-Authorization") != want {
			w.Header().Set("Proxy-Authenticate", `Basic realm="lab"`)
			http.Error(w, "proxy credentials required", http.StatusProxyAuthRequired)
			return
		}
	}
	if !ok {
		http.Error(w, "lab proxy: "+hostport+" is not allowed", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodConnect {
		if !r.URL.IsAbs() || r.URL.Scheme != "http" {
			http.Error(w, "lab proxy: want an absolute http URL", http.StatusBadRequest)
			return
		}
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Host = addr
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Del("Proxy-Authorization")
		}}
		rp.ServeHTTP(w, r)
		return
	}
	up, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "no hijacking", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		conn.Close()
		up.Close()
		return
	}
	go pipe(up, rw.Reader, conn)
	pipe(conn, up, up)
}

// pipe copies from src to dst and closes both ends when the copy ends.
func pipe(dst io.Writer, src io.Reader, closer io.Closer) {
	io.Copy(dst, src)
	closer.Close()
	if c, ok := dst.(io.Closer); ok {
		c.Close()
	}
}
