package lab

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// GitServer is a version control origin for tests of direct fetching: bare git
// repositories served over HTTPS by git's own http-backend (smart HTTP, through
// net/http/cgi), with the go-import meta tags the go command looks up, under made-up host
// names (git.test). The names resolve through a forward proxy on loopback that tunnels
// every CONNECT for a known name to the HTTPS server: clients reach it with HTTPS_PROXY
// set, as they would reach the outside through a company proxy, so the go command and git
// run unchanged and no name is looked up in DNS.
type GitServer struct {
	root  string
	ca    *CA
	hosts map[string]bool
	https *http.Server
	proxy *ForwardProxy
	addr  string // the HTTPS server's loopback address

	proxyURL string

	mu       sync.Mutex
	requests []string
	down     bool
	gitDown  bool   // git requests answer 503; go-get lookups still work
	user     string // with pass, the basic credentials every request needs, when set
	pass     string
	stall    chan struct{} // while not nil, requests wait for it to close
	clock    int           // seconds added to the commit dates so far
}

// gitBackend finds git's http-backend program.
func gitBackend() (string, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return "", fmt.Errorf("git is not on PATH: %w", err)
	}
	out, err := exec.Command(git, "--exec-path").Output()
	if err != nil {
		return "", fmt.Errorf("git --exec-path: %w", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("git http-backend: %w", err)
	}
	return p, nil
}

// StartGit starts a GitServer for the given host names (git.test when none) and stops it
// at the end of tb. Without git it skips tb, except under CI (CI=true), where it fails it.
func StartGit(tb testing.TB, hosts ...string) *GitServer {
	tb.Helper()
	backend, err := gitBackend()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true but the git server cannot run: %v", err)
		}
		tb.Skipf("skipping git test: %v", err)
	}
	if len(hosts) == 0 {
		hosts = []string{"git.test"}
	}
	root := tb.TempDir()
	ca, err := NewCA(filepath.Join(root, "ca.pem"), "holoproxy lab git CA")
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := ca.Issue(hosts...)
	if err != nil {
		tb.Fatal(err)
	}
	g := &GitServer{root: root, ca: ca, hosts: map[string]bool{}}
	for _, h := range hosts {
		g.hosts[h] = true
		if err := os.MkdirAll(filepath.Join(root, "repos", h), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	backendHandler := &cgi.Handler{
		Path: backend,
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Join(root, "repos"), "GIT_HTTP_EXPORT_ALL=1"},
	}
	g.https = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, backendHandler) }),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g.addr = ln.Addr().String()
	go g.https.ServeTLS(ln, "", "")

	g.proxy = StartForwardProxy(tb)
	for _, h := range hosts {
		g.proxy.Route(h+":443", g.addr)
	}
	g.proxyURL = g.proxy.URL()
	tb.Cleanup(func() { g.https.Close() })
	return g
}

// CAFile returns the PEM file of the CA that issued the server's certificate.
func (g *GitServer) CAFile() string { return g.ca.CertFile() }

// ProxyURL returns the URL of the forward proxy that resolves the server's names.
func (g *GitServer) ProxyURL() string { return g.proxyURL }

// Env returns the environment a go command (and the git it runs) needs to reach the
// server: the forward proxy and the CA, nothing else changed.
func (g *GitServer) Env() []string {
	return []string{
		"HTTPS_PROXY=" + g.proxyURL, "https_proxy=" + g.proxyURL, "NO_PROXY=", "no_proxy=",
		"SSL_CERT_FILE=" + g.ca.CertFile(), "GIT_SSL_CAINFO=" + g.ca.CertFile(),
	}
}

// SetDown makes the HTTPS server answer every request 503 (true) or serve again (false):
// an origin that is down.
func (g *GitServer) SetDown(down bool) {
	g.mu.Lock()
	g.down = down
	g.mu.Unlock()
}

// SetGitDown makes git's requests answer 503 while go-get lookups are still answered
// (true), or serves them again (false): a git backend down behind a working front.
func (g *GitServer) SetGitDown(down bool) {
	g.mu.Lock()
	g.gitDown = down
	g.mu.Unlock()
}

