package goproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/holoproxy/holoproxy/internal/lab"
)

func TestParseGOAUTH(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in      string
		want    []AuthMethod
		wantErr string
	}{
		{in: "netrc", want: []AuthMethod{{Kind: "netrc"}}},
		{in: "off"},
		{in: " netrc ; git " + dir + " ", want: []AuthMethod{{Kind: "netrc"}, {Kind: "git", Dir: dir}}},
		{in: `/bin/auth --arg1 "value with spaces" 'x y'`, want: []AuthMethod{{Kind: "command", Args: []string{"/bin/auth", "--arg1", "value with spaces", "x y"}}}},
		{in: "command /bin/auth", want: []AuthMethod{{Kind: "command", Args: []string{"command", "/bin/auth"}}}},
		{in: "", wantErr: "empty entry"},
		{in: "netrc;;git " + dir, wantErr: "empty entry"},
		{in: "netrc;off", wantErr: "cannot be combined"},
		{in: "git", wantErr: "absolute directory"},
		{in: "git relative", wantErr: "absolute directory"},
		{in: "git " + dir + " extra", wantErr: "absolute directory"},
		{in: "git " + filepath.Join(dir, "missing"), wantErr: "not a directory"},
		{in: "git " + file, wantErr: "not a directory"},
		{in: `/bin/auth "unterminated`, wantErr: "unterminated"},
	} {
		got, err := ParseGOAUTH(tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseGOAUTH(%q) = %v, %v; want a one-line error with %q", tc.in, got, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("ParseGOAUTH(%q): %v", tc.in, err)
		case !reflect.DeepEqual(got, tc.want):
			t.Errorf("ParseGOAUTH(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
	if s := (AuthMethod{Kind: "command", Args: []string{"/opt/bin/auth", "--token", "s3cret"}}).String(); s != "command auth" {
		t.Errorf("String of a command = %q, want its program's name alone", s)
	}
}

func TestParseAuthCommandOutput(t *testing.T) {
	const secret = "Basic c2VjcmV0"
	for _, tc := range []struct {
		name, in string
		want     map[string]http.Header
		wantErr  string
	}{
		{name: "go help goauth's example",
			in: "https://example.com\nhttps://example.net/api/\n\nAuthorization: " + secret + "\n\nhttps://another-example.org/\n\nExample: Data\n\n",
			want: map[string]http.Header{
				"example.com":         {"Authorization": {secret}},
				"example.net/api":     {"Authorization": {secret}},
				"another-example.org": {"Example": {"Data"}},
			}},
		{name: "empty", in: "", want: map[string]http.Header{}},
		{name: "a set without headers removes", in: "https://a.test/x\n\n\n", want: map[string]http.Header{"a.test/x": {}}},
		{name: "two values", in: "https://a.test\n\nX-A: 1\nX-A: 2\n\n", want: map[string]http.Header{"a.test": {"X-A": {"1", "2"}}}},
		{name: "crlf", in: "https://a.test\r\n\r\nX-A: 1\r\n\r\n", want: map[string]http.Header{"a.test": {"X-A": {"1"}}}},
		{name: "no empty line after the URLs", in: "https://a.test\n", wantErr: "no empty line after its URLs"},
		{name: "no empty line after the headers", in: "https://a.test\n\nAuthorization: " + secret + "\n", wantErr: "not ended by an empty line"},
		{name: "not a URL", in: "a.test\n\nX: y\n\n", wantErr: "not an https URL"},
		{name: "plain http", in: "http://a.test\n\nX: y\n\n", wantErr: "not an https URL"},
		{name: "headers without URL", in: "\nX: y\n\n", wantErr: "no URL"},
		{name: "not a header line", in: "https://a.test\n\nAuthorization " + secret + "\n\n", wantErr: "Name: value"},
		{name: "bad header name", in: "https://a.test\n\nBad Name: " + secret + "\n\n", wantErr: "set 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthCommandOutput([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "c2VjcmV0") {
					t.Fatalf("= %v, %v; want an error with %q that does not show the header", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for p, h := range got {
				if len(h) == 0 {
					got[p] = http.Header{}
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("= %v, want %v", got, tc.want)
			}
		})
	}
}

// tokenServer is an https upstream that wants one Authorization value (a Bearer token or
// basic credentials): 401 without it, 404 below /missing/, else 200. It records what each
// request carried.
type tokenServer struct {
	*httptest.Server
	host string
	mu   sync.Mutex
	want string
	seen []string // "path auth"
}

func newTokenServer(t *testing.T, want string) *tokenServer {
	s := &tokenServer{want: want}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.URL.Path+" "+r.Header.Get("Authorization"))
		ok := r.Header.Get("Authorization") == s.want
		s.mu.Unlock()
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="upstream"`)
			http.Error(w, "who are you?", http.StatusUnauthorized)
		case strings.HasPrefix(r.URL.Path, "/missing/"):
			http.Error(w, "not found", http.StatusNotFound)
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(s.Close)
	s.host = strings.TrimPrefix(s.URL, "https://")
	return s
}

func (s *tokenServer) setWant(v string) {
	s.mu.Lock()
	s.want = v
	s.mu.Unlock()
}

// takeSeen returns what the requests carried since the last call.
func (s *tokenServer) takeSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.seen
	s.seen = nil
	return out
}

// logSink collects what AuthConfig.Logf reports.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logSink) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// writeScript writes an executable shell script and returns its path.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the GOAUTH command of this test is a shell script")
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// getStatus makes a GET through hc and returns the status.
func getStatus(t *testing.T, hc *http.Client, u string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestGOAUTHCommand: a command's headers go with the requests below its prefixes; after a
// 4xx it is run again with the URL and the answer on its stdin, and the request is made
// again with what it gave; later 4xx answers reuse that run, a refused credential is asked
// for again.
func TestGOAUTHCommand(t *testing.T) {
	srv := newTokenServer(t, "Bearer tok-1")
	dir := t.TempDir()
	calls, token := filepath.Join(dir, "calls"), filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("tok-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := writeScript(t, dir, "auth", fmt.Sprintf(`echo "args $#: $*" >> %[1]s
if [ $# -eq 2 ]; then
	printf 'https://%[2]s\n\nAuthorization: Bearer tok-initial\n\n'
	exit 0
fi
sed 's/^/stdin: /' >> %[1]s
printf 'https://%[2]s\n\nAuthorization: Bearer %%s\n\n' "$(cat %[3]s)"
`, calls, srv.host, token))
	logs := &logSink{}
	creds := ListCredentials(srv.URL)
	creds.UseGOAUTH(AuthConfig{Methods: []AuthMethod{{Kind: "command", Args: []string{script, "--flag", "two words"}}},
		Logf: logs.logf, Retry: time.Millisecond})
	hc := &http.Client{Transport: creds.RoundTripper(srv.Client().Transport)}

	if code := getStatus(t, hc, srv.URL+"/first/m/@v/list"); code != http.StatusOK {
		t.Fatalf("first request: %d", code)
	}
	if got, want := srv.takeSeen(), []string{"/first/m/@v/list Bearer tok-initial", "/first/m/@v/list Bearer tok-1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("the upstream saw %q, want %q (the first run's header, then the second's)", got, want)
	}
	c := readFile(t, calls)
	for _, want := range []string{
		"args 2: --flag two words\n",
		"args 3: --flag two words " + srv.URL + "/first/m/@v/list\n",
		"stdin: HTTP/1.1 401 Unauthorized\n",
		"stdin: Www-Authenticate: Bearer realm=\"upstream\"\n",
	} {
		if !strings.Contains(c, want) {
			t.Errorf("the command's calls lack %q:\n%s", want, c)
		}
	}

	// Now every request below the host gets tok-1 at once, and a 404 runs nothing again
	// nor asks again with the same header.
	os.Remove(calls)
	if code := getStatus(t, hc, srv.URL+"/other/@v/list"); code != http.StatusOK {
		t.Errorf("second request: %d", code)
	}
	if code := getStatus(t, hc, srv.URL+"/missing/@v/list"); code != http.StatusNotFound {
		t.Errorf("missing: %d", code)
	}
	if got, want := srv.takeSeen(), []string{"/other/@v/list Bearer tok-1", "/missing/@v/list Bearer tok-1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("the upstream saw %q, want %q", got, want)
	}
	if c := readFile(t, calls); c != "" {
		t.Errorf("the command ran again: %s", c)
	}

	// The token rotates: the refused one is asked for again.
	srv.setWant("Bearer tok-2")
	if err := os.WriteFile(token, []byte("tok-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past Retry
	if code := getStatus(t, hc, srv.URL+"/other/@v/list"); code != http.StatusOK {
		t.Errorf("after the rotation: %d", code)
	}
	if got, want := srv.takeSeen(), []string{"/other/@v/list Bearer tok-1", "/other/@v/list Bearer tok-2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("the upstream saw %q, want %q", got, want)
	}
	if l := logs.all(); len(l) != 0 {
		t.Errorf("logged %q", l)
	}
	// GOAUTH is for https alone.
	plain := newAuthServer(t, nil)
	creds = ListCredentials(plain.URL)
	creds.UseGOAUTH(AuthConfig{Methods: []AuthMethod{{Kind: "command", Args: []string{script}}}})
	getStatus(t, &http.Client{Transport: creds.RoundTripper(http.DefaultTransport)}, plain.URL+"/x")
	if a := plain.auth("/x"); a != "" {
		t.Errorf("plain http got %q", a)
	}
}

// TestGOAUTHClose: Close kills a GOAUTH command still running (the first pass runs on
// though the request that started it left), with the process it started, and returns
// once they are gone; later requests get no credential from GOAUTH and run nothing.
func TestGOAUTHClose(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	srv := newTokenServer(t, "Bearer tok-1")
	dir, work := t.TempDir(), t.TempDir()
	calls := filepath.Join(dir, "calls")
	// The command's child works in work/ and outlives the command unless it is killed too.
	script := writeScript(t, dir, "auth", fmt.Sprintf("echo run >> %s\ncd %s && sleep 60 &\nwait\n", calls, work))
	creds := ListCredentials(srv.URL)
	creds.UseGOAUTH(AuthConfig{Methods: []AuthMethod{{Kind: "command", Args: []string{script}}}, Timeout: time.Minute})
	hc := &http.Client{Transport: creds.RoundTripper(srv.Client().Transport)}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/m/@v/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
	}
	lab.WaitForProcessUnder(t, work, "sleep", 10*time.Second)
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := creds.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := lab.ProcessesUnder(work); len(left) > 0 {
		t.Errorf("processes left after Close: %q", left)
	}
	os.Remove(calls)
	if code := getStatus(t, hc, srv.URL+"/m/@v/list"); code != http.StatusUnauthorized {
		t.Errorf("a request after Close: %d; want the upstream's 401 (no credential)", code)
	}
	if c := readFile(t, calls); c != "" {
		t.Errorf("a GOAUTH command ran after Close: %q", c)
	}
}

// TestGOAUTHCommandFails: a command that fails, prints what is not the format, prints too
// much or hangs gives no header (the 401 stands), is reported in one line, once, without
// the secret it printed, and costs at most its timeout.
func TestGOAUTHCommandFails(t *testing.T) {
	const secret = "tok-s3cret"
	srv := newTokenServer(t, "Bearer "+secret)
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, log string }{
		{"exit status", "echo 'boom: cannot reach the vault' >&2\nexit 3\n", "exit status 3: boom: cannot reach the vault"},
		{"malformed", "printf 'https://" + srv.host + "\\n\\nAuthorization Bearer " + secret + "\\n\\n'\n", "malformed output: set 1"},
		{"too much", "head -c 100000 /dev/zero\n", "output exceeds 1000 bytes"},
		{"hangs", "sleep 30\n", "no answer within 300ms"},
		{"missing program", "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := filepath.Join(dir, "does-not-exist")
			if tc.body != "" {
				script = writeScript(t, dir, strings.ReplaceAll(tc.name, " ", "-"), tc.body)
			}
			logs := &logSink{}
			creds := ListCredentials(srv.URL)
			creds.UseGOAUTH(AuthConfig{Methods: []AuthMethod{{Kind: "command", Args: []string{script, "--token", secret}}},
				Logf: logs.logf, Timeout: 300 * time.Millisecond, MaxOutput: 1000})
			hc := &http.Client{Transport: creds.RoundTripper(srv.Client().Transport)}
			start := time.Now()
			for range 3 {
				if code := getStatus(t, hc, srv.URL+"/m/@v/list"); code != http.StatusUnauthorized {
					t.Errorf("status %d, want the upstream's 401", code)
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("three requests took %v", d)
			}
			for _, s := range srv.takeSeen() {
				if strings.Contains(s, "Bearer") {
					t.Errorf("the upstream got a header: %q", s)
				}
			}
			l := logs.all()
			if len(l) != 1 || !strings.Contains(l[0], tc.log) || !strings.Contains(l[0], "GOAUTH command "+filepath.Base(script)) ||
				strings.Contains(l[0], secret) || strings.Contains(l[0], "\n") {
				t.Errorf("logged %q; want one line with %q and the program's name, without the secret", l, tc.log)
			}
		})
	}
}

// TestGOAUTHOrder: the first method listed wins a prefix both give; the longest prefix
// wins across methods; user info in the URL wins over GOAUTH.
func TestGOAUTHOrder(t *testing.T) {
	srv := newTokenServer(t, "none")
	dir := t.TempDir()
	script := writeScript(t, dir, "auth", fmt.Sprintf("printf 'https://%[1]s\\n\\nAuthorization: Bearer from-command\\n\\nhttps://%[1]s/deep\\n\\nAuthorization: Bearer deep\\n\\n'\n", srv.host))
	netrc := []NetrcEntry{{Machine: srv.host, Login: "n", Password: "p"}}
	command := AuthMethod{Kind: "command", Args: []string{script}}
	for _, tc := range []struct {
		name    string
		list    string
		methods []AuthMethod
		path    string
		want    string
	}{
		{"netrc first", srv.URL, []AuthMethod{{Kind: "netrc"}, command}, "/m", basic("n", "p")},
		{"command first", srv.URL, []AuthMethod{command, {Kind: "netrc"}}, "/m", "Bearer from-command"},
		{"longest prefix", srv.URL, []AuthMethod{{Kind: "netrc"}, command}, "/deep/m", "Bearer deep"},
		{"user info", strings.Replace(srv.URL, "://", "://u:pw@", 1), []AuthMethod{command}, "/m", basic("u", "pw")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds := ListCredentials(tc.list)
			creds.UseGOAUTH(AuthConfig{Methods: tc.methods, Netrc: netrc})
			getStatus(t, &http.Client{Transport: creds.RoundTripper(srv.Client().Transport)}, srv.URL+tc.path)
			seen := srv.takeSeen()
			if len(seen) == 0 || seen[0] != tc.path+" "+tc.want {
				t.Errorf("the upstream saw %q first, want %q", seen, tc.path+" "+tc.want)
			}
		})
	}
}

// gitHome makes a HOME with a global git configuration whose credential helpers are a
// script that records each call (and answers get with the file creds when it exists) and
// store --file store. It returns the environment for git and the three files.
func gitHome(t *testing.T) (env []string, calls, creds, store string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but git is missing: %v", err)
		}
		t.Skipf("git credential needs git: %v", err)
	}
	home := t.TempDir()
	calls, creds, store = filepath.Join(home, "calls"), filepath.Join(home, "creds"), filepath.Join(home, "store")
	helper := writeScript(t, home, "helper", fmt.Sprintf("echo \"$1\" >> %s\nif [ \"$1\" = get ] && [ -f %[2]s ]; then cat %[2]s; fi\n", calls, creds))
	cfg := filepath.Join(home, "gitconfig")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[credential]\n\thelper = %s\n\thelper = store --file %s\n", helper, store)), 0o600); err != nil {
		t.Fatal(err)
	}
	env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "GIT_CONFIG_GLOBAL="+cfg, "GIT_CONFIG_NOSYSTEM=1")
	return env, calls, creds, store
}

// TestGOAUTHGit: git credential fill runs after the first 401 (not before: it needs a URL),
// its credential goes with the retry and every later request, and git's helpers hear the
// outcome: approve (the store helper then keeps it) or reject (it forgets it). A helper
// with nothing gives no header and the 401 stands, without a run of git per request.
func TestGOAUTHGit(t *testing.T) {
	const secret = "g1t-s3cret"
	srv := newTokenServer(t, basic("team", secret))
	newClient := func(env []string, logs *logSink) *http.Client {
		dir := t.TempDir()
		creds := ListCredentials(srv.URL)
		creds.UseGOAUTH(AuthConfig{Methods: []AuthMethod{{Kind: "git", Dir: dir}}, Env: env, Logf: logs.logf})
		return &http.Client{Transport: creds.RoundTripper(srv.Client().Transport), Timeout: 30 * time.Second}
	}

	t.Run("approve", func(t *testing.T) {
		env, calls, creds, store := gitHome(t)
		if err := os.WriteFile(creds, []byte("username=team\npassword="+secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		logs := &logSink{}
		hc := newClient(env, logs)
		srv.takeSeen()
		if code := getStatus(t, hc, srv.URL+"/m/@v/list"); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		if code := getStatus(t, hc, srv.URL+"/n/@v/list"); code != http.StatusOK {
			t.Fatalf("second request: status %d", code)
		}
		if got, want := srv.takeSeen(), []string{"/m/@v/list ", "/m/@v/list " + basic("team", secret), "/n/@v/list " + basic("team", secret)}; !reflect.DeepEqual(got, want) {
			t.Errorf("the upstream saw %q, want %q", got, want)
		}
		if got := readFile(t, calls); got != "get\nstore\n" {
			t.Errorf("the helper was called for %q, want get then store (approve)", got)
		}
		if s := readFile(t, store); !strings.Contains(s, "team:"+secret+"@127.0.0.1") {
			t.Errorf("the store helper did not keep the approved credential: %q", s)
		}
		if l := logs.all(); len(l) != 0 {
			t.Errorf("logged %q", l)
		}
	})

	t.Run("reject", func(t *testing.T) {
		env, calls, _, store := gitHome(t)
		if err := os.WriteFile(store, []byte("https://team:wrong@"+srv.host+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		logs := &logSink{}
		hc := newClient(env, logs)
		srv.takeSeen()
		if code := getStatus(t, hc, srv.URL+"/m/@v/list"); code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", code)
		}
		if got, want := srv.takeSeen(), []string{"/m/@v/list ", "/m/@v/list " + basic("team", "wrong")}; !reflect.DeepEqual(got, want) {
			t.Errorf("the upstream saw %q, want %q", got, want)
		}
		if got := readFile(t, calls); got != "get\nerase\n" {
			t.Errorf("the helper was called for %q, want get then erase (reject)", got)
		}
		if s := readFile(t, store); strings.Contains(s, "wrong") {
			t.Errorf("the store helper kept the rejected credential: %q", s)
		}
	})

	t.Run("nothing", func(t *testing.T) {
		env, calls, _, _ := gitHome(t)
		logs := &logSink{}
		hc := newClient(env, logs)
		srv.takeSeen()
		start := time.Now()
		var wg sync.WaitGroup
		for range 6 { // at once: one run of git serves them all
			wg.Go(func() {
				resp, err := hc.Get(srv.URL + "/m/@v/list")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("status %d, want 401", resp.StatusCode)
				}
			})
		}
		wg.Wait()
		if code := getStatus(t, hc, srv.URL+"/m/@v/list"); code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", code)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %v: git prompted?", d)
		}
		for _, s := range srv.takeSeen() {
			if s != "/m/@v/list " {
				t.Errorf("the upstream got %q", s)
			}
		}
		if got := readFile(t, calls); got != "get\n" {
			t.Errorf("the helper was called for %q, want one get for seven requests", got)
		}
		if l := logs.all(); len(l) != 1 || !strings.Contains(l[0], "gave no credential") {
			t.Errorf("logged %q, want one line saying git gave no credential", l)
		}
	})
}

// FuzzParseGOAUTH checks that a GOAUTH value is parsed or refused with a one-line error,
// and that what is accepted has the documented shape: off alone gives no method; every
// other entry gives one method, netrc, git with an absolute directory that exists, or a
// command with a program, whose String names only the program's base name.
func FuzzParseGOAUTH(f *testing.F) {
	dir := f.TempDir()
	for _, s := range []string{
		"off", "netrc", "off;netrc", "netrc;", ";", "", " ", "git " + dir, "git relative/dir", "git " + dir + " extra",
		"git /no/such/dir", "netrc; git " + dir + "; /bin/cred --token 'a b' \"c d\"", "cred 'unterminated",
		"'' x", "\"/opt/my cred\" arg", "cred\targ\r\narg2", "\u00a0cred", "cred\u00a0arg", "off x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		methods, err := ParseGOAUTH(value)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("ParseGOAUTH(%q): error of more than one line: %q", value, msg)
			}
			return
		}
		parts := strings.Split(value, ";")
		if len(methods) == 0 {
			if len(parts) != 1 || strings.Fields(value)[0] != "off" {
				t.Fatalf("ParseGOAUTH(%q) gave no method", value)
			}
			return
		}
		if len(methods) != len(parts) {
			t.Fatalf("ParseGOAUTH(%q) gave %d methods for %d entries", value, len(methods), len(parts))
		}
		for i, m := range methods {
			s := m.String()
			switch m.Kind {
			case "netrc":
				if strings.Fields(parts[i])[0] != "netrc" {
					t.Fatalf("entry %q taken for netrc", parts[i])
				}
			case "git":
				if fi, err := os.Stat(m.Dir); !filepath.IsAbs(m.Dir) || err != nil || !fi.IsDir() {
					t.Fatalf("entry %q: git in %q", parts[i], m.Dir)
				}
			case "command":
				if len(m.Args) == 0 {
					t.Fatalf("entry %q: a command without a program", parts[i])
				}
				if s != "command "+filepath.Base(m.Args[0]) {
					t.Fatalf("entry %q: String %q shows more than the program", parts[i], s)
				}
				if !strings.ContainsAny(parts[i], `'"`) {
					want := strings.FieldsFunc(parts[i], func(r rune) bool { return strings.ContainsRune(" \t\r\n", r) })
					if !reflect.DeepEqual(m.Args, want) {
						t.Fatalf("entry %q: arguments %q; want %q", parts[i], m.Args, want)
					}
				}
			default:
				t.Fatalf("entry %q: method of kind %q", parts[i], m.Kind)
			}
		}
	})
}

