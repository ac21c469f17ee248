package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// TestServeOffline: a cache filled while the origin was up is served with --upstream off
// after the origin is gone: the go command downloads and builds with the honest go.sum, and
// a module the cache lacks is a 404 that says holoproxy is offline.
func TestServeOffline(t *testing.T) {
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	cache := t.TempDir()
	p := startHoloproxy(t, []string{"--cache-dir=" + cache, "--upstream=" + org.URL}, nil)
	g := newApp(t, "http://"+p.addr, mods, roots)
	if out, err := goWith(t, g, nil, "mod", "download", "all"); err != nil {
		t.Fatalf("go mod download all, online: %v\n%s", err, out)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("holoproxy did not stop cleanly: %v", err)
	}
	org.Close()

	off := startHoloproxy(t, []string{"--cache-dir=" + cache, "--upstream=off"}, nil)
	if waitLog(off, "offline (--upstream off)") == "" {
		t.Errorf("holoproxy did not say it is offline")
	}
	g2 := newApp(t, "http://"+off.addr, mods, roots)
	downloadAndBuild(t, g2, nil, "offline", sumLineSet(t, mods))

	missing := modtree.Module{Path: "mods.test/never", Version: "v1.0.0"}
	key := strings.TrimPrefix(treeFile(t, "", missing, ".info"), "/")
	code, body, _ := get(t, "http://"+off.addr+"/"+key)
	if code != http.StatusNotFound || !strings.Contains(string(body), "GOPROXY=off") {
		t.Errorf("GET %s offline: %d %q; want 404 saying lookups are off", key, code, body)
	}
}
