// Package sumdbtest runs a checksum database for tests: golang.org/x/mod/sumdb's server over
// a transparency log of fixture modules' go.sum lines, signed with a key made for the test,
// served over HTTP on 127.0.0.1. Point the go command at it with
// GOSUMDB="<db.Key> <db.URL>", or at holoproxy's /sumdb/ with GOSUMDB=<db.Key>.
package sumdbtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// DefaultName is the name of a database made by New.
const DefaultName = "sum.test"

// Request is one request the database received.
type Request struct {
	Path      string // URL path, like "/lookup/mods.test/a@v1.0.0" or "/tile/8/0/000"
	UserAgent string
}

// DB is a running test checksum database. Its records are fixed at creation or added with
// Add; a lookup of an unknown module version answers 404.
type DB struct {
	Name string // database name, like "sum.test"
	Key  string // verifier key ("name+hash+keydata"), the GOSUMDB value without URL
	URL  string // base URL, http://127.0.0.1:port, without trailing slash

	skey string
	srv  *httptest.Server

	mu      sync.Mutex
	records [][]byte
	hashes  []tlog.Hash
	lookup  map[module.Version]int64
	reqs    []Request
	down    bool
}

// New starts a database named DefaultName holding the go.sum lines of mods (one record per
// module version, in order). It is closed when the test ends.
func New(t testing.TB, mods []modtree.Module) *DB {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, DefaultName)
	if err != nil {
		t.Fatalf("sumdbtest: generating key: %v", err)
	}
	return start(t, DefaultName, skey, vkey, mods)
}

// Fork starts a second database with db's name and signing key but its own records: to
// a client that has seen db, it is the same database whose history has been rewritten.
func (db *DB) Fork(t testing.TB, mods []modtree.Module) *DB {
	t.Helper()
	return start(t, db.Name, db.skey, db.Key, mods)
}

func start(t testing.TB, name, skey, vkey string, mods []modtree.Module) *DB {
	db := serve(name, skey, vkey)
	t.Cleanup(db.srv.Close)
	if err := db.Add(mods...); err != nil {
		t.Fatalf("sumdbtest: %v", err)
	}
	return db
}

// Start starts an empty database named name outside a test, for tools such as the
// benchmarks that need one: fill it with Add or AddRecord, stop it with Close.
func Start(name string) (*DB, error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: generating key: %w", err)
	}
	return serve(name, skey, vkey), nil
}

// Close stops the database's HTTP server.
func (db *DB) Close() { db.srv.Close() }

// DropIdle closes the connections idle between requests at the call, as a server that
// times them out would, so that a test can count a client's descriptors without its
// keep-alive pool; connections go on being kept alive afterwards.
func (db *DB) DropIdle() {
	db.srv.Config.SetKeepAlivesEnabled(false) // closes the idle connections
	db.srv.Config.SetKeepAlivesEnabled(true)
}

