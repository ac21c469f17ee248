package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/lab"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/warm"
)

// execEnv makes the test binary run the holoproxy command line instead of the tests, so a
// test can run warm as a process of its own and kill it.
const execEnv = "HOLOPROXY_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		os.Exit(execute(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
	}
	lab.NoForwardProxies()   // serve, trace and warm honour HTTPS_PROXY
	lab.NoInstanceMetadata() // --shared-cache looks for an instance role
	// No goroutine may outlive the tests: every goroutine has an owner who stops it.
	goleak.VerifyTestMain(m,
		// serve's fasthttp front: process-level goroutines (internal/server/main_test.go says why).
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

// warmFixture writes a module graph served by an origin on 127.0.0.1 and an app needing it.
type warmFixture struct {
	app, tree string
	origin    *httptest.Server
	requests  atomic.Int64
	// hold, when set, decides whether a request waits until release is closed.
	hold    atomic.Pointer[func(path string) bool]
	release chan struct{}
}

func newWarmFixture(t *testing.T, n int) *warmFixture {
	t.Helper()
	tmp := t.TempDir()
	mods, roots := modtree.Graph("mods.test/w", n, 3, 3)
	f := &warmFixture{app: filepath.Join(tmp, "app"), tree: filepath.Join(tmp, "origin"), release: make(chan struct{})}
	if err := modtree.Write(f.tree, mods); err != nil {
		t.Fatal(err)
	}
	sum, err := modtree.AppGoSum(mods, roots)
	if err != nil {
		t.Fatal(err)
	}
	if err := modtree.WriteApp(f.app, "app.test/w", mods, roots, sum); err != nil {
		t.Fatal(err)
	}
	fsrv := http.FileServer(http.Dir(f.tree))
	f.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		if h := f.hold.Load(); h != nil && (*h)(r.URL.Path) {
			select {
			case <-f.release:
			case <-r.Context().Done():
				return
			}
		}
		fsrv.ServeHTTP(w, r)
	}))
	t.Cleanup(f.origin.Close)
	return f
}

// run runs the command line in-process and returns its exit code, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := execute(args, func(string) (string, bool) { return "", false }, &out, &errb)
	return code, out.String(), errb.String()
}

// TestWarmKillAndResume kills a warm process halfway (half of the zips never answer), then
// runs warm again: it completes, asks the origin only for what the first run did not
// store, and --check finds everything in place before the first run fails it and after.
func TestWarmKillAndResume(t *testing.T) {
	f := newWarmFixture(t, 16)
	plan, err := warm.Load([]string{f.app}, warm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tree")

	code, stdout, stderr := runCLI("warm", "--check", "--to", dir, f.app)
	if code != exitFailure || strings.Count(stdout, "missing ") != plan.Files() {
		t.Fatalf("--check on an empty tree: exit %d, %d missing lines; want exit 1 and %d\n%s%s",
			code, strings.Count(stdout, "missing "), plan.Files(), stdout, stderr)
	}

	// Hold the zips of every other zip-carrying module version.
	held := map[string]bool{}
	heldFiles := 0
	var done []warm.Item
	i := 0
	for _, it := range plan.Items {
		if it.Zip {
			if i%2 == 0 {
				held["/"+goproxy.Request{Kind: goproxy.KindZip, Module: it.Mod.Path, Version: it.Mod.Version}.Path()] = true
				heldFiles += 3
				i++
				continue
			}
			i++
		}
		done = append(done, it)
	}
	hold := func(p string) bool { return held[p] }
	f.hold.Store(&hold)

	cmd := exec.Command(os.Args[0], "warm", "--proxy", f.origin.URL, "--to", dir, "--progress", "plain", "-j", "64", f.app)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	var childErr bytes.Buffer
	cmd.Stderr = &childErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until everything that is not held is stored, then kill the process.
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing, err := warm.Check(context.Background(), &warm.Plan{Items: done}, mustTree(t, dir), 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("first run did not store the modules that are not held; %d files missing\n%s", len(missing), childErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	for p := range held {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(p, "/")))); !os.IsNotExist(err) {
			t.Fatalf("held zip %s present after the kill (stat: %v)", p, err)
		}
	}

	// Second run: nothing held. It fetches only what the first run left out.
	f.hold.Store(nil)
	before := f.requests.Load()
	code, _, stderr = runCLI("warm", "--proxy", f.origin.URL, "--to", dir, "--progress", "off", f.app)
	if code != exitOK {
		t.Fatalf("second run: exit %d\n%s", code, stderr)
	}
	if got := f.requests.Load() - before; got != int64(heldFiles) {
		t.Errorf("second run asked the origin %d times; want %d (the held modules' files only)\n%s", got, heldFiles, stderr)
	}
	if want := "already present"; !strings.Contains(stderr, want) {
		t.Errorf("summary %q does not say what was skipped", stderr)
	}
	code, stdout, stderr = runCLI("warm", "--check", "--to", dir, f.app)
	if code != exitOK || stdout != "" {
		t.Errorf("--check after resume: exit %d\n%s%s", code, stdout, stderr)
	}
	// The killed run's temporary files were cleared when the tree was opened again.
	if ents, err := os.ReadDir(filepath.Join(dir, ".tmp")); err != nil && !os.IsNotExist(err) || len(ents) != 0 {
		t.Errorf("temporary files left in the tree: %v (%v)", ents, err)
	}
}

