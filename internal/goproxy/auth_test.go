package goproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestParseNetrc(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []NetrcEntry
	}{
		{"one line", "machine proxy.test login u password p\n", []NetrcEntry{{"proxy.test", "u", "p"}}},
		{"several lines", "machine proxy.test\n  login u\n  password p\nmachine b.test login v password q",
			[]NetrcEntry{{"proxy.test", "u", "p"}, {"b.test", "v", "q"}}},
		{"order of keys", "machine a.test password p login u", []NetrcEntry{{"a.test", "u", "p"}}},
		{"account skipped", "machine a.test login u account x password p", []NetrcEntry{{"a.test", "u", "p"}}},
		{"incomplete entry dropped", "machine a.test login u\nmachine b.test login v password q",
			[]NetrcEntry{{"b.test", "v", "q"}}},
		{"macdef body skipped to the empty line",
			"machine a.test login u password p\nmacdef init\nmachine evil.test login x password y\n\nmachine b.test login v password q\n",
			[]NetrcEntry{{"a.test", "u", "p"}, {"b.test", "v", "q"}}},
		{"default at the end of a line ends it", "machine a.test login u password p default\nmachine b.test login v password q",
			[]NetrcEntry{{"a.test", "u", "p"}}},
		{"default alone on a line ends it", "machine a.test login u password p\ndefault\nmachine b.test login v password q",
			[]NetrcEntry{{"a.test", "u", "p"}}},
		{"default taken as a key does not", "machine a.test login u password p\ndefault login x password y\nmachine b.test login v password q",
			[]NetrcEntry{{"a.test", "u", "p"}, {"b.test", "v", "q"}}},
		{"a macro ends at an empty line only", "macdef m\n  \nmachine evil.test login x password y\n\nmachine b.test login v password q",
			[]NetrcEntry{{"b.test", "v", "q"}}},
		{"empty", "", nil},
		{"key without value", "machine", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseNetrc(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseNetrc(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// authServer records the Authorization header of each request by path.
type authServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]string
}

func newAuthServer(t *testing.T, h http.HandlerFunc) *authServer {
	s := &authServer{seen: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen[r.URL.Path] = r.Header.Get("Authorization")
		s.mu.Unlock()
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authServer) auth(path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[path]
}

func basic(user, pw string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, pw)
	return r.Header.Get("Authorization")
}

func TestCredentials(t *testing.T) {
	other := newAuthServer(t, nil)
	a := newAuthServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/a/redirect" {
			http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
		}
	})
	// b and c serve https, as the go command sends netrc credentials over https only.
	b := &authServer{seen: map[string]string{}}
	b.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.seen[r.URL.Path] = r.Header.Get("Authorization")
		b.mu.Unlock()
	}))
	t.Cleanup(b.Close)
	hostA := strings.TrimPrefix(a.URL, "http://")
	hostB := strings.TrimPrefix(b.URL, "https://")
	hostname, _, _ := strings.Cut(hostB, ":")

	list := "http://u:s3cret@" + hostA + "/a/,http://v:deeper@" + hostA + "/a/b|" + b.URL + "/go," + b.URL + "/other,off"
	creds := ListCredentials(list)
	got := creds.UseNetrc([]NetrcEntry{
		{Machine: hostA, Login: "netrc-a", Password: "x"},          // plain http, and the URL's user info wins
		{Machine: hostname, Login: "no-port", Password: "z"},       // the go command matches the port too
		{Machine: hostB + "/go", Login: "netrc-go", Password: "y"}, // a machine with a path: a prefix
		{Machine: hostB, Login: "netrc-b", Password: "w"},
		{Machine: hostB, Login: "second", Password: "ignored"}, // the first entry of a machine wins
	})
	if want := []string{b.URL + "/go", b.URL + "/other"}; !reflect.DeepEqual(got, want) {
		t.Errorf("UseNetrc gave credentials to %v, want %v", got, want)
	}
	hc := &http.Client{Transport: creds.RoundTripper(b.Client().Transport)}
	do := func(u string, preset string) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if preset != "" {
			req.Header.Set("Authorization", preset)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if preset == "" && req.Header.Get("Authorization") != "" {
			t.Errorf("the transport changed the caller's request")
		}
	}
	do(a.URL+"/a/m/@v/list", "")
	do(a.URL+"/a/b/m/@v/list", "")
	do(a.URL+"/ab/m/@v/list", "")
	do(a.URL+"/a/redirect", "")
	do(a.URL+"/plain", "")
	do(b.URL+"/go/m/@v/list", "")
	do(b.URL+"/other/m/@v/list", "")
	do(b.URL+"/preset", "Bearer t")
	for _, c := range []struct {
		srv             *authServer
		path, want, why string
	}{
		{a, "/a/m/@v/list", basic("u", "s3cret"), "below the proxy URL"},
		{a, "/a/b/m/@v/list", basic("v", "deeper"), "the longest matching URL wins"},
		{a, "/ab/m/@v/list", "", "a sibling path is not below the proxy URL"},
		{a, "/a/redirect", basic("u", "s3cret"), "below the proxy URL"},
		{a, "/plain", "", "a netrc entry is never sent over plain http"},
		{other, "/elsewhere", "", "a redirect to another host gets none"},
		{b, "/go/m/@v/list", basic("netrc-go", "y"), "the netrc machine with the longest path"},
		{b, "/other/m/@v/list", basic("netrc-b", "w"), "the netrc entry of host:port, the first listed"},
		{b, "/preset", "Bearer t", "a request's own Authorization is kept"},
	} {
		if got := c.srv.auth(c.path); got != c.want {
			t.Errorf("%s: Authorization %q, want %q (%s)", c.path, got, c.want, c.why)
		}
	}

	// The user info is never shown: not in names, the chain, errors or Redact.
	chain, err := ParseChain(list, hc)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{chain.String(), chain.Clients()[0].Name(), Redact(list)} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "deeper") {
			t.Errorf("credentials shown: %q", s)
		}
	}
	for _, bad := range []string{"http://u:s3cret@host.test/%zz", "ftp://u:s3cret@host.test", "http://u:s3cret@host.test/?q=1"} {
		_, err := NewClient(bad, hc)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("NewClient(%q) = %v; want an error that does not show the password", bad, err)
		}
	}
	for in, want := range map[string]string{
		"http://u:p@a.test/x,https://b.test|https://t@c.test": "http://xxxxx@a.test/x,https://b.test|https://xxxxx@c.test",
		// Entries without their scheme (found by FuzzParseChain).
		"//u:p@a.test, u:p@b.test|direct":      "//xxxxx@a.test, xxxxx@b.test|direct",
		"https://a.test/x@y,https://b.test/@v": "https://a.test/x@y,https://b.test/@v",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q; want %q", in, got, want)
		}
	}
	if !ListCredentials("http://a.test,direct").Empty() {
		t.Error("a list without user info has credentials")
	}
	if rt := ListCredentials("http://a.test").RoundTripper(http.DefaultTransport); rt != http.DefaultTransport {
		t.Error("RoundTripper without credentials is not the transport itself")
	}
}

