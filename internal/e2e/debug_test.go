package e2e

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/mod/module"
)

var debugRE = regexp.MustCompile(`msg="debug listener" addr=(\S+)`)

// debugAddr returns the address p's --debug-listen serves on, from its log.
func debugAddr(t *testing.T, p *proc) string {
	t.Helper()
	m := debugRE.FindStringSubmatch(p.log.String())
	if m == nil {
		t.Fatalf("no debug listener in the log:\n%s", p.log.String())
	}
	return m[1]
}

// debugGet fetches path from the debug listener at addr with the Authorization header auth
// (none when empty) and returns the status and body.
func debugGet(t *testing.T, addr, path, auth string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading: %v", path, err)
	}
	return resp.StatusCode, body
}

// TestDebugListen profiles a running serve through --debug-listen with the go command's own
// tools: a CPU profile go tool pprof reads, an execution trace go tool trace reads, both
// taken while the server answers module requests; the heap and goroutine profiles; no
// command line (it may hold upstream credentials).
func TestDebugListen(t *testing.T) {
	mods, _ := fixtureModules()
	org := newOrigin(t, mods)
	// Credentials in the upstream URL: the command line must not be served.
	up := strings.Replace(org.URL, "http://", "http://ci:s3cret-upstream@", 1)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + up, "--debug-listen=127.0.0.1:0"}, nil)
	addr := debugAddr(t, p)
	if addr == p.addr {
		t.Fatalf("debug listener on the serving address %s", addr)
	}

	// Keep the server answering while the profile and trace run.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := &http.Client{Timeout: 10 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, m := range mods {
				if resp, err := c.Get("http://" + p.addr + "/" + escapePath(t, m.Path) + "/@v/list"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}()
	defer func() { close(stop); <-done }()

	dir := t.TempDir()
	code, cpu := debugGet(t, addr, "/debug/pprof/profile?seconds=1", "")
	if code != 200 {
		t.Fatalf("CPU profile: %d %s", code, cpu)
	}
	cpuFile := filepath.Join(dir, "cpu.pprof")
	if err := os.WriteFile(cpuFile, cpu, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", cpuFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: cpu") {
		t.Errorf("go tool pprof -top of the CPU profile: %v\n%s", err, out)
	}

	code, tr := debugGet(t, addr, "/debug/pprof/trace?seconds=1", "")
	if code != 200 || !bytes.HasPrefix(tr, []byte("go 1.")) {
		t.Fatalf("execution trace: %d, starts %q", code, tr[:min(len(tr), 16)])
	}
	trFile := filepath.Join(dir, "trace.out")
	if err := os.WriteFile(trFile, tr, 0o644); err != nil {
		t.Fatal(err)
	}
	// The trace's network blocking profile shows the server reading requests.
	netFile := filepath.Join(dir, "net.pprof")
	var stderr bytes.Buffer
	cmd := exec.Command("go", "tool", "trace", "-pprof=net", trFile)
	cmd.Stderr = &stderr
	prof, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool trace -pprof=net: %v\n%s", err, stderr.String())
	}
	if err := os.WriteFile(netFile, prof, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("go", "tool", "pprof", "-top", "-nodecount=200", netFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fasthttp.(*Server).serveConn") {
		t.Errorf("go tool pprof -top of the trace's network profile: %v; want the server's connections\n%.2000s", err, out)
	}

	for path, want := range map[string]string{
		"/debug/pprof/":                     "goroutine",
		"/debug/pprof/heap?debug=1":         "heap profile:",
		"/debug/pprof/goroutine?debug=1":    "goroutine profile:",
		"/debug/pprof/allocs?debug=1":       "heap profile:",
		"/debug/pprof/threadcreate?debug=1": "threadcreate profile:",
	} {
		code, body := debugGet(t, addr, path, "")
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d, want 200 with %q:\n%.300s", path, code, want, body)
		}
	}
	for _, path := range []string{"/debug/pprof/cmdline", "/", "/metrics", "/" + escapePath(t, mods[0].Path) + "/@v/list"} {
		code, body := debugGet(t, addr, path, "")
		if code != 404 || bytes.Count(body, []byte("\n")) != 1 {
			t.Errorf("GET %s = %d %q, want a one-line 404", path, code, body)
		}
		if bytes.Contains(body, []byte("s3cret")) {
			t.Errorf("GET %s shows the upstream's credentials: %q", path, body)
		}
	}
	code, body := debugGet(t, addr, "/debug/pprof/goroutine?debug=2", "")
	if code != 200 || bytes.Contains(body, []byte("s3cret")) {
		t.Errorf("goroutine dump: %d, credentials shown: %v", code, bytes.Contains(body, []byte("s3cret")))
	}
	for _, path := range []string{"/debug/pprof/profile?seconds=3600", "/debug/pprof/trace?seconds=301"} {
		if code, body := debugGet(t, addr, path, ""); code != 400 || bytes.Count(body, []byte("\n")) != 1 {
			t.Errorf("GET %s = %d %q, want a one-line 400 (at most 300 s)", path, code, body)
		}
	}
}

// TestDebugListenClientAuth: with --client-auth the profiles want the same credentials as
// the proxy.
func TestDebugListenClientAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("t0ken"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	clients := filepath.Join(t.TempDir(), "clients")
	if err := os.WriteFile(clients, []byte("ops:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mods, _ := fixtureModules()
	org := newOrigin(t, mods)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL,
		"--debug-listen=127.0.0.1:0", "--client-auth=" + clients}, nil)
	addr := debugAddr(t, p)
	good := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:t0ken"))
	bad := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:wrong"))
	for _, c := range []struct {
		auth string
		want int
	}{{"", 401}, {bad, 401}, {good, 200}} {
		if code, body := debugGet(t, addr, "/debug/pprof/heap?debug=1", c.auth); code != c.want {
			t.Errorf("heap profile with %q = %d, want %d: %.200s", c.auth, code, c.want, body)
		}
	}
}

// escapePath is module.EscapePath of a fixture's path.
func escapePath(t *testing.T, path string) string {
	t.Helper()
	p, err := module.EscapePath(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
