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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/store"
)

// Security and verification failures. Each is returned wrapped with the module version
// concerned; test them with errors.Is.
var (
	// ErrChecksumMismatch: the file's hash differs from the one the checksum database
	// records. The file must not be stored. The error is a *MismatchError.
	ErrChecksumMismatch = errors.New("checksum mismatch")
	// ErrSumDBMisbehavior: the checksum database served signed trees that are not one
	// timeline (a fork, or a rollback to a different history). Once seen, the Verifier
	// refuses every verification until it is restarted; the evidence is in the log.
	ErrSumDBMisbehavior = errors.New("checksum database misbehavior detected")
	// ErrNotInDatabase: the checksum database does not know the module version, so it
	// cannot be verified.
	ErrNotInDatabase = errors.New("module version not in checksum database")
	// ErrSumDBUnavailable: the checksum database could not be reached or answered an error.
	ErrSumDBUnavailable = errors.New("checksum database unavailable")
)

// MismatchError is a checksum mismatch: what the database records and what was received.
type MismatchError struct {
	Path, Version string // the module version
	GoMod         bool   // the file is the .mod (else the .zip)
	Want          string // the h1: hash the checksum database records
	Got           string // the h1: hash of the received file
}

// Error returns a one-line reason fit for an HTTP 502 body.
func (e *MismatchError) Error() string {
	file := "zip"
	if e.GoMod {
		file = "go.mod"
	}
	return fmt.Sprintf("%s@%s %s: checksum mismatch: checksum database has %s, upstream served %s",
		e.Path, e.Version, file, e.Want, e.Got)
}

// Is makes errors.Is(err, ErrChecksumMismatch) hold.
func (e *MismatchError) Is(target error) bool { return target == ErrChecksumMismatch }

// Class returns the error class metrics and health use for a checksum failure.
func (e *MismatchError) Class() string { return "checksum_mismatch" }

// VerifierConfig configures a Verifier. DB and, unless DB.Off, Dir and BaseURL are required.
type VerifierConfig struct {
	// DB is the checksum database; with DB.Off nothing is looked up and every file passes.
	DB SumDB
	// NoSumDB lists the module path patterns (GONOSUMDB, else GOPRIVATE; see
	// NoSumDBPatterns) whose files are exempt: they are never looked up.
	NoSumDB string
	// Dir holds the verifier's state: the latest signed tree seen (under config/) and the
	// verified lookups and tiles (under cache/). Keeping it across restarts is what lets a
	// database that forks be detected. Use a directory in the cache dir, outside the store's
	// tree.
	Dir string
	// BaseURL resolves where the database is fetched from (see ResolveBaseURL).
	BaseURL BaseURLFunc
	// Client makes the requests to the database; nil means http.DefaultClient. Pass the
	// observed client.
	Client *http.Client
	// Timeout bounds each request to the database; 0 means 30s.
	Timeout time.Duration
	// RequestContext, if set, derives the context of each request to the database from a
	// background one (serve labels them for its metrics). Requests do not run under the
	// context of a verification: one sumdb client serves every caller.
	RequestContext func(context.Context) context.Context
	// Logger receives the loud lines (mismatches, security errors); nil means slog.Default().
	Logger *slog.Logger
}

// Stats counts a Verifier's outcomes, for /metrics.
type Stats struct {
	Verified   int64 // files whose hash matched the database
	Mismatches int64 // files refused for a checksum mismatch
	Exempt     int64 // files not looked up: GONOSUMDB/GOPRIVATE, or verification off
	Errors     int64 // files that could not be verified (database unreachable, unknown version, ...)
	Security   int64 // database misbehavior detected
}

