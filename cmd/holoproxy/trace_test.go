package main

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	xtrace "golang.org/x/exp/trace"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/report"
)

// traceOrigin is a loopback HTTPS proxy over a modtree tree that counts what it saw.
type traceOrigin struct {
	srv                *httptest.Server
	conns, handshakes  atomic.Int64
	requests, notFound atomic.Int64
	missing            func(module string) bool // answered 404
	// wantAuth, when set before the first request, is the Authorization header every
	// request must carry, else it is answered 401 (counted in unauthorized).
	wantAuth     string
	unauthorized atomic.Int64
}

// traceFixture starts proxies A and B over one tree of n modules; A answers 404 for the
// modules whose path ends in an even digit. It returns them, the CA file that trusts
// them, and the module arguments (path@version) of the tree.
func traceFixture(t *testing.T, n int) (a, b *traceOrigin, caFile string, mods []string) {
	t.Helper()
	dir := t.TempDir()
	tree, _ := modtree.Graph("mods.test/c", n, 2, 2)
	if err := modtree.Write(filepath.Join(dir, "tree"), tree); err != nil {
		t.Fatal(err)
	}
	for _, m := range tree {
		mods = append(mods, m.Path+"@"+m.Version)
	}
	files := http.FileServer(http.Dir(filepath.Join(dir, "tree")))
	start := func(missing func(string) bool) *traceOrigin {
		o := &traceOrigin{missing: missing}
		o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o.requests.Add(1)
			if o.wantAuth != "" && r.Header.Get("Authorization") != o.wantAuth {
				o.unauthorized.Add(1)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			mod, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/@")
			if o.missing(mod) {
				o.notFound.Add(1)
				http.Error(w, "not found: "+mod, http.StatusNotFound)
				return
			}
			files.ServeHTTP(w, r)
		}))
		o.srv.EnableHTTP2 = true
		o.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes a client abandons are no news
		o.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				o.conns.Add(1)
			}
		}
		o.srv.TLS = &tls.Config{VerifyConnection: func(tls.ConnectionState) error {
			o.handshakes.Add(1)
			return nil
		}}
		o.srv.StartTLS()
		t.Cleanup(o.srv.Close)
		return o
	}
	a = start(func(m string) bool { return strings.ContainsAny(m[len(m)-1:], "02468") })
	b = start(func(string) bool { return false })
	caFile = filepath.Join(dir, "ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemCert, 0o600); err != nil {
		t.Fatal(err)
	}
	return a, b, caFile, mods
}

// readTraceJSON reads a report written by trace --json.
func readTraceJSON(t *testing.T, path string) report.Trace {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("report not written: %v", err)
	}
	defer f.Close()
	tr, err := report.ReadJSON(f)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return tr
}

func traceRun(t *testing.T, tr report.Trace, name string) report.Run {
	t.Helper()
	for _, r := range tr.Runs {
		if r.Name == name {
			return r
		}
	}
	var names []string
	for _, r := range tr.Runs {
		names = append(names, r.Name)
	}
	t.Fatalf("no run %q; runs %q", name, names)
	return report.Run{}
}