// serve starts serving an empty database on 127.0.0.1.
func serve(name, skey, vkey string) *DB {
	db := &DB{Name: name, Key: vkey, skey: skey, lookup: map[module.Version]int64{}}
	srv := sumdb.NewServer(ops{db})
	mux := http.NewServeMux()
	for _, p := range sumdb.ServerPaths {
		mux.Handle(p, srv)
	}
	db.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		db.mu.Lock()
		db.reqs = append(db.reqs, Request{Path: r.URL.Path, UserAgent: r.UserAgent()})
		down := db.down
		db.mu.Unlock()
		if down {
			http.Error(w, "checksum database down (test)", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	db.URL = db.srv.URL
	return db
}

// GOSUMDB returns the GOSUMDB value that makes the go command use this database directly.
func (db *DB) GOSUMDB() string { return db.Key + " " + db.URL }

// Add appends a record with the go.sum lines of each module version.
func (db *DB) Add(mods ...modtree.Module) error {
	for _, m := range mods {
		lines, err := m.SumLines()
		if err != nil {
			return err
		}
		if err := db.AddRecord(m.Path, m.Version, lines...); err != nil {
			return err
		}
	}
	return nil
}

// AddRecord appends a record for path@version holding the given go.sum lines as they are,
// so a test can make the database vouch for any hash.
func (db *DB) AddRecord(path, version string, lines ...string) error {
	data := []byte(strings.Join(lines, "\n") + "\n")
	id := module.Version{Path: path, Version: version}
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, ok := db.lookup[id]; ok {
		return fmt.Errorf("sumdbtest: %s already has a record", id)
	}
	n := int64(len(db.records))
	hashes, err := tlog.StoredHashesForRecordHash(n, tlog.RecordHash(data), hashReader(db.hashes))
	if err != nil {
		return err
	}
	db.hashes = append(db.hashes, hashes...)
	db.records = append(db.records, data)
	db.lookup[id] = n
	return nil
}

// Size returns the number of records (the tree size).
func (db *DB) Size() int64 {
	db.mu.Lock()
	defer db.mu.Unlock()
	return int64(len(db.records))
}

// SetDown makes every request answer 503 (down) or be served again.
func (db *DB) SetDown(down bool) {
	db.mu.Lock()
	db.down = down
	db.mu.Unlock()
}

// Requests returns the requests received so far, in order.
func (db *DB) Requests() []Request {
	db.mu.Lock()
	defer db.mu.Unlock()
	return append([]Request(nil), db.reqs...)
}

// Count returns how many requests' paths contain substr.
func (db *DB) Count(substr string) int {
	n := 0
	for _, r := range db.Requests() {
		if strings.Contains(r.Path, substr) {
			n++
		}
	}
	return n
}

// ResetRequests forgets the requests received so far.
func (db *DB) ResetRequests() {
	db.mu.Lock()
	db.reqs = nil
	db.mu.Unlock()
}

type hashReader []tlog.Hash

func (h hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(h)) {
			return nil, fmt.Errorf("sumdbtest: no stored hash %d", x)
		}
		out[i] = h[x]
	}
	return out, nil
}

// ops is the sumdb.ServerOps of a DB.
type ops struct{ db *DB }

func (o ops) Signed(ctx context.Context) ([]byte, error) {
	o.db.mu.Lock()
	n := int64(len(o.db.records))
	h, err := tlog.TreeHash(n, hashReader(o.db.hashes))
	o.db.mu.Unlock()
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(o.db.skey)
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: string(tlog.FormatTree(tlog.Tree{N: n, Hash: h}))}, signer)
}

func (o ops) ReadRecords(ctx context.Context, id, n int64) ([][]byte, error) {
	o.db.mu.Lock()
	defer o.db.mu.Unlock()
	if id < 0 || id+n > int64(len(o.db.records)) {
		return nil, notExist(fmt.Sprintf("records %d..%d", id, id+n-1))
	}
	return append([][]byte(nil), o.db.records[id:id+n]...), nil
}

func (o ops) Lookup(ctx context.Context, m module.Version) (int64, error) {
	o.db.mu.Lock()
	defer o.db.mu.Unlock()
	id, ok := o.db.lookup[m]
	if !ok {
		return 0, notExist(m.String())
	}
	return id, nil
}

func (o ops) ReadTileData(ctx context.Context, t tlog.Tile) ([]byte, error) {
	o.db.mu.Lock()
	defer o.db.mu.Unlock()
	data, err := tlog.ReadTileData(t, hashReader(o.db.hashes))
	if err != nil {
		return nil, notExist(t.Path())
	}
	return data, nil
}

// notExist returns a not-found error that the sumdb server answers with 404 (it tests with
// os.IsNotExist, which looks through *fs.PathError only).
func notExist(what string) error {
	return &fs.PathError{Op: "read", Path: what, Err: fs.ErrNotExist}
}
