package lab

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func init() {
	// resolve looks each argument up with the Go resolver of the process, which reads the
	// /etc/resolv.conf that `ip netns exec` bound for the host, and prints "name addr|error".
	RegisterHelper("resolve", func(args []string) int {
		r := &net.Resolver{PreferGo: true}
		for _, name := range args {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			addrs, err := r.LookupHost(ctx, name)
			cancel()
			if err != nil {
				fmt.Printf("%s error\n", name)
				continue
			}
			fmt.Printf("%s %s\n", name, strings.Join(addrs, ","))
		}
		return 0
	})
}

// TestDNS proves a process in a host resolves through the lab server (the helper re-executes
// the test binary there), that records, TTLs, rcodes and delays are answered as set, and that
// every query is logged with its asker.
func TestDNS(t *testing.T) {
	l := New(t, Options{TTL: 42 * time.Second})
	client := l.MustAddHost(t, "client")
	origin := l.MustAddHost(t, "proxy-a")
	d, err := l.DNS()
	if err != nil {
		t.Fatal(err)
	}
	d.SetRcode("broken.test", dns.RcodeServerFailure)
	d.SetDelay("proxy-a.test", 150*time.Millisecond)

	cmd, err := client.HelperCommand(t.Context(), "resolve", "proxy-a.test", "nosuch.test", "broken.test")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("resolve helper: %v", err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("lookups took %v, want at least the 150ms delay", el)
	}
	want := "proxy-a.test " + origin.Addr().String() + "\nnosuch.test error\nbroken.test error\n"
	if string(out) != want {
		t.Errorf("resolve output:\n%s\nwant:\n%s", out, want)
	}
	got := map[string]Query{}
	for _, q := range d.Queries() {
		if q.From != client.Addr() {
			t.Errorf("query %+v from %v, want from the client %v", q, q.From, client.Addr())
		}
		got[q.Name+" "+q.Type] = q
	}
	for key, rcode := range map[string]string{
		"proxy-a.test A": "NOERROR", "proxy-a.test AAAA": "NOERROR",
		"nosuch.test A": "NXDOMAIN", "broken.test A": "SERVFAIL",
	} {
		if q, ok := got[key]; !ok || q.Rcode != rcode {
			t.Errorf("query %s: logged %+v, want rcode %s", key, q, rcode)
		}
	}
	if q := got["proxy-a.test A"]; q.Delay != 150*time.Millisecond {
		t.Errorf("proxy-a.test answered with delay %v, want 150ms", q.Delay)
	}

	// The same answers for Go code in the test process, through the resolver of the client.
	addrs, err := d.Resolver(client).LookupHost(t.Context(), "proxy-a.test")
	if err != nil || len(addrs) != 1 || addrs[0] != origin.Addr().String() {
		t.Errorf("Resolver lookup: %v, %v; want [%v]", addrs, err, origin.Addr())
	}
	if n := len(d.Queries()); n < len(got)+2 {
		t.Errorf("Resolver lookups not logged: %d queries", n)
	}

	// The TTL as set, over TCP from the test process dialling inside the client host.
	conn, err := client.DialContext(t.Context(), "tcp", d.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	dc := &dns.Conn{Conn: conn}
	m := new(dns.Msg)
	m.SetQuestion("client.test.", dns.TypeA)
	if err := dc.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	r, err := dc.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 42 || r.Answer[0].(*dns.A).A.String() != client.Addr().String() {
		t.Errorf("client.test answer %v, want one A %v with TTL 42", r.Answer, client.Addr())
	}
}

// labClient returns an HTTP client in host h that trusts the lab CA.
func labClient(h *Host, http2 bool, sessions tls.ClientSessionCache) *http.Client {
	tr := &http.Transport{
		DialContext:       h.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: h.Lab().CA().Pool(), ClientSessionCache: sessions},
		ForceAttemptHTTP2: http2,
		DisableKeepAlives: sessions != nil,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// TestOriginFaults proves each fault knob of an origin and its log, over HTTP/1.1 with TLS 1.2
// and HTTP/2 with TLS 1.3.
func TestOriginFaults(t *testing.T) {
	l := New(t, Options{})
	client := l.MustAddHost(t, "client")
	srv := l.MustAddHost(t, "origin")
	if _, err := l.DNS(); err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	body := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	for p, data := range map[string]string{"m.test/a/@v/v1.0.0.zip": body, "m.test/b/@v/list": "v1.0.0\n"} {
		f := filepath.Join(tree, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name    string
		cfg     OriginConfig
		proto   string
		version uint16
	}{
		{"h1-tls12", OriginConfig{Tree: tree, Port: 8443, TLSVersion: tls.VersionTLS12}, "HTTP/1.1", tls.VersionTLS12},
		{"h2-tls13", OriginConfig{Tree: tree, Port: 9443, HTTP2: true, TLSVersion: tls.VersionTLS13}, "HTTP/2.0", tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := srv.ServeOrigin(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			c := labClient(client, tc.cfg.HTTP2, nil)
			zip := o.URL() + "/m.test/a/@v/v1.0.0.zip"
			get := func(url string) (*http.Response, []byte, error) {
				resp, err := c.Get(url)
				if err != nil {
					return nil, nil, err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp, b, err
			}

			resp, b, err := get(zip)
			if err != nil || resp.StatusCode != 200 || string(b) != body {
				t.Fatalf("clean GET: %v, %d bytes, err %v", resp, len(b), err)
			}
			if resp.Proto != tc.proto || resp.TLS.Version != tc.version {
				t.Errorf("got %s TLS %x, want %s TLS %x", resp.Proto, resp.TLS.Version, tc.proto, tc.version)
			}

			o.SetFaults(Faults{NotFound: map[string]bool{"m.test/b": true}})
			if resp, _, err := get(o.URL() + "/m.test/b/@v/list"); err != nil || resp.StatusCode != 404 {
				t.Errorf("NotFound module: %v, %v; want 404", resp, err)
			}

			o.SetFaults(Faults{ErrorRate: 1, ErrorStatus: 429})
			if resp, _, err := get(zip); err != nil || resp.StatusCode != 429 {
				t.Errorf("ErrorRate 1: %v, %v; want 429", resp, err)
			}

			o.SetFaults(Faults{ResetRate: 1})
			if _, b, err := get(zip); err == nil || len(b) >= len(body) {
				t.Errorf("ResetRate 1: read %d bytes, err %v; want a cut body and an error", len(b), err)
			} else {
				t.Logf("reset: %d bytes, %v", len(b), err)
			}

			o.SetFaults(Faults{StallRate: 1})
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			req, _ := http.NewRequestWithContext(ctx, "GET", zip, nil)
			if resp, err := c.Do(req); err != nil {
				t.Errorf("stall: no headers: %v", err)
			} else {
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !errors.Is(err, context.DeadlineExceeded) || len(b) >= len(body) {
					t.Errorf("StallRate 1: read %d bytes, err %v; want half and a deadline", len(b), err)
				}
			}
			cancel()

			o.SetFaults(Faults{Delay: 200 * time.Millisecond, Match: func(p string) bool { return false }, ErrorRate: 1})
			start := time.Now()
			if resp, _, err := get(zip); err != nil || resp.StatusCode != 200 {
				t.Errorf("Delay with unmatched ErrorRate: %v, %v; want 200", resp, err)
			}
			if el := time.Since(start); el < 200*time.Millisecond {
				t.Errorf("Delay 200ms: answered in %v", el)
			}

			faults := map[string]int{}
			for _, r := range o.Log() {
				if r.Conn == 0 || r.Proto != tc.proto {
					t.Errorf("log entry %+v: want a connection id and %s", r, tc.proto)
				}
				faults[r.Fault]++
			}
			for _, f := range []string{"", "not_found", "error", "reset", "stall"} {
				if faults[f] == 0 {
					t.Errorf("log has no request with fault %q: %v", f, faults)
				}
			}
			if s := o.Stats(); s.Handshakes == 0 || s.Conns == 0 || s.ByStatus[429] != 1 || s.ByStatus[404] != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}

	// Resumption shows in the log: two connections with a session cache.
	o, err := srv.ServeOrigin(OriginConfig{Tree: tree})
	if err != nil {
		t.Fatal(err)
	}
	c := labClient(client, false, tls.NewLRUClientSessionCache(4))
	for range 2 {
		resp, err := c.Get(o.URL() + "/m.test/b/@v/list")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	log := o.Log()
	if s := o.Stats(); len(log) != 2 || log[0].Resumed || !log[1].Resumed || s.Conns != 2 || s.Handshakes != 2 || s.Resumed != 1 {
		t.Errorf("resumption: log %+v stats %+v; want a fresh then a resumed handshake", log, s)
	}
}

// TestCommandAndPlainOrigin runs a command in a host (curl-free: the helper re-executes the
// test binary) against a plain HTTP origin by its DNS name.
func TestCommandAndPlainOrigin(t *testing.T) {
	l := New(t, Options{})
	client := l.MustAddHost(t, "client")
	srv := l.MustAddHost(t, "web")
	if _, err := l.DNS(); err != nil {
		t.Fatal(err)
	}
	o, err := srv.ServeOrigin(OriginConfig{Plain: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.RemoteAddr)
	})})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := client.HelperCommand(t.Context(), "get", o.URL()+"/x")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("get helper: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "hello "+client.Addr().String()+":") {
		t.Errorf("helper got %q, want hello from %v", out, client.Addr())
	}
	if s := o.Stats(); s.Requests != 1 || s.Handshakes != 0 {
		t.Errorf("plain origin stats %+v", s)
	}
}

func init() {
	// get fetches a URL with net/http and prints the body.
	RegisterHelper("get", func(args []string) int {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(args[0])
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer resp.Body.Close()
		if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
			fmt.Println(err)
			return 1
		}
		return 0
	})
}
