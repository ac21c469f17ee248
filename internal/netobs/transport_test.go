package netobs

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// newLabTransport returns a Transport that resolves through lab and trusts ca (through
// CAFile, as an operator would configure it).
func newLabTransport(t testing.TB, lab *dnsLab, ca *testCA, cfg TransportConfig) (*Transport, *samples) {
	t.Helper()
	var got samples
	if cfg.Resolver == nil {
		cfg.Resolver = udpResolver(lab, nil, nil)
	}
	cfg.CAFile = ca.pemFile
	cfg.Sink = &got
	tr, err := NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr, &got
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })

// Real handshakes against origins configured to succeed or fail in one way each: the
// Sample records what was negotiated, or the right class for the failure.
func TestTLSDetailsAndAlerts(t *testing.T) {
	ca := newCA(t)
	otherCA := newCA(t)
	lab := newDNSLab(t, ca)
	names := []string{"proxy-a.test"}
	good := ca.issue(t, names, nil, time.Time{}, time.Time{}, false)
	expired := ca.issue(t, names, nil, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), false)
	wrongName := ca.issue(t, []string{"other.test"}, nil, time.Time{}, time.Time{}, false)
	clientFromOtherCA := otherCA.issue(t, []string{"client.test"}, nil, time.Time{}, time.Time{}, true)

	for _, tc := range []struct {
		name      string
		server    *tls.Config
		client    *tls.Config // base client config (nil: defaults)
		version   string
		group     string
		hrr       bool
		class     string
		errSubstr string
	}{
		{name: "tls12", server: &tls.Config{Certificates: []tls.Certificate{good}, MaxVersion: tls.VersionTLS12},
			version: "TLS 1.2", group: "X25519"},
		{name: "tls13", server: &tls.Config{Certificates: []tls.Certificate{good}},
			version: "TLS 1.3", group: "X25519MLKEM768"},
		{name: "p256-only forces HRR", server: &tls.Config{Certificates: []tls.Certificate{good}, CurvePreferences: []tls.CurveID{tls.CurveP256}},
			version: "TLS 1.3", group: "P-256", hrr: true},
		{name: "expired cert", server: &tls.Config{Certificates: []tls.Certificate{expired}}, class: ClassTLSCert},
		{name: "wrong name", server: &tls.Config{Certificates: []tls.Certificate{wrongName}}, class: ClassTLSCert},
		{name: "unknown CA", server: &tls.Config{Certificates: []tls.Certificate{otherCA.issue(t, names, nil, time.Time{}, time.Time{}, false)}},
			class: ClassTLSCert},
		{name: "no cert for name", server: &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }},
			class: TLSAlertClass("unrecognized_name"), errSubstr: "remote error: tls: unrecognized name"},
		{name: "protocol version mismatch", server: &tls.Config{Certificates: []tls.Certificate{good}, MinVersion: tls.VersionTLS13},
			client: &tls.Config{MaxVersion: tls.VersionTLS12}, class: TLSAlertClass("protocol_version")},
		{name: "client cert from unknown CA", server: &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool},
			client: &tls.Config{Certificates: []tls.Certificate{clientFromOtherCA}}, class: TLSAlertClass("unknown_ca"),
			errSubstr: "remote error: tls: unknown certificate authority"},
		{name: "client cert missing", server: &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool},
			class: TLSAlertClass("certificate_required"), errSubstr: "remote error: tls: certificate required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startOrigin(t, tc.server, okHandler)
			tr, got := newLabTransport(t, lab, ca, TransportConfig{TLSConfig: tc.client})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := get(ctx, tr.Client(), "https://proxy-a.test:"+o.port+"/", false)
			s := got.last(t)
			if tc.class != "" {
				if err == nil {
					t.Fatal("request succeeded, want a failure")
				}
				if s.ErrClass != tc.class || ClassOf(err) != tc.class {
					t.Errorf("class: Sample %q, ClassOf %q, want %q (err %v)", s.ErrClass, ClassOf(err), tc.class, err)
				}
				if tc.errSubstr != "" && !strings.Contains(s.Err, tc.errSubstr) {
					t.Errorf("Sample.Err = %q, want it to contain %q", s.Err, tc.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.TLSVersion != tc.version || s.TLSCurve != tc.group || s.TLSHRR != tc.hrr {
				t.Errorf("version %q group %q hrr %v, want %q %q %v", s.TLSVersion, s.TLSCurve, s.TLSHRR, tc.version, tc.group, tc.hrr)
			}
			if s.ALPN != "h2" || s.Proto != "HTTP/2.0" || s.PeerChainLen != 1 || s.TLSCipher == "" || s.TLSResumed || s.OCSPStapled {
				t.Errorf("alpn %q proto %q chain %d cipher %q resumed %v ocsp %v", s.ALPN, s.Proto, s.PeerChainLen, s.TLSCipher, s.TLSResumed, s.OCSPStapled)
			}
			if s.TLS <= 0 || s.Connect <= 0 || s.DNSCache != CacheMiss || s.DNSRcode != RcodeNoError || s.Status != 200 || s.Bytes != 2 {
				t.Errorf("sample phases/outcome: %+v", s)
			}
		})
	}
}

