package main

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/http/httpproxy"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// The start log names each forward proxy of the environment, of every scheme holoproxy
// speaks, without its credentials.
func TestDescribeEnvProxy(t *testing.T) {
	for _, tc := range []struct {
		https, http, want string
	}{
		{"https://egress:pw-secret@proxy.corp.example:8443", "", "https via https://xxxxx@proxy.corp.example:8443"},
		{"socks5h://egress:pw-secret@127.0.0.1:1080", "socks5://egress:pw-secret@127.0.0.1:1080",
			"https via socks5h://xxxxx@127.0.0.1:1080, http via socks5://xxxxx@127.0.0.1:1080"},
		{"egress:pw-secret@proxy:3128", "", "https via http://xxxxx@proxy:3128"},
	} {
		setProxyEnv(t, tc.https, tc.http)
		if got := describeEnvProxy(); got != tc.want || strings.Contains(got, "pw-secret") {
			t.Errorf("HTTPS_PROXY=%q HTTP_PROXY=%q: %q; want %q", tc.https, tc.http, got, tc.want)
		}
		if err := checkEnvProxy(); err != nil {
			t.Errorf("HTTPS_PROXY=%q HTTP_PROXY=%q: %v; want it accepted", tc.https, tc.http, err)
		}
	}
}

// A forward proxy holoproxy cannot use is a usage error at start (exit 2, one line) that
// names the variable and never shows the password. (checkEnvProxy is what serve, warm and
// trace check their flags with; execute is not run here, since a check that let the value
// through would leave serve running.)
func TestCheckEnvProxyRefusesUnusable(t *testing.T) {
	for _, tc := range []struct {
		https, http, want string
	}{
		{"ftp://egress:pw-secret@proxy.test:21", "", `HTTPS_PROXY: proxy ftp://proxy.test:21: unsupported scheme "ftp"`},
		{"", "socks4://egress:pw-secret@proxy.test", `HTTP_PROXY: proxy socks4://proxy.test: unsupported scheme "socks4"`},
		{"http://egress:pw-secret\x7f@proxy.test", "", "HTTPS_PROXY: not a URL"},
	} {
		setProxyEnv(t, tc.https, tc.http)
		err := checkEnvProxy()
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "pw-secret") || strings.Contains(err.Error(), "\n") {
			t.Errorf("HTTPS_PROXY=%q HTTP_PROXY=%q: %v; want a usage error, one line saying %q without the password",
				tc.https, tc.http, err, tc.want)
		}
	}
}

// setProxyEnv sets the proxy variables for the rest of the test (the lower-case forms
// emptied, so that only these count).
func setProxyEnv(t *testing.T, https, http string) {
	t.Helper()
	for _, v := range []string{"https_proxy", "http_proxy", "NO_PROXY", "no_proxy", "REQUEST_METHOD"} {
		t.Setenv(v, "")
	}
	t.Setenv("HTTPS_PROXY", https)
	t.Setenv("HTTP_PROXY", http)
}

// FuzzEnvProxy checks the reading of a proxy variable (HTTPS_PROXY, HTTP_PROXY) that
// checkEnvProxy vets at start against the reading of golang.org/x/net/http/httpproxy,
// which the transport then uses: the same URL, or an error where httpproxy ignores it. A proxy that
// CheckProxyURL accepts has a host and port to dial, and no error shows its password.
func FuzzEnvProxy(f *testing.F) {
	for _, s := range []string{
		"http://proxy.test:3128", "https://egress:pw-secret@proxy.test:8443", "socks5h://egress:pw-secret@127.0.0.1:1080",
		"egress:pw-secret@proxy:3128", "proxy.test:3128", "proxy.test", "ftp://egress:pw-secret@proxy.test:21",
		"socks4://proxy.test", "http://egress:pw-secret\x7f@proxy.test", "http://[::1]:3128", "http://[::1", "http://:3128",
		"//proxy.test:3128", "http://proxy.test:99999", "http://proxy.test:x", "%zz", "http://pro xy",
	} {
		f.Add(s)
	}
	upstream := &url.URL{Scheme: "https", Host: "upstream.test"}
	f.Fuzz(func(t *testing.T, v string) {
		if v == "" {
			return // unset
		}
		got, err := parseEnvProxy(v)
		want, werr := (&httpproxy.Config{HTTPSProxy: v}).ProxyFunc()(upstream)
		switch {
		case werr != nil:
			t.Fatalf("httpproxy: %v", werr)
		case (err != nil) != (want == nil):
			// httpproxy ignores a value it cannot read (no proxy: direct connections);
			// checkEnvProxy refuses it at start.
			t.Fatalf("parseEnvProxy(%q) = %v, %v; httpproxy uses %v", v, got, err, want)
		case err == nil && got.String() != want.String():
			t.Fatalf("parseEnvProxy(%q) = %v; httpproxy uses %v", v, got, want)
		case err != nil:
			return
		}
		var secret string
		if pw, ok := got.User.Password(); ok && len(pw) >= 6 && strings.Count(v, pw) == 1 {
			secret = pw
		}
		if err := netobs.CheckProxyURL(got); err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || (secret != "" && strings.Contains(msg, secret)) {
				t.Fatalf("CheckProxyURL(%q): %q", v, msg)
			}
			return
		}
		if got.Hostname() == "" {
			t.Fatalf("CheckProxyURL accepted %q, which has no host", v)
		}
		if r := redactProxy(v); secret != "" && strings.Contains(r, secret) {
			t.Fatalf("redactProxy(%q) = %q", v, r)
		}
	})
}
