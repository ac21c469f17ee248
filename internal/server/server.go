// Package server is holoproxy's GOPROXY server: it answers the protocol's endpoints from the
// store, fills misses from the upstream chain with one fetch per key, validates (and, with a
// Verify hook, checksum-verifies) every file before it is stored, and exposes its metrics.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/store"
)

// Route sends the modules whose paths match Patterns (GOPRIVATE syntax: comma-separated
// globs matching a path prefix) to Chain alone.
type Route struct {
	Patterns string
	Chain    *goproxy.Chain
}

// chainFor returns the chain that serves modulePath: its route's, else Config.Chain.
func (s *Server) chainFor(modulePath string) *goproxy.Chain {
	for _, r := range s.cfg.Routes {
		if module.MatchPrefixPatterns(r.Patterns, modulePath) {
			return r.Chain
		}
	}
	return s.cfg.Chain
}

// Config configures a Server. Zero durations take the documented defaults.
type Config struct {
	// Store keeps verified files. Required.
	Store store.Store
	// Chain is the upstream list in GOPROXY syntax. Required.
	Chain *goproxy.Chain
	// ListTTL is how long a list or @latest answer is served from the store before it is
	// asked again (default 1m). Past it, the stored copy is still served, marked stale, when
	// every upstream fails.
	ListTTL time.Duration
	// NegativeTTL is how long a not-found answer is remembered and answered 404 without
	// asking upstream (default 30s).
	NegativeTTL time.Duration
	// FillTimeout bounds one fill from the chain, whoever waits on it (default 10m).
	FillTimeout time.Duration
	// Routes send the modules they match to chains of their own (a company proxy for the
	// company's modules, say) instead of Chain; the first match wins. NoProxy wins over
	// them.
	Routes []Route
	// NoProxy, when set, names the module paths never asked of the chain (GONOPROXY): a
	// request for one that the store does not hold is answered 404 at once, with
	// NoProxyReason, so that private module paths never leave for a public proxy and the
	// client's own fallback (a next proxy, or direct) takes over.
	NoProxy func(modulePath string) bool
	// NoProxyReason ends the 404 body of a NoProxy module ("matches GONOPROXY=...").
	NoProxyReason string
	// Verify, when set, checks a filled .mod or .zip (already written to file) against the
	// checksum database before it is stored; an error refuses the answer.
	Verify func(ctx context.Context, r goproxy.Request, file *os.File) error
	// Order, when set, orders interchangeable upstreams (the health scorer's hook).
	Order func([]*goproxy.Client) []*goproxy.Client
	// Hedge, when its Delay is set, hedges slow fills: the same request goes to the next
	// proxy of a '|' run when the one asked has sent no first byte within the delay, and the
	// first valid answer wins (goproxy.Chain.WalkHedged; the health hedger's hook).
	Hedge goproxy.HedgePolicy
	// OnFill, when set, is told the outcome of every attempt at an upstream: nil, or the
	// error that refused it (health charges checksum failures from it).
	OnFill func(upstream string, r goproxy.Request, err error)
	// DirectSink, when set, receives the Sample of every fetch through the direct entry
	// (goproxy.DirectRecorder: the go command runs with -x and its go-get lookups,
	// version control commands and run become the lookup, vcs and go phases, reading the
	// file it left the transfer), as the upstream transport's Sink receives those of the
	// HTTP exchanges. Hand it the metrics and the dashboard's ring, not the health
	// scorer: direct is never scored (Repair.DirectSink). Without it direct's runs go
	// without -x.
	DirectSink netobs.Sink
	// OnRequest, when set, is told of every valid client request before it is answered,
	// whether the cache holds it or not (the prefetcher's hook). It must not block.
	OnRequest func(r goproxy.Request)
	// OnStored, when set, is told of every attempt to store an answer: its key, its size
	// and nil, or the error of the store that refused it (the cache size bound's hook).
	// It must not block.
	OnStored func(key string, size int64, err error)
	// OnAnswer, when set, is told of every answer once it is sent: its cache state (the
	// CacheHeader value) and the bytes of body written (the dashboard's cache counter). It
	// must not block.
	OnAnswer func(cache string, bytes int64)
	// InstanceID names this server in the hop header of the loop guard (default: random).
	InstanceID string
	// Registerer receives the server's metrics (default: none registered).
	Registerer prometheus.Registerer
	// Logger receives one line per request at info level (default slog.Default()).
	Logger *slog.Logger

	// Now is the clock that ages list, @latest and not-found answers (default time.Now).
	// Tests set it to move time without sleeping.
	Now func() time.Time
	// StaleWait is how long a request for a list or @latest whose stored copy is past
	// ListTTL waits for the refresh before it is answered with the stale copy (default 5s);
	// the refresh goes on, for the requests that come after.
	StaleWait time.Duration
	// MaxHops is the length of the hop list past which a request is refused with 508 even
	// if this instance is not on it (default 8).
	MaxHops int
	// MaxNegative bounds how many not-found answers are remembered at once (default 100000);
	// past it, the oldest are forgotten first.
	MaxNegative int
	// HotEntries bounds how many small immutable answers (.info and .mod of at most
	// HotMaxSize bytes) are kept in memory besides the store, so the go command's graph
	// walk is answered without a file open per request (default 4096; negative disables).
	HotEntries int
	// RelayMemory bounds the bytes of answers held in memory at once while the store cannot
	// take files (its disk full, over quota or read-only): such answers are relayed from
	// memory and not stored, and one that does not fit is answered 503 (default
	// DefaultRelayMemory; negative turns relaying off, so every miss then fails with 503).
	RelayMemory int64
	// UnwritableRetry is how long after the store refused a file for lack of room (or
	// being read-only) fills go to memory without trying it again (default 5s).
	UnwritableRetry time.Duration
}

