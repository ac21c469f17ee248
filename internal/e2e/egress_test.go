package e2e

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// TestEgressProxyWithGoCommand: on a network whose only way out is a forward proxy that
// wants credentials, holoproxy reaches its https upstream (a name only the proxy knows)
// through the HTTPS_PROXY of its environment, as the go command would; the go command
// builds through holoproxy with the honest go.sum; the proxy's password appears nowhere;
// NO_PROXY sends the upstream around the proxy again.
func TestEgressProxyWithGoCommand(t *testing.T) {
	mods, roots := fixtureModules()
	o := newOrigin(t, mods)
	ca, up := tlsUpstream(t, o)
	fp := lab.StartForwardProxy(t)
	fp.Route("proxy-a.test:443", up.Listener.Addr().String())
	fp.RequireAuth("egress", "egress-secret")
	proxyURL := strings.Replace(fp.URL(), "http://", "http://egress:egress-secret@", 1)

	args := []string{"--cache-dir=" + t.TempDir(), "--upstream=https://proxy-a.test", "--ca-file=" + ca.CertFile()}
	p := startHoloproxy(t, args, []string{"HTTPS_PROXY=" + proxyURL, "NO_PROXY="})
	downloadAndBuild(t, newApp(t, "http://"+p.addr, mods, roots), nil, "through an egress proxy", sumLineSet(t, mods))
	reqs := fp.Requests()
	if len(reqs) == 0 {
		t.Fatal("the forward proxy saw no request")
	}
	for _, r := range reqs {
		if r != "CONNECT proxy-a.test:443" {
			t.Errorf("the forward proxy saw %q; want only tunnels to proxy-a.test", r)
		}
	}
	if len(o.counts()) == 0 {
		t.Error("the upstream behind the proxy was asked nothing")
	}
	if !strings.Contains(p.log.String(), "forward proxy of the environment") {
		t.Errorf("the start log does not name the forward proxy:\n%s", p.log.String())
	}
	_, metrics, _ := get(t, "http://"+p.addr+"/metrics")
	_, chain, _ := get(t, "http://"+p.addr+"/api/chain")
	for what, text := range map[string]string{"log": p.log.String(), "/metrics": string(metrics), "/api/chain": string(chain)} {
		if strings.Contains(text, "egress-secret") {
			t.Errorf("the proxy's password appears in the %s", what)
		}
	}

	// NO_PROXY: the upstream is dialled directly, and its made-up name resolves nowhere.
	bypass := startHoloproxy(t, args, []string{"HTTPS_PROXY=" + proxyURL, "NO_PROXY=proxy-a.test"})
	before := len(fp.Requests())
	status, body, _ := get(t, "http://"+bypass.addr+"/mods.test/pseudo/@v/list")
	if status != http.StatusBadGateway || len(fp.Requests()) != before {
		t.Errorf("with NO_PROXY naming the upstream: %d %q, proxy requests %d -> %d; want a 502 without the proxy",
			status, body, before, len(fp.Requests()))
	}
}

