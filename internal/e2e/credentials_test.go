package e2e

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
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
