package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// sumdbArgs are the serve flags that verify against db and exempt nosumdb, whatever the
// environment's GONOSUMDB and GOPRIVATE say.
func sumdbArgs(db *sumdbtest.DB, nosumdb string) []string {
	return []string{"--sumdb=" + db.GOSUMDB(), "--gonosumdb=" + nosumdb, "--goprivate="}
}

// TestGoCommandVerifiesThroughHoloproxy: the go command knows the checksum database only by
// its key (GOSUMDB=<name>+<key>, no URL) and holoproxy as its proxy; holoproxy's --sumdb
// has the database's URL. The go command downloads and builds the fixtures, verifying every
// module through holoproxy's /sumdb/, and holoproxy verifies every file before storing it.
// The database's request log proves it was reached only through holoproxy: every request
// carries holoproxy's User-Agent (the go command's would be Go's default).
func TestGoCommandVerifiesThroughHoloproxy(t *testing.T) {
	mods, roots := fixtureModules()
	db := sumdbtest.New(t, mods)
	org := newOrigin(t, mods)
	p := startHoloproxy(t, append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL}, sumdbArgs(db, "")...), nil)
	g := newApp(t, "http://"+p.addr, mods, roots)

	env := []string{"GOSUMDB=" + db.Key}
	lines := downloadAndBuild(t, g, env, "verifying through holoproxy", sumLineSet(t, mods))

	reqs := db.Requests()
	lookups := 0
	for _, r := range reqs {
		if !strings.HasPrefix(r.UserAgent, "holoproxy/") {
			t.Errorf("checksum database got %s with User-Agent %q: not through holoproxy", r.Path, r.UserAgent)
		}
		if strings.HasPrefix(r.Path, "/lookup/") {
			lookups++
		}
	}
	if lookups == 0 {
		t.Errorf("checksum database saw no lookup (%d requests): nothing was verified", len(reqs))
	}
	m := scrape(t, p.addr)
	if m[`holoproxy_sumdb_proxy_answers_total{cache="miss"}`] == 0 {
		t.Errorf("holoproxy's /sumdb/ served nothing from the database: the go command did not verify through it")
	}
	if waitLog(p, "msg=request method=GET path=/sumdb/sum.test/lookup/") == "" {
		t.Errorf("holoproxy logged no request line for a /sumdb/ lookup")
	}
	if m[`holoproxy_checksum_verification_enabled{database="sum.test"}`] != 1 {
		t.Errorf("verification not enabled on /metrics")
	}
	// Every .mod and .zip holoproxy stored was verified: one per go.sum line at least.
	if v := m[`holoproxy_checksum_verifications_total{outcome="verified"}`]; v < float64(len(lines)) {
		t.Errorf("holoproxy verified %v files; want at least the %d of go.sum", v, len(lines))
	}
	if v := m[`holoproxy_checksum_verifications_total{outcome="mismatch"}`] + m[`holoproxy_checksum_verifications_total{outcome="error"}`]; v != 0 {
		t.Errorf("%v files mismatched or failed to verify; want none", v)
	}
	t.Logf("go.sum: %d lines; database: %d requests (%d lookups), all from holoproxy", len(lines), len(reqs), lookups)
}