// Verifier checks .mod and .zip files against the checksum database before they are stored.
// It is safe for concurrent use.
type Verifier struct {
	cfg VerifierConfig
	log *slog.Logger

	stateMu sync.Mutex // serialises the compare-and-swap of the latest tree file
	// heldTrees holds, by file, the latest tree a full or read-only disk did not take
	// (guarded by stateMu): verification goes on, and the tree reaches the disk with the
	// next write it takes.
	heldTrees map[string][]byte

	verified, mismatches, exempt, errs, security atomic.Int64
	cacheRefused                                 atomic.Bool // a tile write met an unwritable disk (logged once)

	misbehaviorMu sync.Mutex
	misbehavior   string // first security report; non-empty latches the Verifier shut

	// client is the sumdb client lookups share, made on first use. One client keeps the
	// verified latest tree and the tiles in memory: a client per lookup started from the
	// stored tree each time (its signature checked again, its state files read again), a
	// third of a verified cold fill's CPU in a profile (docs/benchmarks.md). A client
	// remembers failures for good (sumdb caches a failed lookup, tile or init), so one that
	// failed is dropped and the next lookup makes a new one; it is also renewed every
	// clientLookups lookups, which bounds its in-memory record cache.
	client atomic.Pointer[sharedClient]
}

// sharedClient is a sumdb client and its operations, with its count of lookups.
type sharedClient struct {
	c       *sumdb.Client
	ops     *clientOps
	lookups atomic.Int64
}

// clientLookups is how many lookups one sumdb client serves before it is renewed (a
// variable for tests).
var clientLookups int64 = 20000

// sumdbClient returns the shared client, making one when there is none or the current one
// has served its lookups.
func (v *Verifier) sumdbClient() *sharedClient {
	for {
		sc := v.client.Load()
		if sc != nil && sc.lookups.Add(1) <= clientLookups {
			return sc
		}
		ops := &clientOps{v: v}
		n := &sharedClient{c: sumdb.NewClient(ops), ops: ops}
		n.lookups.Store(1)
		if v.client.CompareAndSwap(sc, n) {
			return n
		}
	}
}

// dropClient makes the next lookup use a new client unless sc was replaced already.
func (v *Verifier) dropClient(sc *sharedClient) { v.client.CompareAndSwap(sc, nil) }

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	v := &Verifier{cfg: cfg, log: cfg.Logger}
	if cfg.DB.Off {
		return v, nil
	}
	if cfg.DB.Key == "" || cfg.DB.Name == "" {
		return nil, fmt.Errorf("checksum verifier: %w %q", ErrNoKey, cfg.DB.Name)
	}
	if cfg.Dir == "" {
		return nil, errors.New("checksum verifier: no state directory")
	}
	if cfg.BaseURL == nil {
		return nil, errors.New("checksum verifier: no database URL resolver")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		if !store.Unwritable(err) {
			return nil, fmt.Errorf("checksum verifier: %w", err)
		}
		// A read-only or full file system: the state already there is read, the latest
		// tree is held in memory (WriteConfig), tiles are not kept.
		v.log.Warn("checksum database: its state directory takes no new file; the latest tree is kept in memory", "dir", cfg.Dir, "err", err)
	}
	return v, nil
}

// Enabled reports whether files are verified at all (GOSUMDB is not off).
func (v *Verifier) Enabled() bool { return !v.cfg.DB.Off }

// Warning returns why verification is off although a database was asked for (see
// SumDBOrOff), or "". Show it on /metrics.
func (v *Verifier) Warning() string { return v.cfg.DB.Warning }

// DB returns the database configuration.
func (v *Verifier) DB() SumDB { return v.cfg.DB }

// Exempt reports whether files of the module path are never looked up.
func (v *Verifier) Exempt(path string) bool {
	return v.cfg.DB.Off || module.MatchPrefixPatterns(v.cfg.NoSumDB, path)
}

// Misbehavior returns the report of the database misbehavior that shut the Verifier, or "".
func (v *Verifier) Misbehavior() string {
	v.misbehaviorMu.Lock()
	defer v.misbehaviorMu.Unlock()
	return v.misbehavior
}

// Stats returns the counts so far.
func (v *Verifier) Stats() Stats {
	return Stats{
		Verified:   v.verified.Load(),
		Mismatches: v.mismatches.Load(),
		Exempt:     v.exempt.Load(),
		Errors:     v.errs.Load(),
		Security:   v.security.Load(),
	}
}

// VerifyMod checks the content of path@version's .mod file. A nil error means it may be
// stored; a mismatch is a *MismatchError.
func (v *Verifier) VerifyMod(ctx context.Context, path, version string, data []byte) error {
	if v.Exempt(path) {
		v.exempt.Add(1)
		return nil
	}
	h, err := HashMod(data)
	if err != nil {
		v.errs.Add(1)
		return err
	}
	return v.VerifyHash(ctx, path, version+"/go.mod", h)
}

