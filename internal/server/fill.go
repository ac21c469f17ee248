package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/store"
)

// errClosed is the answer of a fill asked for after Close.
var errClosed = errors.New("server closed")

// errHedgeLost is the result of a hedged attempt whose valid answer came second.
var errHedgeLost = errors.New("another hedged attempt answered first")

// fillCall is one fill in flight: the first request for a key starts it, every request for
// the same key waits on done and shares res. It runs under the server's context, not any
// request's, so a waiter that goes away cancels nothing.
type fillCall struct {
	done chan struct{} // closed when res is set
	res  fillResult
	// readers counts the callers that got this call and have not released it: res.file
	// stays open until the last of them is done.
	readers sync.WaitGroup
	// bg, when a background caller (the prefetcher) started the fill, marks its fetches
	// background until a client joins it and promotes them.
	bg *goproxy.Background
}

// fillResult is what a fill found.
type fillResult struct {
	// upstream served the answer; empty when the store already held it.
	upstream string
	// body is the answer when it is not stored under the request's key (a version query).
	body []byte
	// err is why there is no answer; notFound marks a not-found walk (answered 404), and
	// status is the HTTP status of any other failure.
	err      error
	notFound bool
	status   int
	// timing is the Server-Timing header value of the upstream exchange that produced the
	// answer (netobs.ServerTiming), set with upstream.
	timing string
	// file is the verified answer, read with ReadAt while the fill commits it to the store,
	// so that waiters do not wait for the fsync; size is its length. Nil when the answer is
	// only in the store (open it by key) or in body.
	file *os.File
	size int64
	// free, set when the fill's answer is in memory (relayed: the store could not take it),
	// gives its memory back once file is closed.
	free func()
	// throttled, on a failed fill, is how long the upstream that rate-limited it (429)
	// asked to be left alone (at least a second); the prefetcher pauses that long.
	throttled time.Duration
	// busy marks a background fill that direct skipped for want of a job slot
	// (goproxy.ErrDirectBusy): a client that joined it fills the key again.
	busy bool
}

// fill returns the answer to req from the chain, sharing one fill per key among all
// concurrent callers. It returns early with ctx's error when ctx ends first; the fill goes on.
// The caller calls release once it is done with the result (its file).
//
// A caller whose ctx is background (goproxy.IsBackground: the prefetcher) starts a
// background fill; a client joining it promotes it, and one that joined it too late (it
// was skipped, busy) starts another.
func (s *Server) fill(ctx context.Context, req goproxy.Request, hops []string) (res fillResult, release func()) {
	key := req.Path()
	bg := goproxy.IsBackground(ctx)
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return fillResult{err: errClosed, status: http.StatusServiceUnavailable}, func() {}
		}
		c, ok := s.calls[key]
		if !ok {
			c = &fillCall{done: make(chan struct{})}
			if bg {
				c.bg = &goproxy.Background{}
			}
			s.calls[key] = c
			s.fills.Add(1)
			go s.runFill(c, req, hops)
		} else if !bg {
			c.bg.Promote()
		}
		c.readers.Add(1) // under s.mu: runFill waits for readers only after the call left s.calls
		s.mu.Unlock()
		var once sync.Once
		release = func() { once.Do(c.readers.Done) }
		select {
		case <-c.done:
			if c.res.busy && !bg {
				release() // the call has left s.calls: the next turn starts a fill
				continue
			}
			return c.res, release
		case <-ctx.Done():
			release()
			return fillResult{err: ctx.Err(), status: http.StatusGatewayTimeout}, func() {}
		}
	}
}