// mustTree opens dir read-only, as --check does, so the running child's temporary files
// are left alone.
func mustTree(t *testing.T, dir string) []warm.Dest {
	t.Helper()
	d, err := warm.NewTreeDest(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	return []warm.Dest{d}
}

// TestWarmExitCodes checks the outcome codes: bad usage 2, a failed module 1.
func TestWarmExitCodes(t *testing.T) {
	f := newWarmFixture(t, 4)
	if code, _, stderr := runCLI("warm", f.app); code != exitUsage || !strings.Contains(stderr, "no destination") {
		t.Errorf("no destination: exit %d %q; want 2", code, stderr)
	}
	if code, _, stderr := runCLI("warm", "--to", t.TempDir(), "-j", "0", f.app); code != exitUsage {
		t.Errorf("-j 0: exit %d %q; want 2", code, stderr)
	}
	if code, _, stderr := runCLI("warm", "--to", t.TempDir(), filepath.Join(f.app, "main.go")); code != exitUsage {
		t.Errorf("main.go as project: exit %d %q; want 2", code, stderr)
	}
	// A zip that is not the one go.sum records.
	var victim string
	filepath.WalkDir(f.tree, func(p string, d fs.DirEntry, err error) error {
		if victim == "" && strings.HasSuffix(p, ".zip") {
			victim = p
		}
		return nil
	})
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI("warm", "--proxy", f.origin.URL, "--to", t.TempDir(), "--progress", "off", f.app)
	if code != exitFailure || !strings.Contains(stderr, "FAILED") || !strings.Contains(stderr, "1 of") {
		t.Errorf("tampered zip: exit %d; want 1 with the module named\n%s", code, stderr)
	}
}

// TestWarmTrustsCAFile warms from an HTTPS origin whose certificate comes from a private
// CA: refused without --ca-file (the certificate is not trusted), done with it.
func TestWarmTrustsCAFile(t *testing.T) {
	f := newWarmFixture(t, 4)
	tlsOrigin := httptest.NewUnstartedServer(f.origin.Config.Handler)
	tlsOrigin.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	tlsOrigin.StartTLS()
	t.Cleanup(tlsOrigin.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsOrigin.Certificate().Raw})
	if err := os.WriteFile(ca, pemCert, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"warm", "--proxy=" + tlsOrigin.URL, "--progress=off", "--to=" + t.TempDir(), f.app}
	if code, _, errOut := runCLI(args...); code != exitFailure || !strings.Contains(errOut, "certificate") {
		t.Errorf("without --ca-file: exit %d, stderr %q; want 1 naming the certificate", code, errOut)
	}
	if code, _, errOut := runCLI(append(args, "--ca-file="+ca)...); code != exitOK {
		t.Errorf("with --ca-file: exit %d, stderr %q; want 0", code, errOut)
	}
}