// VerifyZip checks path@version's module zip, held in the file zipFile (the temporary file
// of a fill). A nil error means it may be stored; a mismatch is a *MismatchError.
func (v *Verifier) VerifyZip(ctx context.Context, path, version, zipFile string) error {
	if v.Exempt(path) {
		v.exempt.Add(1)
		return nil
	}
	h, err := HashZip(zipFile)
	if err != nil {
		v.errs.Add(1)
		return fmt.Errorf("%s@%s: %w", path, version, err)
	}
	return v.VerifyHash(ctx, path, version, h)
}

// VerifyHash checks an h1: hash computed locally against the database: version is the
// module version for a zip hash and the version plus "/go.mod" for a go.mod hash.
func (v *Verifier) VerifyHash(ctx context.Context, path, version, hash string) error {
	if v.Exempt(path) {
		v.exempt.Add(1)
		return nil
	}
	id := module.Version{Path: path, Version: version}
	if m := v.Misbehavior(); m != "" {
		v.errs.Add(1)
		return fmt.Errorf("%s: %w (verification stopped; see the log)", id, ErrSumDBMisbehavior)
	}
	lines, err := v.lookup(ctx, id)
	if err != nil {
		return err
	}
	prefix := path + " " + version + " "
	var want string
	for _, l := range lines {
		h, ok := strings.CutPrefix(l, prefix)
		if !ok || !strings.HasPrefix(h, "h1:") {
			continue
		}
		if h == hash {
			v.verified.Add(1)
			return nil
		}
		if want == "" {
			want = h
		}
	}
	if want == "" {
		v.errs.Add(1)
		return fmt.Errorf("%s: %w: its record has no h1: line", id, ErrNotInDatabase)
	}
	v.mismatches.Add(1)
	plain, goMod := strings.CutSuffix(version, "/go.mod")
	err = &MismatchError{Path: path, Version: plain, GoMod: goMod, Want: want, Got: hash}
	v.log.Error("CHECKSUM MISMATCH: refusing to store", "module", path, "version", version,
		"database", v.cfg.DB.Name, "want", want, "got", hash)
	return err
}

