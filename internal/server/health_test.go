package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProbes: /healthz answers ok; /readyz answers ready until the store cannot take a
// new file, or the server drains or shuts down, then 503 with the reason; neither takes a
// POST.
func TestProbes(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	health, ready := HealthHandler(), e.s.ReadyHandler()
	ask := func(h http.Handler, method string) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "/", nil))
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", method, w.Header().Get("Cache-Control"))
		}
		return w.Code, w.Body.String()
	}
	for _, tt := range []struct {
		h      http.Handler
		method string
		code   int
		body   string
	}{
		{health, "GET", 200, "ok\n"},
		{health, "HEAD", 200, ""},
		{ready, "GET", 200, "ready\n"},
		{ready, "POST", 405, "method POST not allowed\n"},
	} {
		if code, body := ask(tt.h, tt.method); code != tt.code || body != tt.body {
			t.Errorf("%s: %d %q; want %d %q", tt.method, code, body, tt.code, tt.body)
		}
	}
	if o.total() != 0 {
		t.Errorf("the probes asked the upstream %d times", o.total())
	}

	// A store that cannot create a file: its temporary directory is a file.
	tmp := filepath.Join(e.store.Root(), ".tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := ask(ready, "GET"); code != 503 || !strings.HasPrefix(body, "not ready: the store cannot take a new file") || strings.Count(body, "\n") != 1 {
		t.Errorf("unwritable store: %d %q; want 503 and one line naming the store", code, body)
	}
	if code, _ := ask(health, "GET"); code != 200 {
		t.Errorf("healthz with an unwritable store: %d; want 200 (the process is alive)", code)
	}
	os.Remove(tmp) // CreateTemp makes the directory again
	if code, body := ask(ready, "GET"); code != 200 {
		t.Errorf("after the store was mended: %d %q", code, body)
	}

	e.s.Drain() // the first step of a delayed shutdown: not ready, still answering
	if code, body := ask(ready, "GET"); code != 503 || body != "not ready: shutting down\n" {
		t.Errorf("while draining: %d %q; want 503 shutting down", code, body)
	}
	if w := e.do("GET", "/example.com/m/@v/v1.0.0.info"); w.Code != 200 {
		t.Errorf("a module file while draining: %d %s", w.Code, w.Body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := ask(ready, "GET"); code != 503 || body != "not ready: shutting down\n" {
		t.Errorf("after Close: %d %q; want 503 shutting down", code, body)
	}
}
