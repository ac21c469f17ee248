package checksum

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/store"
	"golang.org/x/mod/sumdb/note"
)

// fakeGOROOT writes a key.go like the Go installation's, trusting one generated key under
// its name, and returns the root and the key.
func fakeGOROOT(t testing.TB, name string) (root, vkey string) {
	t.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	root = t.TempDir()
	f := KeyFile(root)
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf("package modfetch\n\nvar knownGOSUMDB = map[string]string{\n\t%q: %q,\n}\n", name, vkey)
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, vkey
}

func TestParseGOSUMDB(t *testing.T) {
	root, known := fakeGOROOT(t, "sum.test")
	_, other, err := note.GenerateKey(rand.Reader, "other.test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      string
		want    SumDB
		wantErr error  // errors.Is target, or nil
		errText string // substring of the error, "" when no error
	}{
		{in: "off", want: SumDB{Off: true}},
		{in: "sum.test", want: SumDB{Name: "sum.test", Key: known}},
		{in: known, want: SumDB{Name: "sum.test", Key: known}},
		{in: other, want: SumDB{Name: "other.test", Key: other}},
		{in: other + " http://127.0.0.1:9/db/", want: SumDB{Name: "other.test", Key: other, URL: "http://127.0.0.1:9/db"}},
		{in: "sum.test https://127.0.0.1:9", want: SumDB{Name: "sum.test", Key: known, URL: "https://127.0.0.1:9"}},
		{in: "unknown.test", wantErr: ErrNoKey, errText: "pass --sumdb name+key"},
		{in: "", errText: "GOSUMDB is empty"},
		{in: other + " http://127.0.0.1:9 extra", errText: "too many fields"},
		{in: other + " ftp://127.0.0.1", errText: "invalid GOSUMDB URL"},
		{in: "other.test+bad+key", errText: "invalid GOSUMDB key"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseGOSUMDB(tt.in, root)
			if tt.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errText) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// Without a readable key file a bare name has no key.
	if _, err := ParseGOSUMDB("sum.test", t.TempDir()); !errors.Is(err, ErrNoKey) {
		t.Errorf("missing key.go: err = %v, want ErrNoKey", err)
	}
}

// TestKnownKeysOfLocalGo reads the key file of the Go installation that runs the test: every
// entry must be a verifier key whose name is the map key. No name or key is written here.
func TestKnownKeysOfLocalGo(t *testing.T) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	keys, err := KnownKeys(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no known checksum database in the local Go installation")
	}
	for name, key := range keys {
		v, err := note.NewVerifier(key)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if v.Name() != name {
			t.Errorf("key of %s names %s", name, v.Name())
		}
	}
}

func TestNoSumDBPatterns(t *testing.T) {
	tests := []struct{ nosumdb, private, want string }{
		{"", "", ""},
		{"", "corp.test", "corp.test"},
		{"a.test", "corp.test", "a.test"},
	}
	for _, tt := range tests {
		if got := NoSumDBPatterns(tt.nosumdb, tt.private); got != tt.want {
			t.Errorf("NoSumDBPatterns(%q, %q) = %q, want %q", tt.nosumdb, tt.private, got, tt.want)
		}
	}
}

func TestSumDBOrOff(t *testing.T) {
	root, known := fakeGOROOT(t, "sum.test")
	tests := []struct {
		in          string
		wantOff     bool
		wantWarning string // substring; "" for none
		wantErr     bool
	}{
		{in: "sum.test"},
		{in: known + " http://127.0.0.1:9"},
		{in: "off", wantOff: true},
		{in: "nokey.test", wantOff: true, wantWarning: `pass --sumdb "nokey.test+<key>"`},
		{in: "a b c", wantErr: true},
	}
	for _, tt := range tests {
		db, err := SumDBOrOff(tt.in, root)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: err = %v", tt.in, err)
			continue
		}
		if err != nil {
			continue
		}
		if db.Off != tt.wantOff || (tt.wantWarning == "") != (db.Warning == "") || !strings.Contains(db.Warning, tt.wantWarning) {
			t.Errorf("%q: %+v, want off=%v warning containing %q", tt.in, db, tt.wantOff, tt.wantWarning)
		}
		if tt.wantWarning != "" {
			v, err := NewVerifier(VerifierConfig{DB: db})
			if err != nil || v.Enabled() || v.Warning() != db.Warning {
				t.Errorf("%q: verifier %v enabled=%v warning=%q", tt.in, err, v.Enabled(), v.Warning())
			}
		}
	}
}

// FuzzParseGOSUMDB checks that a GOSUMDB value (--sumdb, or the go command's) is parsed or
// refused with a one-line error, and that what is accepted is a database the go command
// would accept (a verifier key whose name is host[/path]) that holoproxy can serve (its
// cache keys are valid), with an http(s) URL when one is given, and that renders back
// (SumDB.String) to a value that parses to the same.
func FuzzParseGOSUMDB(f *testing.F) {
	root, known := fakeGOROOT(f, "sum.test")
	key := func(name string) string {
		// A fixed "random" source: the seeds are the same on every run.
		_, vkey, err := note.GenerateKey(strings.NewReader(strings.Repeat("k", 64)), name)
		if err != nil {
			f.Fatal(err)
		}
		return vkey
	}
	for _, s := range []string{
		"off", "", "sum.test", "unknown.test", known, known + " https://sum-a.test/db/", known + " http://127.0.0.1:9",
		known + " ftp://sum-a.test", known + " https://", known + " https://sum-a.test x", "sum.test https://sum-a.test",
		key("sum.test/sub") + " https://sum-a.test", key("sum.test?x"), key("sum.test#x"), key("sum.test/"),
		key("sum.test/../x"), key("sum.test//x"), key("sum.test/./x"), key("Sum.Test:443"), key("user@sum.test"),
		key("sum.test/%41"), key("[::1]"), "sum.test+bad+key", " off ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		db, err := ParseGOSUMDB(value, root)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("ParseGOSUMDB(%q): error of more than one line: %q", value, msg)
			}
			return
		}
		if db.Off {
			if db != (SumDB{Off: true}) {
				t.Fatalf("ParseGOSUMDB(%q) = %+v", value, db)
			}
			return
		}
		v, err := note.NewVerifier(db.Key)
		if err != nil || v.Name() != db.Name {
			t.Fatalf("ParseGOSUMDB(%q) = %+v, whose key does not name the database (%v)", value, db, err)
		}
		// The go command's rule for the name (cmd/go/internal/modfetch: "no funny business").
		u, err := url.Parse("https://" + db.Name)
		if err != nil || strings.HasSuffix(db.Name, "/") || u.Host == "" || u.RawPath != "" ||
			*u != (url.URL{Scheme: "https", Host: u.Host, Path: u.Path}) {
			t.Fatalf("ParseGOSUMDB(%q) accepted name %q, which the go command refuses", value, db.Name)
		}
		if err := store.CheckKey("sumdb/" + db.Name + "/latest"); err != nil {
			t.Fatalf("ParseGOSUMDB(%q) accepted name %q, which cannot be cached: %v", value, db.Name, err)
		}
		if db.URL != "" {
			u, err := url.Parse(db.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.HasSuffix(db.URL, "/") {
				t.Fatalf("ParseGOSUMDB(%q) accepted URL %q", value, db.URL)
			}
		}
		again, err := ParseGOSUMDB(db.String(), root)
		if err != nil || again != db {
			t.Fatalf("ParseGOSUMDB(%q) = %+v, whose String %q parses to %+v, %v", value, db, db.String(), again, err)
		}
	})
}