// lookup asks the shared client for id's records. The client's requests are not tied to
// ctx (it serves every caller; each request is bounded by the configured timeout), so the
// lookup runs apart and ctx ends the wait for it.
func (v *Verifier) lookup(ctx context.Context, id module.Version) ([]string, error) {
	ended := func() error {
		v.errs.Add(1)
		return fmt.Errorf("%s: verifying with checksum database %s: %w", id, v.cfg.DB.Name, context.Cause(ctx))
	}
	if ctx.Err() != nil {
		return nil, ended()
	}
	sc := v.sumdbClient()
	remoteErrs, stateErrs := sc.ops.remoteErrs.Load(), sc.ops.stateErrs.Load()
	type result struct {
		lines []string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		lines, err := sc.c.Lookup(id.Path, id.Version)
		done <- result{lines, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, ended()
	}
	if r.err != nil {
		v.dropClient(sc)
		return nil, v.lookupError(id, sc.ops, remoteErrs, stateErrs, r.err)
	}
	return r.lines, nil
}

// lookupError turns a failed sumdb lookup into one of the package's named errors. The
// sumdb client formats its errors with %v, so the cause is read from what ops saw: the
// status of this version's /lookup/ request, whether any request to the database failed
// since the lookup began (remoteErrs was the count then), and whether reading or writing
// the verifier's state did (stateErrs): that error is wrapped, so that its *fs.PathError
// tells this server's failure from the database's, and a caller that answers clients can
// leave its file name out.
func (v *Verifier) lookupError(id module.Version, ops *clientOps, remoteErrs, stateErrs int64, err error) error {
	v.errs.Add(1)
	if v.Misbehavior() != "" {
		return fmt.Errorf("%s: %w: %v", id, ErrSumDBMisbehavior, err)
	}
	if st := ops.status(lookupPath(id)); st == http.StatusNotFound || st == http.StatusGone {
		// What a private module fetched from its origin (direct, a company proxy) meets
		// when nobody exempted it.
		return fmt.Errorf("%s: %w %s (if it is a private module, exempt it: GOPRIVATE or GONOSUMDB, serve's --goprivate)", id, ErrNotInDatabase, v.cfg.DB.Name)
	}
	if ops.stateErrs.Load() != stateErrs {
		if serr := ops.lastStateError(); serr != nil {
			return fmt.Errorf("%s: verifying with checksum database %s: its state on this server: %w", id, v.cfg.DB.Name, serr)
		}
	}
	if ops.remoteErrs.Load() != remoteErrs {
		if rerr := ops.lastRemoteErr(); rerr != nil {
			return fmt.Errorf("%s: %w: %w", id, ErrSumDBUnavailable, rerr)
		}
	}
	return fmt.Errorf("%s: verifying with checksum database %s: %w", id, v.cfg.DB.Name, err)
}

// lookupPath is the database path sumdb.Client.Lookup asks for id (a go.mod lookup asks for
// the version's record).
func lookupPath(id module.Version) string {
	epath, err := module.EscapePath(id.Path)
	if err != nil {
		return ""
	}
	evers, err := module.EscapeVersion(strings.TrimSuffix(id.Version, "/go.mod"))
	if err != nil {
		return ""
	}
	return "/lookup/" + epath + "@" + evers
}

func (v *Verifier) latch(msg string) {
	v.misbehaviorMu.Lock()
	if v.misbehavior == "" {
		v.misbehavior = msg
	}
	v.misbehaviorMu.Unlock()
	v.log.Error("SECURITY ERROR: checksum database misbehavior; verification stopped",
		"database", v.cfg.DB.Name, "state", v.cfg.Dir, "report", msg)
}

// maxRemote bounds one answer of the database (a lookup, a tile).
const maxRemote = 4 << 20

// clientOps are the operations of a shared sumdb client. Lookups of many callers run
// through them at once, so what a failed lookup needs to explain itself is kept per
// lookup path (the status) or counted (remote failures).
type clientOps struct {
	v *Verifier

	remoteErrs atomic.Int64 // requests to the database that failed
	stateErrs  atomic.Int64 // reads and writes of the verifier's state that failed

	mu       sync.Mutex
	statuses map[string]int // guarded by mu; the status of each /lookup/ path asked
	lastErr  error          // guarded by mu; the last failed request's error
	stateErr error          // guarded by mu; the last failed read or write of the state
}

// maxStatuses bounds clientOps.statuses; past it the map starts over.
const maxStatuses = 4096

func (o *clientOps) ReadRemote(path string) ([]byte, error) {
	// Not the caller's context: the client serves every caller (see Verifier.lookup).
	ctx := context.Background()
	if o.v.cfg.RequestContext != nil {
		ctx = o.v.cfg.RequestContext(ctx)
	}
	data, status, err := fetch(ctx, o.v.cfg.Client, o.v.cfg.BaseURL, path, o.v.cfg.Timeout, "")
	o.mu.Lock()
	if strings.HasPrefix(path, "/lookup/") {
		if o.statuses == nil || len(o.statuses) >= maxStatuses {
			o.statuses = map[string]int{}
		}
		o.statuses[path] = status
	}
	if err != nil {
		o.lastErr = err
		o.remoteErrs.Add(1)
	}
	o.mu.Unlock()
	return data, err
}

// status returns the status the database answered for the /lookup/ path, 0 if none.
func (o *clientOps) status(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.statuses[path]
}

// stateFailed records a failed read or write of the verifier's state (not a missing file,
// nor a write conflict: the sumdb client's own business).
func (o *clientOps) stateFailed(err error) {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return
	}
	o.mu.Lock()
	o.stateErr = err
	o.mu.Unlock()
	o.stateErrs.Add(1)
}

func (o *clientOps) lastStateError() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stateErr
}

func (o *clientOps) lastRemoteErr() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastErr
}

