package netobs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func udpResolver(lab *dnsLab, clock *fakeClock, obs DNSObserver) *Resolver {
	b, err := ParseBackend("udp://"+lab.udpAddr, BackendOptions{})
	if err != nil {
		panic(err)
	}
	r := &Resolver{Backend: b, Observer: obs, Timeout: 2 * time.Second}
	if clock != nil {
		r.Now = clock.Now
	}
	return r
}

// N requests to two upstream names over several TTL windows make exactly one query per
// name and type per window; the Samples and the metrics say which lookups were misses.
func TestResolverOneQueryPerTTLWindow(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	res := udpResolver(lab, clock, m)
	res.NegativeTTL = 60 * time.Second // the empty AAAA answers live as long as the A answers
	var got samples
	tr, err := NewTransport(TransportConfig{Resolver: res, Sink: &got})
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	oa, ob := startOrigin(t, nil, h), startOrigin(t, nil, h)
	urls := []string{"http://proxy-a.test:" + oa.port + "/", "http://proxy-b.test:" + ob.port + "/"}

	const windows, perWindow = 4, 10
	ctx := context.Background()
	for w := range windows {
		for i := range perWindow {
			for _, u := range urls {
				// Close the connection so that every request dials, and so resolves.
				if err := get(ctx, tr.Client(), u, true); err != nil {
					t.Fatalf("window %d request %d %s: %v", w, i, u, err)
				}
			}
			clock.Advance(5 * time.Second) // well past MinTTL, still inside the 60s TTL
		}
		clock.Advance(61*time.Second - perWindow*5*time.Second) // next window: the TTL ran out
	}
	for _, name := range []string{"proxy-a.test", "proxy-b.test"} {
		for _, typ := range []string{"A", "AAAA"} {
			if n := lab.count(name, typ); n != windows {
				t.Errorf("%s %s: server saw %d queries, want %d (one per TTL window)", name, typ, n, windows)
			}
		}
	}
	all := got.all()
	if len(all) != windows*perWindow*2 {
		t.Fatalf("got %d Samples, want %d", len(all), windows*perWindow*2)
	}
	misses := 0
	for _, s := range all {
		if s.ErrClass != "" || s.Status != 200 {
			t.Errorf("sample %+v failed", s)
		}
		if s.Reused || s.DNSBackend != "udp://"+lab.udpAddr || s.DNSRcode != RcodeNoError {
			t.Errorf("sample reused=%v backend=%q rcode=%q, want a fresh dial resolved by the lab", s.Reused, s.DNSBackend, s.DNSRcode)
		}
		if s.DNSCache == CacheMiss {
			misses++
		} else if s.DNSCache != CacheHit {
			t.Errorf("DNSCache = %q, want miss or hit", s.DNSCache)
		}
	}
	if misses != windows*2 {
		t.Errorf("%d Samples were DNS misses, want %d", misses, windows*2)
	}
	if v := metricValue(t, reg, "holoproxy_dns_queries_total", map[string]string{"cache": "miss"}); v != windows*2*2 {
		t.Errorf("dns miss counter = %v, want %d", v, windows*2*2)
	}
	if v := metricValue(t, reg, "holoproxy_dns_queries_total", map[string]string{"cache": "hit", "rcode": "NOERROR"}); v != windows*2*2*(perWindow-1) {
		t.Errorf("dns hit counter = %v, want %d", v, windows*2*2*(perWindow-1))
	}
}

// The answer's TTL is clamped to [MinTTL, MaxTTL].
func TestResolverTTLClamp(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		labTTL   uint32
		min, max time.Duration
		want     time.Duration // lifetime of the cached answer
	}{
		{"floor", 1, 30 * time.Second, time.Hour, 30 * time.Second},
		{"ceiling", 7200, 5 * time.Second, 10 * time.Minute, 10 * time.Minute},
		{"as given", 60, 5 * time.Second, time.Hour, 60 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab.mu.Lock()
			lab.ttl = tc.labTTL
			lab.mu.Unlock()
			clock := newFakeClock()
			res := udpResolver(lab, clock, nil)
			res.MinTTL, res.MaxTTL = tc.min, tc.max
			before := lab.count("proxy-a.test", "A")
			l, err := res.LookupIP(ctx, "proxy-a.test")
			if err != nil || l.TTL > tc.want {
				t.Fatalf("lookup: %+v %v", l, err)
			}
			clock.Advance(tc.want - time.Second)
			res.LookupIP(ctx, "proxy-a.test")
			if n := lab.count("proxy-a.test", "A") - before; n != 1 {
				t.Errorf("before the clamped TTL ran out: %d queries, want 1", n)
			}
			clock.Advance(2 * time.Second)
			res.LookupIP(ctx, "proxy-a.test")
			if n := lab.count("proxy-a.test", "A") - before; n != 2 {
				t.Errorf("after the clamped TTL ran out: %d queries, want 2", n)
			}
		})
	}
}