// Defaults of Config's zero values.
const (
	DefaultListTTL     = time.Minute
	DefaultNegativeTTL = 30 * time.Second
	DefaultFillTimeout = 10 * time.Minute
	DefaultStaleWait   = 5 * time.Second
	DefaultMaxHops     = 8
	DefaultMaxNegative = 100000
	DefaultHotEntries  = 4096
	// HotMaxSize is the largest answer the in-memory cache keeps: with DefaultHotEntries
	// it bounds that cache at 16 MiB.
	HotMaxSize = 4 << 10
	// DefaultRelayMemory is Config.RelayMemory's default.
	DefaultRelayMemory     = 128 << 20
	DefaultUnwritableRetry = 5 * time.Second
)

// HopHeader is the request header holoproxy adds to its upstream requests, naming the
// instances a request has passed; a request that already passed this instance is refused
// with 508 Loop Detected.
const HopHeader = "X-Holoproxy-Hop"

// CacheHeader says how an answer was served: hit, miss, stale or negative.
const CacheHeader = "X-Holoproxy-Cache"

// UpstreamHeader names the upstream that served a miss.
const UpstreamHeader = "X-Holoproxy-Upstream"

// TimingHeader carries, on an answer filled from an upstream, the phases of the upstream
// exchange that produced it (netobs.ServerTiming): every request that waited on the fill
// gets it.
const TimingHeader = "Server-Timing"

// The values of CacheHeader.
const (
	CacheHit      = "hit"      // served from the store, fresh
	CacheMiss     = "miss"     // asked upstream (or refused before any lookup)
	CacheStale    = "stale"    // a list or @latest past ListTTL, served because every upstream failed or the refresh outlasted StaleWait
	CacheNegative = "negative" // a remembered not-found answer
)

// Server serves the GOPROXY protocol. Create it with New.
//
// Invariants: a key has at most one fill in flight (calls); a file is visible in the store
// only after it passed validation and Verify (temporary file, then Commit); a version query
// is never stored under its own key. Locks: mu, filledMu and the negative cache's lock are
// never held together, and none is held across I/O.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	neg     *negativeCache
	hot     *lru.Cache[string, hotAnswer] // small immutable answers by key; nil when disabled
	relay   *relay                        // answers the store cannot take

	// base is the parent context of every fill; cancel abandons them all (Close).
	base   context.Context
	cancel context.CancelFunc

	// mu guards calls and closed. Fills run without it held.
	mu     sync.Mutex
	calls  map[string]*fillCall // in-flight fills by request key
	closed bool
	// draining is set by Drain: Ready fails, answers go on.
	draining atomic.Bool
	fills    sync.WaitGroup // one count per fill goroutine
	// commits counts the verified answers being committed after their waiters were
	// answered (runFill); a commit waits on the disk only, never on a client or upstream.
	commits pendingCount

	// filledAt records, on Config.Now, when this process stored each list and @latest
	// answer, so that ListTTL follows the injectable clock. Entries stored before the
	// process started are aged by their ModTime instead.
	filledMu sync.Mutex
	filledAt map[string]time.Time
}