func TestFileClient(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "example.com", "m", "@v"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "example.com", "m", "@v", "v1.0.0.mod"), []byte("module example.com/m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "outside"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"file://host.test/x", "file:relative/x", "file:///x?q=1"} {
		if _, err := NewClient(bad, nil); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		}
	}
	c, err := NewClient("file://"+filepath.ToSlash(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Local() || c.Name() != "file://"+filepath.ToSlash(dir) {
		t.Errorf("Local %v, Name %q", c.Local(), c.Name())
	}
	ctx := context.Background()
	resp, err := c.Fetch(ctx, Request{Kind: KindMod, Module: "example.com/m", Version: "v1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "module example.com/m\n" || resp.ContentLength != int64(len(body)) {
		t.Errorf("Fetch: %q, length %d", body, resp.ContentLength)
	}
	for name, fetch := range map[string]func() error{
		"missing file": func() error {
			_, err := c.Fetch(ctx, Request{Kind: KindZip, Module: "example.com/m", Version: "v1.0.0"})
			return err
		},
		"directory":       func() error { _, err := c.FetchPath(ctx, "example.com/m/@v", "list", 1<<20); return err },
		"leaves the tree": func() error { _, err := c.FetchPath(ctx, "../outside", "sumdb", 1<<20); return err },
	} {
		if err := fetch(); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v; want a not-found StatusError", name, err)
		}
	}
	if _, err := c.FetchPath(ctx, "example.com/m/@v/v1.0.0.mod", "mod", 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the size limit: %v", err)
	}
}

// FuzzParseNetrc checks that any netrc file parses (the go command's parser never
// refuses one) into entries with a machine, a login and a password that are single
// tokens, and that those entries, written back as a netrc file, parse to themselves.
func FuzzParseNetrc(f *testing.F) {
	for _, s := range []string{
		"", "machine a.test login u password p\n", "machine a.test\n  login u\n  password p\nmachine b.test login v password q",
		"machine a.test login u\r\npassword p\r\n", "default login u password p\nmachine a.test login v password q\n",
		"machine a.test login u password p default\nmachine b.test login v password q\n",
		"macdef init\ncd /pub\n\nmachine a.test login u password p\n", "machine a.test login u port 21 password p\n",
		"machine machine login login password password\n", "machine a.test login u password", "login u password p machine a.test\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		entries := ParseNetrc(data)
		var b strings.Builder
		for _, e := range entries {
			for _, v := range []string{e.Machine, e.Login, e.Password} {
				if v == "" || len(strings.Fields(v)) != 1 || strings.Fields(v)[0] != v {
					t.Fatalf("entry %+v: %q is not one token", e, v)
				}
			}
			fmt.Fprintf(&b, "machine %s login %s password %s\n", e.Machine, e.Login, e.Password)
		}
		if again := ParseNetrc(b.String()); !reflect.DeepEqual(again, entries) {
			t.Fatalf("entries %+v written back parse to %+v", entries, again)
		}
	})
}

// A list entry without a scheme is an https URL for its credentials too, as for the chain
// (ParseChain) and the go command.
func TestListCredentialsWithoutScheme(t *testing.T) {
	c := ListCredentials("u:t0ken@proxy-a.test/go,direct")
	if len(c.byURL) != 1 || c.byURL[0].scheme != "https" || c.byURL[0].host != "proxy-a.test" || c.byURL[0].path != "/go" {
		t.Fatalf("credentials %+v; want u's for https://proxy-a.test/go", c.byURL)
	}
	chain, err := ParseChain("u:t0ken@proxy-a.test/go,direct", nil)
	if err != nil || chain.String() != "https://proxy-a.test/go,direct" {
		t.Fatalf("ParseChain: %v, %v", chain, err)
	}
}
