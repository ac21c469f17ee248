package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/holoproxy/holoproxy/internal/store"
)

// relay keeps a proxy whose store cannot take new files (its disk full, over quota or
// read-only) answering: a fill whose temporary file cannot be created or written is fetched
// again into memory (store.MemTemp), checked and verified as always, answered, and not
// stored. The memory such answers hold at once is bounded; an answer that does not fit is
// refused with 503 and a reason. After the disk refused a write, fills go to memory without
// trying it for Config.UnwritableRetry, then try it again, so that a disk with room again
// is used again without a restart.
type relay struct {
	budget int64               // bytes of answers held in memory at once; 0: relaying is off
	mem    *semaphore.Weighted // nil when budget is 0
	retry  time.Duration
	log    *slog.Logger

	until  atomic.Int64 // UnixNano before which fills do not try the disk
	down   atomic.Bool  // set by a lasting refusal, cleared by the next file the disk takes
	logged atomic.Int64 // UnixNano of the last log line about a refusal
	mu     sync.Mutex
	cause  error // the disk's last refusal, guarded by mu
	// unstored counts the answers relayed from memory (holoproxy_server_unstored_answers_total).
	unstored atomic.Int64
}

func newRelay(budget int64, retry time.Duration, log *slog.Logger) *relay {
	r := &relay{budget: max(budget, 0), retry: retry, log: log}
	if r.budget > 0 {
		r.mem = semaphore.NewWeighted(r.budget)
	}
	return r
}

// skipDisk reports whether the disk refused a write less than the retry interval ago.
func (r *relay) skipDisk() bool { return time.Now().UnixNano() < r.until.Load() }

// lastCause returns the disk's last refusal, as clients are told it: without the names of
// the cache's files.
func (r *relay) lastCause() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cause == nil {
		return "no cause recorded"
	}
	return withoutPaths(r.cause)
}

// refused records that the store could not take a file. An error that lasts (full,
// read-only) sends fills to memory for the retry interval; it is logged once per stretch.
func (r *relay) refused(err error) {
	r.mu.Lock()
	r.cause = err
	r.mu.Unlock()
	if !store.Unwritable(err) {
		return
	}
	now := time.Now()
	r.until.Store(now.Add(r.retry).UnixNano())
	// A nearly full disk takes small files and refuses large ones: state flips are
	// logged once a minute at most (the gauge has each).
	if !r.down.Swap(true) && now.UnixNano()-r.logged.Load() >= int64(time.Minute) {
		r.logged.Store(now.UnixNano())
		how := "answers are relayed from memory and not stored"
		if r.budget == 0 {
			how = "misses fail with 503 (relaying from memory is off)"
		}
		r.log.Error("the cache cannot store answers: "+how, "err", err, "retry", r.retry)
	}
}

// stored records that the disk took a fill's file: a stretch of refusals is over.
func (r *relay) stored() {
	if r.down.Load() {
		r.down.Store(false)
	}
}

// errNotStoring is a prefetch's answer while the store cannot take files.
var errNotStoring = errors.New("the cache cannot store answers now")

// localError is a failure of this server, not of the upstream it was fetching from: the
// store could not take the answer and it could not be relayed from memory. It is answered
// 503 and never charged to the upstream.
type localError struct{ msg string }

func (e *localError) Error() string { return e.msg }

// storeFailure wraps the error of a temporary file of the store that could not be created
// or written: the attempt is made again into memory.
type storeFailure struct{ err error }

func (e *storeFailure) Error() string { return "storing the answer: " + e.err.Error() }
func (e *storeFailure) Unwrap() error { return e.err }

// memTemp returns a file in memory for an answer of size bytes (-1: unknown; limit bounds
// it) and the function that gives its memory back once the file is closed. The returned
// limit is how many bytes the file may take: an answer of unknown size gets what the
// budget has at most.
func (r *relay) memTemp(ctx context.Context, size, limit int64) (f *os.File, free func(), capBytes int64, err error) {
	cause := r.lastCause()
	if r.budget == 0 {
		return nil, nil, 0, &localError{fmt.Sprintf("the cache cannot store it (%v) and relaying from memory is off", cause)}
	}
	need := size
	if need < 0 {
		need = min(limit+1, r.budget)
	}
	if need > r.budget {
		return nil, nil, 0, &localError{fmt.Sprintf("the cache cannot store it (%v) and its %d bytes are more than the relay memory (%d bytes)", cause, need, r.budget)}
	}
	// Wait a little for memory other relayed answers hold; not for as long as the fill may
	// take: a client is better told now.
	wctx, cancel := context.WithTimeout(ctx, relayMemoryWait)
	defer cancel()
	if err := r.mem.Acquire(wctx, need); err != nil {
		if ctx.Err() != nil {
			return nil, nil, 0, ctx.Err()
		}
		return nil, nil, 0, &localError{fmt.Sprintf("the cache cannot store it (%v) and the relay memory (%d bytes) is in use", cause, r.budget)}
	}
	var once sync.Once
	free = func() { once.Do(func() { r.mem.Release(need) }) }
	f, err = store.MemTemp()
	if err != nil {
		free()
		return nil, nil, 0, &localError{fmt.Sprintf("the cache cannot store it (%v) and a file in memory failed: %v", cause, err)}
	}
	return f, free, need, nil
}

// relayMemoryWait is how long a relayed answer waits for memory other ones hold.
const relayMemoryWait = 5 * time.Second

// capReader fails once more than n bytes are read: an answer of unknown size that outgrows
// the memory reserved for it.
type capReader struct {
	r io.Reader
	n int64
}

var errRelayCap = errors.New("the answer outgrew the relay memory reserved for it")

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		// One byte past the cap tells a longer answer from one of exactly n bytes.
		var b [1]byte
		k, err := c.r.Read(b[:])
		if k > 0 {
			return 0, errRelayCap
		}
		return 0, err
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= int64(k)
	return k, err
}

// StoreState reports whether the store refuses files right now (misses are then relayed
// from memory) and how many answers were relayed unstored since start.
func (s *Server) StoreState() (unwritable bool, unstored int64) {
	return s.relay.down.Load(), s.relay.unstored.Load()
}
