package checksum

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/store"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"
)

type proxyFixture struct {
	db  *sumdbtest.DB
	st  dirStore
	p   *SumDBProxy
	srv *httptest.Server
}

func newProxyFixture(t *testing.T, nosumdb string) *proxyFixture {
	t.Helper()
	db := sumdbtest.New(t, []modtree.Module{modA, modB, modC, modPriv})
	st := newDirStore(t)
	p, err := NewSumDBProxy(ProxyConfig{
		DB:      SumDB{Name: db.Name, Key: db.Key},
		NoSumDB: nosumdb,
		Store:   st,
		BaseURL: FixedBaseURL(db.URL),
		Timeout: 5 * time.Second,
		Logger:  quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sumdb/", p)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &proxyFixture{db, st, p, srv}
}

func (f *proxyFixture) get(t *testing.T, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := f.srv.Client().Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body), resp.Header
}

func TestSumDBProxySupported(t *testing.T) {
	f := newProxyFixture(t, "")
	tests := []struct {
		path string
		want int
	}{
		{"/sumdb/sum.test/supported", 200},
		{"/sumdb/other.test/supported", 404},
		{"/sumdb/other.test/lookup/mods.test/a@v1.0.0", 404},
		{"/sumdb/sum.test/unknown", 404},
		{"/sumdb/sum.test/tile/8/0/bad", 404},
		{"/sumdb/sum.test/lookup/mods.test/a", 404},
	}
	for _, tt := range tests {
		if code, body, _ := f.get(t, tt.path); code != tt.want {
			t.Errorf("GET %s = %d %q, want %d", tt.path, code, body, tt.want)
		}
	}
	if n := len(f.db.Requests()); n != 0 {
		t.Errorf("supported and refused paths reached the database: %v", f.db.Requests())
	}
}

// TestSumDBProxyCaches: each endpoint is passed through once, then served from the cache.
func TestSumDBProxyCaches(t *testing.T) {
	f := newProxyFixture(t, "")
	tests := []struct {
		path   string // below /sumdb/sum.test
		wantIn string // a substring of the answer
	}{
		{"/lookup/mods.test/a@v1.0.0", "mods.test/a v1.0.0/go.mod h1:"},
		{"/latest", "tree\n4\n"},
		{"/tile/8/0/000.p/4", ""},                      // partial hash tile
		{"/tile/8/data/000.p/4", "mods.test/c v0.1.0"}, // partial data tile
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			direct, err := http.Get(f.db.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := io.ReadAll(direct.Body)
			direct.Body.Close()
			f.db.ResetRequests()
			for i, how := range []string{"miss", "hit"} {
				code, body, h := f.get(t, "/sumdb/sum.test"+tt.path)
				if code != 200 || body != string(want) || !strings.Contains(body, tt.wantIn) {
					t.Fatalf("request %d: %d %q, want 200 %q", i, code, body, want)
				}
				if got := h.Get(CacheHeader); got != how {
					t.Errorf("request %d: %s = %q, want %q", i, CacheHeader, got, how)
				}
			}
			if n := f.db.Count(tt.path); n != 1 {
				t.Errorf("database saw %d requests for %s, want 1", n, tt.path)
			}
		})
	}
}

func TestSumDBProxyStale(t *testing.T) {
	f := newProxyFixture(t, "")
	const lookup = "/sumdb/sum.test/lookup/mods.test/b@v1.2.0"
	const latest = "/sumdb/sum.test/latest"
	_, fresh, _ := f.get(t, lookup)
	_, freshLatest, _ := f.get(t, latest)
	f.db.SetDown(true)
	// Fresh entries are served without asking the database.
	if _, _, h := f.get(t, lookup); h.Get(CacheHeader) != "hit" {
		t.Errorf("fresh lookup: %s = %q, want hit", CacheHeader, h.Get(CacheHeader))
	}
	// Expired entries are refetched; the database is down, so the stale copy is served.
	f.st.age(t, "sumdb/sum.test/lookup/mods.test/b@v1.2.0", 48*time.Hour)
	f.st.age(t, "sumdb/sum.test/latest", time.Hour)
	before := len(f.db.Requests())
	for path, want := range map[string]string{lookup: fresh, latest: freshLatest} {
		code, body, h := f.get(t, path)
		if code != 200 || body != want || h.Get(CacheHeader) != "stale" {
			t.Errorf("%s while down: %d %s=%q %q, want 200 stale %q", path, code, CacheHeader, h.Get(CacheHeader), body, want)
		}
	}
	if len(f.db.Requests()) == before {
		t.Error("expired entries were not refetched")
	}
	// Nothing cached and the database down: 502 with a one-line reason.
	code, body, _ := f.get(t, "/sumdb/sum.test/lookup/mods.test/c@v0.1.0")
	if code != http.StatusBadGateway || strings.Count(strings.TrimSpace(body), "\n") != 0 {
		t.Errorf("uncached while down: %d %q, want 502 and one line", code, body)
	}
	if st := f.p.Stats(); st.Stale != 2 || st.UpstreamErrors != 3 {
		t.Errorf("stats = %+v, want 2 stale, 3 upstream errors", st)
	}
	// Unknown to the database: its 404 is passed through, not turned into an error.
	f.db.SetDown(false)
	if code, _, _ := f.get(t, "/sumdb/sum.test/lookup/mods.test/nope@v1.0.0"); code != 404 {
		t.Errorf("unknown module: %d, want 404", code)
	}
}