// TestTraceUsage checks that bad usage exits 2 with a one-line reason, before anything is
// fetched.
func TestTraceUsage(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown flag", []string{"trace", "--bogus"}, "unknown flag: --bogus"},
		{"bad compare", []string{"trace", "--proxy=https://proxy-a.test", "--compare=sideways", "mods.test/m"}, `--compare "sideways": want "transports" or "dns=BACKEND`},
		{"bad compare backend", []string{"trace", "--proxy=https://proxy-a.test", "--compare=dns=system,ftp://x", "mods.test/m"}, "--compare"},
		{"compare one backend", []string{"trace", "--proxy=https://proxy-a.test", "--compare=dns=system", "mods.test/m"}, "two backends"},
		{"compare dns and --dns", []string{"trace", "--proxy=https://proxy-a.test", "--dns=system", "--compare=dns=system,udp://127.0.0.1:53", "mods.test/m"}, "--dns and --compare"},
		{"go-mod and modules", []string{"trace", "--proxy=https://proxy-a.test", "--go-mod=" + filepath.Join(empty, "go.mod"), "mods.test/m"}, "not both"},
		{"bad module path", []string{"trace", "--proxy=https://proxy-a.test", "not a module"}, "bad module"},
		{"bad version", []string{"trace", "--proxy=https://proxy-a.test", "mods.test/m@v2.0.0"}, "bad module"},
		{"missing go.mod", []string{"trace", "--proxy=https://proxy-a.test", "--go-mod=" + filepath.Join(empty, "go.mod")}, "--go-mod"},
		{"jobs", []string{"trace", "-j", "0", "mods.test/m"}, "--jobs must be at least 1"},
		{"count", []string{"trace", "--count=0", "mods.test/m"}, "--count must be at least 1"},
		{"bad dns", []string{"trace", "--dns=carrier-pigeon", "mods.test/m"}, "--dns"},
		{"bad progress", []string{"trace", "--progress=loud", "mods.test/m"}, "--progress"},
		{"bad timeout", []string{"trace", "--tls-timeout=0s", "mods.test/m"}, "--tls-timeout must be above zero"},
		{"bad proxy", []string{"trace", "--proxy=ftp://proxy-a.test", "mods.test/m"}, "--proxy"},
		{"proxy off", []string{"trace", "--proxy=off", "mods.test/m"}, "no proxy to trace"},
		{"direct turned off", []string{"trace", "--proxy=direct", "--direct-jobs=0", "mods.test/m"}, "no proxy to trace"},
		{"direct jobs", []string{"trace", "--direct-jobs=-1", "mods.test/m"}, "--direct-jobs -1"},
		{"direct timeout", []string{"trace", "--direct-timeout=0s", "mods.test/m"}, "--direct-timeout must be above zero"},
		{"no html directory", []string{"trace", "--html=" + filepath.Join(empty, "no", "r.html"), "mods.test/m"}, "--html"},
		{"gomodcache without a command", []string{"trace", "--gomodcache=" + empty, "mods.test/m"}, "--gomodcache is for a recorded command"},
		{"modules and a command", []string{"trace", "--proxy=https://proxy-a.test", "mods.test/m", "--", "go", "version"}, "not both"},
		{"no command", []string{"trace", "--proxy=https://proxy-a.test", "--"}, "-- must be followed"},
		{"jobs with a command", []string{"trace", "--proxy=https://proxy-a.test", "-j", "3", "--", "go", "version"}, "--jobs does not apply"},
		{"compare with a command", []string{"trace", "--proxy=https://proxy-a.test", "--compare=transports", "--", "go", "version"}, "--compare does not apply"},
		{"missing gomodcache", []string{"trace", "--proxy=https://proxy-a.test", "--gomodcache=" + filepath.Join(empty, "none"), "--", "go", "version"}, "--gomodcache"},
		{"command and proxy off", []string{"trace", "--proxy=off", "--", "go", "version"}, "no proxy to relay to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d; want %d\nstderr: %s", code, exitUsage, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(errOut), "\n"); lines != 0 {
				t.Errorf("usage error spans %d lines; want one:\n%s", lines+1, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q; want nothing on bad usage", out)
			}
		})
	}
	t.Run("no go.mod here", func(t *testing.T) {
		t.Chdir(empty)
		code, _, errOut := runCLI("trace", "--proxy=https://proxy-a.test")
		if code != exitUsage || !strings.Contains(errOut, "nothing to trace") {
			t.Errorf("exit %d, stderr %q; want 2 and nothing to trace", code, errOut)
		}
	})
}

