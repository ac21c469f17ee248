package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Bucket is an object store under the shared tier of a cache: the place replicas of
// holoproxy put what they fill and look for what they miss. Keys are store keys.
// Implementations are safe for concurrent use.
type Bucket interface {
	// Get opens the object under key. A missing key answers an error satisfying
	// errors.Is(err, fs.ErrNotExist).
	Get(ctx context.Context, key string) (io.ReadCloser, Object, error)
	// Put stores the size bytes read from r under key, recording sum (Object.SHA256).
	Put(ctx context.Context, key string, r io.Reader, size int64, sum string) error
	// Delete removes the object under key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// String names the bucket in logs and errors (an s3:// URL), never with credentials.
	String() string
}

// Object describes an object of a Bucket.
type Object struct {
	Size    int64
	ModTime time.Time // when it was stored: the TTL of list and @latest runs from it
	// SHA256 is the hex SHA-256 of the content that the writer recorded with the object;
	// empty for an object holoproxy did not write.
	SHA256 string
}

// Shared is a Store of two tiers: a local Disk that answers every read, over a Bucket that
// replicas share. A read the disk misses is looked for in the bucket and copied to the
// disk first (checked against the digest its writer recorded, so a torn or altered object
// is never served); every Commit goes to the disk, then to the bucket. Version lists and
// @latest answers, which change, stay on each replica's disk. The bucket is the
// scale-out path: replicas behind a load balancer fill each other, and a new replica
// starts warm. Walk sees the disk only (an Evictor bounds the disk, never the bucket).
//
// The bucket is an optimisation, never a point of failure: a bucket that fails or is slow
// costs at most Timeout on a read, after which reads and writes skip it for Backoff, and
// its errors reach the caller as not-found (the fill goes upstream) and the log, once per
// Backoff. What is committed while the bucket is skipped stays on the disk alone.
//
// The exported fields are the configuration; set them before first use.
type Shared struct {
	// Local holds the entries this replica serves. Required.
	Local *Disk
	// Bucket is the shared tier. Required.
	Bucket Bucket
	// Timeout bounds each Get of the bucket up to its first byte (default 5s).
	Timeout time.Duration
	// MinRate is the slowest a copy from or to the bucket may go, in bytes a second
	// (default 1 MiB/s): an object of n bytes gets Timeout plus n/MinRate, at most
	// TransferTimeout. A bucket that stalls mid-copy is cut there and counts as failed.
	MinRate int64
	// TransferTimeout bounds any one copy from or to the bucket (default 10m).
	TransferTimeout time.Duration
	// Backoff is how long reads and writes skip the bucket after it failed (default 10s).
	Backoff time.Duration
	// Logger receives the bucket's failures, at most one line per Backoff, and each
	// object that failed its digest.
	Logger *slog.Logger
	// Check, when set, is run on each object copied from the bucket once its digest
	// matched, before it is committed to the disk: the checks an upstream's answer passes
	// (server.Server.CheckStored), so that a bucket is trusted no further than an upstream
	// (its writers could record a digest of anything). An error refuses the object.
	Check func(ctx context.Context, key string, f *os.File) error
	// OnBucket, when set, is told of every request to the bucket: its operation ("get",
	// timed to the answer's header; "put", timed to the end of the upload; "delete"),
	// how long it took, and its error (nil; one satisfying errors.Is(err,
	// fs.ErrNotExist) for a missing key). It must not block.
	OnBucket func(op string, d time.Duration, err error)
	// OnCopied, when set, is told the size of each entry copied from the bucket to the
	// disk (an Evictor's Stored), as the disk's other commits are told by their writer.
	OnCopied func(size int64)

	copies   singleflight.Group
	missed   missMemo
	failedAt atomic.Int64 // UnixNano of the last bucket failure; 0 when none
	logged   atomic.Int64 // UnixNano of the last failure logged
	stats    sharedCounters
}

// SharedStats counts what a Shared store did with its bucket since it started.
type SharedStats struct {
	// Reads the disk missed (Open or Stat), by what the bucket did: Hits answered; Misses
	// did not hold the key; Foreign held it only as an object holoproxy did not write (no
	// digest); Corrupt held an object whose content did not match its digest or size;
	// Refused held one that failed Check; Errors failed; SkippedReads were not asked
	// within a Backoff.
	Hits, Misses, Foreign, Corrupt, Refused, Errors, SkippedReads int64
	// Commits copied to the bucket (Uploads), failing to (UploadErrors), or left on the
	// disk alone within a Backoff (SkippedWrites).
	Uploads, UploadErrors, SkippedWrites int64
	// BytesDown and BytesUp are the bytes copied from and to the bucket.
	BytesDown, BytesUp int64
	// Down reports whether the bucket is being skipped now.
	Down bool
}

