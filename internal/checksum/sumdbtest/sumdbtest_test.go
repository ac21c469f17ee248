package sumdbtest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDB(t *testing.T) {
	a := modtree.Module{Path: "mods.test/a", Version: "v1.0.0"}
	b := modtree.Module{Path: "mods.test/b", Version: "v0.2.0"}
	db := sumdbtest.New(t, []modtree.Module{a})
	if db.Name != sumdbtest.DefaultName || !strings.HasPrefix(db.Key, db.Name+"+") || !strings.HasPrefix(db.URL, "http://127.0.0.1:") {
		t.Fatalf("db = %q %q %q", db.Name, db.Key, db.URL)
	}
	if err := db.Add(b); err != nil {
		t.Fatal(err)
	}
	if err := db.Add(b); err == nil {
		t.Error("a second record for the same version was accepted")
	}
	verifier, err := note.NewVerifier(db.Key)
	if err != nil {
		t.Fatal(err)
	}
	lines, _ := b.SumLines()
	tests := []struct {
		path     string
		want     int
		contains string
	}{
		{"/lookup/mods.test/b@v0.2.0", 200, lines[0] + "\n" + lines[1] + "\n"},
		{"/lookup/mods.test/c@v1.0.0", 404, ""},
		{"/latest", 200, "\n2\n"},
		{"/tile/8/0/000.p/2", 200, ""},
		{"/tile/8/0/000.p/3", 404, ""},
	}
	for _, tt := range tests {
		code, body := get(t, db.URL+tt.path)
		if code != tt.want || !strings.Contains(body, tt.contains) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.want, tt.contains)
		}
	}
	_, latest := get(t, db.URL+"/latest")
	n, err := note.Open([]byte(latest), note.VerifierList(verifier))
	if err != nil {
		t.Fatalf("latest does not verify with db.Key: %v", err)
	}
	if tree, err := tlog.ParseTree([]byte(n.Text)); err != nil || tree.N != db.Size() {
		t.Errorf("tree %+v %v, want size %d", tree, err, db.Size())
	}
	if got := db.Count("/lookup/"); got != 2 {
		t.Errorf("Count(/lookup/) = %d, want 2", got)
	}
	db.SetDown(true)
	if code, _ := get(t, db.URL+"/latest"); code != http.StatusServiceUnavailable {
		t.Errorf("down: %d, want 503", code)
	}
	// A fork has the same name and key but its own history.
	f := db.Fork(t, []modtree.Module{b})
	_, fl := get(t, f.URL+"/latest")
	fn, err := note.Open([]byte(fl), note.VerifierList(verifier))
	if err != nil {
		t.Fatalf("fork's latest does not verify with the original key: %v", err)
	}
	if f.Key != db.Key || fn.Text == n.Text {
		t.Errorf("fork: key %q, tree %q; want the same key and another tree", f.Key, fn.Text)
	}
	if !strings.HasSuffix(db.GOSUMDB(), " "+db.URL) {
		t.Errorf("GOSUMDB() = %q", db.GOSUMDB())
	}
}
