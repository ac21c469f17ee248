package server

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

// TestRecoveredPanics: a panic while answering a request or while filling a key (here
// from the OnRequest and Verify hooks, standing for a bug met on one module) is answered
// 500 with a one-line reason, to every request waiting on that fill, logged with its
// stack and counted; the server goes on answering, no temporary file is left (the env's
// cleanup checks), nothing is remembered of the failure, and the key fills once the bug is
// gone. Runs on both fronts (TestFastHTTP).
func TestRecoveredPanics(t *testing.T) {
	const zip = "example.com/m/@v/v1.1.0.zip"
	o := newOrigin(t)
	g := newGate(t, o, zip)
	var armed atomic.Bool
	armed.Store(true)
	e := newEnv(t, o.URL(), func(c *Config) {
		c.OnRequest = func(r goproxy.Request) {
			if r.Module == "example.com/other" && armed.Load() {
				// A panic with a file system error: its file is not for clients.
				panic(&fs.PathError{Op: "open", Path: "/srv/cache/secret/file", Err: fs.ErrPermission})
			}
		}
		c.Verify = func(ctx context.Context, r goproxy.Request, f *os.File) error {
			if r.Kind == goproxy.KindZip && armed.Load() {
				var m map[string]int
				m["boom"]++ // a nil map write: a runtime error, as a real bug would be
			}
			return nil
		}
	})
	oneLine500 := func(what string, code int, body string, where string) {
		t.Helper()
		if code != http.StatusInternalServerError || strings.Count(body, "\n") != 1 || !strings.Contains(body, "internal error ("+where+")") {
			t.Errorf("%s: %d %q; want a one-line 500 naming an internal error (%s)", what, code, body, where)
		}
	}

	w := e.do("GET", "/example.com/other/@v/list")
	oneLine500("request that panics", w.Code, w.Body.String(), "request")
	if body := w.Body.String(); strings.Contains(body, "/srv/cache/secret") || !strings.Contains(body, "open: permission denied") {
		t.Errorf("500 of a panic with a file error: %q; want its operation and cause without the file", body)
	}
	e.get(t, "/example.com/m/@v/list", 200)

	// Several requests wait on the one fill that panics: every one gets the 500.
	const n = 8
	var wg sync.WaitGroup
	codes, bodies := make([]int, n), make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := e.do("GET", "/"+zip)
			codes[i], bodies[i] = w.Code, w.Body.String()
		}()
	}
	g.wait(t)
	g.release()
	wg.Wait()
	for i := range n {
		oneLine500("waiter of a fill that panics", codes[i], bodies[i], "fill")
	}
	if got := counterValue(e.s.metrics.panics.WithLabelValues("request")); got != 1 {
		t.Errorf("panics{where=request} = %v, want 1", got)
	}
	// A request that came after the failed fill ended starts (and meets) a fill of its own:
	// each fill is one origin request, one recovered panic, one internal_error attempt.
	fills := float64(o.count(zip))
	if got := counterValue(e.s.metrics.panics.WithLabelValues("fill")); got < 1 || got != fills {
		t.Errorf("panics{where=fill} = %v, want one per fill (%v)", got, fills)
	}
	if got := counterValue(e.s.metrics.fills.WithLabelValues(o.URL(), "internal_error")); got != fills {
		t.Errorf("fill attempts with outcome internal_error = %v, want %v", got, fills)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "recovered from a panic") || !strings.Contains(logs, "recover_test.go") {
		t.Errorf("the log lacks the panic and its stack:\n%s", logs)
	}

	armed.Store(false)
	e.get(t, "/"+zip, 200)
	e.get(t, "/example.com/other/@v/list", 200)
	if keys := e.keys(t); !contains(keys, zip) {
		t.Errorf("the zip was not stored once the bug was gone: %v", keys)
	}
}

func contains(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}