type sharedCounters struct {
	hits, misses, foreign, corrupt, refused, errors, skippedReads atomic.Int64
	uploads, uploadErrors, skippedWrites, down, up                atomic.Int64
}

// Stats returns the counts so far.
func (s *Shared) Stats() SharedStats {
	c := &s.stats
	return SharedStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Foreign: c.foreign.Load(),
		Corrupt: c.corrupt.Load(), Refused: c.refused.Load(), Errors: c.errors.Load(), SkippedReads: c.skippedReads.Load(),
		Uploads: c.uploads.Load(), UploadErrors: c.uploadErrors.Load(), SkippedWrites: c.skippedWrites.Load(),
		BytesDown: c.down.Load(), BytesUp: c.up.Load(),
		Down: !s.usable()}
}

func (s *Shared) timeout() time.Duration  { return orDefault(s.Timeout, 5*time.Second) }
func (s *Shared) transfer() time.Duration { return orDefault(s.TransferTimeout, 10*time.Minute) }
func (s *Shared) backoff() time.Duration  { return orDefault(s.Backoff, 10*time.Second) }

// transferFor is how long a copy of size bytes may take: Timeout plus size at MinRate, at
// most TransferTimeout.
func (s *Shared) transferFor(size int64) time.Duration {
	rate := s.MinRate
	if rate <= 0 {
		rate = 1 << 20
	}
	return min(s.timeout()+time.Duration(float64(size)/float64(rate)*float64(time.Second)), s.transfer())
}

func (s *Shared) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// observe tells OnBucket of a request that started at t0.
func (s *Shared) observe(op string, t0 time.Time, err error) {
	if s.OnBucket != nil {
		s.OnBucket(op, time.Since(t0), err)
	}
}

// usable reports whether the bucket is to be used now: not within Backoff of a failure.
func (s *Shared) usable() bool {
	at := s.failedAt.Load()
	return at == 0 || time.Since(time.Unix(0, at)) >= s.backoff()
}

// failed records a failure of the bucket: it is skipped for Backoff, and the failure is
// logged unless one was within the last Backoff.
func (s *Shared) failed(op, key string, err error) {
	now := time.Now().UnixNano()
	s.failedAt.Store(now)
	last := s.logged.Load()
	if (last == 0 || time.Duration(now-last) >= s.backoff()) && s.logged.CompareAndSwap(last, now) {
		s.log().Warn("shared cache failed; skipping it for a while, serving from the local disk and upstream",
			"bucket", s.Bucket.String(), "op", op, "key", key, "skip", s.backoff(), "err", err)
	}
}

// diskFailed is the error of a copy from the bucket that the local disk refused (full,
// read-only): a miss for the caller, whose fill then meets the disk itself and handles it
// as it handles any disk failure (relaying from memory, the server's unwritable state).
func diskFailed(key string, err error) error {
	return notFound(key, fmt.Errorf("the local disk refused the copy: %w", err))
}

// notFound is the error of a read that the bucket did not answer, whatever the reason.
func notFound(key string, why error) error {
	return fmt.Errorf("store: %s: %w (shared cache: %v)", key, fs.ErrNotExist, why)
}

// Open implements Store: from the disk, else copied from the bucket to the disk first.
func (s *Shared) Open(ctx context.Context, key string) (Entry, error) {
	return viaBucket(s, ctx, key, s.Local.Open)
}

// viaBucket returns local(ctx, key), first copying key from the bucket when the disk does
// not hold it.
func viaBucket[T any](s *Shared, ctx context.Context, key string, local func(context.Context, string) (T, error)) (T, error) {
	v, err := local(ctx, key)
	if !errors.Is(err, fs.ErrNotExist) {
		return v, err
	}
	if err := s.copyIn(ctx, key); err != nil {
		var zero T
		return zero, err
	}
	return local(ctx, key)
}

// changing reports whether key holds an answer that changes (a version list, @latest),
// which the bucket does not share: each replica refreshes its own from upstream every list
// TTL, so a shared copy would help only a replica's first request, at the price of a PUT
// per refresh per module (and a version per PUT in a versioned bucket).
func changing(key string) bool {
	return strings.HasSuffix(key, "/@v/list") || strings.HasSuffix(key, "/@latest")
}

