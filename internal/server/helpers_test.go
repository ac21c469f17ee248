package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/store"
)

// fixtureMods is the module set every test origin serves.
var fixtureMods = []modtree.Module{
	{Path: "example.com/m", Version: "v1.0.0"},
	{Path: "example.com/m", Version: "v1.1.0"},
	{Path: "example.com/Upper", Version: "v1.0.0"},                // case-encoded as !upper
	{Path: "example.com/nomod", Version: "v1.0.0", NoGoMod: true}, // synthesized go.mod
	{Path: "example.com/other", Version: "v1.0.0"},
	{Path: "example.com/pseudo", Version: "v0.0.0-20240102030405-abcdefabcdef"}, // @latest only
}

// newBigEnv returns an env whose origin serves bigKey, the zip of example.com/big v1.0.0,
// which holds a file of size incompressible bytes (the zip is a little larger).
func newBigEnv(t *testing.T, size int) *env {
	t.Helper()
	return newEnv(t, newBigOrigin(t, size).URL(), nil)
}

// newBigOrigin returns newBigEnv's origin.
func newBigOrigin(t *testing.T, size int) *origin {
	t.Helper()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{5}).Read(data)
	big := modtree.Module{Path: "example.com/big", Version: "v1.0.0", Files: map[string]string{
		"go.mod": "module example.com/big\n", "big.go": "package big\n", "data.bin": string(data),
	}}
	o := newOrigin(t)
	if err := modtree.Write(o.dir, []modtree.Module{big}); err != nil {
		t.Fatal(err)
	}
	return o
}

// bigKey is the path of newBigEnv's zip.
const bigKey = "/example.com/big/@v/v1.0.0.zip"

// origin is a test upstream proxy serving a modtree tree, counting requests by path, with an
// optional fault hook that may answer a request itself.
type origin struct {
	srv *httptest.Server
	dir string

	mu    sync.Mutex
	hits  map[string]int
	hops  []string
	fault func(w http.ResponseWriter, r *http.Request) bool
	down  bool // answer 503 to everything
}

func newOrigin(t *testing.T) *origin {
	t.Helper()
	o := &origin{dir: t.TempDir(), hits: map[string]int{}}
	if err := modtree.Write(o.dir, fixtureMods); err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(o.dir))
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[strings.TrimPrefix(r.URL.Path, "/")]++
		o.hops = append(o.hops, r.Header.Values(HopHeader)...)
		fault, down := o.fault, o.down
		o.mu.Unlock()
		if down {
			http.Error(w, "origin is down", http.StatusServiceUnavailable)
			return
		}
		if fault != nil && fault(w, r) {
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) URL() string { return o.srv.URL }

// count returns how many requests the origin saw for path (relative, escaped).
func (o *origin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

// total returns how many requests the origin saw.
func (o *origin) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.hits {
		n += c
	}
	return n
}

func (o *origin) setFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	o.mu.Lock()
	o.fault = f
	o.mu.Unlock()
}

func (o *origin) setDown(down bool) {
	o.mu.Lock()
	o.down = down
	o.mu.Unlock()
}

// fakeClock is an injectable clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// env is a Server under test with its store, log and metrics.
type env struct {
	s     *Server
	store *store.Disk
	logs  *syncBuffer
	reg   *prometheus.Registry
	clock *fakeClock

	// fast, when set, is the address of a fasthttp front (ServeFast) that do and serve send
	// their requests to, over loopback; tests under TestFastHTTP get one.
	fast       string
	fastClient *http.Client
}

// testHTTPClient is the upstream client of tests: bounded, never waiting forever.
var testHTTPClient = &http.Client{Timeout: 30 * time.Second}

// newEnv starts a Server whose chain is list (GOPROXY syntax).
func newEnv(t *testing.T, list string, mutate func(*Config)) *env {
	t.Helper()
	chain, err := goproxy.ParseChain(list, testHTTPClient)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{store: st, logs: &syncBuffer{}, reg: prometheus.NewRegistry(), clock: newFakeClock()}
	cfg := Config{
		Store:      st,
		Chain:      chain,
		InstanceID: "test-instance",
		Registerer: e.reg,
		Logger:     slog.New(slog.NewTextHandler(e.logs, nil)),
		Now:        e.clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	if strings.HasPrefix(t.Name(), "TestFastHTTP/") {
		e.startFast(t)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		e.assertNoTemp(t)
	})
	return e
}

// do sends one request to the server: in process, or to its fasthttp front.
func (e *env) do(method, path string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/", nil)
	r.URL.Path = path
	w := e.serve(r)
	e.settle()
	return w
}

// serve answers r: with ServeHTTP in process, or, under TestFastHTTP, by sending it to the
// fasthttp front over loopback (its URL path percent-encoded as a client sends it).
func (e *env) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	if e.fast == "" {
		e.s.ServeHTTP(w, r)
		return w
	}
	u := *r.URL
	u.Scheme, u.Host = "http", e.fast
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), nil)
	if err != nil {
		panic(err) // a test's own request
	}
	req.Header = r.Header.Clone()
	resp, err := e.fastClient.Do(req)
	if err != nil {
		w.WriteHeader(599) // no answer: no status a server sends
		fmt.Fprintf(w, "fasthttp front: %v", err)
		return w
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		fmt.Fprintf(w, "[fasthttp front: reading the body: %v]", err)
	}
	return w
}

// startFast starts a fasthttp front for e.s on a loopback port.
func (e *env) startFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := NewFastServer(e.s.ServeFast, FastServerConfig{ReadTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	done := make(chan error, 1)
	go func() { done <- fs.Serve(ln) }()
	e.fast = ln.Addr().String()
	e.fastClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(func() {
		e.fastClient.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := fs.ShutdownWithContext(ctx); err != nil {
			t.Errorf("fasthttp front shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("fasthttp front: %v", err)
		}
	})
}

// settle waits until the answers the server gave have been committed to the store: a fill
// answers its waiters from the verified temporary file and commits it right after, so tests
// that look at the store next must wait for that (it waits only on the disk).
func (e *env) settle() { e.s.commits.wait() }

// get is do with GET, failing the test on a status other than want.
func (e *env) get(t *testing.T, path string, want int) *httptest.ResponseRecorder {
	t.Helper()
	w := e.do(http.MethodGet, path)
	if w.Code != want {
		t.Fatalf("GET %s = %d %q; want %d", path, w.Code, w.Body.String(), want)
	}
	return w
}

// keys returns every committed key in the store.
func (e *env) keys(t *testing.T) []string {
	t.Helper()
	var keys []string
	err := e.store.Walk(context.Background(), "", func(key string, _ store.Info) error {
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// assertNoTemp fails when a temporary fill file is left in the store.
func (e *env) assertNoTemp(t *testing.T) {
	t.Helper()
	f, err := e.store.CreateTemp(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := f.Name()[:strings.LastIndexByte(f.Name(), '/')]
	e.store.Discard(f)
	entries, err := readDirNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Errorf("temporary files left in the store: %v", entries)
	}
}

// fixture returns the bytes of a fixture file as the origin serves it, without asking it.
func fixture(t *testing.T, o *origin, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(o.dir, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}
