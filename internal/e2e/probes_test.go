package e2e

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestShutdownDelay: with HOLOPROXY_SHUTDOWN_DELAY, SIGTERM first makes /readyz answer 503
// while modules are still served, and the process exits (status 0) only after the delay;
// a second signal ends the delay early.
func TestShutdownDelay(t *testing.T) {
	mods := bigModules("drain.test/m", 1, 1<<10)
	org := newOrigin(t, mods)
	key := fileKeys(t, mods[0])[1]
	draining := func(p *proc) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(p.log.String(), "draining") {
			if time.Now().After(deadline) {
				t.Fatalf("no drain 20 s after SIGTERM\n%s", p.log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("delay", func(t *testing.T) {
		const delay = 2 * time.Second
		p := startHoloproxy(t, nil, []string{"HOLOPROXY_CACHE_DIR=" + t.TempDir(), "GOPROXY=" + org.URL,
			"HOLOPROXY_SHUTDOWN_DELAY=" + delay.String()})
		if code, _, _ := get(t, "http://"+p.addr+"/readyz"); code != 200 {
			t.Fatalf("/readyz before SIGTERM: %d", code)
		}
		start := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		draining(p)
		if code, body, _ := get(t, "http://"+p.addr+"/readyz"); code != 503 || string(body) != "not ready: shutting down\n" {
			t.Errorf("/readyz while draining: %d %q; want 503", code, body)
		}
		if code, body, _ := get(t, "http://"+p.addr+"/"+key); code != 200 {
			t.Errorf("a module file while draining: %d %q; want 200", code, body)
		}
		if err := p.wait(t); err != nil {
			t.Errorf("exit after the drain: %v\n%s", err, p.log.String())
		}
		if took := time.Since(start); took < delay {
			t.Errorf("exited %v after SIGTERM, before the %v delay", took, delay)
		}
	})

	t.Run("second signal", func(t *testing.T) {
		p := startHoloproxy(t, nil, []string{"HOLOPROXY_CACHE_DIR=" + t.TempDir(), "GOPROXY=" + org.URL,
			"HOLOPROXY_SHUTDOWN_DELAY=10m"})
		start := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		draining(p)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t); err != nil {
			t.Errorf("exit after a second signal: %v\n%s", err, p.log.String())
		}
		if took := time.Since(start); took > time.Minute {
			t.Errorf("a second signal did not end a 10m drain: exited after %v", took)
		}
		if !strings.Contains(p.log.String(), "second signal") || !strings.Contains(p.log.String(), "stopped") {
			t.Errorf("log does not tell the drain was ended and the server stopped:\n%s", p.log.String())
		}
	})
}
