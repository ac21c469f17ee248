package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memBucket is a Bucket in memory whose failures a test sets.
type memBucket struct {
	mu      sync.Mutex
	objects map[string]memObject
	gets    atomic.Int64
	puts    atomic.Int64
	// fail, when set, is every call's error; block makes Get and Stat wait for their ctx.
	fail  error
	block bool
	// release, when set, holds every Get until it is closed.
	release chan struct{}
}

type memObject struct {
	data []byte
	Object
}

func newMemBucket() *memBucket { return &memBucket{objects: map[string]memObject{}} }

func (b *memBucket) String() string { return "mem://test" }

func (b *memBucket) state() (error, bool, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fail, b.block, b.release
}

func (b *memBucket) lookup(ctx context.Context, key string) (memObject, error) {
	fail, block, release := b.state()
	if block {
		<-ctx.Done()
		return memObject{}, ctx.Err()
	}
	if release != nil {
		<-release
	}
	if fail != nil {
		return memObject{}, fail
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[key]
	if !ok {
		return memObject{}, fs.ErrNotExist
	}
	return o, nil
}

func (b *memBucket) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	b.gets.Add(1)
	o, err := b.lookup(ctx, key)
	if err != nil {
		return nil, Object{}, err
	}
	return io.NopCloser(bytes.NewReader(o.data)), o.Object, nil
}

func (b *memBucket) Put(ctx context.Context, key string, r io.Reader, size int64, sum string) error {
	if fail, _, _ := b.state(); fail != nil {
		return fail
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if int64(len(data)) != size {
		return errors.New("size mismatch")
	}
	b.puts.Add(1)
	b.set(key, data, sum, time.Now())
	return nil
}

func (b *memBucket) set(key string, data []byte, sum string, mod time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.objects[key] = memObject{data: data, Object: Object{Size: int64(len(data)), ModTime: mod, SHA256: sum}}
}

func (b *memBucket) Delete(ctx context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.objects, key)
	return nil
}