// RequireAuth makes every request (go-get lookups and git alike) need the basic
// credentials user and pass, as a private git host does; 401 without them.
func (g *GitServer) RequireAuth(user, pass string) {
	g.mu.Lock()
	g.user, g.pass = user, pass
	g.mu.Unlock()
}

// SetStall makes the HTTPS server hold every git request (go-get lookups are still
// answered) without an answer (true) until it is set back (false) or the server stops:
// a repository that hangs once the go command has started git.
func (g *GitServer) SetStall(stall bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case stall && g.stall == nil:
		g.stall = make(chan struct{})
	case !stall && g.stall != nil:
		close(g.stall)
		g.stall = nil
	}
}

// Requests returns "METHOD host/path?query" of every request the HTTPS server received.
func (g *GitServer) Requests() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.requests...)
}

// repoDir returns the bare repository of host/name.
func (g *GitServer) repoDir(host, name string) string {
	return filepath.Join(g.root, "repos", host, name+".git")
}

// Commit commits files (slash paths to contents; a nil content deletes the file) to the
// repository host/name, creating it on first use, on top of its main branch, and tags
// the commit with each of tags. It returns the commit's hash.
func (g *GitServer) Commit(tb testing.TB, repo string, files map[string]*string, tags ...string) string {
	tb.Helper()
	host, name, ok := strings.Cut(repo, "/")
	if !ok || !g.hosts[host] || name == "" || strings.Contains(name, "/") {
		tb.Fatalf("lab: repository %q is not host/name on one of the server's hosts", repo)
	}
	dir := g.repoDir(host, name)
	work := filepath.Join(g.root, "work", host, name)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		g.git(tb, "", "init", "-q", "--bare", "-b", "main", dir)
		g.git(tb, "", "init", "-q", "-b", "main", work)
	}
	for p, content := range files {
		f := filepath.Join(work, filepath.FromSlash(p))
		if content == nil {
			if err := os.Remove(f); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(*content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	g.git(tb, work, "add", "-A")
	g.git(tb, work, "commit", "-q", "--allow-empty", "-m", "commit")
	for _, tag := range tags {
		g.git(tb, work, "tag", tag)
	}
	g.git(tb, work, "push", "-q", "--tags", dir, "main")
	return strings.TrimSpace(g.git(tb, work, "rev-parse", "HEAD"))
}

// git runs git in dir with a fixed identity and dates that move forward one second a call.
func (g *GitServer) git(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	g.mu.Lock()
	g.clock++
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(g.clock) * time.Second).Format(time.RFC3339)
	g.mu.Unlock()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=lab", "GIT_AUTHOR_EMAIL=lab@git.test",
		"GIT_COMMITTER_NAME=lab", "GIT_COMMITTER_EMAIL=lab@git.test",
		"GIT_AUTHOR_DATE="+when, "GIT_COMMITTER_DATE="+when, "GIT_CONFIG_NOSYSTEM=1", "HOME="+g.root)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// serve answers go-get lookups with a go-import tag naming the repository of the path's
// first element, and the rest through git's http-backend.
func (g *GitServer) serve(w http.ResponseWriter, r *http.Request, backend http.Handler) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	g.mu.Lock()
	g.requests = append(g.requests, r.Method+" "+host+r.URL.RequestURI())
	down, gitDown, stall, user, pass := g.down, g.gitDown, g.stall, g.user, g.pass
	g.mu.Unlock()
	if user != "" {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="lab git"`)
			http.Error(w, "credentials required", http.StatusUnauthorized)
			return
		}
	}
	if down {
		http.Error(w, "lab git server is down", http.StatusServiceUnavailable)
		return
	}
	if !g.hosts[host] {
		http.Error(w, "unknown host "+host, http.StatusNotFound)
		return
	}
	if r.URL.Query().Get("go-get") == "1" {
		name, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if _, err := os.Stat(g.repoDir(host, name)); err != nil {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "<!DOCTYPE html><html><head><meta name=\"go-import\" content=\"%s/%s git https://%s/%s.git\"></head></html>\n",
			host, name, host, name)
		return
	}
	if gitDown {
		http.Error(w, "lab git backend is down", http.StatusServiceUnavailable)
		return
	}
	if stall != nil {
		select {
		case <-stall:
		case <-r.Context().Done():
			return
		}
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + host + r.URL.Path
	backend.ServeHTTP(w, r2)
}