// maxFilledAt bounds filledAt; past it the map starts over (ModTime takes over meanwhile).
const maxFilledAt = 100000

// fresh reports whether a stored list or @latest answer is younger than ListTTL.
func (s *Server) fresh(key string, modTime time.Time) bool {
	s.filledMu.Lock()
	t, ok := s.filledAt[key]
	s.filledMu.Unlock()
	if !ok {
		t = modTime
	}
	return s.cfg.Now().Sub(t) < s.cfg.ListTTL
}

// filled records that key was just stored.
func (s *Server) filled(key string) {
	s.filledMu.Lock()
	if len(s.filledAt) >= maxFilledAt {
		s.filledAt = map[string]time.Time{}
	}
	s.filledAt[key] = s.cfg.Now()
	s.filledMu.Unlock()
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: Config.Store is required")
	}
	if cfg.Chain == nil || len(cfg.Chain.Entries) == 0 {
		return nil, errors.New("server: Config.Chain is required")
	}
	if cfg.ListTTL <= 0 {
		cfg.ListTTL = DefaultListTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.FillTimeout <= 0 {
		cfg.FillTimeout = DefaultFillTimeout
	}
	if cfg.StaleWait <= 0 {
		cfg.StaleWait = DefaultStaleWait
	}
	if cfg.MaxHops <= 0 {
		cfg.MaxHops = DefaultMaxHops
	}
	if cfg.MaxNegative <= 0 {
		cfg.MaxNegative = DefaultMaxNegative
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.InstanceID == "" {
		var b [8]byte
		rand.Read(b[:])
		cfg.InstanceID = hex.EncodeToString(b[:])
	}
	if strings.ContainsAny(cfg.InstanceID, ", \t\r\n") {
		return nil, fmt.Errorf("server: InstanceID %q must not contain commas or spaces", cfg.InstanceID)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	var hot *lru.Cache[string, hotAnswer]
	if cfg.HotEntries == 0 {
		cfg.HotEntries = DefaultHotEntries
	}
	if cfg.HotEntries > 0 {
		if hot, err = lru.New[string, hotAnswer](cfg.HotEntries); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	if cfg.RelayMemory == 0 {
		cfg.RelayMemory = DefaultRelayMemory
	}
	if cfg.UnwritableRetry <= 0 {
		cfg.UnwritableRetry = DefaultUnwritableRetry
	}
	rl := newRelay(cfg.RelayMemory, cfg.UnwritableRetry, cfg.Logger)
	if err := m.registerRelay(cfg.Registerer, rl); err != nil {
		return nil, err
	}
	base, cancel := context.WithCancel(context.Background())
	return &Server{
		relay:    rl,
		hot:      hot,
		cfg:      cfg,
		log:      cfg.Logger,
		metrics:  m,
		neg:      newNegativeCache(cfg.MaxNegative),
		base:     base,
		cancel:   cancel,
		calls:    map[string]*fillCall{},
		filledAt: map[string]time.Time{},
	}, nil
}

// InstanceID returns the name this server puts in the hop header.
func (s *Server) InstanceID() string { return s.cfg.InstanceID }

// ServeHTTP answers GOPROXY requests: GET and HEAD of <module>/@v/list, @v/<version>.info,
// .mod, .zip and <module>/@latest. Anything else is 404 or 400 with a one-line reason.
// ServeFast is the same server on fasthttp.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	lw := logWriter{ResponseWriter: w}
	defer s.recoverHTTP(w, &lw)
	rp := s.answer(r.Context(), r.Method, r.URL.Path, r.Header[HopHeader])
	writeReply(&lw, r, &rp)
	s.answered(r.Context(), r.Method, r.URL.Path, &rp, lw.statusCode(), lw.bytes, time.Since(start))
}

// answered accounts for one answer: metrics, OnAnswer, the request log line.
func (s *Server) answered(ctx context.Context, method, path string, rp *reply, status int, bytes int64, d time.Duration) {
	s.metrics.observeRequest(rp.logKind(), rp.cache, bytes, d)
	if s.cfg.OnAnswer != nil {
		s.cfg.OnAnswer(rp.cache, bytes)
	}
	if s.log.Enabled(ctx, slog.LevelInfo) { // spares building the attributes
		s.log.LogAttrs(ctx, slog.LevelInfo, "request",
			slog.String("method", method),
			slog.String("path", path),
			slog.Int("status", status),
			slog.String("cache", rp.cache),
			slog.String("upstream", rp.upstream),
			slog.Int64("bytes", bytes),
			slog.Duration("duration", d),
		)
	}
}

// answer decides the answer to one request: method, the decoded URL path and the values of
// the hop header. The caller sends it (writeReply, writeFastReply), which closes its file.
func (s *Server) answer(ctx context.Context, method, path string, hopValues []string) reply {
	if method != http.MethodGet && method != http.MethodHead {
		rp := errorReply(http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: use GET or HEAD", method))
		rp.allow = true
		return rp
	}
	hops, err := s.checkHops(hopValues)
	if err != nil {
		return errorReply(http.StatusLoopDetected, err.Error())
	}
	path = strings.TrimPrefix(path, "/")
	// A small immutable answer kept in memory. Only keys of parsed requests are kept, and an
	// accepted path is its own key (FuzzParseRequest checks it), so a hit needs no parse.
	if h, ok := s.hotGet(path); ok {
		if s.cfg.OnRequest != nil {
			s.cfg.OnRequest(h.req)
		}
		return hotReply(h, CacheHit, "")
	}
	req, err := goproxy.ParseRequest(path)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, fs.ErrNotExist) {
			status = http.StatusNotFound
		}
		return errorReply(status, err.Error())
	}
	if s.cfg.OnRequest != nil {
		s.cfg.OnRequest(req)
	}
	rp := s.answerRequest(ctx, req, path, hops, true) // an accepted path is its own key (FuzzParseRequest checks it)
	rp.kind = req.Kind
	return rp
}

// answerRequest answers a parsed request whose store key is key. retry allows one more
// go when the answer a fill found stored is gone before it is opened.
func (s *Server) answerRequest(ctx context.Context, req goproxy.Request, key string, hops []string, retry bool) reply {

	// A fresh stored answer. A version query is never stored under its key: no look.
	var stale bool
	if req.Kind != goproxy.KindInfo || req.Immutable() {
		e, err := s.cfg.Store.Open(ctx, key)
		switch {
		case err == nil && (req.Immutable() || s.fresh(key, e.ModTime)):
			return s.entryReply(req, e, CacheHit, "")
		case err == nil:
			e.Body.Close()
			stale = true
		case !errors.Is(err, fs.ErrNotExist):
			// A store that cannot be read is answered from upstream; the log says why.
			s.log.Warn("store read failed", "key", key, "err", err)
		}
	}

	// A remembered not-found answer.
	if msg, ok := s.neg.get(key, s.cfg.Now()); ok {
		rp := errorReply(http.StatusNotFound, msg)
		rp.cache = CacheNegative
		return rp
	}

	waitCtx := ctx
	if stale {
		// A stale copy is better than waiting long on a slow upstream.
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, s.cfg.StaleWait)
		defer cancel()
	}
	res, release := s.fill(waitCtx, req, hops)
	switch {
	case res.err == nil:
	case ctx.Err() != nil:
		// The client went away; the fill goes on for the others.
		release()
		return reply{cache: CacheMiss} // status 0: nothing to send
	case res.notFound:
		release()
		return errorReply(http.StatusNotFound, res.err.Error())
	default:
		release()
		if stale {
			if e, err := s.cfg.Store.Open(ctx, key); err == nil {
				return s.entryReply(req, e, CacheStale, "")
			}
		}
		if errors.Is(res.err, errClosed) {
			return errorReply(http.StatusServiceUnavailable, "holoproxy is shutting down")
		}
		return errorReply(res.status, res.err.Error())
	}

	// The fill answered: from memory (a version query, never stored under its key), or
	// from the file it stored.
	var rp reply
	switch {
	case res.body != nil:
		release()
		rp = reply{status: http.StatusOK, immutable: req.Immutable(), cache: CacheMiss, upstream: res.upstream, body: res.body}
	case res.file != nil:
		// The verified answer, read from the fill's file while it is being committed; the
		// file stays open until the answer is sent.
		e := store.Entry{Body: sectionBody{io.NewSectionReader(res.file, 0, res.size)}, Info: store.Info{Size: res.size}}
		rp = s.entryReply(req, e, CacheMiss, res.upstream)
		if rp.file != nil {
			rp.release = release
		} else {
			release()
		}
	default:
		release()
		e, err := s.cfg.Store.Open(ctx, key)
		if errors.Is(err, fs.ErrNotExist) && retry {
			// Evicted (--cache-max-size) between the fill's look and this open: fill again.
			return s.answerRequest(ctx, req, key, hops, false)
		}
		if err != nil {
			// The error names the cache's files: the log gets it, the client does not.
			s.log.Error("opening a stored answer failed", "request", describe(req), "err", err)
			return errorReply(http.StatusInternalServerError, fmt.Sprintf("%s: opening the stored answer failed (the server's log says why)", req))
		}
		cache := CacheMiss
		if res.upstream == "" {
			cache = CacheHit // another fill stored it just before this one started
		}
		rp = s.entryReply(req, e, cache, res.upstream)
	}
	rp.timing = res.timing
	return rp
}