func digest(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func newShared(t testing.TB, b Bucket) *Shared {
	t.Helper()
	d, err := OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &Shared{Local: d, Bucket: b, Timeout: 200 * time.Millisecond, Backoff: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func commitString(t *testing.T, st Store, key, data string) {
	t.Helper()
	ctx := context.Background()
	tmp, err := st.CreateTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx, key, tmp); err != nil {
		t.Fatal(err)
	}
}

func readEntry(t *testing.T, st Store, key string) (string, Info, error) {
	t.Helper()
	e, err := st.Open(context.Background(), key)
	if err != nil {
		return "", Info{}, err
	}
	defer e.Body.Close()
	data, err := io.ReadAll(e.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(data), e.Info, nil
}

// Two replicas over one bucket: what one commits, the other reads, copied to its disk with
// the time it was stored, and read from the disk afterwards. Version lists and @latest are
// not shared.
func TestSharedReplicasFillEachOther(t *testing.T) {
	b := newMemBucket()
	a, c := newShared(t, b), newShared(t, b)
	var ops []string
	var opsMu sync.Mutex
	note := func(op string, d time.Duration, err error) {
		opsMu.Lock()
		defer opsMu.Unlock()
		ops = append(ops, fmt.Sprintf("%s %v", op, err == nil))
	}
	a.OnBucket, c.OnBucket = note, note
	const key = "example.com/m/@v/v1.0.0.mod"
	commitString(t, a, key, "module example.com/m\n")
	if b.puts.Load() != 1 {
		t.Fatalf("puts = %d after a commit, want 1", b.puts.Load())
	}
	if _, err := c.Local.Stat(context.Background(), key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("replica's disk has the key before any read: %v", err)
	}
	info, err := c.Stat(context.Background(), key)
	if err != nil || info.Size != int64(len("module example.com/m\n")) {
		t.Fatalf("Stat through the bucket = %+v, %v", info, err)
	}
	got, _, err := readEntry(t, c, key)
	if err != nil || got != "module example.com/m\n" {
		t.Fatalf("read through the bucket = %q, %v", got, err)
	}
	if st := c.Stats(); st.Hits != 1 || st.BytesDown != int64(len(got)) {
		t.Fatalf("stats = %+v, want one hit", st)
	}
	// Now on the replica's disk: no second Get.
	gets := b.gets.Load()
	if _, _, err := readEntry(t, c, key); err != nil || b.gets.Load() != gets {
		t.Fatalf("second read: err %v, gets %d -> %d", err, gets, b.gets.Load())
	}

	opsMu.Lock()
	if got := strings.Join(ops, ", "); got != "put true, get true" {
		t.Errorf("OnBucket saw %q, want the put and the get", got)
	}
	opsMu.Unlock()

	// An entry stored an hour ago reaches the replica with that time.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	b.set("example.com/m/@v/v1.1.0.info", []byte(`{"Version":"v1.1.0"}`), digest([]byte(`{"Version":"v1.1.0"}`)), old)
	_, info, err = readEntry(t, c, "example.com/m/@v/v1.1.0.info")
	if err != nil || !info.ModTime.Equal(old) {
		t.Fatalf("ModTime = %v, %v; want %v", info.ModTime, err, old)
	}

	// Lists and @latest change: neither put nor read.
	puts, gets := b.puts.Load(), b.gets.Load()
	commitString(t, a, "example.com/m/@v/list", "v1.0.0\n")
	commitString(t, a, "example.com/m/@latest", `{"Version":"v1.0.0"}`)
	b.set("example.com/n/@v/list", []byte("v1.0.0\n"), digest([]byte("v1.0.0\n")), time.Now())
	if _, _, err := readEntry(t, c, "example.com/n/@v/list"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a list was read from the bucket: %v", err)
	}
	if b.puts.Load() != puts || b.gets.Load() != gets {
		t.Errorf("lists reached the bucket: puts %d -> %d, gets %d -> %d", puts, b.puts.Load(), gets, b.gets.Load())
	}
}

// The bucket is never trusted further than the digest its writer recorded: an object whose
// content does not match, a short one, and one holoproxy did not write are misses, and
// nothing of them is left on the disk.
func TestSharedRefusesWhatDoesNotMatch(t *testing.T) {
	b := newMemBucket()
	s := newShared(t, b)
	good := []byte("module example.com/m\n")
	b.set("a/@v/v1.0.0.mod", []byte("module example.com/evil\n"), digest(good), time.Now())
	b.set("b/@v/v1.0.0.mod", good[:5], digest(good), time.Now())
	b.mu.Lock()
	o := b.objects["b/@v/v1.0.0.mod"]
	o.Size = int64(len(good)) // the object claims the full size but ends early
	b.objects["b/@v/v1.0.0.mod"] = o
	b.mu.Unlock()
	b.set("c/@v/v1.0.0.mod", good, "", time.Now())
	b.set("d/@v/v1.0.0.zip", good, digest(good), time.Now())
	b.mu.Lock()
	o = b.objects["d/@v/v1.0.0.zip"]
	o.Size = 600 << 20 // claims more than any module file may be
	b.objects["d/@v/v1.0.0.zip"] = o
	b.mu.Unlock()
	for _, key := range []string{"a/@v/v1.0.0.mod", "b/@v/v1.0.0.mod", "c/@v/v1.0.0.mod", "d/@v/v1.0.0.zip"} {
		if _, _, err := readEntry(t, s, key); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: err = %v, want not-exist", key, err)
		}
		if _, err := s.Local.Stat(context.Background(), key); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left on the disk: %v", key, err)
		}
	}
	if _, err := s.Stat(context.Background(), "c/@v/v1.0.0.mod"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a foreign object: %v, want not-exist", err)
	}
	st := s.Stats()
	if st.Corrupt != 3 || st.Foreign != 1 || st.Hits != 0 || st.BytesDown != 24+5 {
		t.Errorf("stats = %+v, want 3 corrupt, 1 foreign, no hit, 29 bytes read (a and b; nothing of d)", st)
	}
	// A miss is remembered for a moment: the Stat after the Open of c asked nothing.
	if n := b.gets.Load(); n != 4 {
		t.Errorf("bucket Gets = %d for four keys (c read twice), want 4", n)
	}
	entries, _ := os.ReadDir(s.Local.tempDir())
	if len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
	// The next fill replaces the bad object.
	commitString(t, s, "a/@v/v1.0.0.mod", string(good))
	b.mu.Lock()
	fixed := string(b.objects["a/@v/v1.0.0.mod"].data)
	b.mu.Unlock()
	if fixed != string(good) {
		t.Errorf("bucket object after the fill = %q", fixed)
	}
}

// A bucket that hangs costs a read Timeout once; then it is skipped for Backoff: reads are
// misses at once and commits go to the disk alone.
func TestSharedBucketFailureIsSkipped(t *testing.T) {
	b := newMemBucket()
	s := newShared(t, b)
	b.block = true
	start := time.Now()
	_, _, err := readEntry(t, s, "m/@v/v1.0.0.info")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read of a hanging bucket: %v, want not-exist", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("read of a hanging bucket took %v (Timeout is %v)", d, s.Timeout)
	}
	if !s.Stats().Down {
		t.Fatal("the bucket is not marked down after a timeout")
	}
	gets := b.gets.Load()
	if _, _, err := readEntry(t, s, "m/@v/v1.0.1.info"); !errors.Is(err, fs.ErrNotExist) || b.gets.Load() != gets {
		t.Fatalf("read during the backoff: %v, gets %d -> %d (want no Get)", err, gets, b.gets.Load())
	}
	commitString(t, s, "m/@v/v1.0.2.info", `{"Version":"v1.0.2"}`)
	if b.puts.Load() != 0 {
		t.Fatal("a commit during the backoff reached the bucket")
	}
	if got, _, err := readEntry(t, s, "m/@v/v1.0.2.info"); err != nil || got != `{"Version":"v1.0.2"}` {
		t.Fatalf("the disk lost a commit made during the backoff: %q, %v", got, err)
	}
	if st := s.Stats(); st.Errors != 1 || st.SkippedReads != 1 || st.SkippedWrites != 1 {
		t.Fatalf("stats = %+v, want 1 error, 1 skipped read and 1 skipped write", st)
	}

	// After the backoff the bucket is used again.
	b.mu.Lock()
	b.block = false
	b.mu.Unlock()
	s.Backoff = time.Millisecond
	time.Sleep(2 * time.Millisecond)
	commitString(t, s, "m/@v/v1.0.3.info", `{"Version":"v1.0.3"}`)
	if b.puts.Load() != 1 || s.Stats().Down {
		t.Fatalf("after the backoff: puts %d, down %v", b.puts.Load(), s.Stats().Down)
	}
}