// TestTraceFallThroughSucceeds traces a chain whose first proxy lacks some modules: proxy A
// alone fails, the chain falls through to B and succeeds, so the exit status is 0, and the
// reports count the fall-throughs.
func TestTraceFallThroughSucceeds(t *testing.T) {
	a, b, ca, mods := traceFixture(t, 6)
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "t.json"), filepath.Join(dir, "t.html")
	chain := a.srv.URL + "," + b.srv.URL
	code, out, errOut := runCLI(append([]string{"trace", "--proxy=" + chain, "--ca-file=" + ca,
		"--json=" + jsonPath, "--html=" + htmlPath}, mods...)...)
	if code != exitOK {
		t.Fatalf("exit %d; want 0\nstderr: %s", code, errOut)
	}
	tr := readTraceJSON(t, jsonPath)
	if len(tr.Runs) != 3 {
		t.Fatalf("%d runs; want A alone, B alone and the chain", len(tr.Runs))
	}
	missingAtA := 0
	for _, m := range mods {
		p, _, _ := strings.Cut(m, "@")
		if a.missing(p) {
			missingAtA += 3 // .info, .mod, .zip
		}
	}
	if missingAtA == 0 {
		t.Fatal("fixture: A has every module; the test needs fall-throughs")
	}
	c := traceRun(t, tr, "chain")
	if c.Failed != 0 || c.FallThroughs != missingAtA || c.Requests != 3*len(mods) {
		t.Errorf("chain: failed %d, fall-throughs %d, requests %d; want 0, %d, %d", c.Failed, c.FallThroughs, c.Requests, missingAtA, 3*len(mods))
	}
	if alone := traceRun(t, tr, a.srv.URL+" alone"); alone.Failed == 0 {
		t.Errorf("A alone: no failure; want the modules A lacks to fail")
	}
	if !strings.Contains(out, "chain") || !strings.Contains(out, b.srv.URL) {
		t.Errorf("terminal report does not name the chain run and proxy B:\n%s", out)
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil || !bytes.Contains(html, []byte("<svg")) {
		t.Errorf("HTML report: %v, %d bytes; want a page with SVG", err, len(html))
	}
}

// TestTraceCredentials traces a chain whose first proxy wants basic authentication, given
// as user info in its URL or by a GOAUTH command: every request to it carries the
// credentials, and neither the reports nor the terminal show them.
func TestTraceCredentials(t *testing.T) {
	const secret = "s3cret-t0ken"
	for _, how := range []string{"user info", "GOAUTH command"} {
		t.Run(how, func(t *testing.T) {
			a, b, ca, mods := traceFixture(t, 4)
			req := &http.Request{Header: http.Header{}}
			req.SetBasicAuth("team", secret)
			a.wantAuth = req.Header.Get("Authorization")
			dir := t.TempDir()
			jsonPath, htmlPath := filepath.Join(dir, "t.json"), filepath.Join(dir, "t.html")
			chain := strings.Replace(a.srv.URL, "https://", "https://team:"+secret+"@", 1) + "," + b.srv.URL
			t.Setenv("GOAUTH", "off")
			if how == "GOAUTH command" {
				chain = a.srv.URL + "," + b.srv.URL
				script := filepath.Join(dir, "auth")
				out := a.srv.URL + "\\n\\n" + "Authorization: " + a.wantAuth + "\\n\\n"
				if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '"+out+"'\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				t.Setenv("GOAUTH", script)
			}
			code, out, errOut := runCLI(append([]string{"trace", "--proxy=" + chain, "--ca-file=" + ca,
				"--json=" + jsonPath, "--html=" + htmlPath}, mods...)...)
			if code != exitOK {
				t.Fatalf("exit %d; want 0\nstderr: %s", code, errOut)
			}
			if a.requests.Load() == 0 || a.unauthorized.Load() != 0 {
				t.Errorf("proxy A: %d requests, %d without the credentials; want some, none", a.requests.Load(), a.unauthorized.Load())
			}
			traceRun(t, readTraceJSON(t, jsonPath), a.srv.URL+" alone")
			for _, f := range []string{jsonPath, htmlPath} {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(data, []byte(secret)) || bytes.Contains(data, []byte(a.wantAuth)) {
					t.Errorf("%s shows the credentials", filepath.Base(f))
				}
			}
			if strings.Contains(out+errOut, secret) || strings.Contains(out+errOut, a.wantAuth) {
				t.Errorf("the terminal shows the credentials")
			}
		})
	}
}

// TestTraceChainFailureExits1 traces modules no proxy of the chain has: exit 1, and both
// report files are still written and tell the failures.
func TestTraceChainFailureExits1(t *testing.T) {
	a, b, ca, mods := traceFixture(t, 2)
	b.missing = func(string) bool { return true }
	a.missing = func(string) bool { return true }
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "t.json"), filepath.Join(dir, "t.html")
	code, _, errOut := runCLI(append([]string{"trace", "--proxy=" + a.srv.URL + "," + b.srv.URL, "--ca-file=" + ca,
		"--json=" + jsonPath, "--html=" + htmlPath}, mods...)...)
	if code != exitFailure {
		t.Fatalf("exit %d; want 1\nstderr: %s", code, errOut)
	}
	if !strings.Contains(errOut, "requests through the chain failed") {
		t.Errorf("stderr %q does not say the chain failed", errOut)
	}
	c := traceRun(t, readTraceJSON(t, jsonPath), "chain")
	if c.Failed != len(mods) { // each module stops at its first failed request
		t.Errorf("chain: %d failed; want %d", c.Failed, len(mods))
	}
	if st, err := os.Stat(htmlPath); err != nil || st.Size() == 0 {
		t.Errorf("HTML report not written: %v", err)
	}
}

