package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/store"
)

// fullDisk is a store whose temporary files, while full is set, are /dev/full: every write
// fails with the kernel's ENOSPC, as on a full file system.
type fullDisk struct {
	store.Store
	full    atomic.Bool
	creates atomic.Int64 // CreateTemp calls while full
	// createErr, when set, is CreateTemp's error while full (a file system out of inodes
	// or read-only).
	createErr error
}

func (d *fullDisk) CreateTemp(ctx context.Context) (*os.File, error) {
	if !d.full.Load() {
		return d.Store.CreateTemp(ctx)
	}
	d.creates.Add(1)
	if d.createErr != nil {
		return nil, d.createErr
	}
	return os.OpenFile("/dev/full", os.O_RDWR, 0)
}

func (d *fullDisk) Discard(f *os.File) {
	if f.Name() == "/dev/full" {
		f.Close() // never remove it
		return
	}
	d.Store.Discard(f)
}

func (d *fullDisk) Commit(ctx context.Context, key string, f *os.File) error {
	if f.Name() == "/dev/full" || strings.HasPrefix(f.Name(), "/proc/self/fd/") {
		panic("commit of a file that is not the store's: " + f.Name())
	}
	return d.Store.Commit(ctx, key, f)
}

// newFullEnv is newBigEnv (a zip of a little over size bytes) on a fullDisk that is full.
func newFullEnv(t *testing.T, size int, mutate func(*Config)) (*env, *fullDisk, *origin) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs /dev/full and memfd_create (Linux)")
	}
	o := newBigOrigin(t, size)
	var fd *fullDisk
	e := newEnv(t, o.URL(), func(c *Config) {
		fd = &fullDisk{Store: c.Store}
		fd.full.Store(true)
		c.Store = fd
		c.UnwritableRetry = time.Hour // the test says when the disk is tried again
		if mutate != nil {
			mutate(c)
		}
	})
	return e, fd, o
}

func TestFullDiskRelaysFromMemory(t *testing.T) {
	e, fd, o := newFullEnv(t, 1<<20, nil)
	want := fixture(t, o, strings.TrimPrefix(bigKey, "/"))
	mod := "/example.com/big/@v/v1.0.0.mod"

	// The first fill finds the disk full: it is fetched again into memory and answered.
	w := e.get(t, bigKey, http.StatusOK)
	if !bytes.Equal(w.Body.Bytes(), want) {
		t.Fatalf("relayed zip: %d bytes, want the origin's %d", w.Body.Len(), len(want))
	}
	if got := w.Header().Get(CacheHeader); got != CacheMiss {
		t.Errorf("%s = %q, want miss", CacheHeader, got)
	}
	if n := o.count(strings.TrimPrefix(bigKey, "/")); n != 2 {
		t.Errorf("origin saw %d requests for the zip, want 2 (the disk's attempt, then memory's)", n)
	}
	if !e.s.relay.down.Load() || !e.s.relay.skipDisk() {
		t.Error("the relay did not record the full disk")
	}
	if !strings.Contains(e.logs.String(), "the cache cannot store answers") {
		t.Errorf("no log line about the full disk:\n%s", e.logs)
	}
	if strings.Contains(e.logs.String(), "upstream failed") {
		t.Errorf("the full disk was charged to the upstream:\n%s", e.logs)
	}

	// Within the retry interval fills go to memory without trying the disk, one fetch per
	// key however many wait, and every waiter gets every byte.
	creates := fd.creates.Load()
	var wg sync.WaitGroup
	codes := make([]int, 20)
	bodies := make([][]byte, 20)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := e.do(http.MethodGet, bigKey)
			codes[i], bodies[i] = w.Code, w.Body.Bytes()
		}()
	}
	wg.Wait()
	for i := range codes {
		if codes[i] != http.StatusOK || !bytes.Equal(bodies[i], want) {
			t.Fatalf("request %d: %d, %d bytes; want 200 with the zip", i, codes[i], len(bodies[i]))
		}
	}
	if n := o.count(strings.TrimPrefix(bigKey, "/")); n < 3 || n > 22 {
		t.Errorf("origin saw %d requests for the zip", n)
	}
	if fd.creates.Load() != creates {
		t.Errorf("the disk was tried %d times within the retry interval", fd.creates.Load()-creates)
	}
	e.get(t, mod, http.StatusOK)
	if keys := e.keys(t); len(keys) != 0 {
		t.Errorf("stored while the disk was full: %v", keys)
	}
	if got := counterValue(e.s.metrics.relayed); got < 3 {
		t.Errorf("unstored answers = %v, want at least 3", got)
	}
	if down, n := e.s.StoreState(); !down || float64(n) != counterValue(e.s.metrics.relayed) {
		t.Errorf("StoreState = %v, %d; want true and the metric's %v", down, n, counterValue(e.s.metrics.relayed))
	}
	// Every relayed answer gave its memory back once its fill ended.
	e.s.fills.Wait()
	if !e.s.relay.mem.TryAcquire(e.s.relay.budget) {
		t.Error("relay memory still held after every answer was sent")
	} else {
		e.s.relay.mem.Release(e.s.relay.budget)
	}

	// The disk has room again: once the retry interval is over, fills store again.
	fd.full.Store(false)
	e.s.relay.until.Store(0)
	e.get(t, bigKey, http.StatusOK)
	if w := e.get(t, bigKey, http.StatusOK); w.Header().Get(CacheHeader) != CacheHit || !bytes.Equal(w.Body.Bytes(), want) {
		t.Errorf("after the disk recovered: %s = %q, %d bytes; want a hit with the zip", CacheHeader, w.Header().Get(CacheHeader), w.Body.Len())
	}
	if e.s.relay.down.Load() {
		t.Error("the relay still says the disk is full after it took a file")
	}
}

func TestFullDiskRelayLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		memory int64
		want   string
	}{
		{"too large for the relay memory", 64 << 10, "more than the relay memory (65536 bytes)"},
		{"relaying off", -1, "relaying from memory is off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, o := newFullEnv(t, 256<<10, func(c *Config) { c.RelayMemory = tc.memory })
			w := e.get(t, bigKey, http.StatusServiceUnavailable)
			assertOneLine(t, w)
			body := w.Body.String()
			if !strings.Contains(body, tc.want) || !strings.Contains(body, "no space left on device") {
				t.Errorf("503 body %q: want it to say %q and why the cache cannot store it", body, tc.want)
			}
			if strings.Contains(body, o.URL()) {
				t.Errorf("503 body %q names the upstream, which did nothing wrong", body)
			}
			if got := counterValue(e.s.metrics.fills.WithLabelValues(o.URL(), "local_error")); got != 1 {
				t.Errorf("fill attempts with outcome local_error = %v, want 1", got)
			}
			if got := counterValue(e.s.metrics.fills.WithLabelValues(o.URL(), "error")); got != 0 {
				t.Errorf("the full disk was counted as %v upstream errors", got)
			}
			// A small answer still fits, and is relayed (or refused the same way when off).
			mod := "/example.com/big/@v/v1.0.0.mod"
			if tc.memory > 0 {
				e.get(t, mod, http.StatusOK)
			} else {
				e.get(t, mod, http.StatusServiceUnavailable)
			}
		})
	}
}

// TestFullDiskChunked relays an answer of unknown length within the memory it may take,
// and refuses one that outgrows it.
func TestFullDiskChunked(t *testing.T) {
	e, _, o := newFullEnv(t, 256<<10, func(c *Config) { c.RelayMemory = 200 << 10 })
	o.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		b, err := os.ReadFile(filepath.Join(o.dir, filepath.FromSlash(r.URL.Path)))
		if err != nil {
			return false
		}
		w.(http.Flusher).Flush() // headers out now: the body goes chunked
		w.Write(b)
		return true
	})
	e.get(t, "/example.com/big/@v/v1.0.0.mod", http.StatusOK)
	w := e.get(t, bigKey, http.StatusServiceUnavailable)
	if !strings.Contains(w.Body.String(), "outgrew the relay memory") {
		t.Errorf("503 body %q: want it to say the answer outgrew the relay memory", w.Body.String())
	}
}

// TestReadOnlyDisk: a store that cannot even create a file (read-only) relays the same way,
// and stays ready while it relays; with relaying off it is not ready.
func TestReadOnlyDisk(t *testing.T) {
	ro := &fs.PathError{Op: "open", Path: "/cache/.tmp/fill-1", Err: syscall.EROFS}
	for _, relayOn := range []bool{true, false} {
		t.Run(fmt.Sprintf("relay=%v", relayOn), func(t *testing.T) {
			var fd *fullDisk
			e, _, _ := newFullEnv(t, 1<<10, func(c *Config) {
				fd = c.Store.(*fullDisk)
				fd.createErr = ro
				if !relayOn {
					c.RelayMemory = -1
				}
			})
			err := e.s.Ready(context.Background())
			if relayOn {
				if err != nil {
					t.Errorf("Ready = %v while misses are relayed", err)
				}
				w := e.get(t, bigKey, http.StatusOK)
				if w.Header().Get(CacheHeader) != CacheMiss {
					t.Errorf("%s = %q", CacheHeader, w.Header().Get(CacheHeader))
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), "read-only") {
					t.Errorf("Ready = %v; want the read-only store named", err)
				}
				w := e.get(t, bigKey, http.StatusServiceUnavailable)
				if !strings.Contains(w.Body.String(), "read-only file system") {
					t.Errorf("503 body %q: want the read-only store named", w.Body.String())
				}
			}
		})
	}
}

