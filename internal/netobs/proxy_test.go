package netobs

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// proxyLab is an https upstream named proxy-a.test and an http one named proxy-b.test,
// both on loopback, reachable only through the forward proxies of the lab that know those
// names: an http:// one, an https:// one (its certificate from a lab CA the transports
// trust besides the upstreams' CA) and a SOCKS5 one. For socks5:// (names resolved by
// holoproxy), the transports' resolver answers proxy-a.test with 127.0.0.2 and proxy-b.test
// with 127.0.0.3, where nothing listens on 443 and 80: only the SOCKS5 proxy's routes lead
// from there to the upstreams.
type proxyLab struct {
	proxy    *lab.ForwardProxy // http://
	tlsProxy *lab.ForwardProxy // https://
	socks    *lab.SOCKS5
	ca       *testCA
	caFile   string // ca and the https proxy's CA
	dns      *staticBackend
}

func newProxyLab(t *testing.T) *proxyLab {
	t.Helper()
	ca := newCA(t)
	cert := ca.issue(t, []string{"proxy-a.test"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false)
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("from " + r.Host + r.URL.Path)) })
	a := startOrigin(t, &tls.Config{Certificates: []tls.Certificate{cert}}, answer)
	b := startOrigin(t, nil, answer)
	l := &proxyLab{ca: ca, dns: &staticBackend{addrs: map[string]netip.Addr{
		"proxy-a.test": netip.MustParseAddr("127.0.0.2"),
		"proxy-b.test": netip.MustParseAddr("127.0.0.3"),
	}}}
	proxyCA, err := lab.NewCA(filepath.Join(t.TempDir(), "proxy-ca.pem"), "egress proxy")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ca.pemFile)
	if err != nil {
		t.Fatal(err)
	}
	l.caFile = filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(l.caFile, append(caPEM, proxyCA.CertPEM()...), 0o600); err != nil {
		t.Fatal(err)
	}
	l.proxy = lab.StartForwardProxy(t)
	l.tlsProxy = lab.StartForwardProxyTLS(t, proxyCA)
	l.socks = lab.StartSOCKS5(t)
	for _, p := range []*lab.ForwardProxy{l.proxy, l.tlsProxy} {
		p.Route("proxy-a.test:443", "127.0.0.1:"+a.port)
		p.Route("proxy-b.test:80", "127.0.0.1:"+b.port)
	}
	for _, host := range []string{"proxy-a.test", "127.0.0.2"} {
		l.socks.Route(host+":443", "127.0.0.1:"+a.port)
	}
	for _, host := range []string{"proxy-b.test", "127.0.0.3"} {
		l.socks.Route(host+":80", "127.0.0.1:"+b.port)
	}
	return l
}

// staticBackend answers A queries from a map (and every AAAA query empty), counting the
// names it is asked.
type staticBackend struct {
	addrs map[string]netip.Addr
	mu    sync.Mutex
	asked []string
}

func (b *staticBackend) Exchange(_ context.Context, name string, qtype uint16) (Answer, error) {
	name = strings.TrimSuffix(name, ".")
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.addrs[name]
	if !ok {
		return Answer{Rcode: "NXDOMAIN"}, nil
	}
	if qtype == dns.TypeA {
		b.asked = append(b.asked, name)
		return Answer{Addrs: []netip.Addr{a}, TTL: time.Minute, Rcode: "NOERROR"}, nil
	}
	return Answer{TTL: time.Minute, Rcode: "NOERROR"}, nil
}

func (b *staticBackend) String() string { return "static" }

func (b *staticBackend) names() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.asked...)
}