// runFill runs one fill under the server's lifetime and FillTimeout and publishes its result.
// A verified answer is published before it is committed: the waiters read it from a second
// descriptor of the temporary file while the fsync and rename go on, and the call stays in
// s.calls until the commit is done, so no second fetch of the key starts meanwhile. A crash
// before the rename leaves no trace but a temporary file, removed at the next start.
func (s *Server) runFill(c *fillCall, req goproxy.Request, hops []string) {
	defer s.fills.Done()
	ctx, cancel := context.WithTimeout(s.base, s.cfg.FillTimeout)
	defer cancel()
	if c.bg != nil {
		ctx = goproxy.WithBackground(ctx, c.bg)
	}
	s.metrics.inflight.Inc()
	res, pending := s.doFillGuarded(ctx, req, hops)
	s.metrics.inflight.Dec()
	if res.free != nil {
		// Relayed from memory: answered, never committed; the key stays unstored, so the
		// next request fetches it again (and stores it, once the disk takes files again).
		s.metrics.relayed.Inc()
		s.relay.unstored.Add(1)
		res.file = pending
		c.res = res
		close(c.done)
		s.mu.Lock()
		delete(s.calls, req.Path())
		s.mu.Unlock()
		c.readers.Wait()
		res.file.Close()
		res.free()
		return
	}
	if pending != nil {
		if rd, err := store.Reopen(pending); err == nil {
			res.file = rd // res.size is the fill's
		}
		if res.file != nil {
			s.commits.add(1)
			c.res = res
			close(c.done) // answer the waiters now
			s.commitGuarded(ctx, req, res.upstream, pending, res.size)
		} else if err := s.commitGuarded(ctx, req, res.upstream, pending, res.size); err != nil {
			res = fillResult{err: err, status: http.StatusInternalServerError}
		}
	}
	s.mu.Lock()
	delete(s.calls, req.Path())
	s.mu.Unlock()
	if res.file == nil {
		c.res = res
		close(c.done)
		return
	}
	s.commits.add(-1) // committed, and a new request for the key finds the store, not this call
	c.readers.Wait()  // every caller that got this call has released it
	res.file.Close()
}

// pendingCount counts work in progress and lets a caller wait until there is none. Unlike
// a sync.WaitGroup, the count may rise from zero again while someone waits.
type pendingCount struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond // broadcast when n returns to zero; made on first use
}

func (p *pendingCount) add(d int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += d
	if p.n == 0 && p.zero != nil {
		p.zero.Broadcast()
	}
}

// wait returns once nothing is in progress.
func (p *pendingCount) wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.zero == nil {
		p.zero = sync.NewCond(&p.mu)
	}
	for p.n > 0 {
		p.zero.Wait()
	}
}

// readAnswer returns the first max bytes of the answer to req, filling it when the store
// does not hold it: from the fill's file while it is being committed, from memory for a
// version query, else from the store.
func (s *Server) readAnswer(ctx context.Context, req goproxy.Request, max int64) ([]byte, error) {
	res, release := s.fill(ctx, req, nil)
	defer release()
	switch {
	case res.err != nil:
		return nil, res.err
	case res.body != nil:
		return res.body, nil
	case res.file != nil:
		return io.ReadAll(io.NewSectionReader(res.file, 0, min(res.size, max)))
	}
	e, err := s.cfg.Store.Open(ctx, req.Path())
	if err != nil {
		return nil, err
	}
	defer e.Body.Close()
	return io.ReadAll(io.LimitReader(e.Body, max))
}

// commit stores a verified answer of size bytes under its key.
func (s *Server) commit(ctx context.Context, req goproxy.Request, upstream string, tmp *os.File, size int64) error {
	err := s.cfg.Store.Commit(ctx, req.Path(), tmp)
	s.stored(req.Path(), size, err)
	if err != nil {
		if store.Unwritable(err) {
			s.relay.refused(err) // the next fills relay without trying the disk
		}
		s.log.Error("storing a filled answer failed", "request", describe(req), "upstream", upstream, "err", err)
		return fmt.Errorf("%s: storing the answer of %s: %s", describe(req), upstream, withoutPaths(err)) // logged whole above
	}
	if !req.Immutable() {
		s.filled(req.Path())
	}
	return nil
}

// fetched is an upstream answer that passed validation, not yet committed.
type fetched struct {
	upstream string
	file     *os.File // the answer in a temporary file of the store, or nil
	size     int64    // file's length
	body     []byte   // the answer in memory (version queries)
	timing   string   // Server-Timing of the exchange
	// free, set when file is in memory (relayed, not to be stored), gives its memory back
	// once file is closed.
	free func()
}