func TestSumDBProxyPrivate(t *testing.T) {
	f := newProxyFixture(t, "corp.test,*.private.test")
	for _, path := range []string{
		"/sumdb/sum.test/lookup/corp.test/secret@v1.0.0",
		"/sumdb/sum.test/lookup/corp.test/secret/sub@v1.0.0",
		"/sumdb/sum.test/lookup/x.private.test/y@v0.1.0",
		"/sumdb/sum.test/lookup/notcorp.test/secret@v1.0.0", // not private: patterns match whole elements
	} {
		code, body, _ := f.get(t, path)
		private := !strings.Contains(path, "notcorp")
		if private && (code != 404 || !strings.Contains(body, "GONOSUMDB")) {
			t.Errorf("%s: %d %q, want 404 naming GONOSUMDB", path, code, body)
		}
	}
	if n := f.db.Count("/lookup/corp.test") + f.db.Count("private.test"); n != 0 {
		t.Errorf("private lookups reached the database: %v", f.db.Requests())
	}
	if f.db.Count("/lookup/notcorp.test") != 1 {
		t.Errorf("a public path was not forwarded: %v", f.db.Requests())
	}
	if st := f.p.Stats(); st.PrivateRefused != 3 {
		t.Errorf("PrivateRefused = %d, want 3", st.PrivateRefused)
	}
}

// TestSumDBProxyForgedNote: answers signed with another key of the same name are neither
// cached nor served.
func TestSumDBProxyForgedNote(t *testing.T) {
	f := newProxyFixture(t, "")
	impostor := sumdbtest.New(t, []modtree.Module{modA})
	f.p.cfg.BaseURL = FixedBaseURL(impostor.URL)
	for _, path := range []string{"/sumdb/sum.test/lookup/mods.test/a@v1.0.0", "/sumdb/sum.test/latest"} {
		code, body, _ := f.get(t, path)
		if code != http.StatusBadGateway || !strings.Contains(body, "not signed by the configured key") {
			t.Errorf("%s: %d %q, want 502 naming the signature", path, code, body)
		}
	}
	if impostor.Count("/") != 2 {
		t.Errorf("impostor saw %v", impostor.Requests())
	}
	if n := countKeys(t, f.st); n != 0 {
		t.Errorf("forged answers cached: %d entries", n)
	}
	// The honest database's answers pass the same check.
	f.p.cfg.BaseURL = FixedBaseURL(f.db.URL)
	if code, body, _ := f.get(t, "/sumdb/sum.test/lookup/mods.test/a@v1.0.0"); code != 200 {
		t.Errorf("honest lookup: %d %q", code, body)
	}
}

