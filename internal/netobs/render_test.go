package netobs

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTLSAlertNames(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New("remote error: tls: unrecognized name"), "tls_alert:unrecognized_name"},
		{errors.New("remote error: tls: protocol version not supported"), "tls_alert:protocol_version"},
		{errors.New("remote error: tls: unknown certificate authority"), "tls_alert:unknown_ca"},
		{errors.New("remote error: tls: bad certificate"), "tls_alert:bad_certificate"},
		{errors.New("remote error: tls: bad certificate status response"), "tls_alert:bad_certificate_status_response"},
		{errors.New("remote error: tls: handshake failure"), "tls_alert:handshake_failure"},
		{errors.New("remote error: tls: bad record MAC"), "tls_alert:bad_record_mac"},
		{fmt.Errorf("Get \"https://proxy-a.test/\": %w", errors.New("remote error: tls: certificate required")), "tls_alert:certificate_required"},
		{errors.New("remote error: tls: alert(254)"), "tls_alert:alert_254"},
		{tls.AlertError(40), "tls_alert:handshake_failure"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), ClassTCPRefused},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), ClassTCPReset},
		{fmt.Errorf("body: %w", io.ErrUnexpectedEOF), ClassBodyTruncated},
		{context.Canceled, ClassCanceled},
		{context.DeadlineExceeded, ClassTimeout},
		{&DNSError{Rcode: RcodeNXDomain}, ClassDNSNXDomain},
		{errors.New("tls: server selected unsupported protocol version 301"), ClassTLSOther},
		{errors.New("something else"), ClassOther},
		{nil, ""},
	} {
		if got := ClassOf(tc.err); got != tc.want {
			t.Errorf("ClassOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	// Every alert crypto/tls has a text for maps to a name.
	if len(alertNames) < 30 {
		t.Errorf("only %d alert texts mapped", len(alertNames))
	}
}

func TestServerTiming(t *testing.T) {
	s := Sample{
		Upstream: `https://proxy-a.test/"x"`,
		DNS:      1500 * time.Microsecond, Connect: 250 * time.Microsecond, TLS: 3 * time.Millisecond,
		TTFB: 20 * time.Millisecond, Transfer: 1234567 * time.Nanosecond,
	}
	want := `dns;dur=1.5, connect;dur=0.25, tls;dur=3, ttfb;dur=20, transfer;dur=1.234, upstream;desc="https://proxy-a.test/\"x\""`
	if got := ServerTiming(s); got != want {
		t.Errorf("ServerTiming:\n got %s\nwant %s", got, want)
	}
	if got := ServerTiming(Sample{Host: "proxy-b.test:443"}); got != `dns;dur=0, connect;dur=0, tls;dur=0, ttfb;dur=0, transfer;dur=0, upstream;desc="proxy-b.test:443"` {
		t.Errorf("ServerTiming of a reused exchange: %s", got)
	}
}

func TestSampleLogValue(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Debug("upstream", "sample", Sample{
		Upstream: "https://proxy-a.test", Status: 200, TTFB: time.Millisecond,
		TLSVersion: "TLS 1.3", TLSCurve: "X25519MLKEM768", TLSHRR: true, ErrClass: "",
	})
	var rec struct {
		Sample map[string]any `json:"sample"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	for k, v := range map[string]any{"upstream": "https://proxy-a.test", "status": 200.0, "ttfb": 1e6,
		"tls_version": "TLS 1.3", "tls_group": "X25519MLKEM768", "tls_hrr": true} {
		if rec.Sample[k] != v {
			t.Errorf("logged %s = %v, want %v (all: %v)", k, rec.Sample[k], v, rec.Sample)
		}
	}
	if _, ok := rec.Sample["err_class"]; ok {
		t.Errorf("empty err_class was logged: %v", rec.Sample)
	}
}

func TestInterleave(t *testing.T) {
	a := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	got := interleave(a("::1", "::2", "::3", "10.0.0.1"))
	if want := a("::1", "10.0.0.1", "::2", "::3"); !slices.Equal(got, want) {
		t.Errorf("interleave = %v, want %v", got, want)
	}
}

// The race moves on from a refused address to the next and reports both attempts.
func TestDialerRacesPastRefused(t *testing.T) {
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
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	d := &Dialer{FallbackDelay: time.Minute} // only a failure moves the race on
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// 127.0.0.2 is loopback too, but nobody listens there on this port.
	c, attempts, err := d.race(ctx, "tcp", []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")}, port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if attempts != 2 || !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.1:") {
		t.Errorf("attempts %d remote %s, want 2 and 127.0.0.1", attempts, c.RemoteAddr())
	}
	// All addresses refused: the first error, classed.
	_, _, err = d.race(ctx, "tcp", []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}, port)
	if ClassOf(err) != ClassTCPRefused {
		t.Errorf("all refused: %v (class %q)", err, ClassOf(err))
	}
}

// The system backend, here a net.Resolver sent to the loopback lab server, answers like
// the others: addresses for a known name, NXDOMAIN for an unknown one.
func TestSystemBackend(t *testing.T) {
	lab := newDNSLab(t, newCA(t))
	var d net.Dialer
	sys := systemBackend{r: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "udp", lab.udpAddr)
	}}}
	res := &Resolver{Backend: sys, Timeout: 10 * time.Second}
	ctx := context.Background()
	l, err := res.LookupIP(ctx, "proxy-a.test")
	if err != nil || !slices.Equal(l.Addrs, []netip.Addr{netip.MustParseAddr("127.0.0.1")}) || l.Backend != "system" {
		t.Errorf("proxy-a.test: %+v, %v", l, err)
	}
	if _, err := res.LookupIP(ctx, "nx.test"); ClassOf(err) != ClassDNSNXDomain {
		t.Errorf("nx.test: class %q (%v), want dns_nxdomain", ClassOf(err), err)
	}
	if lab.count("proxy-a.test", "A") == 0 {
		t.Error("the lab server was not asked")
	}
}