// doFill fetches req through the chain. A verified answer to store comes back as pending,
// a temporary file of the store for the caller to commit.
func (s *Server) doFill(ctx context.Context, req goproxy.Request, hops []string) (res fillResult, pending *os.File) {
	key := req.Path()
	// A fill that finished just before this one started may have stored the answer (or the
	// not-found) already: look again, so that a key costs one upstream fetch.
	if req.Kind != goproxy.KindInfo || req.Immutable() {
		if info, err := s.cfg.Store.Stat(ctx, key); err == nil &&
			(req.Immutable() || s.fresh(key, info.ModTime)) {
			return fillResult{}, nil
		}
	}
	if msg, ok := s.neg.get(key, s.cfg.Now()); ok {
		return fillResult{err: errors.New(msg), notFound: true, status: http.StatusNotFound}, nil
	}
	if s.cfg.NoProxy != nil && s.cfg.NoProxy(req.Module) {
		msg := fmt.Sprintf("%s: holoproxy never asks its upstreams for %s: it %s", describe(req), req.Module, s.cfg.NoProxyReason)
		return fillResult{err: errors.New(msg), notFound: true, status: http.StatusNotFound}, nil
	}

	ctx = goproxy.WithHeader(ctx, http.Header{HopHeader: {strings.Join(append(hops, s.cfg.InstanceID), ", ")}})
	var got *fetched
	var gotMu sync.Mutex // hedged attempts may both succeed: the first one is kept
	walkCtx := ctx
	err := s.chainFor(req.Module).WalkHedged(ctx, s.cfg.Order, s.cfg.Hedge, func(ctx context.Context, c *goproxy.Client) error {
		// The Sample of the exchange is finished when try closes the body; the last one
		// wins when the upstream redirected. Other exchanges under ctx (the Verify hook's
		// checksum database requests) carry another upstream label.
		var mu sync.Mutex
		var timing string
		f, err := s.tryGuarded(netobs.WithSampleHook(ctx, func(smp netobs.Sample) {
			if smp.Upstream != c.Name() {
				return
			}
			mu.Lock()
			timing = netobs.ServerTiming(smp)
			mu.Unlock()
		}), c, req)
		if err != nil && errors.Is(err, context.Canceled) && walkCtx.Err() == nil {
			return err // a hedged attempt the walk cancelled: no failure of the upstream's
		}
		if errors.Is(err, goproxy.ErrDirectBusy) {
			return err // a background fetch skipped: no attempt
		}
		s.attemptDone(c.Name(), req, err)
		if err == nil {
			mu.Lock()
			f.timing = timing
			mu.Unlock()
			gotMu.Lock()
			defer gotMu.Unlock()
			if got != nil {
				if f.file != nil {
					s.discard(f)
				}
				return errHedgeLost
			}
			got = f
		}
		return err
	})
	if err != nil {
		if errors.Is(err, goproxy.ErrDirectBusy) {
			return fillResult{err: fmt.Errorf("%s: %w", describe(req), goproxy.ErrDirectBusy), status: http.StatusServiceUnavailable, busy: true}, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			msg := notFoundMessage(req, err)
			now := s.cfg.Now()
			s.neg.put(key, msg, now, now.Add(s.cfg.NegativeTTL))
			return fillResult{err: errors.New(msg), notFound: true, status: http.StatusNotFound}, nil
		}
		var local *localError
		if errors.As(err, &local) {
			return fillResult{err: fmt.Errorf("%s: %s", describe(req), local.msg), status: http.StatusServiceUnavailable}, nil
		}
		var internal *internalError
		if errors.As(err, &internal) {
			return fillResult{err: fmt.Errorf("%s: %s", describe(req), internal.msg), status: http.StatusInternalServerError}, nil
		}
		return fillResult{err: fmt.Errorf("%s: %s", describe(req), oneLine(err.Error())), status: http.StatusBadGateway,
			throttled: throttledFor(err)}, nil
	}
	if got.file == nil {
		s.storeResolved(ctx, req, got.body)
		return fillResult{upstream: got.upstream, body: got.body, timing: got.timing}, nil
	}
	return fillResult{upstream: got.upstream, timing: got.timing, size: got.size, free: got.free}, got.file
}

// try fetches req from one upstream and validates the answer. A failure is a *RefusedError
// when an answer came but was not accepted, a *localError when this server could not hold
// it, else the client's error. An answer the store's temporary file could not take is
// fetched again into memory (relay).
func (s *Server) try(ctx context.Context, c *goproxy.Client, req goproxy.Request) (*fetched, error) {
	f, err := s.tryInto(ctx, c, req, s.relay.skipDisk())
	var sf *storeFailure
	if errors.As(err, &sf) {
		s.relay.refused(sf.err)
		s.stored(req.Path(), 0, sf.err)
		f, err = s.tryInto(ctx, c, req, true)
	}
	return f, err
}