// sectionBody reads a fill's shared file through a section of its own: closing it must not
// close the file the other waiters read.
type sectionBody struct{ *io.SectionReader }

func (sectionBody) Close() error { return nil }

// hotAnswer is a small immutable answer kept in memory, with the request it answers.
type hotAnswer struct {
	req    goproxy.Request
	body   []byte
	length []string // the Content-Length header value, made once
}

// hotGet returns the in-memory copy of the answer stored under key.
func (s *Server) hotGet(key string) (hotAnswer, bool) {
	if s.hot == nil {
		return hotAnswer{}, false
	}
	return s.hot.Get(key)
}

// hotKind reports whether answers to req may be kept in memory: immutable .info and .mod,
// the files the go command's graph walk asks for one after the other.
func hotKind(req goproxy.Request) bool {
	return (req.Kind == goproxy.KindInfo || req.Kind == goproxy.KindMod) && req.Immutable()
}

// entryReply answers with a stored entry, which the reply's sender closes. A small
// immutable entry is read into the in-memory cache on the way (and closed here).
func (s *Server) entryReply(req goproxy.Request, e store.Entry, cache, upstream string) reply {
	if s.hot != nil && hotKind(req) && e.Size <= HotMaxSize {
		body := make([]byte, e.Size)
		if _, err := io.ReadFull(e.Body, body); err == nil {
			e.Body.Close()
			h := hotAnswer{req: req, body: body, length: []string{strconv.Itoa(len(body))}}
			s.hot.Add(req.Path(), h)
			return hotReply(h, cache, upstream)
		}
		if _, err := e.Body.Seek(0, io.SeekStart); err != nil {
			e.Body.Close()
			// The error names the cache's files: the log gets it, the client does not.
			s.log.Error("reading a stored answer failed", "request", describe(req), "err", err)
			return errorReply(http.StatusInternalServerError, fmt.Sprintf("%s: reading the stored answer failed (the server's log says why)", req))
		}
	}
	return reply{status: http.StatusOK, kind: req.Kind, immutable: req.Immutable(), cache: cache, upstream: upstream,
		file: e.Body, size: e.Size, modTime: e.ModTime}
}

// Settle waits until every answer already given from an upstream has been committed to the
// store, or ctx ends. A fill answers its waiters from the verified temporary file and
// commits it (fsync, rename) right after, so a caller that reads the store itself next
// (a test, a snapshot after a warm push) settles first. It waits on the disk only.
func (s *Server) Settle(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.commits.wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("server: commits still running: %w", ctx.Err())
	}
}

// Close waits for fills in progress to finish or be abandoned (ctx), leaving no temporary
// files behind. Requests that arrive after Close are answered 503.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.fills.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	// Abandon the rest: every step of a fill follows its context, and each one removes
	// its temporary file on the way out.
	s.cancel()
	<-done
	return fmt.Errorf("server: fills abandoned at shutdown: %w", ctx.Err())
}
