package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
)

// An answer filled from an upstream through the observed transport carries the phases of
// that exchange in Server-Timing (not those of the Verify hook's own exchanges); a store
// hit, which asked no upstream, carries none.
func TestServerTimingOfFilledAnswers(t *testing.T) {
	o := newOrigin(t)
	side := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "side") }))
	t.Cleanup(side.Close)
	tr, err := netobs.NewTransport(netobs.TransportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	e := newEnv(t, o.URL(), func(c *Config) {
		chain, err := goproxy.ParseChain(o.URL(), tr.Client())
		if err != nil {
			t.Fatal(err)
		}
		c.Chain = chain
		// A Verify hook that makes exchanges of its own through the same transport, as the
		// checksum verifier does: they must not take the place of the fill's.
		c.Verify = func(ctx context.Context, r goproxy.Request, f *os.File) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, side.URL, nil)
			if err != nil {
				return err
			}
			resp, err := tr.Client().Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		}
	})
	for _, path := range []string{"/example.com/m/@v/v1.0.0.mod", "/example.com/m/@v/list"} {
		miss := e.get(t, path, http.StatusOK)
		st := miss.Header().Get(TimingHeader)
		if miss.Header().Get(CacheHeader) != CacheMiss {
			t.Fatalf("%s: first answer %s = %q; want miss", path, CacheHeader, miss.Header().Get(CacheHeader))
		}
		for _, want := range []string{"dns;dur=", "connect;dur=", "tls;dur=", "ttfb;dur=", "transfer;dur=", `upstream;desc="` + o.URL() + `"`} {
			if !strings.Contains(st, want) {
				t.Errorf("%s: miss %s = %q; want it to contain %q", path, TimingHeader, st, want)
			}
		}
	}
	hit := e.get(t, "/example.com/m/@v/v1.0.0.mod", http.StatusOK)
	if hit.Header().Get(CacheHeader) != CacheHit {
		t.Fatalf("second answer %s = %q; want hit", CacheHeader, hit.Header().Get(CacheHeader))
	}
	if st := hit.Header().Get(TimingHeader); st != "" {
		t.Errorf("hit carries %s %q; want none (no upstream was asked)", TimingHeader, st)
	}
}