// NXDOMAIN, SERVFAIL, REFUSED and an unanswered query fail the request with the matching
// class and rcode, and NXDOMAIN is cached negatively.
func TestResolverFailureClasses(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	clock := newFakeClock()
	res := udpResolver(lab, clock, nil)
	res.Timeout = 300 * time.Millisecond
	var got samples
	tr, err := NewTransport(TransportConfig{Resolver: res, Sink: &got})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, class, rcode string
	}{
		{"nx.test", ClassDNSNXDomain, RcodeNXDomain},
		{"servfail.test", ClassDNSServFail, RcodeServFail},
		{"refused.test", ClassDNSRefused, RcodeRefused},
		{"drop.test", ClassDNSTimeout, RcodeTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := get(context.Background(), tr.Client(), "http://"+tc.name+":80/x", false)
			if err == nil {
				t.Fatal("request succeeded")
			}
			if c := ClassOf(err); c != tc.class {
				t.Errorf("ClassOf(%v) = %q, want %q", err, c, tc.class)
			}
			s := got.last(t)
			if s.ErrClass != tc.class || s.DNSRcode != tc.rcode {
				t.Errorf("Sample class=%q rcode=%q, want %q %q", s.ErrClass, s.DNSRcode, tc.class, tc.rcode)
			}
			var de *DNSError
			if !errors.As(err, &de) {
				t.Errorf("error %v is not a *DNSError", err)
			}
		})
	}
	// NXDOMAIN is cached for NegativeTTL: a second lookup asks nobody.
	before := lab.count("nx.test", "A")
	if _, err := res.LookupIP(context.Background(), "nx.test"); ClassOf(err) != ClassDNSNXDomain {
		t.Fatalf("second lookup: %v", err)
	}
	if n := lab.count("nx.test", "A"); n != before {
		t.Errorf("cached NXDOMAIN was asked again: %d queries, want %d", n, before)
	}
	clock.Advance(6 * time.Second) // default NegativeTTL is 5s
	res.LookupIP(context.Background(), "nx.test")
	if n := lab.count("nx.test", "A"); n != before+1 {
		t.Errorf("expired NXDOMAIN: %d queries, want %d", n, before+1)
	}
}