// FuzzParseAuthCommandOutput checks the parsing of a GOAUTH command's output: what is
// accepted is keyed by non-empty prefixes, with valid header
// names and values; an error is one line and never shows a header value (a secret), even
// when the output is malformed and a header line is read where a URL is expected.
func FuzzParseAuthCommandOutput(f *testing.F) {
	for _, s := range []string{
		"", "https://a.test\nhttps://b.test/api/\n\nAuthorization: Bearer s3cr3t-t0ken\n\nhttps://c.test/\n\nX: y\n\n",
		"https://a.test/x\n\n\n", "https://a.test\r\n\r\nX-A: 1\r\nX-A: 2\r\n\r\n", "https://a.test\n",
		"https://a.test\nAuthorization: Bearer s3cr3t-t0ken\n\n", "Authorization: Bearer s3cr3t-t0ken\n\n",
		"https://a.test\n\nAuthorization Bearer s3cr3t-t0ken\n\n", "https://a.test\n\nBad Name: s3cr3t-t0ken\n\n",
		"https://a.test\n\nX: a\n continued\n\n", "http://a.test\n\nX: y\n\n", "\nX: y\n\n",
		"https://user:pw@a.test/p?q#f\n\nX: y\n\n", "https://a.test\n\nX: y\x00z\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		creds, err := ParseAuthCommandOutput(out)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error of more than one line: %q", msg)
			}
			for _, line := range strings.Split(string(out), "\n") {
				_, value, ok := strings.Cut(line, ":")
				value = strings.TrimSpace(value)
				if ok && len(value) >= 8 && !strings.HasPrefix(value, "//") && strings.Contains(msg, value) {
					t.Fatalf("error %q shows the value of line %q", msg, line)
				}
			}
			return
		}
		for p, h := range creds {
			// A prefix is what follows "https://" with one trailing '/' cut, as the go
			// command keys it: "https://a.test//" is "a.test/", the prefix of the URLs
			// whose path starts with "//"; "https://https://x" is "https://x" (host
			// "https:").
			if p == "" {
				t.Fatal("empty prefix")
			}
			for name, values := range h {
				for _, v := range values {
					if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(v) {
						t.Fatalf("prefix %q: header %q: %q", p, name, v)
					}
				}
			}
		}
	})
}