// TestEgressProxyTLSAndSOCKS: the only way to the upstreams is an https:// forward proxy
// (its certificate from the CA of --ca-file) or a SOCKS5 one, each wanting credentials;
// holoproxy reaches its https upstream and a plain http one (names only the proxies know)
// through the HTTPS_PROXY and HTTP_PROXY of its environment, as the go command would, and
// the go command builds through it. socks5:// leaves the names to the proxy as socks5h://
// does (as the go command does): with --dns answering them with an address where nothing
// listens, holoproxy still reaches them through the proxy. The proxies' passwords appear
// nowhere.
func TestEgressProxyTLSAndSOCKS(t *testing.T) {
	mods, roots := fixtureModules()
	o := newOrigin(t, mods)
	ca, up := tlsUpstream(t, o)
	plain := httptest.NewServer(o)
	t.Cleanup(plain.Close)

	hp := lab.StartForwardProxyTLS(t, ca)
	hp.Route("proxy-a.test:443", up.Listener.Addr().String())
	hp.Route("proxy-b.test:80", plain.Listener.Addr().String())
	hp.RequireAuth("egress", "tls-secret")
	sp := lab.StartSOCKS5(t)
	sp.Route("proxy-a.test:443", up.Listener.Addr().String())
	sp.Route("proxy-b.test:80", plain.Listener.Addr().String())
	sp.RequireAuth("egress", "socks-secret")
	d := newTestDNS(t, "proxy-a.test", "proxy-b.test")

	m := mods[0]
	info := "/" + m.Path + "/@v/" + m.Version + ".info"
	for _, tc := range []struct {
		name      string
		proxy     string
		args      []string
		requests  func() []string
		want      []string // what the proxy is asked for, in any order and number
		secret    string
		build     bool
		dnsLookup bool
	}{
		{"https proxy", strings.Replace(hp.URL(), "https://", "https://egress:tls-secret@", 1), nil, hp.Requests,
			[]string{"CONNECT proxy-a.test:443", "GET http://proxy-b.test" + info}, "tls-secret", true, false},
		{"socks5h proxy", "socks5h://egress:socks-secret@" + sp.Addr(), nil, sp.Requests,
			[]string{"CONNECT proxy-a.test:443", "CONNECT proxy-b.test:80"}, "socks-secret", false, false},
		{"socks5 proxy", "socks5://egress:socks-secret@" + sp.Addr(), []string{"--dns=udp://" + d.addr}, sp.Requests,
			[]string{"CONNECT proxy-a.test:443", "CONNECT proxy-b.test:80"}, "socks-secret", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.requests())
			args := append([]string{"--cache-dir=" + t.TempDir(), "--upstream=https://proxy-a.test", "--ca-file=" + ca.CertFile()}, tc.args...)
			env := []string{"HTTPS_PROXY=" + tc.proxy, "HTTP_PROXY=" + tc.proxy, "NO_PROXY="}
			p := startHoloproxy(t, args, env)
			if tc.build {
				downloadAndBuild(t, newApp(t, "http://"+p.addr, mods, roots), nil, "through an https egress proxy", sumLineSet(t, mods))
			} else if status, body, _ := get(t, "http://"+p.addr+info); status != http.StatusOK {
				t.Errorf("%s through holoproxy: %d %q", info, status, body)
			}
			// The plain http upstream, through the same proxy (HTTP_PROXY).
			plainUp := startHoloproxy(t, append([]string{"--cache-dir=" + t.TempDir(), "--upstream=http://proxy-b.test", "--ca-file=" + ca.CertFile()}, tc.args...), env)
			if status, body, _ := get(t, "http://"+plainUp.addr+info); status != http.StatusOK {
				t.Errorf("%s from the http upstream through holoproxy: %d %q", info, status, body)
			}

			reqs := tc.requests()[before:]
			for _, w := range tc.want {
				if !slices.Contains(reqs, w) {
					t.Errorf("the proxy saw %q; want %q among them", reqs, w)
				}
			}
			for _, r := range reqs {
				// Probes and prefetches of the http upstream are absolute-form requests too;
				// anything else (a tunnel to the proxy itself, to another name) is wrong.
				if !slices.Contains(tc.want, r) && !strings.HasPrefix(r, "GET http://proxy-b.test/") {
					t.Errorf("the proxy saw %q; want only %q", r, tc.want)
				}
			}
			if tc.dnsLookup && d.count("proxy-a.test") != 0 {
				t.Error("socks5: holoproxy resolved proxy-a.test itself; the name is the proxy's to resolve")
			}
			if !strings.Contains(p.log.String(), "forward proxy of the environment") {
				t.Errorf("the start log does not name the forward proxy:\n%s", p.log.String())
			}
			_, metrics, _ := get(t, "http://"+p.addr+"/metrics")
			for what, text := range map[string]string{"log": p.log.String() + plainUp.log.String(), "/metrics": string(metrics)} {
				if strings.Contains(text, tc.secret) {
					t.Errorf("the proxy's password appears in the %s", what)
				}
			}
		})
	}
}

// tlsUpstream serves h over HTTPS as proxy-a.test, with a certificate of a new lab CA
// (returned, for --ca-file and for proxies that need one too).
func tlsUpstream(t *testing.T, h http.Handler) (*lab.CA, *httptest.Server) {
	t.Helper()
	ca, err := lab.NewCA(filepath.Join(t.TempDir(), "ca.pem"), "e2e egress")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("proxy-a.test")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(h)
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
	return ca, up
}
