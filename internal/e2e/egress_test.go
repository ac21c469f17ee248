package e2e

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"path/filepath"
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
	ca, err := lab.NewCA(filepath.Join(t.TempDir(), "ca.pem"), "e2e egress")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("proxy-a.test")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(o)
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)
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