// A refresh that fails serves the last good answer, says it is stale, and does not ask
// again before NegativeTTL; once the server heals the answer is fresh again.
func TestResolverServesStale(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	clock := newFakeClock()
	var obs queries
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	res := udpResolver(lab, clock, DNSObservers{&obs, m})
	ctx := context.Background()
	want := []netip.Addr{netip.MustParseAddr("127.0.0.1")}

	l, err := res.LookupIP(ctx, "proxy-a.test")
	if err != nil || l.Cache != CacheMiss || !slices.Equal(l.Addrs, want) {
		t.Fatalf("first lookup: %+v, %v", l, err)
	}
	lab.setMode("proxy-a.test", "servfail")
	clock.Advance(61 * time.Second)
	l, err = res.LookupIP(ctx, "proxy-a.test")
	if err != nil || l.Cache != CacheStale || !slices.Equal(l.Addrs, want) {
		t.Fatalf("lookup with failing refresh: %+v, %v; want the stale answer", l, err)
	}
	if n := lab.count("proxy-a.test", "A"); n != 2 {
		t.Errorf("server saw %d A queries, want 2", n)
	}
	// Within the recheck interval the stale answer is served without asking.
	clock.Advance(time.Second)
	if l, err = res.LookupIP(ctx, "proxy-a.test"); err != nil || l.Cache != CacheStale {
		t.Errorf("lookup in recheck interval: %+v, %v", l, err)
	}
	if n := lab.count("proxy-a.test", "A"); n != 2 {
		t.Errorf("server saw %d A queries during the recheck interval, want 2", n)
	}
	// Through the Transport, the Sample says stale too.
	var got samples
	tr, _ := NewTransport(TransportConfig{Resolver: res, Sink: &got})
	o := startOrigin(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	if err := get(ctx, tr.Client(), "http://proxy-a.test:"+o.port+"/", false); err != nil {
		t.Fatal(err)
	}
	if s := got.last(t); s.DNSCache != CacheStale || s.ErrClass != "" {
		t.Errorf("Sample DNSCache=%q ErrClass=%q, want stale and no error", s.DNSCache, s.ErrClass)
	}
	// The server heals: after the recheck interval the answer is fresh again.
	lab.setMode("proxy-a.test", "")
	clock.Advance(10 * time.Second)
	if l, err = res.LookupIP(ctx, "proxy-a.test"); err != nil || l.Cache != CacheMiss {
		t.Errorf("lookup after healing: %+v, %v; want a miss", l, err)
	}
	stale := 0
	obs.mu.Lock()
	for _, q := range obs.q {
		if q.Cache == CacheStale && q.Type == "A" && q.Rcode == RcodeServFail && q.Latency > 0 {
			stale++ // the refresh that failed is the one with a latency
		}
	}
	obs.mu.Unlock()
	if stale != 1 {
		t.Errorf("%d stale A records carry the failed refresh's SERVFAIL, want 1", stale)
	}
	if v := metricValue(t, reg, "holoproxy_dns_queries_total", map[string]string{"cache": "stale", "rcode": "SERVFAIL"}); v < 1 {
		t.Errorf("stale counter with SERVFAIL = %v, want >= 1", v)
	}
	// Without stale serving the same failure is an error.
	res2 := udpResolver(lab, clock, nil)
	res2.StaleFor = -1
	res2.LookupIP(ctx, "proxy-b.test")
	lab.setMode("proxy-b.test", "servfail")
	clock.Advance(61 * time.Second)
	if _, err := res2.LookupIP(ctx, "proxy-b.test"); ClassOf(err) != ClassDNSServFail {
		t.Errorf("StaleFor<0: err %v, want class %s", err, ClassDNSServFail)
	}
}

// Concurrent lookups of one name make one query; the others are told they coalesced.
func TestResolverCoalesces(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	gate := make(chan struct{})
	lab.mu.Lock()
	lab.gate["proxy-c.test"] = gate
	lab.mu.Unlock()
	var obs queries
	res := udpResolver(lab, newFakeClock(), &obs)
	res.Timeout = 30 * time.Second

	const n = 10
	var wg, started sync.WaitGroup
	errs := make(chan error, n)
	started.Add(n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			l, err := res.LookupIP(context.Background(), "proxy-c.test")
			if err == nil && len(l.Addrs) != 1 {
				err = fmt.Errorf("addrs %v", l.Addrs)
			}
			errs <- err
		}()
	}
	started.Wait()
	// Wait until the one query reached the server, then give the followers a moment to
	// queue behind it before the answer is released.
	deadline := time.Now().Add(10 * time.Second)
	for lab.count("proxy-c.test", "A") == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	lab.mu.Lock()
	close(gate)
	delete(lab.gate, "proxy-c.test")
	lab.mu.Unlock()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if c := lab.count("proxy-c.test", "A"); c != 1 {
		t.Errorf("server saw %d A queries for %d concurrent lookups, want 1", c, n)
	}
	var a = map[string]int{}
	obs.mu.Lock()
	for _, q := range obs.q {
		if q.Type == "A" {
			a[q.Cache]++
		}
	}
	obs.mu.Unlock()
	if a[CacheMiss] != 1 || a[CacheCoalesced] < 1 || a[CacheMiss]+a[CacheCoalesced]+a[CacheHit] != n {
		t.Errorf("A lookups by cache state %v: want 1 miss and the rest coalesced (or hits)", a)
	}
}

