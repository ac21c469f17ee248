package checksum

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"golang.org/x/mod/module"
)

// TestGoCommandThroughSumDBProxy runs the real go command against a GOPROXY that serves a
// modtree tree and the SumDBProxy under /sumdb/. The go command knows the database only by
// name and key (GOSUMDB=<vkey>), so every lookup and tile reaches the database through the
// proxy; a tampered zip in the tree is refused by the go command on that evidence.
func TestGoCommandThroughSumDBProxy(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	if testing.Short() {
		t.Skip("runs the go command; skipped with -short")
	}
	mods, roots := modtree.Graph("mods.test/g", 6, 2, 2)
	db := sumdbtest.New(t, mods)
	tree := t.TempDir()
	if err := modtree.Write(tree, mods); err != nil {
		t.Fatal(err)
	}
	p, err := NewSumDBProxy(ProxyConfig{
		DB:      SumDB{Name: db.Name, Key: db.Key},
		Store:   newDirStore(t),
		BaseURL: FixedBaseURL(db.URL),
		Timeout: 10 * time.Second,
		Logger:  quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sumdb/", p)
	mux.Handle("/", http.FileServer(http.Dir(tree)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	run := func(t *testing.T, app string) (string, error) {
		t.Helper()
		tmp := t.TempDir()
		env := []string{
			"PATH=" + os.Getenv("PATH"),
			"HOME=" + tmp,
			"GOENV=off",
			"GOPATH=" + filepath.Join(tmp, "gopath"),
			"GOMODCACHE=" + filepath.Join(tmp, "modcache"),
			"GOCACHE=" + filepath.Join(tmp, "gocache"),
			"GOTOOLCHAIN=local",
			"GOFLAGS=-mod=mod",
			"GOPROXY=" + srv.URL,
			"GOSUMDB=" + db.Key, // name and key only: no URL
			"GONOSUMDB=", "GOPRIVATE=", "GONOPROXY=", "GOINSECURE=",
			"CGO_ENABLED=0",
		}
		for _, e := range env {
			if strings.Contains(e, db.URL) {
				t.Fatalf("the go command's environment names the database URL: %s", e)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", os.DevNull, ".")
		cmd.Dir = app
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("honest", func(t *testing.T) {
		app := t.TempDir()
		if err := modtree.WriteApp(app, "app.test/main", mods, roots, nil); err != nil {
			t.Fatal(err)
		}
		db.ResetRequests()
		if out, err := run(t, app); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		got, err := os.ReadFile(filepath.Join(app, "go.sum"))
		if err != nil {
			t.Fatal(err)
		}
		// With module graph pruning the go command may skip go.mod hashes that tidy would
		// keep, so compare as sets: every line written is one the database vouches for,
		// and every selected module's zip was verified.
		want, err := modtree.AppGoSum(mods, roots)
		if err != nil {
			t.Fatal(err)
		}
		wantSet := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(string(want)), "\n") {
			wantSet[l] = true
		}
		gotSet := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(string(got)), "\n") {
			gotSet[l] = true
			if !wantSet[l] {
				t.Errorf("go.sum line %q is not one of the fixtures'", l)
			}
		}
		selected, _ := modtree.BuildList(mods, roots)
		for _, m := range selected {
			lines, _ := m.SumLines()
			if !gotSet[lines[0]] {
				t.Errorf("go.sum lacks %q", lines[0])
			}
		}
		reqs := db.Requests()
		if db.Count("/lookup/") == 0 {
			t.Fatalf("no lookup reached the database: %v", reqs)
		}
		for _, r := range reqs {
			if r.UserAgent != "holoproxy" {
				t.Errorf("database request %s came from %q, not through the proxy", r.Path, r.UserAgent)
			}
		}
		if st := p.Stats(); st.Misses == 0 {
			t.Errorf("proxy stats = %+v, want misses", st)
		}
	})

	t.Run("tampered zip refused", func(t *testing.T) {
		victim := roots[0]
		var vm modtree.Module
		for _, m := range mods {
			if m.ID() == victim {
				vm = m
			}
		}
		esc, _ := module.EscapePath(victim.Path)
		zipPath := filepath.Join(tree, filepath.FromSlash(esc), "@v", victim.Version+".zip")
		orig, err := os.ReadFile(zipPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(zipPath, orig, 0o644) })
		if err := os.WriteFile(zipPath, tamperZip(t, vm), 0o644); err != nil {
			t.Fatal(err)
		}
		app := t.TempDir()
		if err := modtree.WriteApp(app, "app.test/main", mods, roots, nil); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, app)
		if err == nil {
			t.Fatalf("go build succeeded with a tampered zip of %s:\n%s", victim, out)
		}
		t.Logf("go build output:\n%s", out)
		// The go command names the database whose record contradicts the download.
		if !strings.Contains(out, "checksum mismatch") || !strings.Contains(out, victim.Path) || !strings.Contains(out, db.Name+":") {
			t.Fatalf("go build failed, but not for the checksum of %s:\n%s", victim, out)
		}
	})
}
