package netobs

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// proxyLab is an https upstream named proxy-a.test and an http one named proxy-b.test,
// both on loopback, reachable only through a forward proxy that knows those names.
type proxyLab struct {
	proxy *lab.ForwardProxy
	ca    *testCA
}

func newProxyLab(t *testing.T) *proxyLab {
	t.Helper()
	ca := newCA(t)
	cert := ca.issue(t, []string{"proxy-a.test"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false)
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("from " + r.Host + r.URL.Path)) })
	a := startOrigin(t, &tls.Config{Certificates: []tls.Certificate{cert}}, answer)
	b := startOrigin(t, nil, answer)
	p := lab.StartForwardProxy(t)
	p.Route("proxy-a.test:443", "127.0.0.1:"+a.port)
	p.Route("proxy-b.test:80", "127.0.0.1:"+b.port)
	return &proxyLab{proxy: p, ca: ca}
}

// transport returns a Transport that sends every upstream through proxy (a URL) and
// collects its Samples.
func (l *proxyLab) transport(t *testing.T, proxy string, connectTimeout time.Duration) (*Transport, *samples) {
	t.Helper()
	pu, err := url.Parse(proxy)
	if err != nil {
		t.Fatal(err)
	}
	var got samples
	tr, err := NewTransport(TransportConfig{
		CAFile: l.ca.pemFile, Sink: &got, ConnectTimeout: connectTimeout,
		Proxy: func(*url.URL) (*url.URL, error) { return pu, nil },
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

	socks, _ := l.transport(t, "socks5://127.0.0.1:1080", 0)
	if _, err := fetch(t, socks.Client(), "https://proxy-a.test/x"); err == nil || !strings.Contains(err.Error(), "only http:// forward proxies") {
		t.Errorf("a socks5 proxy: %v; want a clear refusal", err)
	}
}

// A proxy that accepts the connection and never answers the CONNECT costs the connect
// timeout, not the caller's patience.
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
	tr, _ := l.transport(t, "http://"+ln.Addr().String(), 300*time.Millisecond)
	start := time.Now()
	_, err = fetch(t, tr.Client(), "https://proxy-a.test/x")
	var ne *Error
	if !errors.As(err, &ne) || ne.Class != ClassTCPTimeout || ne.Phase != PhaseConnect {
		t.Errorf("hanging proxy: %v; want a tcp_timeout in the connect phase", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("hanging proxy took %s; connect timeout 300ms", took)
	}
}