// Every backend gives the same answers as UDP, and DoT keeps one connection.
func TestBackendsAgree(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	opts := BackendOptions{TLSConfig: &tls.Config{RootCAs: ca.pool}}
	specs := []string{
		"udp://" + lab.udpAddr,
		"tcp://" + lab.tcpAddr,
		"tls://" + lab.dotAddr,
		lab.dohURL,
	}
	type result struct {
		addrs []netip.Addr
		class string
	}
	var want map[string]result
	for _, spec := range specs {
		b, err := ParseBackend(spec, opts)
		if err != nil {
			t.Fatal(err)
		}
		if b.String() != spec {
			t.Errorf("backend %q names itself %q", spec, b.String())
		}
		res := &Resolver{Backend: b, Timeout: 5 * time.Second}
		got := map[string]result{}
		for _, name := range []string{"proxy-a.test", "proxy-b.test", "nx.test", "servfail.test"} {
			l, err := res.LookupIP(context.Background(), name)
			got[name] = result{l.Addrs, ClassOf(err)}
			if err == nil && l.Backend != spec {
				t.Errorf("%s: Lookup.Backend = %q", spec, l.Backend)
			}
		}
		if got["proxy-a.test"].class != "" || len(got["proxy-a.test"].addrs) != 1 || got["nx.test"].class != ClassDNSNXDomain ||
			got["servfail.test"].class != ClassDNSServFail {
			t.Errorf("%s: answers %v", spec, got)
		}
		if want == nil {
			want = got
			continue
		}
		for name, w := range want {
			if g := got[name]; !slices.Equal(g.addrs, w.addrs) || g.class != w.class {
				t.Errorf("%s: %s = %v, UDP said %v", spec, name, g, w)
			}
		}
	}
	if n := lab.dotAccepts.Load(); n != 1 {
		t.Errorf("DoT server accepted %d connections for 8 queries, want 1 (kept alive)", n)
	}
}

func TestParseBackend(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"system", "system"},
		{"", "system"},
		{"udp://127.0.0.1", "udp://127.0.0.1:53"},
		{"tcp://[::1]:5353", "tcp://[::1]:5353"},
		{"tls://dns.test", "tls://dns.test:853"},
		{"https://dns.test/dns-query", "https://dns.test/dns-query"},
		// Credentials for the DoH server stay out of its name (metric labels, logs).
		{"https://u:s3cret@dns.test/dns-query", "https://xxxxx@dns.test/dns-query"},
		{"ftp://dns.test", ""},
		{"udp://", ""},
	} {
		b, err := ParseBackend(tc.spec, BackendOptions{})
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseBackend(%q) = %v, want an error", tc.spec, b)
			}
			continue
		}
		if err != nil || b.String() != tc.want {
			t.Errorf("ParseBackend(%q) = %v, %v; want %s", tc.spec, b, err, tc.want)
		}
	}
}

// FuzzParseBackend checks that a --dns value is read or refused with a one-line error,
// and that what is read names a server to ask: a host and a port of 1 to 65535 for udp,
// tcp and tls; an https URL with a host for DNS over HTTPS. Its name (String) reads back
// as the same backend.
func FuzzParseBackend(f *testing.F) {
	for _, s := range []string{
		"system", "", "udp://127.0.0.1", "tcp://[::1]:5353", "tls://dns.test", "https://dns.test/dns-query",
		"ftp://dns.test", "udp://", "udp://:53", "tls://:853", "https://:443/dns-query", "udp://dns.test:0",
		"udp://dns.test:99999", "tcp://dns.test:", "tls://[::1]", "https://u:p@dns.test/q?x=1#f", "udp://dns.test/path",
		"udp://dns.test:53x", "UDP://dns.test", "dns.test:53", "https:///dns-query", "udp://[fe80::1%25eth0]:53",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		b, err := ParseBackend(spec, BackendOptions{})
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("ParseBackend(%q): error of more than one line: %q", spec, msg)
			}
			return
		}
		switch b := b.(type) {
		case systemBackend:
		case *wireBackend, *dotBackend:
			var addr string
			if w, ok := b.(*wireBackend); ok {
				addr = w.addr
			} else {
				addr = b.(*dotBackend).addr
			}
			host, port, err := net.SplitHostPort(addr)
			n, perr := strconv.Atoi(port)
			if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				t.Fatalf("ParseBackend(%q) asks %q, not a host and port", spec, addr)
			}
		case *DoHBackend:
			u, err := url.Parse(b.URL)
			if err != nil || u.Scheme != "https" || u.Hostname() == "" {
				t.Fatalf("ParseBackend(%q) asks %q, not an https URL with a host", spec, b.URL)
			}
		default:
			t.Fatalf("ParseBackend(%q) = %T", spec, b)
		}
		again, err := ParseBackend(b.String(), BackendOptions{})
		if err != nil || again.String() != b.String() {
			t.Fatalf("ParseBackend(%q) is named %q, which reads as %v, %v", spec, b.String(), again, err)
		}
	})
}