// unlinkingDisk removes each temporary file's name as soon as it is made, as another
// process clearing the store's temporary directory would: the fill writes on, but the
// file can no longer be opened by name.
type unlinkingDisk struct{ store.Store }

func (d *unlinkingDisk) CreateTemp(ctx context.Context) (*os.File, error) {
	f, err := d.Store.CreateTemp(ctx)
	if err == nil {
		os.Remove(f.Name())
	}
	return f, err
}

// TestTempFileGoneIsLocal: a zip whose temporary file cannot be read back by name (CheckZip
// opens it so) is this server's failure: no refusal is counted against the upstream, whose
// answer was whole.
func TestTempFileGoneIsLocal(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), func(c *Config) { c.Store = &unlinkingDisk{c.Store} })
	const zipPath = "example.com/m/@v/v1.0.0.zip"
	w := e.do("GET", "/"+zipPath)
	if w.Code == http.StatusOK {
		t.Fatalf("GET %s with its temporary file gone: 200; the test does not test what it means to", zipPath)
	}
	if w.Code == http.StatusNotFound {
		t.Errorf("GET %s with its temporary file gone: 404; the module exists, the failure is this server's", zipPath)
	}
	for _, reason := range []string{ReasonInvalidZip, ReasonReadError} {
		if n := counterValue(e.s.metrics.refused.WithLabelValues(o.URL(), reason)); n != 0 {
			t.Errorf("refused metric for %s = %v; want 0: the upstream's answer was whole", reason, n)
		}
	}
	if strings.Contains(w.Body.String(), e.store.Root()) {
		t.Errorf("the answer names the cache's files: %q", w.Body.String())
	}
	t.Logf("answer: %d %q", w.Code, w.Body.String())
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestUpstreamReadErrorIsTheUpstreams: an answer whose body fails with an *fs.PathError
// (a file:// upstream whose disk fails) is refused and charged to that upstream, not taken
// for this server's disk refusing the copy.
func TestUpstreamReadErrorIsTheUpstreams(t *testing.T) {
	o := newOrigin(t)
	const zipPath = "example.com/m/@v/v1.0.0.zip"
	failing := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		body := io.MultiReader(strings.NewReader("PK\x03\x04 half a zip"),
			iotest.ErrReader(&fs.PathError{Op: "read", Path: "/mirror/" + zipPath, Err: syscall.EIO}))
		return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: io.NopCloser(body), ContentLength: -1, Request: r}, nil
	})
	c, err := goproxy.NewClient("http://mirror.test", &http.Client{Transport: failing})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "http://mirror.test|"+o.URL(), func(cfg *Config) { cfg.Chain.Entries[0].Client = c })
	if w := e.do("GET", "/"+zipPath); w.Code != http.StatusOK || w.Header().Get(UpstreamHeader) != o.URL() {
		t.Fatalf("GET %s: %d from %q; want 200 from the second upstream\n%s", zipPath, w.Code, w.Header().Get(UpstreamHeader), e.logs.String())
	}
	if n := counterValue(e.s.metrics.refused.WithLabelValues("http://mirror.test", ReasonReadError)); n != 1 {
		t.Errorf("refused{read_error} of the failing upstream = %v; want 1\n%s", n, e.logs.String())
	}
}

// TestRefusalIsNeverNotFound: an answer refused because of an error that wraps
// fs.ErrNotExist (a lookup the Verify hook made found nothing) is a refusal, not a not
// found: after ',' the walk stops there with a 502 instead of falling through to the next
// proxy, and the refusal is counted against the upstream that answered.
func TestRefusalIsNeverNotFound(t *testing.T) {
	a, b := newOrigin(t), newOrigin(t)
	const zipPath = "example.com/m/@v/v1.0.0.zip"
	e := newEnv(t, a.URL()+","+b.URL(), func(c *Config) {
		c.Verify = func(ctx context.Context, r goproxy.Request, f *os.File) error {
			return fmt.Errorf("looking %s up: %w", r.Module, fs.ErrNotExist)
		}
	})
	w := e.do("GET", "/"+zipPath)
	if w.Code != http.StatusBadGateway || b.count(zipPath) != 0 {
		t.Errorf("GET %s with A's answer refused: %d %q, B asked %d times; want 502 naming A's refusal, B never asked",
			zipPath, w.Code, w.Body.String(), b.count(zipPath))
	}
	if n := counterValue(e.s.metrics.refused.WithLabelValues(a.URL(), ReasonVerifyFailed)); n != 1 {
		t.Errorf("refused{verify_failed} of A = %v; want 1\n%s", n, e.logs.String())
	}
}
