package e2e

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpstreamCredentials: an upstream that wants HTTP basic authentication gets the
// credentials the go command would send it: the user info of its URL in the chain, or the
// netrc file's entry (GOAUTH=netrc) matched as the go command matches it (https only,
// machine = host:port). The go command downloads through holoproxy as it would straight
// from the upstream. The secret never shows: not in holoproxy's log, not on /metrics, not
// in its answers. Otherwise the client is told that the upstream answered 401.
func TestUpstreamCredentials(t *testing.T) {
	const secret = "s3cret-t0ken"
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	org.requireAuth("team", secret)
	tlsOrg := httptest.NewTLSServer(org) // the same origin over https
	t.Cleanup(tlsOrg.Close)
	caFile := filepath.Join(t.TempDir(), "origin.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsOrg.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	hostPort := strings.TrimPrefix(tlsOrg.URL, "https://")
	withUser := func(base, userinfo string) string { return strings.Replace(base, "://", "://"+userinfo, 1) }
	netrcFile := func(machine string) string {
		f := filepath.Join(t.TempDir(), "netrc")
		if err := os.WriteFile(f, []byte("machine "+machine+"\n\tlogin team\n\tpassword "+secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	netrc := netrcFile(hostPort)
	noNetrc := filepath.Join(t.TempDir(), "none")

	for _, tc := range []struct {
		name     string
		upstream string
		env      []string
		ok       bool
		logs     string // a line holoproxy logs at start
	}{
		{"user info in the URL", withUser(org.URL, "team:"+secret+"@"), []string{"NETRC=" + noNetrc}, true, ""},
		{"netrc", tlsOrg.URL, []string{"NETRC=" + netrc, "GOAUTH=netrc"}, true, "upstream credentials from the netrc file"},
		{"netrc machine without the port", tlsOrg.URL, []string{"NETRC=" + netrcFile("127.0.0.1"), "GOAUTH=netrc"}, false, ""},
		{"netrc over plain http", org.URL, []string{"NETRC=" + netrcFile(strings.TrimPrefix(org.URL, "http://")), "GOAUTH=netrc"}, false, ""},
		{"none", tlsOrg.URL, []string{"NETRC=" + noNetrc}, false, ""},
		{"GOAUTH=off", tlsOrg.URL, []string{"NETRC=" + netrc, "GOAUTH=off"}, false, "GOAUTH=off"},
		{"wrong user info wins over netrc", withUser(tlsOrg.URL, "team:wrong@"), []string{"NETRC=" + netrc, "GOAUTH=netrc"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + tc.upstream, "--ca-file=" + caFile}, tc.env)
			g := newApp(t, "http://"+p.addr, mods, roots)
			out, err := goWith(t, g, []string{"GOSUMDB=off", "GOFLAGS=-mod=mod"}, "mod", "download", "all")
			switch {
			case tc.ok && err != nil:
				t.Fatalf("go mod download all: %v\n%s", err, out)
			case !tc.ok && err == nil:
				t.Fatalf("go mod download all succeeded without the right credentials")
			case !tc.ok && !strings.Contains(out, "401 Unauthorized"):
				t.Errorf("the go command was not told the upstream answered 401:\n%s", out)
			}
			if tc.ok {
				checkGoSum(t, g, sumLineSet(t, mods))
			}
			if tc.logs != "" && waitLog(p, tc.logs) == "" {
				t.Errorf("holoproxy did not log %q", tc.logs)
			}
			_, metrics, _ := get(t, "http://"+p.addr+"/metrics")
			for what, text := range map[string]string{"log": p.log.String(), "/metrics": string(metrics), "go command output": out} {
				if strings.Contains(text, secret) || strings.Contains(text, "wrong@") {
					t.Errorf("the credentials show in holoproxy's %s", what)
				}
			}
			upstream := strings.Split(tc.upstream, "@")
			name := upstream[len(upstream)-1]
			if !strings.Contains(name, "://") {
				name = strings.SplitN(tc.upstream, "://", 2)[0] + "://" + name
			}
			if !strings.Contains(string(metrics), `upstream="`+name+`"`) {
				t.Errorf("/metrics has no series labelled with the upstream's URL without user info, %s", name)
			}
			if code, _, _ := get(t, "http://"+p.addr+"/healthz"); code != http.StatusOK {
				t.Errorf("/healthz = %d", code)
			}
		})
	}
}

// TestUpstreamGOAUTH: with GOAUTH's git and command methods, holoproxy authenticates to
// an https upstream exactly as the go command does: for each GOAUTH, the go command
// fetching straight from the upstream and the go command fetching through holoproxy (with
// the same GOAUTH, git configuration and credential store) both succeed or both fail with
// the upstream's 401. The secret never shows in holoproxy's log, /metrics or /api/chain.
// git credential fill uses the real git with a store helper in a HOME of the test's own.
func TestUpstreamGOAUTH(t *testing.T) {
	const secret = "g0auth-s3cret"
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	org.requireAuth("team", secret)
	tlsOrg := httptest.NewTLSServer(org)
	t.Cleanup(tlsOrg.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "origin.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsOrg.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(tlsOrg.URL, "https://")
	basicAuth := func(user, pw string) string {
		r := &http.Request{Header: http.Header{}}
		r.SetBasicAuth(user, pw)
		return r.Header.Get("Authorization")
	}
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := script("good-auth", "printf 'https://"+host+"\\n\\nAuthorization: "+basicAuth("team", secret)+"\\n\\n'\n")
	wrong := script("wrong-auth", "printf 'https://"+host+"\\n\\nAuthorization: "+basicAuth("team", "wrong")+"\\n\\n'\n")
	// A command that gives nothing without a URL and the credential once told of a 401.
	late := script("late-auth", "[ $# -eq 0 ] && exit 0\ngrep -q '^HTTP/1.1 401' && printf 'https://"+host+"\\n\\nAuthorization: "+basicAuth("team", secret)+"\\n\\n'\n")
	home := filepath.Join(dir, "home")
	gitConfig, gitStore := filepath.Join(home, "gitconfig"), filepath.Join(home, "store")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gitConfig, []byte("[credential]\n\thelper = store --file "+gitStore+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, gitErr := exec.LookPath("git")

	for _, tc := range []struct {
		name, goauth, store string
		ok                  bool
	}{
		{"command", good + " --unused arg", "", true},
		{"command told of the 401", late, "", true},
		{"command with a wrong token", wrong, "", false},
		{"first method wins", wrong + ";" + good, "", false},
		{"git", "git " + home, "https://team:" + secret + "@" + host + "\n", true},
		{"git with nothing stored", "git " + home, "", false},
		{"git with a wrong password", "git " + home, "https://team:wrong@" + host + "\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.goauth, "git") && gitErr != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("CI=true but git is missing: %v", gitErr)
				}
				t.Skipf("GOAUTH=git needs git: %v", gitErr)
			}
			env := []string{"GOAUTH=" + tc.goauth, "NETRC=" + filepath.Join(dir, "none"), "HOME=" + home,
				"GIT_CONFIG_GLOBAL=" + gitConfig, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
			setStore := func() {
				if err := os.WriteFile(gitStore, []byte(tc.store), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			outcome := func(out string, err error) string {
				switch {
				case err == nil:
					return "ok"
				case strings.Contains(out, "401 Unauthorized"):
					return "401"
				}
				return "failed: " + out
			}
			want := map[bool]string{true: "ok", false: "401"}[tc.ok]

			// The go command alone, straight from the upstream.
			setStore()
			straight := newApp(t, tlsOrg.URL, mods, roots)
			out, err := goWith(t, straight, append([]string{"SSL_CERT_FILE=" + caFile}, env...), "mod", "download", "all")
			if got := outcome(out, err); got != want {
				t.Fatalf("the go command straight from the upstream: %s, want %s\n%s", got, want, out)
			}

			// The go command through holoproxy, which has the same GOAUTH.
			setStore()
			p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + tlsOrg.URL, "--ca-file=" + caFile}, env)
			via := newApp(t, "http://"+p.addr, mods, roots)
			out, err = goWith(t, via, []string{"GOAUTH=off"}, "mod", "download", "all")
			if got := outcome(out, err); got != want {
				t.Fatalf("the go command through holoproxy: %s, want %s as straight from the upstream\n%s", got, want, out)
			}
			if tc.ok {
				checkGoSum(t, via, sumLineSet(t, mods))
			}
			if strings.HasPrefix(tc.goauth, "git") {
				stored, err := os.ReadFile(gitStore)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(stored), "wrong") {
					t.Errorf("holoproxy did not reject the refused credential: the store still has it")
				}
				if tc.ok && !strings.Contains(string(stored), secret) {
					t.Errorf("the store lost the credential that worked: %q", stored)
				}
			}
			if tc.name == "git with nothing stored" {
				if n := strings.Count(p.log.String(), "gave no credential"); n != 1 {
					t.Errorf("holoproxy logged %d times that git gave no credential, want once:\n%s", n, p.log.String())
				}
			}
			_, metrics, _ := get(t, "http://"+p.addr+"/metrics")
			_, chain, _ := get(t, "http://"+p.addr+"/api/chain")
			for what, text := range map[string]string{"log": p.log.String(), "/metrics": string(metrics), "/api/chain": string(chain), "go command output": out} {
				if strings.Contains(text, secret) || strings.Contains(text, basicAuth("team", secret)) || strings.Contains(text, basicAuth("team", "wrong")) {
					t.Errorf("the credentials show in holoproxy's %s", what)
				}
			}
		})
	}
}