// fetch GETs base+path and returns the body of a 200 answer; any other status is an error.
// The status is 0 when no answer came.
func fetch(ctx context.Context, client *http.Client, baseURL BaseURLFunc, path string, timeout time.Duration, userAgent string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	base, err := baseURL(ctx)
	if err != nil {
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, 0, err
	}
	if userAgent != "" {
		req.Header.Set("User-Agent", userAgent)
	}
	resp, err := client.Do(req)
	if err != nil {
		if ue := new(url.Error); errors.As(err, &ue) {
			ue.URL = goproxy.Redact(ue.URL) // net/http masks a password, not a user name
		}
		return nil, 0, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRemote+1))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: reading body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: %s: %s", path, resp.Status, firstLine(data))
	}
	if len(data) > maxRemote {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: answer larger than %d bytes", path, maxRemote)
	}
	return data, resp.StatusCode, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		i := 200
		for i > 0 && !utf8.RuneStart(s[i]) {
			i-- // not within a character
		}
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func (o *clientOps) ReadConfig(file string) ([]byte, error) {
	if file == "key" {
		return []byte(o.v.cfg.DB.Key), nil
	}
	o.v.stateMu.Lock()
	held, ok := o.v.heldTrees[file]
	o.v.stateMu.Unlock()
	if ok {
		return held, nil
	}
	data, err := o.v.readState("config", file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no tree seen yet: start from the empty one
	}
	if err != nil {
		o.stateFailed(err)
	}
	return data, err
}

func (o *clientOps) WriteConfig(file string, old, new []byte) error {
	if file == "key" {
		return errors.New("the key configuration is never written")
	}
	o.v.stateMu.Lock()
	defer o.v.stateMu.Unlock()
	cur, err := o.v.readState("config", file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		o.stateFailed(err)
		return err
	}
	if held, ok := o.v.heldTrees[file]; ok {
		cur = held
	}
	if !bytes.Equal(cur, old) {
		return sumdb.ErrWriteConflict
	}
	err = o.v.writeState("config", file, new)
	switch {
	case err == nil:
		delete(o.v.heldTrees, file)
	case store.Unwritable(err):
		// The tree is the client's defence against a database that forks its log; keeping
		// it in memory keeps that defence while the disk is full, and verification going.
		if o.v.heldTrees == nil {
			o.v.heldTrees = map[string][]byte{}
		}
		if len(o.v.heldTrees) == 0 {
			o.v.log.Warn("checksum database: the latest tree is kept in memory, the disk refused it", "err", err)
		}
		o.v.heldTrees[file] = bytes.Clone(new)
		return nil
	}
	o.stateFailed(err)
	return err
}

func (o *clientOps) ReadCache(file string) ([]byte, error) { return o.v.readState("cache", file) }

func (o *clientOps) WriteCache(file string, data []byte) {
	err := o.v.writeState("cache", file, data)
	switch {
	case err == nil:
	case store.Unwritable(err):
		// A read-only or full disk: said once, the tiles are read from the database again.
		if !o.v.cacheRefused.Swap(true) {
			o.v.log.Warn("checksum database: its tiles are not kept, the disk refused them", "err", err)
		}
	default:
		o.v.log.Warn("checksum database cache write failed", "file", file, "err", err)
	}
}

func (o *clientOps) Log(msg string) { o.v.log.Debug("sumdb client", "msg", msg) }

func (o *clientOps) SecurityError(msg string) {
	o.v.security.Add(1)
	o.v.latch(msg)
}

func (v *Verifier) statePath(kind, file string) (string, error) {
	if !filepath.IsLocal(filepath.FromSlash(file)) {
		return "", fmt.Errorf("checksum state: refusing non-local file name %q", file)
	}
	return filepath.Join(v.cfg.Dir, kind, filepath.FromSlash(file)), nil
}

func (v *Verifier) readState(kind, file string) ([]byte, error) {
	p, err := v.statePath(kind, file)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// writeState replaces a state file atomically: temporary file, fsync, rename.
func (v *Verifier) writeState(kind, file string, data []byte) error {
	p, err := v.statePath(kind, file)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(p, data); err != nil {
		return fmt.Errorf("checksum state %s: %w", file, err)
	}
	return nil
}

// writeFileAtomic replaces the file at p with data, its directories made as needed:
// temporary file in the same directory, fsync, rename, so no reader sees half of it.
func writeFileAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), p)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return werr
	}
	return nil
}