// transport returns a Transport that sends every upstream through proxy (a URL), resolves
// names with the lab's static backend and collects its Samples.
func (l *proxyLab) transport(t *testing.T, proxy string, connectTimeout time.Duration) (*Transport, *samples) {
	t.Helper()
	pu, err := url.Parse(proxy)
	if err != nil {
		t.Fatal(err)
	}
	var got samples
	tr, err := NewTransport(TransportConfig{
		CAFile: l.caFile, Sink: &got, ConnectTimeout: connectTimeout,
		Resolver: &Resolver{Backend: l.dns},
		Proxy:    func(*url.URL) (*url.URL, error) { return pu, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr, &got
}

func fetch(t *testing.T, c *http.Client, u string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Through a forward proxy an https upstream is a CONNECT tunnel with the Transport's own
// TLS handshake (timed, with its details), a plain http one an absolute-form request;
// the Sample's connect is the proxy's (its address is the remote one).
func TestTransportThroughForwardProxy(t *testing.T) {
	l := newProxyLab(t)
	tr, got := l.transport(t, l.proxy.URL(), 0)
	body, err := fetch(t, tr.Client(), "https://proxy-a.test/m/@v/list")
	if err != nil || body != "from proxy-a.test/m/@v/list" {
		t.Fatalf("https through the proxy: %q, %v", body, err)
	}
	s := got.last(t)
	proxyHost := strings.TrimPrefix(l.proxy.URL(), "http://")
	if s.TLS <= 0 || s.TLSVersion != "TLS 1.3" || s.Connect <= 0 || s.RemoteAddr != proxyHost || s.Host != "proxy-a.test:443" {
		t.Errorf("https Sample: tls %s %q, connect %s, remote %q, host %q; want a timed handshake and connect to the proxy %s",
			s.TLS, s.TLSVersion, s.Connect, s.RemoteAddr, s.Host, proxyHost)
	}
	body, err = fetch(t, tr.Client(), "http://proxy-b.test/m/@v/list")
	if err != nil || body != "from proxy-b.test/m/@v/list" {
		t.Fatalf("http through the proxy: %q, %v", body, err)
	}
	if s := got.last(t); s.Connect <= 0 || s.RemoteAddr != proxyHost {
		t.Errorf("http Sample: connect %s, remote %q; want the connect to the proxy", s.Connect, s.RemoteAddr)
	}
	want := []string{"CONNECT proxy-a.test:443", "GET http://proxy-b.test/m/@v/list"}
	if reqs := l.proxy.Requests(); !slices.Equal(reqs, want) {
		t.Errorf("the proxy saw %q; want %q", reqs, want)
	}
	// A second request reuses the tunnel: no second CONNECT.
	if _, err := fetch(t, tr.Client(), "https://proxy-a.test/m/@v/v1.0.0.info"); err != nil {
		t.Fatal(err)
	}
	if n := len(l.proxy.Requests()); n != 2 {
		t.Errorf("the proxy saw %d requests after a reused tunnel; want 2", n)
	}
}

// Proxy credentials come from the proxy URL's user info; without them, or for a name the
// proxy does not allow, the failure names the proxy and says what it answered, in the
// connect phase with a proxy_<status> class.
func TestTransportForwardProxyRefusals(t *testing.T) {
	l := newProxyLab(t)
	l.proxy.RequireAuth("egress", "s3cret")
	tr, got := l.transport(t, l.proxy.URL(), 0)
	_, err := fetch(t, tr.Client(), "https://proxy-a.test/x")
	var ne *Error
	if !errors.As(err, &ne) || ne.Class != "proxy_407" || ne.Phase != PhaseConnect || !strings.Contains(err.Error(), "407") {
		t.Errorf("no credentials: %v; want a proxy_407 in the connect phase", err)
	}
	if s := got.last(t); s.ErrClass != "proxy_407" {
		t.Errorf("Sample class %q; want proxy_407", s.ErrClass)
	}

	withCreds := strings.Replace(l.proxy.URL(), "http://", "http://egress:s3cret@", 1)
	tr2, _ := l.transport(t, withCreds, 0)
	if body, err := fetch(t, tr2.Client(), "https://proxy-a.test/x"); err != nil || body != "from proxy-a.test/x" {
		t.Errorf("https with proxy credentials: %q, %v", body, err)
	}
	if body, err := fetch(t, tr2.Client(), "http://proxy-b.test/y"); err != nil || body != "from proxy-b.test/y" {
		t.Errorf("http with proxy credentials: %q, %v", body, err)
	}
	_, err = fetch(t, tr2.Client(), "https://proxy-c.test/x")
	if !errors.As(err, &ne) || ne.Class != "proxy_403" {
		t.Errorf("a name the proxy refuses: %v; want proxy_403", err)
	}

	ftp, _ := l.transport(t, "ftp://127.0.0.1:21", 0)
	for _, u := range []string{"https://proxy-a.test/x", "http://proxy-b.test/x"} {
		if _, err := fetch(t, ftp.Client(), u); err == nil || !strings.Contains(err.Error(), `proxy ftp://127.0.0.1:21: unsupported scheme "ftp"`) {
			t.Errorf("%s through an ftp:// proxy: %v; want a clear refusal", u, err)
		}
	}
}

// A proxy that accepts the connection and never answers (the CONNECT, the TLS handshake
// of an https:// proxy, the SOCKS5 greeting) costs the connect timeout, not the caller's
// patience. (A plain http upstream behind an http:// proxy has no such exchange: its
// request goes to the proxy as it is, under the first-byte timeout.)
func TestTransportForwardProxyHangs(t *testing.T) {
	l := newProxyLab(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	for _, scheme := range []string{"http", "https", "socks5", "socks5h"} {
		tr, got := l.transport(t, scheme+"://"+ln.Addr().String(), 300*time.Millisecond)
		for _, u := range []string{"https://proxy-a.test/x", "http://proxy-b.test/x"} {
			if scheme == "http" && strings.HasPrefix(u, "http:") {
				continue // a request to the proxy itself, with no exchange before it: the first-byte timeout's
			}
			start := time.Now()
			_, err = fetch(t, tr.Client(), u)
			var ne *Error
			if !errors.As(err, &ne) || ne.Class != ClassTCPTimeout || ne.Phase != PhaseConnect {
				t.Errorf("hanging %s proxy, %s: %v; want a tcp_timeout in the connect phase", scheme, u, err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("hanging %s proxy, %s took %s; connect timeout 300ms", scheme, u, took)
			}
			if s := got.last(t); s.ErrClass != ClassTCPTimeout || s.Connect < 300*time.Millisecond {
				t.Errorf("hanging %s proxy, %s: Sample class %q, connect %s; want tcp_timeout after at least the connect timeout",
					scheme, u, s.ErrClass, s.Connect)
			}
		}
	}
}

// Through an https:// proxy: TLS to the proxy (checked against the configured roots),
// then for an https upstream a CONNECT inside it and the upstream's own TLS inside the
// tunnel, for a plain http one absolute-form requests inside it, never a tunnel to the
// proxy itself. The proxy's handshake is part of connect; the Sample's tls is the
// upstream's alone (none for plain http). Credentials go to the proxy inside its TLS.
func TestTransportThroughTLSProxy(t *testing.T) {
	l := newProxyLab(t)
	l.tlsProxy.RequireAuth("egress", "s3cret")
	proxyHost := strings.TrimPrefix(l.tlsProxy.URL(), "https://")
	tr, got := l.transport(t, "https://egress:s3cret@"+proxyHost, 0)

	body, err := fetch(t, tr.Client(), "https://proxy-a.test/m/@v/list")
	if err != nil || body != "from proxy-a.test/m/@v/list" {
		t.Fatalf("https through the https proxy: %q, %v", body, err)
	}
	s := got.last(t)
	if s.TLS <= 0 || s.TLSVersion != "TLS 1.3" || s.ALPN != "h2" || s.Connect <= 0 || s.RemoteAddr != proxyHost || s.Host != "proxy-a.test:443" {
		t.Errorf("https Sample: tls %s %q alpn %q, connect %s, remote %q, host %q; want the upstream's h2 handshake and a connect to the proxy %s",
			s.TLS, s.TLSVersion, s.ALPN, s.Connect, s.RemoteAddr, s.Host, proxyHost)
	}

	for _, path := range []string{"/m/@v/list", "/m/@v/v1.0.0.info"} {
		body, err = fetch(t, tr.Client(), "http://proxy-b.test"+path)
		if err != nil || body != "from proxy-b.test"+path {
			t.Fatalf("http through the https proxy: %q, %v", body, err)
		}
	}
	first := got.all()[1]
	if first.Connect <= 0 || first.RemoteAddr != proxyHost || first.TLS != 0 || first.TLSVersion != "" || first.Reused {
		t.Errorf("http Sample: connect %s, remote %q, tls %s %q, reused %v; want a new connection to the proxy, its handshake in connect, no tls phase",
			first.Connect, first.RemoteAddr, first.TLS, first.TLSVersion, first.Reused)
	}
	if s := got.last(t); !s.Reused {
		t.Errorf("the second http request did not reuse the connection to the proxy")
	}
	want := []string{"CONNECT proxy-a.test:443", "GET http://proxy-b.test/m/@v/list", "GET http://proxy-b.test/m/@v/v1.0.0.info"}
	if reqs := l.tlsProxy.Requests(); !slices.Equal(reqs, want) {
		t.Errorf("the https proxy saw %q; want %q (and never a tunnel to itself)", reqs, want)
	}

	// Without credentials the proxy's refusal is a proxy_407 either way.
	bare, got := l.transport(t, l.tlsProxy.URL(), 0)
	for _, u := range []string{"https://proxy-a.test/x", "http://proxy-b.test/x"} {
		_, err := fetch(t, bare.Client(), u)
		var ne *Error
		if errors.As(err, &ne) {
			if ne.Class != "proxy_407" || ne.Phase != PhaseConnect {
				t.Errorf("%s without credentials: %v; want a proxy_407 in the connect phase", u, err)
			}
		} else if err == nil {
			// http upstreams through a proxy get its answer as theirs, as net/http gives it.
			if s := got.last(t); s.Status != http.StatusProxyAuthRequired {
				t.Errorf("%s without credentials: status %d; want 407", u, s.Status)
			}
		} else {
			t.Errorf("%s without credentials: %v", u, err)
		}
	}
}

// An https:// proxy whose certificate the Transport does not trust fails in the connect
// phase with a class that says it is the proxy's certificate, and a message naming the
// proxy; no request reaches it.
func TestTransportTLSProxyUntrusted(t *testing.T) {
	l := newProxyLab(t)
	stranger, err := lab.NewCA(filepath.Join(t.TempDir(), "stranger.pem"), "untrusted")
	if err != nil {
		t.Fatal(err)
	}
	p := lab.StartForwardProxyTLS(t, stranger)
	tr, got := l.transport(t, p.URL(), 0)
	for _, u := range []string{"https://proxy-a.test/x", "http://proxy-b.test/x"} {
		_, err := fetch(t, tr.Client(), u)
		var ne *Error
		if !errors.As(err, &ne) || ne.Class != "proxy_tls_cert" || ne.Phase != PhaseConnect ||
			!strings.Contains(err.Error(), "proxy "+p.URL()+": TLS handshake") || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s through an untrusted proxy: %v; want proxy_tls_cert in the connect phase naming %s", u, err, p.URL())
		}
		if s := got.last(t); s.ErrClass != "proxy_tls_cert" || s.TLS != 0 {
			t.Errorf("%s: Sample class %q, tls %s; want proxy_tls_cert and no upstream tls", u, s.ErrClass, s.TLS)
		}
	}
	if reqs := p.Requests(); len(reqs) != 0 {
		t.Errorf("the untrusted proxy received %q", reqs)
	}
}

// Through a SOCKS5 proxy, with and without credentials: socks5h:// and socks5:// both leave
// the upstream's name to the proxy, as net/http does (no local lookup; the Sample's dns is
// the proxy's). The upstream's TLS is holoproxy's own inside the tunnel; connect is the
// proxy's.
func TestTransportThroughSOCKS5(t *testing.T) {
	for _, tc := range []struct {
		scheme, user, pass string
		targets            []string // what the proxy is asked to connect to
		lookups            []string // what holoproxy's resolver is asked
	}{
		{"socks5h", "", "", []string{"CONNECT proxy-a.test:443", "CONNECT proxy-b.test:80"}, nil},
		{"socks5h", "egress", "s3cret", []string{"CONNECT proxy-a.test:443", "CONNECT proxy-b.test:80"}, nil},
		{"socks5", "", "", []string{"CONNECT proxy-a.test:443", "CONNECT proxy-b.test:80"}, nil},
		{"socks5", "egress", "s3cret", []string{"CONNECT proxy-a.test:443", "CONNECT proxy-b.test:80"}, nil},
	} {
		name := tc.scheme
		if tc.user != "" {
			name += " with credentials"
		}
		t.Run(name, func(t *testing.T) {
			l := newProxyLab(t)
			u := tc.scheme + "://" + l.socks.Addr()
			if tc.user != "" {
				l.socks.RequireAuth(tc.user, tc.pass)
				u = tc.scheme + "://" + tc.user + ":" + tc.pass + "@" + l.socks.Addr()
			}
			tr, got := l.transport(t, u, 0)
			body, err := fetch(t, tr.Client(), "https://proxy-a.test/m/@v/list")
			if err != nil || body != "from proxy-a.test/m/@v/list" {
				t.Fatalf("https through %s: %q, %v", u, body, err)
			}
			s := got.last(t)
			if s.TLS <= 0 || s.TLSVersion != "TLS 1.3" || s.Connect <= 0 || s.RemoteAddr != l.socks.Addr() {
				t.Errorf("https Sample: tls %s %q, connect %s, remote %q; want the upstream's handshake and a connect to %s",
					s.TLS, s.TLSVersion, s.Connect, s.RemoteAddr, l.socks.Addr())
			}
			if s.DNSBackend != "" {
				t.Errorf("https Sample: dns backend %q; want none (the proxy resolves the upstream)", s.DNSBackend)
			}
			body, err = fetch(t, tr.Client(), "http://proxy-b.test/m/@v/list")
			if err != nil || body != "from proxy-b.test/m/@v/list" {
				t.Fatalf("http through %s: %q, %v", u, body, err)
			}
			if s := got.last(t); s.Connect <= 0 || s.RemoteAddr != l.socks.Addr() || s.TLS != 0 {
				t.Errorf("http Sample: connect %s, remote %q, tls %s; want a connect to %s and no tls", s.Connect, s.RemoteAddr, s.TLS, l.socks.Addr())
			}
			if reqs := l.socks.Requests(); !slices.Equal(reqs, tc.targets) {
				t.Errorf("the SOCKS5 proxy saw %q; want %q", reqs, tc.targets)
			}
			if names := l.dns.names(); !slices.Equal(names, tc.lookups) {
				t.Errorf("holoproxy looked up %q; want %q", names, tc.lookups)
			}
		})
	}
}

// A SOCKS5 proxy that refuses the credentials, wants some the URL lacks, or refuses the
// target: each fails in the connect phase with a proxy_socks class and a message naming the
// proxy (never the password).
func TestTransportSOCKS5Refusals(t *testing.T) {
	l := newProxyLab(t)
	l.socks.RequireAuth("egress", "s3cret")
	for _, tc := range []struct {
		proxy, target, class, msg string
	}{
		{"socks5h://egress:wrong@" + l.socks.Addr(), "https://proxy-a.test/x", ClassProxySOCKSAuth, "authentication failed"},
		{"socks5h://" + l.socks.Addr(), "https://proxy-a.test/x", ClassProxySOCKSAuth, "no acceptable authentication methods"},
		{"socks5://egress:wrong@" + l.socks.Addr(), "http://proxy-b.test/x", ClassProxySOCKSAuth, "authentication failed"},
		{"socks5h://egress:s3cret@" + l.socks.Addr(), "https://proxy-c.test/x", ClassProxySOCKS, "not allowed by ruleset"},
	} {
		tr, got := l.transport(t, tc.proxy, 0)
		_, err := fetch(t, tr.Client(), tc.target)
		var ne *Error
		name := "proxy " + strings.Split(tc.proxy, "://")[0] + "://" + l.socks.Addr()
		if !errors.As(err, &ne) || ne.Class != tc.class || ne.Phase != PhaseConnect ||
			!strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "wrong") {
			t.Errorf("%s via %s: %v; want %s in the connect phase, naming %q, saying %q", tc.target, tc.proxy, err, tc.class, name, tc.msg)
		}
		if s := got.last(t); s.ErrClass != tc.class {
			t.Errorf("%s via %s: Sample class %q; want %s", tc.target, tc.proxy, s.ErrClass, tc.class)
		}
	}
}