// 500 sequential requests to an HTTP/2 upstream share one connection; after the server
// drops it, the reconnect resumes the TLS session.
func TestOneConnectionAndResumption(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	good := ca.issue(t, []string{"proxy-a.test"}, nil, time.Time{}, time.Time{}, false)
	o := startOrigin(t, &tls.Config{Certificates: []tls.Certificate{good}}, okHandler)
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	var got samples
	tr, err := NewTransport(TransportConfig{Resolver: udpResolver(lab, nil, nil), CAFile: ca.pemFile, Sink: Sinks{&got, m}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	url := "https://proxy-a.test:" + o.port + "/"
	ctx := context.Background()
	const n = 500
	for i := range n {
		if err := get(ctx, tr.Client(), url, false); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if c := o.opened.Load(); c != 1 {
		t.Fatalf("%d requests opened %d connections, want 1", n, c)
	}
	reused := 0
	for _, s := range got.all() {
		if s.Reused {
			reused++
			if s.Connect != 0 || s.TLSVersion != "" {
				t.Errorf("reused Sample carries dial figures: %+v", s)
			}
		}
	}
	if reused != n-1 {
		t.Errorf("%d Samples reused the connection, want %d", reused, n-1)
	}
	if v := metricValue(t, reg, "holoproxy_upstream_connections_total", map[string]string{"state": "reused"}); v != n-1 {
		t.Errorf("reused connections metric = %v, want %d", v, n-1)
	}

	o.closeConns()
	// The client learns of the close asynchronously; retry until a request lands on a new
	// connection (bounded).
	var s Sample
	for i := 0; i < 50; i++ {
		if err := get(ctx, tr.Client(), url, false); err != nil {
			continue // the request raced the close
		}
		if s = got.last(t); !s.Reused {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.Reused || !s.TLSResumed || s.TLSVersion != "TLS 1.3" {
		t.Errorf("after reconnect: reused %v resumed %v version %q, want a new, resumed TLS 1.3 connection", s.Reused, s.TLSResumed, s.TLSVersion)
	}
	if c := o.opened.Load(); c != 2 {
		t.Errorf("origin saw %d connections, want 2", c)
	}
	if v := metricValue(t, reg, "holoproxy_upstream_tls_handshakes_total", map[string]string{"resumed": "true"}); v != 1 {
		t.Errorf("resumed handshakes metric = %v, want 1", v)
	}
}

// Each transport-level failure gets its class, and the phase timeouts cut the exchange
// well before the caller's own deadline.
func TestFailureClasses(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	tr, got := newLabTransport(t, lab, ca, TransportConfig{
		FirstByteTimeout: 300 * time.Millisecond,
		BodyIdleTimeout:  300 * time.Millisecond,
	})
	const callerTimeout = 60 * time.Second

	// A port nobody listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	_, closedPort, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()

	// Accepts and reads, never answers.
	silent := rawServer(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
	})
	// Sends the header and part of the body, then stalls.
	stall := startOrigin(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	// Promises 1000 bytes, sends 5 and closes.
	short := rawServer(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nshort")
		c.Close()
	})

	for _, tc := range []struct {
		name, url, class string
		phase            Phase
	}{
		{"refused", "http://proxy-a.test:" + closedPort + "/", ClassTCPRefused, PhaseConnect},
		{"silent server", "http://proxy-a.test:" + silent + "/", ClassTimeout, PhaseTTFB},
		{"stalled body", "http://proxy-a.test:" + stall.port + "/", ClassTimeout, PhaseTransfer},
		{"truncated body", "http://proxy-a.test:" + short + "/", ClassBodyTruncated, PhaseTransfer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), callerTimeout)
			defer cancel()
			start := time.Now()
			err := get(ctx, tr.Client(), tc.url, false)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("request succeeded")
			}
			var oe *Error
			if !errors.As(err, &oe) || oe.Class != tc.class || oe.Phase != tc.phase {
				t.Errorf("err %v: want *Error class %q phase %q", err, tc.class, tc.phase)
			}
			if s := got.last(t); s.ErrClass != tc.class {
				t.Errorf("Sample.ErrClass = %q, want %q", s.ErrClass, tc.class)
			}
			// The point of the phase timeouts: cut long before the caller gives up.
			if elapsed > callerTimeout/4 {
				t.Errorf("took %v, want well under the caller's %v", elapsed, callerTimeout)
			}
		})
	}
	if s := got.all(); len(s) > 0 {
		for _, x := range s {
			if x.ErrClass == ClassBodyTruncated && x.Bytes != 5 {
				t.Errorf("truncated Sample counted %d bytes, want 5", x.Bytes)
			}
		}
	}
}

