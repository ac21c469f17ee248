package netobs

// Test fixtures: a throwaway CA, a DNS server on loopback (UDP, TCP, DoT, DoH) that counts
// the queries it receives, TLS origins that count connections, a fake clock and collecting
// sinks. Everything listens on 127.0.0.1 and stops with the test.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
	pemFile string
}

var serial atomic.Int64

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: "holoproxy test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pool: pool, pemFile: f}
}

// issue makes a leaf certificate for the given DNS names and IPs, valid from nb to na
// (zero means now-1h .. now+24h). client makes it a client certificate.
func (ca *testCA) issue(t testing.TB, names []string, ips []net.IP, nb, na time.Time, client bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if nb.IsZero() {
		nb, na = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: "holoproxy test leaf"},
		DNSNames:     names,
		IPAddresses:  ips,
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// dnsLab is an authoritative-looking DNS server for the test zone. Names in a are answered
// with their A record (TTL ttl) and an empty AAAA answer; names in mode are answered with
// that failure ("servfail", "refused", "drop" for no answer at all); every other name is
// NXDOMAIN. gate, if set for a name, holds its A answer until the channel is closed.
type dnsLab struct {
	mu     sync.Mutex
	a      map[string]netip.Addr
	ttl    uint32
	mode   map[string]string
	gate   map[string]chan struct{}
	counts map[string]int // "name/TYPE" -> queries received

	udpAddr, tcpAddr, dotAddr string
	dohURL                    string
	dotAccepts                atomic.Int64
}

func newDNSLab(t testing.TB, ca *testCA) *dnsLab {
	t.Helper()
	l := &dnsLab{
		a: map[string]netip.Addr{
			"proxy-a.test": netip.MustParseAddr("127.0.0.1"),
			"proxy-b.test": netip.MustParseAddr("127.0.0.1"),
			"proxy-c.test": netip.MustParseAddr("127.0.0.1"),
		},
		ttl:    60,
		mode:   map[string]string{"servfail.test": "servfail", "refused.test": "refused", "drop.test": "drop"},
		gate:   map[string]chan struct{}{},
		counts: map[string]int{},
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.issue(t, []string{"dns.test"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Time{}, time.Time{}, false)
	dotLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	l.udpAddr, l.tcpAddr, l.dotAddr = pc.LocalAddr().String(), ln.Addr().String(), dotLn.Addr().String()
	servers := []*dns.Server{
		{PacketConn: pc, Handler: l},
		{Listener: ln, Handler: l},
		{Listener: &countingListener{Listener: dotLn, n: &l.dotAccepts}, Handler: l, IdleTimeout: func() time.Duration { return time.Minute }},
	}
	for _, s := range servers {
		go s.ActivateAndServe()
	}
	doh := httptest.NewUnstartedServer(http.HandlerFunc(l.serveDoH))
	doh.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	doh.EnableHTTP2 = true
	doh.StartTLS()
	l.dohURL = doh.URL + "/dns-query"
	t.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown()
		}
		doh.Close()
		l.release()
	})
	return l
}

// release opens every gate, so no handler stays blocked.
func (l *dnsLab) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, g := range l.gate {
		close(g)
		delete(l.gate, n)
	}
}

func (l *dnsLab) setMode(name, mode string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if mode == "" {
		delete(l.mode, name)
	} else {
		l.mode[name] = mode
	}
}

func (l *dnsLab) count(name, typ string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[name+"/"+typ]
}

// answer builds the reply to r, or nil to send none.
func (l *dnsLab) answer(r *dns.Msg) *dns.Msg {
	q := r.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	l.mu.Lock()
	l.counts[name+"/"+dns.TypeToString[q.Qtype]]++
	mode, ip, known, ttl := l.mode[name], l.a[name], false, l.ttl
	_, known = l.a[name]
	gate := l.gate[name]
	l.mu.Unlock()
	if gate != nil && q.Qtype == dns.TypeA {
		<-gate
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	switch {
	case mode == "drop":
		return nil
	case mode == "servfail":
		m.Rcode = dns.RcodeServerFailure
	case mode == "refused":
		m.Rcode = dns.RcodeRefused
	case !known:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   ip.AsSlice(),
		})
	}
	return m
}

func (l *dnsLab) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if m := l.answer(r); m != nil {
		w.WriteMsg(m)
	}
}

func (l *dnsLab) serveDoH(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/dns-message" {
		http.Error(w, "want a POST of application/dns-message", http.StatusBadRequest)
		return
	}
	b, err := io.ReadAll(req.Body)
	r := new(dns.Msg)
	if err == nil {
		err = r.Unpack(b)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m := l.answer(r)
	if m == nil {
		<-req.Context().Done()
		return
	}
	out, _ := m.Pack()
	w.Header().Set("Content-Type", "application/dns-message")
	w.Write(out)
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (c *countingListener) Accept() (net.Conn, error) {
	conn, err := c.Listener.Accept()
	if err == nil {
		c.n.Add(1)
	}
	return conn, err
}

// origin is an HTTPS (or plain HTTP) server on 127.0.0.1 that counts the connections it
// accepted and can close them all.
type origin struct {
	srv    *http.Server
	port   string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	opened atomic.Int64
}

func startOrigin(t testing.TB, cfg *tls.Config, h http.Handler) *origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{conns: map[net.Conn]bool{}}
	_, o.port, _ = net.SplitHostPort(ln.Addr().String())
	o.srv = &http.Server{Handler: h, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0), ConnState: o.connState}
	go func() {
		if cfg != nil {
			o.srv.ServeTLS(ln, "", "")
		} else {
			o.srv.Serve(ln)
		}
	}()
	t.Cleanup(func() { o.srv.Close() })
	return o
}

func (o *origin) connState(c net.Conn, st http.ConnState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch st {
	case http.StateNew:
		o.opened.Add(1)
		o.conns[c] = true
	case http.StateClosed, http.StateHijacked:
		delete(o.conns, c)
	}
}

// closeConns closes every connection the origin holds, as a server dropping idle ones.
func (o *origin) closeConns() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for c := range o.conns {
		c.Close()
	}
}

// fakeClock is an injectable clock for the Resolver.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// samples collects Samples.
type samples struct {
	mu sync.Mutex
	s  []Sample
}

func (c *samples) Observe(s Sample) {
	c.mu.Lock()
	c.s = append(c.s, s)
	c.mu.Unlock()
}

func (c *samples) all() []Sample {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Sample(nil), c.s...)
}

func (c *samples) last(t testing.TB) Sample {
	t.Helper()
	all := c.all()
	if len(all) == 0 {
		t.Fatal("no Sample recorded")
	}
	return all[len(all)-1]
}

// queries collects DNSQuery records.
type queries struct {
	mu sync.Mutex
	q  []DNSQuery
}

func (c *queries) ObserveDNS(q DNSQuery) {
	c.mu.Lock()
	c.q = append(c.q, q)
	c.mu.Unlock()
}

func (c *queries) byCache(name string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]int{}
	for _, q := range c.q {
		if q.Name == name {
			m[q.Cache]++
		}
	}
	return m
}

// metricValue returns the value of the counter or the sample count of the histogram name
// whose labels include want, summed over the matching series.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, lp := range m.Label {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// get performs a GET through c and reads the whole body, returning the body error if any.
func get(ctx context.Context, c *http.Client, url string, closeConn bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Close = closeConn
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}