// Concurrent readers of a key the disk misses share one copy from the bucket.
func TestSharedOneCopyPerKey(t *testing.T) {
	b := newMemBucket()
	s := newShared(t, b)
	data := strings.Repeat("z", 1<<20)
	b.set("m/@v/v1.0.0.zip", []byte(data), digest([]byte(data)), time.Now())
	b.release = make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, _, err := readEntry(t, s, "m/@v/v1.0.0.zip")
			if err == nil && got != data {
				err = errors.New("wrong content")
			}
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them all ask
	close(b.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := b.gets.Load(); n != 1 {
		t.Fatalf("bucket Gets = %d for 20 concurrent readers, want 1", n)
	}
}

// Keys are checked before the bucket is asked.
func TestSharedRefusesBadKeys(t *testing.T) {
	b := newMemBucket()
	s := newShared(t, b)
	for _, key := range []string{"../x", "/abs", "a/.tmp/x", ""} {
		if _, err := s.Open(context.Background(), key); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q) = %v, want an invalid-key error", key, err)
		}
		if _, err := s.Stat(context.Background(), key); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want an invalid-key error", key, err)
		}
	}
	if b.gets.Load() != 0 {
		t.Fatalf("bad keys reached the bucket: %d gets", b.gets.Load())
	}
}

// Check sees each object whose digest matched before it reaches the disk; what it refuses
// is a miss and leaves nothing behind.
func TestSharedCheckRefuses(t *testing.T) {
	b := newMemBucket()
	s := newShared(t, b)
	var checked []string
	s.Check = func(ctx context.Context, key string, f *os.File) error {
		data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
		if err != nil {
			return err
		}
		checked = append(checked, key)
		if strings.Contains(string(data), "evil") {
			return errors.New("names another module")
		}
		return nil
	}
	for key, data := range map[string]string{"good/@v/v1.0.0.mod": "module good\n", "bad/@v/v1.0.0.mod": "module evil\n"} {
		b.set(key, []byte(data), digest([]byte(data)), time.Now())
	}
	if got, _, err := readEntry(t, s, "good/@v/v1.0.0.mod"); err != nil || got != "module good\n" {
		t.Fatalf("checked object: %q, %v", got, err)
	}
	if _, _, err := readEntry(t, s, "bad/@v/v1.0.0.mod"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused object: %v, want not-exist", err)
	}
	if _, err := s.Local.Stat(context.Background(), "bad/@v/v1.0.0.mod"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused object on the disk: %v", err)
	}
	if len(checked) != 2 {
		t.Fatalf("Check saw %v, want both keys", checked)
	}
	if st := s.Stats(); st.Refused != 1 || st.Hits != 1 {
		t.Fatalf("stats %+v, want 1 refused and 1 hit", st)
	}
}