// rawServer accepts TCP connections on 127.0.0.1 and hands each to serve; it returns the port.
func rawServer(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case <-done:
				c.Close()
				return
			default:
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go serve(c)
		}
	}()
	t.Cleanup(func() {
		close(done)
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// A server that accepts TCP but never speaks TLS is cut at the TLS handshake timeout.
func TestTLSHandshakeTimeout(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	tr, got := newLabTransport(t, lab, ca, TransportConfig{TLSTimeout: 300 * time.Millisecond})
	mute := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	err := get(ctx, tr.Client(), "https://proxy-a.test:"+mute+"/", false)
	var oe *Error
	if !errors.As(err, &oe) || oe.Class != ClassTimeout || oe.Phase != PhaseTLS {
		t.Fatalf("err %v: want *Error class timeout phase tls", err)
	}
	if s := got.last(t); s.ErrClass != ClassTimeout || s.TLS <= 0 || s.Connect <= 0 {
		t.Errorf("Sample class %q tls %v connect %v", s.ErrClass, s.TLS, s.Connect)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("took %v, want it cut well before the caller's 60s", el)
	}
}

// NewTransport hands its own client to a DoH backend that has none, so DNS over HTTPS
// shares the pool, the HTTP/2 connection and the CA file of every upstream.
func TestDoHSharesTransport(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	b, err := ParseBackend(lab.dohURL, BackendOptions{}) // no roots: only the Transport's CA file trusts the server
	if err != nil {
		t.Fatal(err)
	}
	doh := b.(*DoHBackend)
	res := &Resolver{Backend: doh}
	tr, got := newLabTransport(t, lab, ca, TransportConfig{Resolver: res})
	if doh.Client == nil {
		t.Fatal("NewTransport did not give the DoH backend its client")
	}
	o := startOrigin(t, nil, okHandler)
	if err := get(context.Background(), tr.Client(), "http://proxy-b.test:"+o.port+"/", false); err != nil {
		t.Fatal(err)
	}
	if s := got.last(t); s.DNSBackend != lab.dohURL || s.DNSCache != CacheMiss || s.DNSRcode != RcodeNoError {
		t.Errorf("Sample DNS backend %q cache %q rcode %q", s.DNSBackend, s.DNSCache, s.DNSRcode)
	}
}