// TestWarmCredentials: warm sends the credentials of its --proxy URL's user info (and of
// the netrc file, over https) to an origin that wants them, and never prints them.
func TestWarmCredentials(t *testing.T) {
	f := newWarmFixture(t, 4)
	authed := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		f.origin.Config.Handler.ServeHTTP(w, r)
	}))
	authed.Config.ErrorLog = log.New(io.Discard, "", 0)
	authed.StartTLS()
	t.Cleanup(authed.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: authed.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	netrc := filepath.Join(t.TempDir(), "netrc")
	if err := os.WriteFile(netrc, []byte("machine "+strings.TrimPrefix(authed.URL, "https://")+" login ci password s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	none := filepath.Join(t.TempDir(), "none")
	host := strings.TrimPrefix(authed.URL, "https://")
	// A GOAUTH command that gives the header, and one that fails printing the password.
	scripts := t.TempDir()
	header := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	command := filepath.Join(scripts, "auth")
	failing := filepath.Join(scripts, "failing")
	if err := os.WriteFile(command, []byte("#!/bin/sh\nprintf 'https://"+host+"\\n\\n"+header+"\\n\\n'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'https://"+host+"'\necho '"+header+"'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// git credential fill with the store helper, in a HOME of its own.
	home := t.TempDir()
	gitConfig := filepath.Join(home, "gitconfig")
	gitStore := filepath.Join(home, "store")
	if err := os.WriteFile(gitConfig, []byte("[credential]\n\thelper = store --file "+gitStore+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gitStore, []byte("https://ci:s3cret@"+host+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, gitErr := exec.LookPath("git")
	for _, tc := range []struct {
		name, proxy, netrc, goauth string
		want                       int
		stderr                     string
	}{
		{"none", authed.URL, none, "netrc", exitFailure, ""},
		{"user info", strings.Replace(authed.URL, "https://", "https://ci:s3cret@", 1), none, "netrc", exitOK, ""},
		{"netrc", authed.URL, netrc, "netrc", exitOK, "from the netrc file"},
		{"command", authed.URL, none, command + " --arg", exitOK, "GOAUTH command auth"},
		{"failing command", authed.URL, none, failing, exitFailure, "GOAUTH command failing: exit status 1"},
		{"command after netrc", authed.URL, netrc, "netrc;" + failing, exitOK, ""},
		{"git", authed.URL, none, "git " + home, exitOK, "GOAUTH git " + home},
		{"bad GOAUTH", authed.URL, none, "netrc;;git " + home, exitUsage, "GOAUTH has an empty entry"},
		{"git relative", authed.URL, none, "git home", exitUsage, "git needs an absolute directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.goauth, "git") && gitErr != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("CI=true but git is missing: %v", gitErr)
				}
				t.Skipf("GOAUTH=git needs git: %v", gitErr)
			}
			t.Setenv("NETRC", tc.netrc)
			t.Setenv("GOAUTH", tc.goauth)
			t.Setenv("HOME", home)
			t.Setenv("GIT_CONFIG_GLOBAL", gitConfig)
			t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
			code, out, errOut := runCLI("warm", "--proxy="+tc.proxy, "--ca-file="+ca, "--progress=off", "--to="+t.TempDir(), f.app)
			if code != tc.want {
				t.Errorf("exit %d, want %d\n%s", code, tc.want, errOut)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut)
			}
			if strings.Contains(out+errOut, "s3cret") || strings.Contains(out+errOut, header) {
				t.Errorf("warm printed the password:\n%s%s", out, errOut)
			}
		})
	}
}
