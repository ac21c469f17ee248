package checksum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/holoproxy/holoproxy/internal/store"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/singleflight"
)

// CacheHeader is the response header that says where an answer of the SumDBProxy came
// from: "hit", "miss" or "stale" (the cached copy, served because the database is
// unreachable).
const CacheHeader = "X-Holoproxy-Cache"

// ProxyConfig configures a SumDBProxy. DB, Store and BaseURL are required.
type ProxyConfig struct {
	// DB is the database served; /sumdb/<other name>/ answers 404. With DB.Key set, the
	// signed notes of lookups and latest are checked before they are cached or served.
	DB SumDB
	// NoSumDB lists the module path patterns (GONOSUMDB, else GOPRIVATE) whose lookups are
	// answered 404 and never sent to the database.
	NoSumDB string
	// Store caches the answers under keys "sumdb/<name>/<endpoint path>", next to the
	// GOPROXY tree.
	Store store.Store
	// BaseURL resolves where the database is fetched from (see ResolveBaseURL).
	BaseURL BaseURLFunc
	// Client makes the requests to the database; nil means http.DefaultClient. Pass the
	// observed client.
	Client *http.Client
	// Timeout bounds each request to the database; 0 means 30s.
	Timeout time.Duration
	// LongTTL is how long lookups are served from the cache; 0 means 24h. Full tiles never
	// change and are served from the cache forever.
	LongTTL time.Duration
	// ShortTTL is how long latest and partial tiles are served from the cache; 0 means 1m.
	ShortTTL time.Duration
	// UserAgent is sent to the database; "" means "holoproxy".
	UserAgent string
	// Logger receives one line per upstream failure; nil means slog.Default().
	Logger *slog.Logger
}

// ProxyStats counts a SumDBProxy's answers, for /metrics.
type ProxyStats struct {
	Hits, Misses, Stale int64 // answers from the cache, fetched, and stale copies served
	PrivateRefused      int64 // lookups of GONOSUMDB/GOPRIVATE paths answered 404
	UpstreamErrors      int64 // fetches that failed (whether or not a stale copy was served)
}

// SumDBProxy is the http.Handler for /sumdb/: it answers /sumdb/<name>/supported itself and
// serves lookup/, tile/ and latest from its cache, filled from the database.
type SumDBProxy struct {
	cfg       ProxyConfig
	log       *slog.Logger
	group     singleflight.Group
	verifiers note.Verifiers // nil when no key is configured

	hits, misses, stale, private, upErrs atomic.Int64
}