// tamperedOrigins returns an honest origin of mods and one serving the same module versions
// with zipOf's zip changed in one file and modOf's go.mod changed.
func tamperedOrigins(t *testing.T, mods []modtree.Module, zipOf, modOf modtree.Module) (honest, tampered *origin) {
	t.Helper()
	honest = newOrigin(t, mods)
	tampered = newOrigin(t, mods)
	tamperZipFile(t, treeFile(t, tampered.dir, zipOf, ".zip"))
	modFile := treeFile(t, tampered.dir, modOf, ".mod")
	data, err := os.ReadFile(modFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(modFile, append(data, "\nrequire evil.test/x v1.0.0\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	return honest, tampered
}

// TestTamperedUpstream: an upstream serving a zip with one file changed and a changed go.mod
// (same module@version) is refused with 502 and a one-line reason, nothing is stored, and the
// failure is charged to that upstream on /metrics. With an honest upstream after '|', the go
// command, verifying through holoproxy, succeeds and gets the honest bytes.
func TestTamperedUpstream(t *testing.T) {
	zipMod := modtree.Module{Path: "mods.test/tz", Version: "v1.0.0", Files: map[string]string{"tz.go": "package tz\n\nconst X = 1\n"}}
	modMod := modtree.Module{Path: "mods.test/tm", Version: "v1.2.0"}
	mods := []modtree.Module{zipMod, modMod}
	roots := []module.Version{zipMod.ID(), modMod.ID()}
	db := sumdbtest.New(t, mods)
	honest, tampered := tamperedOrigins(t, mods, zipMod, modMod)

	t.Run("alone", func(t *testing.T) {
		cache := t.TempDir()
		p := startHoloproxy(t, append([]string{"--cache-dir=" + cache, "--upstream=" + tampered.URL}, sumdbArgs(db, "")...), nil)
		for _, f := range []struct {
			m   modtree.Module
			ext string
		}{{zipMod, ".zip"}, {modMod, ".mod"}} {
			key := strings.TrimPrefix(filepath.ToSlash(treeFile(t, "/", f.m, f.ext)), "/")
			status, body, _ := get(t, "http://"+p.addr+"/"+key)
			msg := string(body)
			if status != http.StatusBadGateway || !strings.Contains(msg, "checksum mismatch") || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
				t.Errorf("GET %s: %d %q; want 502 with a one-line reason naming the checksum mismatch", key, status, msg)
			}
			if _, err := os.Stat(treeFile(t, cache, f.m, f.ext)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: stored after a mismatch (stat: %v)", key, err)
			}
		}
		m := scrape(t, p.addr)
		if got := m[fmt.Sprintf(`holoproxy_checksum_failures_total{upstream=%q}`, tampered.URL)]; got != 2 {
			t.Errorf("checksum failures charged to the tampered upstream = %v; want 2", got)
		}
		if got := m[fmt.Sprintf(`holoproxy_server_refused_answers_total{reason="checksum_mismatch",upstream=%q}`, tampered.URL)]; got != 2 {
			t.Errorf("refused answers for checksum_mismatch = %v; want 2", got)
		}
		if waitLog(p, "level=WARN", "checksum mismatch") == "" {
			t.Errorf("no log line says checksum mismatch")
		}
	})

	t.Run("comma does not fall through", func(t *testing.T) {
		// After ',' the next proxy is tried only after a not-found answer: a refused
		// answer is a failure, so the honest upstream is never asked.
		before := honest.counts()
		p := startHoloproxy(t, append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + tampered.URL + "," + honest.URL}, sumdbArgs(db, "")...), nil)
		key := strings.TrimPrefix(filepath.ToSlash(treeFile(t, "/", zipMod, ".zip")), "/")
		if status, body, _ := get(t, "http://"+p.addr+"/"+key); status != http.StatusBadGateway {
			t.Errorf("GET %s: %d %q; want 502", key, status, body)
		}
		if n := honest.counts()[key] - before[key]; n != 0 {
			t.Errorf("honest upstream asked %d times for %s after ','; want 0", n, key)
		}
	})

	t.Run("honest after pipe", func(t *testing.T) {
		cache := t.TempDir()
		p := startHoloproxy(t, append([]string{"--cache-dir=" + cache, "--upstream=" + tampered.URL + "|" + honest.URL}, sumdbArgs(db, "")...), nil)
		g := newApp(t, "http://"+p.addr, mods, roots)
		if out, err := goWith(t, g, []string{"GOSUMDB=" + db.Key}, "mod", "download", "all"); err != nil {
			t.Fatalf("go mod download all: %v\n%s", err, out)
		}
		lines := checkGoSum(t, g, sumLineSet(t, mods))
		for _, m := range mods {
			want, _ := m.SumLines()
			for _, w := range want {
				if !strings.Contains("\n"+strings.Join(lines, "\n")+"\n", "\n"+w+"\n") {
					t.Errorf("go.sum lacks the honest line %q", w)
				}
			}
		}
		for _, f := range []struct {
			m   modtree.Module
			ext string
		}{{zipMod, ".zip"}, {modMod, ".mod"}} {
			stored, err := os.ReadFile(waitStored(t, treeFile(t, cache, f.m, f.ext)))
			if err != nil {
				t.Fatalf("not stored: %v", err)
			}
			orig, err := os.ReadFile(treeFile(t, honest.dir, f.m, f.ext))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(stored, orig) {
				t.Errorf("%s@%s%s: stored bytes differ from the honest upstream's", f.m.Path, f.m.Version, f.ext)
			}
		}
		m := scrape(t, p.addr)
		if got := m[fmt.Sprintf(`holoproxy_checksum_failures_total{upstream=%q}`, tampered.URL)]; got < 2 {
			t.Errorf("checksum failures charged to the tampered upstream = %v; want at least 2", got)
		}
		if got := m[fmt.Sprintf(`holoproxy_checksum_failures_total{upstream=%q}`, honest.URL)]; got != 0 {
			t.Errorf("checksum failures charged to the honest upstream = %v; want 0", got)
		}
	})
}