func countKeys(t *testing.T, st dirStore) int {
	t.Helper()
	n := 0
	if err := st.Walk(context.Background(), "", func(string, store.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSumDBProxyWithoutKey(t *testing.T) {
	db := sumdbtest.New(t, []modtree.Module{modA})
	tests := []struct {
		db   SumDB
		want int
	}{
		{SumDB{Off: true}, 404},                  // GOSUMDB=off: no database served
		{SumDB{Off: true, Name: db.Name}, 200},   // key unknown: served, unchecked
		{SumDB{Name: db.Name, Key: db.Key}, 200}, // the usual case
	}
	for _, tt := range tests {
		p, err := NewSumDBProxy(ProxyConfig{DB: tt.db, Store: newDirStore(t), BaseURL: FixedBaseURL(db.URL), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/sumdb/sum.test/supported", "/sumdb/sum.test/lookup/mods.test/a@v1.0.0"} {
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != tt.want {
				t.Errorf("%+v: GET %s = %d, want %d", tt.db, path, rec.Code, tt.want)
			}
		}
	}
}

// FuzzSumDBProxyPath checks the parsing of the path below /sumdb/<name>/: what is
// accepted is fetched and cached under a valid store key (a lookup of a valid, escaped
// module@version that is not private; a tile in its canonical form), and what is refused
// gets a one-line reason for the 404.
func FuzzSumDBProxyPath(f *testing.F) {
	for _, s := range []string{
		"latest", "supported", "lookup/mods.test/m@v1.0.0", "lookup/mods.test/!upper@v1.0.0-!r!c1",
		"lookup/private.test/x@v1.0.0", "lookup/mods.test/m", "lookup/mods.test/m@latest",
		"lookup/../x@v1.0.0", "lookup/mods.test/m@v1.0.0@v2.0.0", "lookup/Mods.test/m@v1.0.0",
		"tile/8/0/000", "tile/8/0/x001/234", "tile/8/1/000.p/17", "tile/8/data/000", "tile/8/data/x001/000.p/3",
		"tile/8/0/001.p/256", "tile/99/0/000", "tile/8/0/../x", "tile/", "lookup/", "",
	} {
		f.Add(s)
	}
	p := &SumDBProxy{cfg: ProxyConfig{DB: SumDB{Name: "sum.test"}, NoSumDB: "private.test",
		LongTTL: time.Hour, ShortTTL: time.Minute}}
	f.Fuzz(func(t *testing.T, rest string) {
		ep, err := p.parse(rest)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("parse(%q): error of more than one line: %q", rest, msg)
			}
			return
		}
		if err := store.CheckKey(p.key(ep)); err != nil {
			t.Fatalf("parse(%q): path %q makes an invalid store key: %v", rest, ep.path, err)
		}
		switch {
		case ep.path == "/latest":
			if rest != "latest" {
				t.Fatalf("parse(%q) = latest", rest)
			}
		case strings.HasPrefix(ep.path, "/lookup/"):
			mv := strings.TrimPrefix(ep.path, "/lookup/")
			escPath, escVer, _ := strings.Cut(mv, "@")
			path, err1 := module.UnescapePath(escPath)
			ver, err2 := module.UnescapeVersion(escVer)
			if err1 != nil || err2 != nil || module.Check(path, ver) != nil {
				t.Fatalf("parse(%q) accepted lookup %q of an invalid module version", rest, mv)
			}
			if module.MatchPrefixPatterns(p.cfg.NoSumDB, path) {
				t.Fatalf("parse(%q) accepted a lookup of private %s", rest, path)
			}
			if ep.ttl != p.cfg.LongTTL {
				t.Fatalf("parse(%q): lookup cached for %v", rest, ep.ttl)
			}
		case strings.HasPrefix(ep.path, "/tile/"):
			tile, err := tlog.ParseTilePath(strings.TrimPrefix(ep.path, "/"))
			if err != nil || "/"+tile.Path() != ep.path {
				t.Fatalf("parse(%q) = tile path %q, not canonical (%v)", rest, ep.path, err)
			}
			if full := tile.W == 1<<tile.H; full != (ep.ttl < 0) {
				t.Fatalf("parse(%q): tile of width %d/%d cached for %v", rest, tile.W, 1<<tile.H, ep.ttl)
			}
		default:
			t.Fatalf("parse(%q) = unknown endpoint %q", rest, ep.path)
		}
	})
}

// TestSumDBProxyNameWithPath: a database whose name has a path (host/path, which the go
// command allows) is served under /sumdb/<host/path>/, where the go command asks for it.
func TestSumDBProxyNameWithPath(t *testing.T) {
	p, err := NewSumDBProxy(ProxyConfig{DB: SumDB{Name: "sum.test/sub"}, Store: newDirStore(t),
		BaseURL: FixedBaseURL("http://127.0.0.1:9"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"/sumdb/sum.test/sub/supported":  200,
		"/sumdb/sum.test/supported":      404,
		"/sumdb/sum.test/subx/supported": 404,
		"/sumdb/sum.test/sub":            404,
	} {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want {
			t.Errorf("GET %s = %d %q; want %d", path, w.Code, w.Body, want)
		}
	}
}