// copyIn copies key from the bucket to the disk, once for all concurrent callers. The
// copy runs on even when ctx ends, for the others and for the next request.
func (s *Shared) copyIn(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if changing(key) {
		return notFound(key, errors.New("version lists and @latest are not shared"))
	}
	if !s.usable() {
		s.stats.skippedReads.Add(1)
		return notFound(key, errors.New("skipped after a recent failure"))
	}
	if s.missed.recent(key) {
		return notFound(key, errors.New("not there a moment ago"))
	}
	ch := s.copies.DoChan(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.transfer())
		defer cancel()
		err := s.download(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			s.missed.note(key)
		}
		return nil, err
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return notFound(key, ctx.Err()) // the caller is gone; not the store's failure
	}
}

// maxObject is the largest object copied from the bucket: the largest file of the GOPROXY
// protocol, a module zip (golang.org/x/mod/zip's MaxZipFile). A larger one is refused
// before a byte of it reaches the disk.
const maxObject = 500 << 20

// oversize returns why o is larger than any file of the protocol, or nil.
func (o Object) oversize() error {
	if o.Size > maxObject || o.Size < 0 {
		return fmt.Errorf("object of %d bytes, over the limit of %d", o.Size, maxObject)
	}
	return nil
}

// copyObject copies obj's content from r to dst (one byte more than obj.Size at most, so
// that a longer body shows) and returns the bytes copied and their hex SHA-256.
func copyObject(dst io.Writer, r io.Reader, obj Object) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(dst, h), io.LimitReader(r, obj.Size+1))
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// download copies key from the bucket into a temporary file of the disk, checks it, and
// commits it with the object's time (so that a list's TTL runs from when it was fetched).
func (s *Shared) download(ctx context.Context, key string) error {
	// Timeout runs to the first byte; once Get answers, the body has transferFor its size.
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.AfterFunc(s.timeout(), cancel)
	t0 := time.Now()
	rc, obj, err := s.Bucket.Get(gctx, key)
	s.observe("get", t0, err)
	if !timer.Stop() { // fired: gctx is cancelled, whatever Get answered
		if err == nil {
			rc.Close()
		}
		err = fmt.Errorf("no answer within %v", s.timeout())
	}
	if err == nil {
		body := time.AfterFunc(s.transferFor(obj.Size), cancel)
		defer body.Stop()
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.stats.misses.Add(1)
			return err
		}
		s.stats.errors.Add(1)
		s.failed("get", key, err)
		return notFound(key, err)
	}
	defer rc.Close()
	if err := obj.oversize(); err != nil {
		s.stats.corrupt.Add(1)
		s.log().Error("shared cache object larger than any module file; ignored", "bucket", s.Bucket.String(), "key", key, "size", obj.Size)
		return notFound(key, err)
	}
	if obj.SHA256 == "" {
		s.stats.foreign.Add(1)
		return notFound(key, errors.New("object without holoproxy's digest, ignored"))
	}
	tmp, err := s.Local.CreateTemp(ctx)
	if err != nil {
		return diskFailed(key, err)
	}
	n, got, err := copyObject(tmp, rc, obj)
	s.stats.down.Add(n)
	if err != nil {
		s.Local.Discard(tmp)
		if isWrite(err) {
			return diskFailed(key, err)
		}
		s.stats.errors.Add(1)
		s.failed("get", key, err)
		return notFound(key, err)
	}
	if n != obj.Size || got != obj.SHA256 {
		s.Local.Discard(tmp)
		s.stats.corrupt.Add(1)
		s.log().Error("shared cache object does not match its digest; ignored, the next fill replaces it",
			"bucket", s.Bucket.String(), "key", key, "size", n, "want_size", obj.Size, "sha256", got, "want_sha256", obj.SHA256)
		return notFound(key, errors.New("object does not match its digest"))
	}
	if s.Check != nil {
		if err := s.Check(ctx, key, tmp); err != nil {
			s.Local.Discard(tmp)
			s.stats.refused.Add(1)
			s.log().Error("shared cache object refused by the checks of a fill; ignored, the next fill replaces it",
				"bucket", s.Bucket.String(), "key", key, "err", err)
			return notFound(key, fmt.Errorf("object refused: %w", err))
		}
	}
	if !obj.ModTime.IsZero() {
		if err := os.Chtimes(tmp.Name(), time.Time{}, obj.ModTime); err != nil {
			s.Local.Discard(tmp)
			return diskFailed(key, err)
		}
	}
	if err := s.Local.Commit(ctx, key, tmp); err != nil {
		return diskFailed(key, err)
	}
	s.stats.hits.Add(1)
	if s.OnCopied != nil {
		s.OnCopied(n)
	}
	return nil
}

