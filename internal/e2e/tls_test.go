package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// TestServeTLS serves HTTPS with --tls-cert and --tls-key on both fronts: the go command,
// trusting only the test CA (SSL_CERT_FILE), downloads through holoproxy at an https URL;
// the net/http front speaks HTTP/2; a certificate rotated in place is served to new
// connections without a restart, and a half-written rotation leaves the last good one.
func TestServeTLS(t *testing.T) {
	for _, front := range []string{"fasthttp", "net/http"} {
		t.Run(strings.ReplaceAll(front, "/", "-"), func(t *testing.T) { testServeTLS(t, front) })
	}
}

func testServeTLS(t *testing.T, front string) {
	dir := t.TempDir()
	ca, err := lab.NewCA(filepath.Join(dir, "ca.pem"), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first, err := ca.IssueFiles(certFile, keyFile, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL, "--http-server=" + front,
		"--tls-cert=" + certFile, "--tls-key=" + keyFile}, nil)
	base := "https://" + p.addr

	g := newApp(t, base, mods, roots)
	if out, err := goWith(t, g, []string{"SSL_CERT_FILE=" + ca.CertFile()}, "mod", "download", "all"); err != nil {
		t.Fatalf("go mod download all over https: %v\n%s", err, out)
	}
	checkGoSum(t, g, sumLineSet(t, mods))

	// handshake GETs path on a new connection and returns the answer's protocol, the
	// serial of the certificate served, and the body.
	handshake := func(path string) (proto, serial string, body []byte) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d, %v", path, resp.StatusCode, err)
		}
		return resp.Proto, resp.TLS.PeerCertificates[0].SerialNumber.String(), body
	}
	proto, serial, _ := handshake("/healthz")
	wantProto := map[string]string{"fasthttp": "HTTP/1.1", "net/http": "HTTP/2.0"}[front]
	if proto != wantProto || serial != first.SerialNumber.String() {
		t.Errorf("GET /healthz: %s, certificate serial %s; want %s, %s", proto, serial, wantProto, first.SerialNumber)
	}
	expiry := func(metrics []byte) string {
		for _, l := range strings.Split(string(metrics), "\n") {
			if v, ok := strings.CutPrefix(l, "holoproxy_tls_certificate_expiry_timestamp_seconds "); ok {
				return v
			}
		}
		return ""
	}
	if _, _, m := handshake("/metrics"); expiry(m) != strconv.FormatFloat(float64(first.NotAfter.Unix()), 'g', -1, 64) &&
		expiry(m) != fmt.Sprint(first.NotAfter.Unix()) {
		t.Errorf("expiry metric %q, want %d", expiry(m), first.NotAfter.Unix())
	}

	// Rotation in place: new connections get the new certificate within a few seconds.
	second, err := ca.IssueFiles(certFile, keyFile, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, serial, _ = handshake("/healthz"); serial == second.SerialNumber.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving certificate %s 15s after the files were rotated to %s", serial, second.SerialNumber)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if waitLog(p, "TLS certificate reloaded", "serial="+second.SerialNumber.String()) == "" {
		t.Errorf("no log line for the reloaded certificate")
	}

	// A rotation caught half way (a certificate that does not match the key): the last
	// good certificate stays, and the log says so once.
	other, err := ca.IssueFiles(filepath.Join(dir, "other.crt"), filepath.Join(dir, "other.key"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, err := os.ReadFile(filepath.Join(dir, "other.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, otherPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if waitLogAfterHandshakes(p, handshake, "TLS certificate files changed but do not load") == "" {
		t.Fatalf("no warning about the mismatched pair")
	}
	if _, serial, _ = handshake("/healthz"); serial != second.SerialNumber.String() {
		t.Errorf("serving %s after a broken rotation; want the last good %s (not %s)", serial, second.SerialNumber, other.SerialNumber)
	}
	if n := strings.Count(p.log.String(), "do not load"); n != 1 {
		t.Errorf("the broken pair was logged %d times, want once", n)
	}
	// A go command that does not trust the CA is refused at the handshake.
	g2 := newApp(t, base, mods, roots)
	if out, err := goWith(t, g2, []string{"SSL_CERT_FILE=" + filepath.Join(dir, "none.pem")}, "mod", "download", "all"); err == nil ||
		!strings.Contains(out, "certificate") {
		t.Errorf("go mod download without the CA: %v\n%s", err, out)
	}
}

// waitLogAfterHandshakes makes new connections (each handshake looks at the certificate
// files, once a second at most) until p's log has a line with sub, or 15 s pass.
func waitLogAfterHandshakes(p *proc, handshake func(string) (string, string, []byte), sub string) string {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		handshake("/healthz")
		for _, l := range strings.Split(p.log.String(), "\n") {
			if strings.Contains(l, sub) {
				return l
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return ""
}