// NewSumDBProxy returns the handler for cfg. For GOSUMDB=off (no name) it answers 404 to
// everything, as a proxy that serves no database. A database whose key is unknown
// (SumDBOrOff: Off, with a Name) is still served, without the signature check, so that
// clients behind holoproxy, which verify for themselves, need no other route to it.
func NewSumDBProxy(cfg ProxyConfig) (*SumDBProxy, error) {
	if !cfg.DB.Off && cfg.DB.Name == "" {
		return nil, errors.New("sumdb proxy: no database name")
	}
	if cfg.DB.Name != "" && (cfg.Store == nil || cfg.BaseURL == nil) {
		return nil, errors.New("sumdb proxy: Store and BaseURL are required")
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.LongTTL <= 0 {
		cfg.LongTTL = 24 * time.Hour
	}
	if cfg.ShortTTL <= 0 {
		cfg.ShortTTL = time.Minute
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "holoproxy"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &SumDBProxy{cfg: cfg, log: cfg.Logger}
	if cfg.DB.Key != "" {
		v, err := note.NewVerifier(cfg.DB.Key)
		if err != nil {
			return nil, fmt.Errorf("sumdb proxy: %w", err)
		}
		if v.Name() != cfg.DB.Name {
			return nil, fmt.Errorf("sumdb proxy: key names %q, database is %q", v.Name(), cfg.DB.Name)
		}
		p.verifiers = note.VerifierList(v)
	}
	return p, nil
}

// Stats returns the counts so far.
func (p *SumDBProxy) Stats() ProxyStats {
	return ProxyStats{
		Hits: p.hits.Load(), Misses: p.misses.Load(), Stale: p.stale.Load(),
		PrivateRefused: p.private.Load(), UpstreamErrors: p.upErrs.Load(),
	}
}

// endpoint is a parsed /sumdb/<name>/ request.
type endpoint struct {
	path        string        // the path below the database's URL, like "/lookup/m@v1.0.0"
	ttl         time.Duration // how long a cached copy is fresh; <0 means forever
	contentType string
}

// ServeHTTP answers requests whose path is /sumdb/<name>/<endpoint>; mount it at /sumdb/.
func (p *SumDBProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/sumdb/")
	if !ok {
		http.Error(w, "not a checksum database path", http.StatusNotFound)
		return
	}
	// A name may have a path (host/path), as the go command allows.
	served := p.cfg.DB.Name != ""
	if served {
		rest, served = strings.CutPrefix(rest, p.cfg.DB.Name+"/")
	}
	if !served {
		name, _, _ := strings.Cut(rest, "/")
		http.Error(w, fmt.Sprintf("checksum database %q is not served by this proxy", name), http.StatusNotFound)
		return
	}
	if rest == "supported" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		return
	}
	ep, err := p.parse(rest)
	if err != nil {
		if errors.Is(err, errPrivate) {
			p.private.Add(1)
		}
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	p.serve(w, r, ep)
}

var errPrivate = errors.New("private module path (GONOSUMDB/GOPRIVATE): not looked up in the checksum database")

func (p *SumDBProxy) parse(rest string) (endpoint, error) {
	switch {
	case rest == "latest":
		return endpoint{path: "/latest", ttl: p.cfg.ShortTTL, contentType: "text/plain; charset=utf-8"}, nil
	case strings.HasPrefix(rest, "lookup/"):
		mv := strings.TrimPrefix(rest, "lookup/")
		escPath, escVer, ok := strings.Cut(mv, "@")
		if !ok {
			return endpoint{}, fmt.Errorf("malformed lookup %q: want module@version", mv)
		}
		path, err := module.UnescapePath(escPath)
		if err != nil {
			return endpoint{}, fmt.Errorf("malformed lookup: %v", err)
		}
		ver, err := module.UnescapeVersion(escVer)
		if err != nil {
			return endpoint{}, fmt.Errorf("malformed lookup: %v", err)
		}
		if module.MatchPrefixPatterns(p.cfg.NoSumDB, path) {
			return endpoint{}, errPrivate
		}
		if err := module.Check(path, ver); err != nil {
			return endpoint{}, fmt.Errorf("malformed lookup: %v", err)
		}
		return endpoint{path: "/lookup/" + mv, ttl: p.cfg.LongTTL, contentType: "text/plain; charset=utf-8"}, nil
	case strings.HasPrefix(rest, "tile/"):
		t, err := tlog.ParseTilePath(rest)
		if err != nil {
			return endpoint{}, fmt.Errorf("malformed tile path %q", rest)
		}
		ep := endpoint{path: "/" + t.Path(), ttl: -1, contentType: "application/octet-stream"}
		if t.W < 1<<uint(t.H) {
			ep.ttl = p.cfg.ShortTTL
		}
		if t.L < 0 {
			ep.contentType = "text/plain; charset=utf-8"
		}
		return ep, nil
	}
	return endpoint{}, fmt.Errorf("unknown checksum database endpoint %q", rest)
}

func (p *SumDBProxy) key(ep endpoint) string { return "sumdb/" + p.cfg.DB.Name + ep.path }

// fetchResult is what one upstream fetch hands every request waiting on it.
type fetchResult struct {
	data   []byte
	status int
}

func (p *SumDBProxy) serve(w http.ResponseWriter, r *http.Request, ep endpoint) {
	ctx := r.Context()
	key := p.key(ep)
	info, statErr := p.cfg.Store.Stat(ctx, key)
	cached := statErr == nil
	if cached && (ep.ttl < 0 || time.Since(info.ModTime) < ep.ttl) {
		if p.serveCached(w, r, key, ep, "hit") {
			p.hits.Add(1)
			return
		}
	}
	ch := p.group.DoChan(key, func() (any, error) {
		// One fetch serves every waiter: it must not die with the first caller's request.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Timeout)
		defer cancel()
		data, status, err := fetch(fctx, p.cfg.Client, p.cfg.BaseURL, ep.path, p.cfg.Timeout, p.cfg.UserAgent)
		if err != nil {
			return fetchResult{status: status}, err
		}
		if err := p.checkSigned(ep, data); err != nil {
			return fetchResult{}, err
		}
		if err := p.put(fctx, key, data); err != nil {
			p.log.Warn("sumdb proxy: caching failed", "key", key, "err", err)
		}
		return fetchResult{data: data, status: status}, nil
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return
	}
	fr, _ := res.Val.(fetchResult)
	if res.Err == nil {
		p.misses.Add(1)
		w.Header().Set("Content-Type", ep.contentType)
		w.Header().Set(CacheHeader, "miss")
		w.Header().Set("Content-Length", fmt.Sprint(len(fr.data)))
		if r.Method != http.MethodHead {
			w.Write(fr.data)
		}
		return
	}
	// The database answered "not found": pass that through, never a stale copy.
	if fr.status == http.StatusNotFound || fr.status == http.StatusGone {
		http.Error(w, fmt.Sprintf("checksum database %s: not found: %s", p.cfg.DB.Name, strings.TrimPrefix(ep.path, "/")), fr.status)
		return
	}
	p.upErrs.Add(1)
	p.log.Warn("sumdb proxy: database fetch failed", "database", p.cfg.DB.Name, "path", ep.path, "err", res.Err, "stale_available", cached)
	if cached && p.serveCached(w, r, key, ep, "stale") {
		p.stale.Add(1)
		return
	}
	http.Error(w, fmt.Sprintf("checksum database %s failed: %v", p.cfg.DB.Name, oneLine(res.Err)), http.StatusBadGateway)
}

// ErrBadSignature marks an answer of the database whose signed tree note does not verify
// with the configured key: it is neither cached nor served.
var ErrBadSignature = errors.New("checksum database answer not signed by the configured key")

// checkSigned checks the signed tree note that lookups and latest carry against the key, so
// that the cache never holds a forged note. Tiles carry no signature; clients check them
// against a signed tree.
func (p *SumDBProxy) checkSigned(ep endpoint, data []byte) error {
	if p.verifiers == nil {
		return nil
	}
	msg := data
	if strings.HasPrefix(ep.path, "/lookup/") {
		_, _, rest, err := tlog.ParseRecord(data)
		if err != nil {
			return fmt.Errorf("%w: malformed lookup answer: %v", ErrBadSignature, err)
		}
		msg = rest
	} else if ep.path != "/latest" {
		return nil
	}
	n, err := note.Open(msg, p.verifiers)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if _, err := tlog.ParseTree([]byte(n.Text)); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return nil
}

// oneLine folds err's message onto one line of valid UTF-8 (bytes that are not become
// U+FFFD), for answer bodies.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ToValidUTF8(err.Error(), "\uFFFD")), " ")
}

// serveCached writes the cached entry under key, marked with how it is served. It reports
// false if the entry could not be opened (then nothing was written).
func (p *SumDBProxy) serveCached(w http.ResponseWriter, r *http.Request, key string, ep endpoint, how string) bool {
	e, err := p.cfg.Store.Open(r.Context(), key)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			p.log.Warn("sumdb proxy: cache read failed", "key", key, "err", err)
		}
		return false
	}
	defer e.Body.Close()
	w.Header().Set("Content-Type", ep.contentType)
	w.Header().Set(CacheHeader, how)
	w.Header().Set("Content-Length", fmt.Sprint(e.Size))
	if r.Method != http.MethodHead {
		io.Copy(w, e.Body)
	}
	return true
}

func (p *SumDBProxy) put(ctx context.Context, key string, data []byte) error {
	tmp, err := p.cfg.Store.CreateTemp(ctx)
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		p.cfg.Store.Discard(tmp)
		return err
	}
	return p.cfg.Store.Commit(ctx, key, tmp)
}