// TestTraceCompareTransports runs --compare transports with three passes: two runs side by
// side, and the fresh transports make a new connection per pass where the shared one
// reuses its own.
func TestTraceCompareTransports(t *testing.T) {
	_, b, ca, mods := traceFixture(t, 4)
	jsonPath := filepath.Join(t.TempDir(), "t.json")
	code, out, errOut := runCLI(append([]string{"trace", "--proxy=" + b.srv.URL, "--ca-file=" + ca,
		"--compare=transports", "--count=3", "--json=" + jsonPath}, mods...)...)
	if code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", code, errOut)
	}
	tr := readTraceJSON(t, jsonPath)
	if len(tr.Runs) != 2 || tr.Runs[0].Name != "fresh transports" || tr.Runs[1].Name != "shared transport" {
		t.Fatalf("runs %v; want fresh transports, shared transport", tr.Runs)
	}
	if !strings.Contains(out, "fresh transports") || !strings.Contains(out, "shared transport") {
		t.Errorf("terminal report does not show both runs:\n%s", out)
	}
	newConns := func(r report.Run) (n int) {
		for _, s := range r.Samples {
			if !s.Reused {
				n++
			}
		}
		return n
	}
	if f, s := newConns(tr.Runs[0]), newConns(tr.Runs[1]); f < 3 || s >= f {
		t.Errorf("requests on new connections: fresh %d, shared %d; want one or more per pass for fresh, fewer for shared", f, s)
	}
}

// TestTraceRuntimeTrace checks that --runtime-trace writes a trace the Go trace parser
// reads, with one task per request and dns, connect and tls regions, each inside a
// request's task, for every connection the origins accepted.
func TestTraceRuntimeTrace(t *testing.T) {
	a, b, ca, mods := traceFixture(t, 4)
	dir := t.TempDir()
	tracePath, jsonPath := filepath.Join(dir, "trace.out"), filepath.Join(dir, "t.json")
	code, _, errOut := runCLI(append([]string{"trace", "--proxy=" + a.srv.URL + "," + b.srv.URL, "--ca-file=" + ca,
		"--runtime-trace=" + tracePath, "--json=" + jsonPath}, mods...)...)
	if code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", code, errOut)
	}
	requests := 0
	for _, r := range readTraceJSON(t, jsonPath).Runs {
		requests += r.Requests
	}
	got := readRuntimeTrace(t, tracePath)
	if got.tasks != requests {
		t.Errorf("%d request tasks; want one per request (%d)", got.tasks, requests)
	}
	regions, outside := got.regions, got.outside
	// A dial the client abandons once its request got another connection may reach the
	// origins' accept loops after the command has exited: let their counts settle (bounded).
	conns := int(a.conns.Load() + b.conns.Load())
	for deadline := time.Now().Add(2 * time.Second); conns < regions["connect"]-got.failed["connect"] && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		conns = int(a.conns.Load() + b.conns.Load())
	}
	handshakes := int(a.handshakes.Load() + b.handshakes.Load())
	t.Logf("requests %d, regions %v, origin connections %d, handshakes %d", requests, regions, conns, handshakes)
	for _, want := range []struct {
		region string
		n      int
	}{{"dns", conns}, {"connect", conns}, {"tls", handshakes}, {"roundtrip", requests}} {
		if regions[want.region] < want.n || want.n == 0 {
			t.Errorf("%d %q regions; want at least %d", regions[want.region], want.region, want.n)
		}
	}
	// A dial cancelled on the way (net/http cancels the dials no request waits for when the
	// command closes its idle connections) has its region and a "failed" log, and may or may
	// not have reached an origin: between the regions that ended well and all of them.
	okConnect, okTLS := regions["connect"]-got.failed["connect"], regions["tls"]-got.failed["tls"]
	if conns < okConnect || conns > regions["connect"] || handshakes < okTLS || handshakes > regions["tls"] {
		t.Errorf("connect regions %d (%d failed), tls regions %d (%d failed); want one per connection the origins accepted (%d) and per handshake (%d)",
			regions["connect"], got.failed["connect"], regions["tls"], got.failed["tls"], conns, handshakes)
	}
	if len(outside) > 0 {
		t.Errorf("%d regions outside any request's task: %q", len(outside), outside)
	}
}