// TestPrivateModuleNotVerified: a module whose path matches the exempt patterns (from
// --gonosumdb, from --goprivate, or from GONOSUMDB in the environment through `go env`) is
// served without being verified or looked up, its lookup through /sumdb/ answers 404, and the
// checksum database never hears of it.
func TestPrivateModuleNotVerified(t *testing.T) {
	pub := modtree.Module{Path: "mods.test/pub", Version: "v1.0.0"}
	priv := modtree.Module{Path: "corp.test/secret", Version: "v1.0.0"}
	mods := []modtree.Module{pub, priv}
	for _, tc := range []struct {
		name  string
		flags []string
		env   []string
	}{
		{"gonosumdb flag", []string{"--gonosumdb=corp.test", "--goprivate="}, nil},
		{"goprivate flag", []string{"--gonosumdb=", "--goprivate=corp.test"}, nil},
		{"go env GONOSUMDB", nil, []string{"GONOSUMDB=corp.test", "GOPRIVATE=", "GOFLAGS=", "GOENV=off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := sumdbtest.New(t, []modtree.Module{pub}) // the database does not know the private one
			org := newOrigin(t, mods)
			args := append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL, "--sumdb=" + db.GOSUMDB()}, tc.flags...)
			p := startHoloproxy(t, args, tc.env)
			g := newApp(t, "http://"+p.addr, mods, []module.Version{pub.ID(), priv.ID()})
			if out, err := goWith(t, g, []string{"GOSUMDB=" + db.Key, "GONOSUMDB=corp.test"}, "mod", "download", "all"); err != nil {
				t.Fatalf("go mod download all: %v\n%s", err, out)
			}
			checkGoSum(t, g, sumLineSet(t, mods))

			status, body, _ := get(t, "http://"+p.addr+"/sumdb/"+db.Name+"/lookup/"+priv.Path+"@"+priv.Version)
			if status != http.StatusNotFound {
				t.Errorf("/sumdb/ lookup of the private module: %d %q; want 404", status, body)
			}
			if n := db.Count("corp.test"); n != 0 {
				t.Errorf("checksum database got %d requests naming the private module; want 0", n)
			}
			if db.Count("/lookup/"+pub.Path) == 0 {
				t.Errorf("checksum database never looked up the public module: the test proves nothing")
			}
			m := scrape(t, p.addr)
			if got := m["holoproxy_sumdb_proxy_private_refused_total"]; got < 1 {
				t.Errorf("private lookups refused = %v; want at least 1", got)
			}
			if got := m[`holoproxy_checksum_verifications_total{outcome="exempt"}`]; got < 2 {
				t.Errorf("exempt files = %v; want at least the private .mod and .zip", got)
			}
		})
	}
}

// TestVerifyPurge: holoproxy verify (the built binary) over a cache that serve filled finds
// a zip the test corrupted on disk (exit 1) and, with --purge, removes it; the next run is
// clean (exit 0).
func TestVerifyPurge(t *testing.T) {
	mods := []modtree.Module{{Path: "mods.test/va", Version: "v1.0.0"}, {Path: "mods.test/vb", Version: "v1.0.0"}}
	db := sumdbtest.New(t, mods)
	org := newOrigin(t, mods)
	cache := t.TempDir()
	p := startHoloproxy(t, append([]string{"--cache-dir=" + cache, "--upstream=" + org.URL}, sumdbArgs(db, "")...), nil)
	for _, m := range mods {
		for _, ext := range []string{".mod", ".zip"} {
			key := strings.TrimPrefix(filepath.ToSlash(treeFile(t, "/", m, ext)), "/")
			if status, body, _ := get(t, "http://"+p.addr+"/"+key); status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", key, status, body)
			}
		}
	}
	bad := waitStored(t, treeFile(t, cache, mods[1], ".zip"))
	tamperZipFile(t, bad)

	verify := func(args ...string) (int, string) {
		t.Helper()
		return runVerify(t, nil, append([]string{"--cache-dir=" + cache, "--sumdb=" + db.GOSUMDB(), "--gonosumdb=", "--goprivate="}, args...)...)
	}
	key := strings.TrimPrefix(filepath.ToSlash(treeFile(t, "/", mods[1], ".zip")), "/")
	code, out := verify("--purge")
	if code != 1 || !strings.Contains(out, "FAIL "+key) || !strings.Contains(out, "purged 1") {
		t.Errorf("verify --purge: exit %d\n%s\nwant exit 1 naming %s, purged 1", code, out, key)
	}
	if _, err := os.Stat(bad); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("corrupted zip still in the cache after --purge (stat: %v)", err)
	}
	code, out = verify()
	if code != 0 || !strings.Contains(out, "checked 3: ok 3") {
		t.Errorf("verify after purge: exit %d\n%s\nwant exit 0 with 3 files ok", code, out)
	}
	// The purged zip is filled again, verified, on the next request.
	if status, body, _ := get(t, "http://"+p.addr+"/"+key); status != http.StatusOK {
		t.Errorf("GET %s after purge: %d %s", key, status, body)
	}
}

// waitStored returns path once the file exists, waiting a bounded time: holoproxy answers a
// fill from the verified temporary file and commits it (fsync, rename) right after, so the
// file may appear a moment after the client has its answer.
func waitStored(t *testing.T, path string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	t.Fatalf("%s was not stored within 10s of its answer", path)
	return ""
}

// runVerify runs `holoproxy verify` with args and env added to the environment (two minutes
// at most) and returns its exit status and combined output.
func runVerify(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	return runHoloproxy(t, env, append([]string{"verify"}, args...)...)
}

// runHoloproxy runs the holoproxy binary with args and env added to the environment, and
// returns its exit code and combined output.
func runHoloproxy(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, holoproxyBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("holoproxy %s: %v\n%s", args[0], err, out)
	return 0, ""
}