// A disk that refuses the copy (here its temporary directory is a file) makes the read a
// miss, not a failure: the caller's fill meets the disk itself and handles it.
func TestSharedDiskRefusesCopy(t *testing.T) {
	b := newMemBucket()
	s := newShared(t, b)
	data := []byte("module m\n")
	b.set("m/@v/v1.0.0.mod", data, digest(data), time.Now())
	if err := os.RemoveAll(s.Local.tempDir()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Local.tempDir(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := readEntry(t, s, "m/@v/v1.0.0.mod")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "local disk refused") {
		t.Fatalf("read with the disk refusing: %v; want a miss naming the disk", err)
	}
	if st := s.Stats(); st.Errors != 0 || st.Down {
		t.Fatalf("the disk's failure was charged to the bucket: %+v", st)
	}
}

// FuzzBucketObject checks what the shared tier and a bucket store make of an object whose
// content, size and recorded SHA-256 (the metadata its writer put with it, which a foreign
// or torn object may lack or have wrong) are anything: the shared tier serves it only when
// the digest is recorded and both size and digest match the content, and a bucket store
// (holoproxy verify) opens it only when the size matches and the digest, when recorded,
// too; what is served is the content; a refusal of the shared tier reads as not found.
func FuzzBucketObject(f *testing.F) {
	for _, s := range []struct {
		data string
		size int64
		sum  string
	}{
		{"module m\n", 9, digest([]byte("module m\n"))},
		{"module m\n", 9, ""},
		{"module m\n", 9, strings.ToUpper(digest([]byte("module m\n")))},
		{"module m\n", 9, digest([]byte("module n\n"))},
		{"module m\n", 8, digest([]byte("module m\n"))},
		{"module m\n", 10, digest([]byte("module m\n"))},
		{"module m\n", -1, digest([]byte("module m\n"))},
		{"", 0, digest(nil)},
		{"", 1 << 62, digest(nil)},
		{"x", 1, "not hex"},
	} {
		f.Add([]byte(s.data), s.size, s.sum)
	}
	b := newMemBucket()
	s := newShared(f, b)
	bs := &BucketStore{Bucket: listMem{b}, TempDir: f.TempDir()}
	var n atomic.Int64
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte, size int64, sum string) {
		// A key of its own for each input: a miss is remembered for a moment.
		key := fmt.Sprintf("mods.test/m%d/@v/v1.0.0.zip", n.Add(1))
		b.mu.Lock()
		b.objects[key] = memObject{data: data, Object: Object{Size: size, ModTime: time.Unix(1700000000, 0), SHA256: sum}}
		b.mu.Unlock()
		defer b.Delete(ctx, key)

		fits := size == int64(len(data)) && size <= maxObject
		read := func(what string, e Entry, err error, want bool) {
			t.Helper()
			if (err == nil) != want {
				t.Fatalf("%s of an object of %d bytes, size %d, digest %q: %v; want it served: %v", what, len(data), size, sum, err, want)
			}
			if err != nil {
				return
			}
			defer e.Body.Close()
			got, rerr := io.ReadAll(e.Body)
			if rerr != nil || !bytes.Equal(got, data) || e.Size != size {
				t.Fatalf("%s served %d bytes (size %d, %v); want the object's %d", what, len(got), e.Size, rerr, len(data))
			}
		}
		e, err := s.Open(ctx, key)
		read("shared tier", e, err, fits && sum == digest(data))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("shared tier refused the object with %v; want not found", err)
		}
		if err == nil {
			s.Local.Delete(ctx, key)
		}
		e, err = bs.Open(ctx, key)
		read("bucket store", e, err, fits && (sum == "" || sum == digest(data)))
	})
}

// listMem is a memBucket that lists its objects, for a BucketStore.
type listMem struct{ *memBucket }

func (b listMem) List(ctx context.Context, prefix string, fn func(key string, obj Object) error) error {
	b.mu.Lock()
	var keys []string
	for k := range b.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	b.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		b.mu.Lock()
		o, ok := b.objects[k]
		b.mu.Unlock()
		if ok {
			if err := fn(k, o.Object); err != nil {
				return err
			}
		}
	}
	return nil
}