// runtimeTrace is what a runtime trace written by trace --runtime-trace holds.
type runtimeTrace struct {
	tasks   int            // tasks of requests ("GET <kind>")
	regions map[string]int // regions by type
	failed  map[string]int // "failed: ..." logs by category (connect, tls): regions that set up nothing
	outside []string       // types of the regions not in a request's task
}

// readRuntimeTrace parses the runtime trace at path with the parser go tool trace uses.
func readRuntimeTrace(t *testing.T, path string) runtimeTrace {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := xtrace.NewReader(f)
	if err != nil {
		t.Fatalf("the runtime trace does not parse: %v", err)
	}
	tasks := map[xtrace.TaskID]string{}
	rt := runtimeTrace{regions: map[string]int{}, failed: map[string]int{}}
	for {
		ev, err := rd.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the runtime trace: %v", err)
		}
		switch ev.Kind() {
		case xtrace.EventTaskBegin:
			task := ev.Task()
			tasks[task.ID] = task.Type
			if strings.HasPrefix(task.Type, "GET ") {
				rt.tasks++
			}
		case xtrace.EventLog:
			if l := ev.Log(); strings.HasPrefix(l.Message, "failed: ") {
				rt.failed[l.Category]++
			}
		case xtrace.EventRegionBegin:
			r := ev.Region()
			rt.regions[r.Type]++
			if typ, ok := tasks[r.Task]; !ok || !strings.HasPrefix(typ, "GET ") {
				rt.outside = append(rt.outside, r.Type)
			}
		}
	}
	return rt
}

// TestTraceProxyFromGoEnv checks that without --proxy the chain is the go command's
// GOPROXY, read at run time: a stand-in go command on PATH names proxy B.
func TestTraceProxyFromGoEnv(t *testing.T) {
	_, b, ca, mods := traceFixture(t, 2)
	bin := t.TempDir()
	script := "#!/bin/sh\n[ \"$1 $2\" = \"env GOPROXY\" ] || exit 3\necho " + b.srv.URL + ",off\n"
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	jsonPath := filepath.Join(t.TempDir(), "t.json")
	code, _, errOut := runCLI(append([]string{"trace", "--ca-file=" + ca, "--json=" + jsonPath}, mods...)...)
	if code != exitOK {
		t.Fatalf("exit %d; want 0\nstderr: %s", code, errOut)
	}
	tr := readTraceJSON(t, jsonPath)
	if want := "GOPROXY=" + b.srv.URL + ",off"; !strings.Contains(tr.Title, want) {
		t.Errorf("title %q does not name %s", tr.Title, want)
	}
	if c := traceRun(t, tr, "chain"); c.Requests != 3*len(mods) || c.Failed != 0 || b.requests.Load() == 0 {
		t.Errorf("chain: %d requests, %d failed, proxy B asked %d times; want %d, 0 and some", c.Requests, c.Failed, b.requests.Load(), 3*len(mods))
	}
}

// The environment twins of flags a recorded command ignores (HOLOPROXY_JOBS is warm's too)
// do not make `trace -- COMMAND` a usage error; the same flags on its command line do.
func TestTraceRecordIgnoresEnvTwins(t *testing.T) {
	env := map[string]string{"HOLOPROXY_JOBS": "3", "HOLOPROXY_PROGRESS": "plain", "HOLOPROXY_DIRECT_JOBS": "2"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var out, errb bytes.Buffer
	code := execute([]string{"trace", "--proxy=http://127.0.0.1:1", "--", "go", "version"}, getenv, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d; stderr %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "go version (recorded)") || !strings.Contains(errb.String(), "go version go1.") {
		t.Errorf("want the report on stdout and the command's output on stderr:\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
}
