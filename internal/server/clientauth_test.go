package server

import (
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// passwordFile writes a password file of users (name -> password) and returns its name.
func passwordFile(t testing.TB, dir string, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# holoproxy clients\n\n")
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(u + ":" + string(h) + "\n")
	}
	name := filepath.Join(dir, "clients")
	if err := os.WriteFile(name, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestClientAuthFile(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ content, want string }{
		"no user":      {"# nobody\n", "no user"},
		"no colon":     {"alice\n", ":1: want user:bcrypt-hash"},
		"not bcrypt":   {"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", `:1: the hash of "alice" is not bcrypt`},
		"missing file": {"", "no such file"},
		"empty user":   {":$2y$10$abcdefghijklmnopqrstuuRRVZ1Xn8Xu7jQ9D4pFJ8sYQF8wTb3bC\n", ":1: want user:bcrypt-hash"},
		// A line longer than any user's stops the reading there: said, with its number,
		// not taken for a file without users.
		"line too long": {strings.Repeat("#", 70000) + "\nalice:$2y$10$abcdefghijklmnopqrstuuRRVZ1Xn8Xu7jQ9D4pFJ8sYQF8wTb3bC\n", ":1: bufio.Scanner: token too long"},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if tc.content != "" {
			if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, err := NewClientAuth(file, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewClientAuth: %v; want an error saying %q", name, err, tc.want)
		}
	}
}

// TestClientAuth: with RequireAuth, both fronts answer 401 with a challenge to requests
// without the right credentials, serve those with them, leave the probes open, and follow
// the password file when it changes.
func TestClientAuth(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	dir := t.TempDir()
	file := passwordFile(t, dir, map[string]string{"alice": "wonderland", "bob": "builder"})
	auth, err := NewClientAuth(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	rt := NewRoutes(e.s)
	rt.Handle("/healthz", HealthHandler())
	rt.RequireAuth(auth)

	netSrv := httptest.NewServer(rt)
	defer netSrv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := NewFastServer(rt.FastHandler(e.s), FastServerConfig{ReadTimeout: 10 * time.Second, IdleTimeout: time.Minute})
	go fs.Serve(ln)
	defer fs.Shutdown()

	client := &http.Client{Timeout: 30 * time.Second}
	get := func(base, path, user, pass string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		return resp.StatusCode, resp.Header, b.String()
	}
	info := "/example.com/m/@v/v1.0.0.info"
	for front, base := range map[string]string{"net/http": netSrv.URL, "fasthttp": "http://" + ln.Addr().String()} {
		for _, c := range []struct {
			path, user, pass string
			want             int
		}{
			{info, "", "", 401},
			{info, "alice", "rabbit", 401},
			{info, "mallory", "wonderland", 401},
			{info, "alice", "wonderland", 200},
			{info, "alice", "wonderland", 200}, // the remembered verdict
			{info, "bob", "builder", 200},
			{"/healthz", "", "", 200},
			{"/example.com/m/@v/list", "", "", 401},
		} {
			code, h, body := get(base, c.path, c.user, c.pass)
			if code != c.want {
				t.Errorf("%s: GET %s as %q/%q = %d, want %d", front, c.path, c.user, c.pass, code, c.want)
			}
			if code == 401 && (!strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") || strings.Count(body, "\n") != 1) {
				t.Errorf("%s: 401 without a Basic challenge or a one-line reason: %q, %q", front, h.Get("WWW-Authenticate"), body)
			}
		}
	}

	// The file changes: bob is gone, carol is in; the remembered verdicts go with it.
	time.Sleep(10 * time.Millisecond) // a modification time the stat can tell apart
	passwordFile(t, dir, map[string]string{"alice": "wonderland", "carol": "singer"})
	auth.users.lookNow() // look at the file on the next request, not a second later
	for _, c := range []struct {
		user, pass string
		want       int
	}{{"bob", "builder", 401}, {"carol", "singer", 200}, {"alice", "wonderland", 200}} {
		if code, _, _ := get(netSrv.URL, info, c.user, c.pass); code != c.want {
			t.Errorf("after the file changed: %s = %d, want %d", c.user, code, c.want)
		}
	}
	// A file that no longer parses keeps the last good users.
	if err := os.WriteFile(file, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth.users.lookNow()
	if code, _, _ := get(netSrv.URL, info, "carol", "singer"); code != 200 {
		t.Errorf("after a broken file: carol = %d, want 200 (the last good users)", code)
	}
}

// FuzzParsePasswords checks that a password file is parsed or refused with a one-line
// error, and that what is accepted has users with a name and a bcrypt hash.
func FuzzParsePasswords(f *testing.F) {
	h, err := bcrypt.GenerateFromPassword([]byte("wonder"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	hash := string(h)
	for _, s := range []string{
		"", "# nobody\n", "alice\n", ":" + hash + "\n", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
		"alice:" + hash + "\n", "# clients\n\nalice:" + hash + "\r\n  bob:" + hash + "  \n",
		"alice:" + hash + "\nalice:" + hash, "alice:" + hash + ":extra\n",
		"alice:" + strings.Replace(hash, "$04$", "$99$", 1) + "\n",
		"alice:\r" + hash + "\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		users, err := parsePasswords("clients", []byte(data))
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error of more than one line: %q", msg)
			}
			return
		}
		if len(users) == 0 {
			t.Fatal("accepted a file without users")
		}
		for u, h := range users {
			if u == "" || strings.Contains(u, ":") {
				t.Errorf("accepted user %q", u)
			}
			if _, err := bcrypt.Cost(h); err != nil {
				t.Errorf("accepted user %q with hash %q: %v", u, h, err)
			}
		}
	})
}

// FuzzClientAuthAllow checks that ClientAuth admits an Authorization header exactly when
// net/http reads Basic credentials from it (http.Request.BasicAuth) naming a user of the
// file with its password.
func FuzzClientAuthAllow(f *testing.F) {
	users := map[string]string{"alice": "wonder", "bob": "p:ss w"}
	file := passwordFile(f, f.TempDir(), users)
	auth, err := NewClientAuth(file, nil)
	if err != nil {
		f.Fatal(err)
	}
	basic := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, s := range []string{
		"", "Basic " + basic("alice:wonder"), "Basic " + basic("bob:p:ss w"), "basic " + basic("alice:wonder"),
		"BASIC " + basic("alice:wonder"), "Basic  " + basic("alice:wonder"), "Basic " + basic("alice:wonder") + " ",
		"Basic " + basic("alice:wrong"), "Basic " + basic("alicewonder"), "Basic " + basic(":wonder"),
		"Bearer " + basic("alice:wonder"), "Basic " + strings.TrimRight(basic("alice:wonder"), "="), "Basic !!!",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, authorization string) {
		r := http.Request{Header: http.Header{"Authorization": {authorization}}}
		user, pass, ok := r.BasicAuth()
		want := ok && users[user] == pass && pass != ""
		if got := auth.Allow(authorization); got != want {
			t.Fatalf("Allow(%q) = %v; net/http reads user %q password %q (ok %v)", authorization, got, user, pass, ok)
		}
	})
}
