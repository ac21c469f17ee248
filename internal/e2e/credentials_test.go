package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpstreamCredentials: an upstream that wants HTTP basic authentication gets the
// credentials the go command would send it, from the user info of its URL in the chain or
// from the netrc file (GOAUTH=netrc), and the go command downloads through holoproxy as it
// would straight from the upstream. The secret never shows: not in holoproxy's log, not on
// /metrics, not in its answers. Without credentials, or with GOAUTH=off, the client is told
// that the upstream answered 401.
func TestUpstreamCredentials(t *testing.T) {
	const secret = "s3cret-t0ken"
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	org.user, org.password = "team", secret
	hostURL := func(userinfo string) string { return strings.Replace(org.URL, "http://", "http://"+userinfo, 1) }
	netrc := filepath.Join(t.TempDir(), "netrc")
	if err := os.WriteFile(netrc, []byte("machine 127.0.0.1\n\tlogin team\n\tpassword "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noNetrc := filepath.Join(t.TempDir(), "none")

	for _, tc := range []struct {
		name     string
		upstream string
		env      []string
		ok       bool
		logs     string // a line holoproxy logs at start
	}{
		{"user info in the URL", hostURL("team:" + secret + "@"), []string{"NETRC=" + noNetrc}, true, ""},
		{"netrc", org.URL, []string{"NETRC=" + netrc, "GOAUTH=netrc"}, true, "upstream credentials from the netrc file"},
		{"none", org.URL, []string{"NETRC=" + noNetrc}, false, ""},
		{"GOAUTH=off", org.URL, []string{"NETRC=" + netrc, "GOAUTH=off"}, false, "GOAUTH=off"},
		{"wrong user info wins over netrc", hostURL("team:wrong@"), []string{"NETRC=" + netrc, "GOAUTH=netrc"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + tc.upstream}, tc.env)
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
			if !strings.Contains(string(metrics), `upstream="`+org.URL+`"`) {
				t.Errorf("/metrics has no series labelled with the upstream's URL without user info")
			}
			if code, _, _ := get(t, "http://"+p.addr+"/healthz"); code != http.StatusOK {
				t.Errorf("/healthz = %d", code)
			}
		})
	}
}