// isWrite reports whether a copy failed on the file's side (a *fs.PathError of the file).
func isWrite(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe)
}

// Stat implements Store: the disk's entry, else the bucket's, copied to the disk first as
// Open does. A caller that finds an entry opens it next (a fill that finds its key stored
// answers from the store), so the copy is what it would cost anyway; and a key whose
// object the copy refuses is missing for Stat as for Open, so the fill goes upstream.
func (s *Shared) Stat(ctx context.Context, key string) (Info, error) {
	return viaBucket(s, ctx, key, s.Local.Stat)
}

// CreateTemp implements Store: a temporary file of the disk.
func (s *Shared) CreateTemp(ctx context.Context) (*os.File, error) { return s.Local.CreateTemp(ctx) }

// Discard implements Store.
func (s *Shared) Discard(tmp *os.File) { s.Local.Discard(tmp) }

// Commit implements Store: the disk's commit, then a copy in the bucket. Only the disk's
// failure is returned; the bucket's is counted and logged (the entry is stored here, and
// a replica that misses it fills it from upstream).
func (s *Shared) Commit(ctx context.Context, key string, tmp *os.File) error {
	if err := s.Local.Commit(ctx, key, tmp); err != nil {
		return err
	}
	s.missed.forget(key)
	if changing(key) {
		return nil
	}
	if !s.usable() {
		s.stats.skippedWrites.Add(1)
		return nil
	}
	if err := s.upload(context.WithoutCancel(ctx), key); err != nil {
		s.stats.uploadErrors.Add(1)
		if !isWrite(err) {
			s.failed("put", key, err)
		}
	}
	return nil
}

// upload puts the disk's entry key in the bucket with its digest, within transferFor its
// size.
func (s *Shared) upload(ctx context.Context, key string) error {
	e, err := s.Local.Open(ctx, key)
	if err != nil {
		return err
	}
	defer e.Body.Close()
	ctx, cancel := context.WithTimeout(ctx, s.transferFor(e.Size))
	defer cancel()
	h := sha256.New()
	if _, err := io.Copy(h, e.Body); err != nil {
		return err
	}
	if _, err := e.Body.Seek(0, io.SeekStart); err != nil {
		return err
	}
	t0 := time.Now()
	err = s.Bucket.Put(ctx, key, e.Body, e.Size, hex.EncodeToString(h.Sum(nil)))
	s.observe("put", t0, err)
	if err != nil {
		return err
	}
	s.stats.uploads.Add(1)
	s.stats.up.Add(e.Size)
	return nil
}

// Delete implements Store: from the disk and from the bucket.
func (s *Shared) Delete(ctx context.Context, key string) error {
	if err := s.Local.Delete(ctx, key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	t0 := time.Now()
	err := s.Bucket.Delete(ctx, key)
	s.observe("delete", t0, err)
	if err != nil {
		return fmt.Errorf("store: deleting %s from %s: %w", key, s.Bucket, err)
	}
	return nil
}

// Walk implements Store over the disk alone.
func (s *Shared) Walk(ctx context.Context, prefix string, fn func(key string, info Info) error) error {
	return s.Local.Walk(ctx, prefix, fn)
}

// missMemo remembers for a moment the keys the bucket did not answer, so that the reads
// of one miss (the server's Open, then its fill's Stat) ask the bucket once.
type missMemo struct {
	mu   sync.Mutex
	keys map[string]time.Time // when each key's memo ends
}

// missMemoTTL is how long a miss is remembered: long enough for one request's reads, short
// enough that what another replica stores meanwhile is found by the next request.
const missMemoTTL = time.Second

// missMemoMax bounds the memo: past it, the expired keys are dropped, and all of them if
// none has expired (it is only a saving).
const missMemoMax = 8192

func (m *missMemo) recent(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	end, ok := m.keys[key]
	return ok && time.Now().Before(end)
}

func (m *missMemo) note(key string) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys == nil {
		m.keys = map[string]time.Time{}
	}
	if len(m.keys) >= missMemoMax {
		for k, end := range m.keys {
			if !now.Before(end) {
				delete(m.keys, k)
			}
		}
		if len(m.keys) >= missMemoMax {
			clear(m.keys)
		}
	}
	m.keys[key] = now.Add(missMemoTTL)
}

func (m *missMemo) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.keys, key)
}