// FuzzParseGitFill checks the reading of git credential fill's answer: the URL it gives a
// credential for is "" or an https URL with a host and no user info that url.Parse reads
// back, as git() then does.
func FuzzParseGitFill(f *testing.F) {
	for _, s := range []string{
		"", "protocol=https\nhost=git.test\nusername=u\npassword=p\n",
		"protocol=https\nhost=git.test:8443\npath=org/repo\nusername=u\npassword=p\npassword_expiry_utc=1700000000\n",
		"url=https://u:p@git.test/org/repo\r\nusername=u\r\npassword=p\r\n", "protocol=http\nhost=git.test\n",
		"url=git.test\n", "protocol=https\nhost=\n", "protocol=https\nhost=git.test/x\n", "protocol=https\nhost=a b\n",
		"protocol=https\nhost=[::1\n", "protocol=https\nhost=%zz\n", "protocol=https\nhost=git.test\npath=%zz\n",
		"protocol=https\nhost=git.test\npassword_expiry_utc=99999999999999999999\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		prefix, _, _, _ := parseGitFill(out)
		if prefix == "" {
			return
		}
		u, err := url.Parse(prefix)
		if err != nil {
			t.Fatalf("parseGitFill gave %q, which does not parse: %v", prefix, err)
		}
		if u.Scheme != "https" || u.Host == "" || u.User != nil {
			t.Fatalf("parseGitFill gave %q", prefix)
		}
		_ = urlPrefix(u)
	})
}
