package e2e

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// TestClientAuthWithGoCommand: holoproxy over HTTPS with --client-auth admits the go
// command with the credentials of its netrc file (as the go command sends them to a
// GOPROXY) and refuses it without them; the probes stay open.
func TestClientAuthWithGoCommand(t *testing.T) {
	dir := t.TempDir()
	ca, err := lab.NewCA(filepath.Join(dir, "ca.pem"), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := ca.IssueFiles(certFile, keyFile, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("t0ken"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	clients := filepath.Join(dir, "clients")
	if err := os.WriteFile(clients, []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL,
		"--tls-cert=" + certFile, "--tls-key=" + keyFile, "--client-auth=" + clients}, nil)
	base := "https://" + p.addr

	netrc := filepath.Join(dir, "netrc")
	// The go command matches a netrc machine against host:port.
	if err := os.WriteFile(netrc, []byte("machine "+p.addr+" login ci password t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newApp(t, base, mods, roots)
	downloadAndBuild(t, g, []string{"SSL_CERT_FILE=" + ca.CertFile(), "NETRC=" + netrc}, "with the client's netrc credentials", sumLineSet(t, mods))

	g2 := newApp(t, base, mods, roots)
	out, err := goWith(t, g2, []string{"SSL_CERT_FILE=" + ca.CertFile(), "NETRC=" + filepath.Join(dir, "none")}, "mod", "download", "all")
	if err == nil || !strings.Contains(out, "401 Unauthorized") {
		t.Errorf("go mod download all without credentials: %v; want a 401\n%s", err, out)
	}

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 401, "/api/chain": 401} {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without credentials = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