// tryInto is one attempt of try, writing the answer to a temporary file of the store or,
// with inMemory, to a file in memory.
func (s *Server) tryInto(ctx context.Context, c *goproxy.Client, req goproxy.Request, inMemory bool) (*fetched, error) {
	var direct *goproxy.DirectRecorder
	if c.Direct() && s.cfg.DirectSink != nil {
		// The Sample of a fetch through direct, as the transport makes one of an HTTP
		// exchange: its answer read (or its failure) ends it; the checks after it do not.
		ctx, direct = goproxy.RecordDirect(ctx, c, req)
	}
	resp, err := c.Fetch(ctx, req)
	direct.Fetched()
	observed := direct == nil || errors.Is(err, goproxy.ErrDirectBusy) // skipped: no fetch
	observe := func(n int64, err error) {
		if !observed {
			observed = true
			s.cfg.DirectSink.Observe(direct.Sample(n, err))
		}
	}
	defer observe(0, nil) // an answer this server could not take: read none of it
	if err != nil {
		observe(0, err)
		if errors.Is(err, goproxy.ErrTooLarge) {
			return nil, refuse(c.Name(), req, ReasonTooLarge, err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	limit := req.MaxSize()
	body := io.LimitReader(resp.Body, limit+1)

	if !req.Immutable() && req.Kind == goproxy.KindInfo {
		// A version query: answered from memory, never stored under the query.
		data, err := io.ReadAll(body)
		observe(int64(len(data)), err)
		if err != nil {
			return nil, refuse(c.Name(), req, readReason(err), err)
		}
		if err := checkLength(int64(len(data)), limit, resp.ContentLength); err != nil {
			return nil, refuse(c.Name(), req, err.reason, err)
		}
		if err := checkInfo(req, data); err != nil {
			return nil, refuse(c.Name(), req, ReasonInvalidInfo, err)
		}
		return &fetched{upstream: c.Name(), body: data}, nil
	}

	got := &fetched{upstream: c.Name()}
	if inMemory {
		var capBytes int64
		got.file, got.free, capBytes, err = s.relay.memTemp(ctx, resp.ContentLength, limit)
		if err != nil {
			return nil, err
		}
		body = &capReader{r: body, n: capBytes}
	} else if got.file, err = s.cfg.Store.CreateTemp(ctx); err != nil {
		return nil, &storeFailure{err}
	}
	tmp := got.file
	keep := false
	defer func() {
		if !keep {
			s.discard(got)
		}
	}()
	n, err := store.CopyToFile(tmp, body)
	if err != nil && !isWriteError(err) && !errors.Is(err, errRelayCap) {
		observe(n, err) // the answer's failure, not this server's
	}
	observe(n, nil)
	switch {
	case errors.Is(err, errRelayCap):
		return nil, &localError{fmt.Sprintf("the cache cannot store it (%v) and it outgrew the relay memory (%d bytes)", s.relay.lastCause(), s.relay.budget)}
	case err != nil && isWriteError(err) && !inMemory:
		return nil, &storeFailure{err}
	case err != nil && isWriteError(err):
		return nil, &localError{fmt.Sprintf("writing the answer to memory: %v", err)}
	case err != nil:
		return nil, refuse(c.Name(), req, readReason(err), err)
	case !inMemory:
		s.relay.stored()
	}
	if err := checkLength(n, limit, resp.ContentLength); err != nil {
		return nil, refuse(c.Name(), req, err.reason, err)
	}
	if err := s.check(req, tmp); err != nil {
		if local := s.localFileError(req, err.err); local != nil {
			return nil, local
		}
		return nil, refuse(c.Name(), req, err.reason, err)
	}
	if s.cfg.Verify != nil && (req.Kind == goproxy.KindMod || req.Kind == goproxy.KindZip) {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			if local := s.localFileError(req, err); local != nil {
				return nil, local
			}
			return nil, fmt.Errorf("%s: %w", c.Name(), err)
		}
		if err := s.cfg.Verify(ctx, req, tmp); err != nil {
			if local := s.localFileError(req, err); local != nil {
				return nil, local
			}
			return nil, refuse(c.Name(), req, verifyReason(err), err)
		}
	}
	keep = true
	got.size = n
	return got, nil
}

// localFileError returns a *localError when err, met checking a fill's answer, is one of
// reading a local file (a *fs.PathError: the temporary file CheckZip and the hash open by
// name, the checksum verifier's state): this server's failure, never the answer's, which
// must neither be charged to the upstream nor, its cause being ENOENT, read as not found.
// The client is not told the file's path; the log is.
func (s *Server) localFileError(req goproxy.Request, err error) *localError {
	if pe := new(fs.PathError); !errors.As(err, &pe) {
		return nil
	}
	s.log.Error("reading a local file while checking an answer failed", "request", describe(req), "err", err)
	return &localError{"checking the answer failed on this server: " + withoutPaths(err)}
}

// stored tells Config.OnStored of an attempt to store size bytes under key.
func (s *Server) stored(key string, size int64, err error) {
	if s.cfg.OnStored != nil {
		s.cfg.OnStored(key, size, err)
	}
}

// discard drops a fetched answer that will not be committed.
func (s *Server) discard(f *fetched) {
	if f.free != nil { // in memory: never the store's
		f.file.Close()
		f.free()
		return
	}
	s.cfg.Store.Discard(f.file)
}

// throttledFor returns how long the upstreams that answered a walk's failures with 429
// asked to be left alone: the longest Retry-After, at least a second; zero when none did.
func throttledFor(err error) time.Duration {
	var we *goproxy.WalkError
	if !errors.As(err, &we) {
		return 0
	}
	var d time.Duration
	for _, e := range we.Errs {
		var se *goproxy.StatusError
		if errors.As(e, &se) && se.Status == http.StatusTooManyRequests {
			d = max(d, se.RetryAfter, time.Second)
		}
	}
	return d
}

// isWriteError reports whether a copy into a file failed on the file's side, not on the
// answer's (a file:// upstream's read error is an *fs.PathError too).
func isWriteError(err error) bool {
	var we *store.WriteError
	return errors.As(err, &we)
}

// storeResolved stores the .info a version query resolved to under its canonical key, when
// the store does not hold it yet. It is an optimisation: failures are logged, not returned.
func (s *Server) storeResolved(ctx context.Context, req goproxy.Request, info []byte) {
	v, err := infoVersion(info)
	if err != nil {
		return
	}
	creq := goproxy.Request{Kind: goproxy.KindInfo, Module: req.Module, Version: v}
	key := creq.Path()
	if _, err := s.cfg.Store.Stat(ctx, key); err == nil || s.relay.skipDisk() {
		return
	}
	tmp, err := s.cfg.Store.CreateTemp(ctx)
	if err == nil {
		if _, err = tmp.Write(info); err == nil {
			err = s.cfg.Store.Commit(ctx, key, tmp)
			s.stored(key, int64(len(info)), err)
		} else {
			s.cfg.Store.Discard(tmp)
		}
	}
	switch {
	case store.Unwritable(err):
		s.relay.refused(err)
	case err != nil:
		s.log.Warn("storing a resolved .info failed", "request", describe(creq), "err", err)
	}
}

// attemptDone accounts for one attempt at an upstream: metrics, log, OnFill.
func (s *Server) attemptDone(upstream string, req goproxy.Request, err error) {
	var refused *RefusedError
	var local *localError
	var internal *internalError
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		outcome = "not_found"
	case errors.As(err, &internal):
		outcome = "internal_error" // logged with its stack where it was recovered
	case errors.As(err, &local):
		// This server's failure, not the upstream's: said so, and the upstream not named.
		outcome = "local_error"
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "answer neither stored nor relayed",
			slog.String("module", moduleAt(req)),
			slog.String("kind", string(req.Kind)),
			slog.String("err", local.msg),
		)
	case errors.As(err, &refused):
		outcome = "refused"
		s.metrics.refused.WithLabelValues(upstream, refused.Reason).Inc()
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream answer refused",
			slog.String("module", moduleAt(req)),
			slog.String("kind", string(req.Kind)),
			slog.String("upstream", upstream),
			slog.String("reason", refused.Reason),
			slog.String("err", oneLine(refused.Err.Error())),
		)
	default:
		outcome = "error"
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream failed",
			slog.String("module", moduleAt(req)),
			slog.String("kind", string(req.Kind)),
			slog.String("upstream", upstream),
			slog.String("err", oneLine(err.Error())),
		)
	}
	s.metrics.fills.WithLabelValues(upstream, outcome).Inc()
	if s.cfg.OnFill != nil {
		s.cfg.OnFill(upstream, req, err)
	}
}

// notFoundMessage is the one-line body of a 404 after a walk: which upstreams said what.
func notFoundMessage(req goproxy.Request, err error) string {
	var we *goproxy.WalkError
	if !errors.As(err, &we) {
		return "not found: " + moduleAt(req) + ": " + oneLine(err.Error())
	}
	parts := make([]string, 0, len(we.Errs))
	for _, e := range we.Errs {
		var se *goproxy.StatusError
		switch {
		case errors.As(e, &se):
			p := fmt.Sprintf("%d from %s", se.Status, se.Upstream)
			if se.Message != "" {
				p += " (" + se.Message + ")"
			}
			parts = append(parts, p)
		default:
			parts = append(parts, oneLine(e.Error()))
		}
	}
	return "not found: " + moduleAt(req) + ": " + strings.Join(parts, ", ")
}
