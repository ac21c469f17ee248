package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestProbes: holoproxy serve answers /healthz and /readyz on both fronts, GET and HEAD,
// without asking its upstream.
func TestProbes(t *testing.T) {
	org := newOrigin(t, nil)
	for _, front := range []string{"fasthttp", "net/http"} {
		t.Run(strings.ReplaceAll(front, "/", "-"), func(t *testing.T) {
			p := startHoloproxy(t, nil, []string{"HOLOPROXY_CACHE_DIR=" + t.TempDir(), "GOPROXY=" + org.URL,
				"HOLOPROXY_HTTP_SERVER=" + front})
			for _, tt := range []struct{ method, path, body string }{
				{"GET", "/healthz", "ok\n"},
				{"GET", "/readyz", "ready\n"},
				{"HEAD", "/readyz", ""},
			} {
				req, err := http.NewRequest(tt.method, "http://"+p.addr+tt.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(body) != tt.body || resp.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("%s %s: %d %q (%v), Cache-Control %q; want 200 %q, no-store",
						tt.method, tt.path, resp.StatusCode, body, err, resp.Header.Get("Cache-Control"), tt.body)
				}
			}
		})
	}
	for path := range org.counts() {
		if strings.Contains(path, "healthz") || strings.Contains(path, "readyz") {
			t.Errorf("a probe reached the upstream: %s", path)
		}
	}
}
