package e2e

import (
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// testDNS is a UDP DNS server on 127.0.0.1 that answers A queries for its names with
// 127.0.0.1 (no AAAA records) and counts the queries by name.
type testDNS struct {
	addr  string
	names map[string]bool
	mu    sync.Mutex
	asked map[string]int
}

func newTestDNS(t *testing.T, names ...string) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{addr: pc.LocalAddr().String(), names: map[string]bool{}, asked: map[string]int{}}
	for _, n := range names {
		d.names[dns.Fqdn(n)] = true
	}
	srv := &dns.Server{PacketConn: pc, Handler: d}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	if len(q.Question) == 1 {
		qq := q.Question[0]
		d.mu.Lock()
		d.asked[strings.TrimSuffix(qq.Name, ".")]++
		d.mu.Unlock()
		switch {
		case !d.names[qq.Name]:
			m.Rcode = dns.RcodeNameError
		case qq.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(127, 0, 0, 1)})
		}
	}
	w.WriteMsg(m)
}

func (d *testDNS) count(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked[name]
}

// TestServeDNSAndCAFile: with --dns udp://..., upstream names are resolved by that server
// (a name it alone knows works, and it is asked); with --ca-file, an HTTPS upstream whose
// certificate that file vouches for is trusted, and without it the fill fails.
func TestServeDNSAndCAFile(t *testing.T) {
	mods := []modtree.Module{{Path: "mods.test/dns", Version: "v1.0.0"}}
	org := newOrigin(t, mods)
	const key = "mods.test/dns/@v/v1.0.0.mod"

	t.Run("dns", func(t *testing.T) {
		d := newTestDNS(t, "proxy-a.test")
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(org.URL, "http://"))
		upstream := "http://proxy-a.test:" + port
		p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + upstream, "--dns=udp://" + d.addr}, nil)
		status, body, h := get(t, "http://"+p.addr+"/"+key)
		if status != http.StatusOK {
			t.Fatalf("GET %s via %s: %d %s", key, upstream, status, body)
		}
		if d.count("proxy-a.test") == 0 {
			t.Errorf("the --dns server was never asked for proxy-a.test")
		}
		if !strings.Contains(h.Get("Server-Timing"), fmt.Sprintf("upstream;desc=%q", upstream)) {
			t.Errorf("Server-Timing %q does not name %s", h.Get("Server-Timing"), upstream)
		}
		m := scrape(t, p.addr)
		var queries float64
		for series, v := range m {
			if strings.HasPrefix(series, "holoproxy_dns_queries_total{") && strings.Contains(series, `backend="udp://`+d.addr+`"`) {
				queries += v
			}
		}
		if queries == 0 {
			t.Errorf("/metrics counts no DNS query on backend udp://%s", d.addr)
		}
	})

	t.Run("ca-file", func(t *testing.T) {
		tlsOrg := httptest.NewUnstartedServer(org)
		tlsOrg.StartTLS()
		t.Cleanup(tlsOrg.Close)
		caFile := filepath.Join(t.TempDir(), "ca.pem")
		pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsOrg.Certificate().Raw})
		if err := os.WriteFile(caFile, pemData, 0o644); err != nil {
			t.Fatal(err)
		}
		trusted := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + tlsOrg.URL, "--ca-file=" + caFile}, nil)
		if status, body, _ := get(t, "http://"+trusted.addr+"/"+key); status != http.StatusOK {
			t.Errorf("with --ca-file: GET %s: %d %s; want 200", key, status, body)
		}
		untrusted := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + tlsOrg.URL}, nil)
		status, body, _ := get(t, "http://"+untrusted.addr+"/"+key)
		if status != http.StatusBadGateway || !strings.Contains(string(body), "certificate") {
			t.Errorf("without --ca-file: GET %s: %d %q; want 502 naming the certificate", key, status, body)
		}
	})
}
