package goproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/module"
	"golang.org/x/sync/singleflight"
)

// Direct fetches module files from their version control origins, what "direct" means in
// a GOPROXY list, by running the go command with GOPROXY=direct: the go command is the
// reference implementation of that protocol (go-get lookups, GOVCS, git, hg, svn, bzr,
// fossil, module path and version rules), and holoproxy does not write it again. Every
// run works in a directory of Direct's own: its module cache keeps the version control
// clones between runs (a second version of a repository costs a fetch, not a clone) and
// the .info and .mod files runs leave, which answer later requests for them without a
// run; a zip is read once, into the caller's store, and removed.
//
// What each kind of request runs (never a zip for a .info or a .mod):
//
//	list    go list -m -json -versions -retracted MODULE
//	latest  go list -m -json MODULE@latest        (the .info of the version it resolves)
//	info    go list -m -json MODULE@QUERY
//	mod     go list -m -json MODULE@VERSION       (its GoMod file)
//	zip     go mod download -json MODULE@VERSION  (its Zip file)
//
// The runs use no checksum database (GOSUMDB=off): what Direct returns is checked by the
// caller, as any proxy's answer is. A run that does not finish within Timeout is killed
// with every process it started.
type Direct struct {
	goBin   string
	env     []string
	work    string        // the runs' working directory: empty, outside any module
	modRoot string        // GOMODCACHE of the runs
	root    string        // the directory the runs own (DirectConfig.Dir)
	ranAny  chan struct{} // gets a value (without blocking) when a run ends: RunPruner looks
	sem     chan struct{}
	bgSem   chan struct{} // the share of sem background fetches may hold: Jobs/2
	timeout time.Duration
	version string
	onFetch func(Kind, time.Duration, error)
	runs    atomic.Int64
	// procs holds the runs under way (waiting for a slot or running), for Close.
	procs *processes
	hide  *strings.Replacer // hidePaths' replacements

	// same merges runs with the same arguments: a version's .info and .mod are one
	// `go list -m` run, and the go command asks for both at once (the prefetcher too).
	same singleflight.Group

	mu    sync.Mutex
	stats DirectStats // guarded by mu; Jobs, Running and Runs are filled in by Stats
}

// DirectStats are what a Direct did since it was made.
type DirectStats struct {
	Jobs    int   // runs allowed at once
	Running int   // runs holding a job slot now
	Runs    int64 // times the go command was started
	// Fetches by outcome (DirectResult): ok, not_found, failed, timeout; fetches
	// abandoned by their caller are not counted.
	OK, NotFound, Failed, TimedOut int64
	// LastError is the message of the last failure or timeout; LastFailed is set while
	// the latest counted fetch is one.
	LastError  string
	LastFailed bool
}

// DirectResult names the outcome of a fetch through a Direct: "ok", "not_found" (the
// module or version is not there), "timeout" (the run was killed after the timeout),
// "canceled" (its caller gave up) or "failed".
func DirectResult(err error) string {
	var de *DirectError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &de) && de.TimedOut:
		return "timeout"
	case errors.Is(err, fs.ErrNotExist):
		return "not_found"
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "failed"
}

// Stats returns what d did since it was made.
func (d *Direct) Stats() DirectStats {
	d.mu.Lock()
	st := d.stats
	d.mu.Unlock()
	st.Jobs, st.Running, st.Runs = cap(d.sem), len(d.sem), d.runs.Load()
	return st
}

// count records the outcome of a fetch in the stats.
func (d *Direct) count(err error) {
	result := DirectResult(err)
	if result == "canceled" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.LastFailed = result == "timeout" || result == "failed"
	switch result {
	case "ok":
		d.stats.OK++
	case "not_found":
		d.stats.NotFound++
	case "timeout":
		d.stats.TimedOut++
	default:
		d.stats.Failed++
	}
	if d.stats.LastFailed {
		d.stats.LastError = err.Error()
	}
}

// DirectConfig configures a Direct.
type DirectConfig struct {
	// Go is the go command to run; "go" found on PATH when empty.
	Go string
	// Dir is the directory the runs own: their module cache (with the version control
	// clones), build cache and working directory. Required; created when missing.
	Dir string
	// Env is added to the process's environment for the runs (GOPRIVATE, GOVCS,
	// GOINSECURE, proxies and git's own variables pass through from the process).
	// Direct's own settings (GOPROXY=direct, GOSUMDB=off, the caches) come last.
	Env []string
	// Jobs is how many runs may go at once; the others wait. Default 4. Background
	// fetches (IsBackground: prefetches) may hold at most half of them (with one job,
	// none: they get ErrDirectBusy at once), so a client's fetch never waits for more
	// than the clients' own runs.
	Jobs int
	// Timeout bounds one run, clone included. Default 10 minutes.
	Timeout time.Duration
	// StallTimeout is how long git may receive nothing over HTTP(S) before it gives up
	// (GIT_HTTP_LOW_SPEED_TIME, at 1 byte/s; unless the environment sets either): a
	// stalled server fails the run early, and a git left behind by a holoproxy that was
	// killed outright does not linger. Git servers send keep-alives while they pack, so
	// a long clone is not cut. Default 1 minute.
	StallTimeout time.Duration
	// OnFetch, when set, is told of every fetch: its kind, how long it took (the wait for a
	// job slot included) and its outcome.
	OnFetch func(kind Kind, took time.Duration, err error)
}

// DirectName is the name of the direct entry: the label of its answers, errors and logs.
const DirectName = "direct"

// NewDirect checks that the go command runs, in a directory outside any module, and
// returns a Direct for cfg.
func NewDirect(ctx context.Context, cfg DirectConfig) (*Direct, error) {
	if cfg.Dir == "" {
		return nil, errors.New("direct: no directory for the go command's runs")
	}
	goBin := cfg.Go
	if goBin == "" {
		goBin = "go"
	}
	path, err := exec.LookPath(goBin)
	if err != nil {
		return nil, fmt.Errorf("direct needs the go command: %w", err)
	}
	if cfg.Jobs <= 0 {
		cfg.Jobs = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("direct: %w", err)
	}
	d := &Direct{
		goBin:   path,
		work:    filepath.Join(dir, "work"),
		modRoot: filepath.Join(dir, "modcache"),
		root:    dir,
		ranAny:  make(chan struct{}, 1),
		sem:     make(chan struct{}, cfg.Jobs),
		bgSem:   make(chan struct{}, cfg.Jobs/2),
		timeout: cfg.Timeout,
		onFetch: cfg.OnFetch,
	}
	d.procs = newProcesses(errDirectClosed)
	d.hide = hideReplacer(dir, d.modRoot)
	for _, p := range []string{d.work, d.modRoot} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("direct: %w", err)
		}
	}
	d.env = append(os.Environ(), cfg.Env...)
	if os.Getenv("GIT_HTTP_LOW_SPEED_LIMIT") == "" && os.Getenv("GIT_HTTP_LOW_SPEED_TIME") == "" {
		if cfg.StallTimeout <= 0 {
			cfg.StallTimeout = time.Minute
		}
		d.env = append(d.env, "GIT_HTTP_LOW_SPEED_LIMIT=1",
			"GIT_HTTP_LOW_SPEED_TIME="+strconv.Itoa(max(1, int(cfg.StallTimeout.Seconds()))))
	}
	d.env = append(d.env,
		"GOPROXY=direct", "GONOPROXY=", "GOSUMDB=off", "GONOSUMDB=", "GONOSUMCHECK=", "GOFLAGS=-modcacherw",
		"GOMODCACHE="+d.modRoot, "GOCACHE="+filepath.Join(dir, "gocache"), "GOPATH="+filepath.Join(dir, "gopath"),
		"GOTOOLCHAIN=local", "GOWORK=off", "GO111MODULE=on",
		"GIT_TERMINAL_PROMPT=0", "GCM_INTERACTIVE=never")
	// The runs' working directory must be outside any module, or the go command would
	// answer for that module (its requirements, replacements and exclusions): dir/work,
	// unless dir lies inside a module (a cache directory in a checkout), then the root.
	root := filepath.VolumeName(dir) + string(filepath.Separator)
	var gomod, version string
	for _, work := range []string{d.work, root} {
		d.work = work
		out, err := d.run(ctx, "env", "GOMOD", "GOVERSION")
		if err != nil {
			return nil, err
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 {
			return nil, fmt.Errorf("direct: go env printed %q", out)
		}
		gomod, version = strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
		if gomod == os.DevNull || gomod == "" {
			break
		}
	}
	if gomod != os.DevNull && gomod != "" {
		return nil, fmt.Errorf("direct: no working directory outside a Go module (even %s is inside the module of %s)", root, gomod)
	}
	d.version = version
	return d, nil
}

// Runs returns how many times the go command was started so far (a fetch answered from
// what an earlier run left starts none).
func (d *Direct) Runs() int64 { return d.runs.Load() }

// Close kills every run of the go command still going, with the processes it started,
// and returns once they are gone, or with ctx's error when ctx ends first. Its owner
// calls it before exiting (a process killed with its owner's exit is the go command,
// not git and its helpers) and before removing d's directory. A fetch after Close fails.
func (d *Direct) Close(ctx context.Context) error {
	if err := d.procs.closeAndWait(ctx, "runs of the go command"); err != nil {
		return fmt.Errorf("%s: %w", DirectName, err)
	}
	return nil
}

// errDirectClosed is a canceled run's cause after Close: counted as canceled, not as a failure.
var errDirectClosed = fmt.Errorf("direct: closed: %w", context.Canceled)

// Running returns how many runs hold a job slot now.
func (d *Direct) Running() int { return len(d.sem) }

// GoVersion returns the version of the go command the runs use.
func (d *Direct) GoVersion() string { return d.version }

// Client returns the Client of the direct entry, which fetches through d.
func (d *Direct) Client() *Client { return &Client{direct: d, Header: http.Header{}} }

// DirectError is a failure of a run of the go command: its message, and whether it means
// that the module or version does not exist (the go command's own not-found answers,
// a repository that is not there, a path no origin claims), which satisfies
// errors.Is(err, fs.ErrNotExist) so that a client may try its next proxy.
type DirectError struct {
	Msg      string
	NotFound bool
	TimedOut bool
}

func (e *DirectError) Error() string { return "direct: " + e.Msg }

// Is makes a not-found failure match fs.ErrNotExist.
func (e *DirectError) Is(target error) bool { return target == fs.ErrNotExist && e.NotFound }

// Class returns the failure's class for metrics and logs.
func (e *DirectError) Class() string {
	switch {
	case e.TimedOut:
		return "direct_timeout"
	case e.NotFound:
		return "direct_not_found"
	}
	return "direct_failed"
}

// Timeout reports whether the run was cut by the timeout.
func (e *DirectError) Timeout() bool { return e.TimedOut }

// unavailable are fragments of the go command's (and git's) messages that say the origin
// could not be reached or failed: 502, whatever else the message says.
var unavailable = []string{
	"i/o timeout", "connection refused", "connection reset", "connection timed out",
	"network is unreachable", "no route to host", "tls:", "x509:", "certificate",
	"server misbehaving", "temporary failure", "try again", "503 service unavailable",
	"502 bad gateway", "500 internal server error", "504 gateway timeout", "failed to connect",
	"unable to access", "early eof", "the remote end hung up", "rpc failed",
}

// notFound are fragments of the messages that say the module or version is not there or
// is not a module version: 404, so that the client's own next proxy (or its own direct,
// with credentials holoproxy does not have) may answer.
var notFound = []string{
	"unknown revision", "invalid version", "no matching versions", "not found", "no such host",
	"unrecognized import path", "could not resolve host", "module declares its path as",
	"disallowed by govcs", "malformed module path", "missing dot in first path element",
	"terminal prompts disabled", "authentication failed", "could not read username",
	"does not contain package", "repository does not exist", "no secure protocol found",
	"is not a valid", "reading go.mod", "invalid go.mod", "go.mod has post-v",
}

// classify turns a message of the go command into a DirectError.
func classify(msg string) *DirectError {
	msg = oneLineMsg(msg)
	low := strings.ToLower(msg)
	// git's "unable to access ...: Could not resolve host" is a name that does not exist.
	if strings.Contains(low, "could not resolve host") || strings.Contains(low, "no such host") {
		return &DirectError{Msg: msg, NotFound: true}
	}
	for _, f := range unavailable {
		if strings.Contains(low, f) {
			return &DirectError{Msg: msg}
		}
	}
	for _, f := range notFound {
		if strings.Contains(low, f) {
			return &DirectError{Msg: msg, NotFound: true}
		}
	}
	return &DirectError{Msg: msg}
}

// oneLineMsg joins the lines of a message (git indents its lines under the go command's)
// and bounds its length: oneLineText of at most 500 bytes.
func oneLineMsg(s string) string { return oneLineText(s, 500) }

// oneLineText returns s for a message that clients are shown as a text answer: valid
// UTF-8, its white space (new lines, carriage returns, tabs) collapsed to single spaces,
// at most n bytes, cut at a character and followed by "…" when it was longer.
func oneLineText(s string, n int) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "\uFFFD")), " ")
	if len(s) > n {
		i := n
		for i > 0 && !utf8.RuneStart(s[i]) {
			i-- // not within a character
		}
		s = s[:i] + "…"
	}
	return s
}

// goModule is what `go list -m -json` and `go mod download -json` print for a module.
type goModule struct {
	Path     string
	Version  string
	Versions []string
	GoMod    string
	Zip      string
	Dir      string
	Error    json.RawMessage // list: {"Err": "..."}; download: "..."
}

// errorText returns the message of m's Error, "" when there is none.
func (m *goModule) errorText() string {
	if len(m.Error) == 0 || string(m.Error) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(m.Error, &s) == nil {
		return s
	}
	var o struct{ Err string }
	if json.Unmarshal(m.Error, &o) == nil && o.Err != "" {
		return o.Err
	}
	return string(m.Error)
}

// Fetch runs the go command for r and answers as a proxy would: 200 with the file, or a
// *DirectError (not found, failed, timed out).
func (d *Direct) Fetch(ctx context.Context, r Request) (*http.Response, error) {
	start := time.Now()
	resp, err := d.fetch(ctx, r)
	if errors.Is(err, ErrDirectBusy) {
		return nil, err // skipped, not a fetch
	}
	d.count(err)
	if d.onFetch != nil {
		d.onFetch(r.Kind, time.Since(start), err)
	}
	return resp, err
}

func (d *Direct) fetch(ctx context.Context, r Request) (*http.Response, error) {
	if (r.Kind == KindInfo || r.Kind == KindMod) && r.Canonical() {
		// A canonical version's .info and .mod never change: when an earlier run left
		// them (go list writes both, under the go command's own lock and rename), they
		// are answered without a run.
		if resp, err := d.open(r.Module, r.Version, d.cacheFile(r.Module, r.Version, string(r.Kind)), r.MaxSize(), nil); err == nil {
			return resp, nil
		}
	}
	switch r.Kind {
	case KindList:
		m, err := d.module(ctx, "list", "-m", "-e", "-json", "-versions", "-retracted", r.Module)
		if err != nil {
			return nil, err
		}
		var body bytes.Buffer
		for _, v := range m.Versions {
			body.WriteString(v + "\n")
		}
		return answer(io.NopCloser(&body), int64(body.Len())), nil
	case KindLatest, KindInfo:
		q := "latest"
		if r.Kind == KindInfo {
			q = r.Version
		}
		m, err := d.module(ctx, "list", "-m", "-e", "-json", r.Module+"@"+q)
		if err != nil {
			return nil, err
		}
		return d.open(m.Path, m.Version, d.cacheFile(m.Path, m.Version, "info"), r.MaxSize(), nil)
	case KindMod:
		m, err := d.module(ctx, "list", "-m", "-e", "-json", r.Module+"@"+r.Version)
		if err != nil {
			return nil, err
		}
		return d.open(m.Path, m.Version, m.GoMod, r.MaxSize(), nil)
	case KindZip:
		m, err := d.module(ctx, "mod", "download", "-json", r.Module+"@"+r.Version)
		if err != nil {
			return nil, err
		}
		// The go command also unpacked the zip: only the zip is wanted, and only once.
		// The .info and .mod stay, so that a later .zip of the version needs no lookup.
		cleanup := func() {
			os.RemoveAll(m.Dir)
			os.Remove(m.Zip)
			os.Remove(strings.TrimSuffix(m.Zip, ".zip") + ".ziphash")
		}
		if m.Dir != "" && !d.inside(m.Dir) {
			cleanup = func() {}
		}
		return d.open(m.Path, m.Version, m.Zip, r.MaxSize(), cleanup)
	}
	return nil, &DirectError{Msg: fmt.Sprintf("%s: no such endpoint", r), NotFound: true}
}

// answer is a 200 response with body.
func answer(body io.ReadCloser, size int64) *http.Response {
	return &http.Response{Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: body, ContentLength: size}
}

// cacheFile returns the file of kind ext the go command keeps for path@version.
func (d *Direct) cacheFile(path, version, ext string) string {
	escPath, err1 := module.EscapePath(path)
	escVer, err2 := module.EscapeVersion(version)
	if err1 != nil || err2 != nil {
		return ""
	}
	return filepath.Join(d.modRoot, "cache", "download", filepath.FromSlash(escPath), "@v", escVer+"."+ext)
}

// inside reports whether p is below the runs' module cache.
func (d *Direct) inside(p string) bool {
	rel, err := filepath.Rel(d.modRoot, p)
	return err == nil && filepath.IsLocal(rel)
}

// open answers with the file p that a run left for path@version; cleanup, when not nil,
// runs when the body is closed (or at once if there is no file to answer with).
func (d *Direct) open(path, version, p string, maxSize int64, cleanup func()) (*http.Response, error) {
	fail := func(err error) (*http.Response, error) {
		if cleanup != nil {
			cleanup()
		}
		return nil, err
	}
	if p == "" || !d.inside(p) {
		return fail(&DirectError{Msg: fmt.Sprintf("the go command left no file for %s@%s", path, version)})
	}
	// The errors name p: under the runs' module cache, hidden as in the go command's.
	f, err := os.Open(p)
	if err != nil {
		return fail(&DirectError{Msg: d.hidePaths(fmt.Sprintf("%s@%s: %v", path, version, err))})
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fail(&DirectError{Msg: d.hidePaths(fmt.Sprintf("%s@%s: %v", path, version, err))})
	}
	if fi.Size() > maxSize {
		f.Close()
		return fail(fmt.Errorf("%s: %s@%s: %d bytes, limit %d: %w", DirectName, path, version, fi.Size(), maxSize, ErrTooLarge))
	}
	var body io.ReadCloser = f
	if cleanup != nil {
		body = &cleanupFile{File: f, cleanup: cleanup}
	}
	return answer(body, fi.Size()), nil
}

// cleanupFile runs cleanup after the file is closed.
type cleanupFile struct {
	*os.File
	cleanup func()
}

func (c *cleanupFile) Close() error {
	err := c.File.Close()
	c.cleanup()
	return err
}

// module runs the go command with args and returns the module it printed, or the
// failure it printed or met as a *DirectError. Calls with the same args while a run is
// going share it (and its outcome).
//
// A foreground call that joined a background run which found no job slot (ErrDirectBusy)
// starts a run of its own.
func (d *Direct) module(ctx context.Context, args ...string) (*goModule, error) {
	for {
		ch := d.same.DoChan(strings.Join(args, "\x00"), func() (any, error) { return d.runModule(ctx, args...) })
		select {
		case r := <-ch:
			if errors.Is(r.Err, ErrDirectBusy) && !IsBackground(ctx) {
				continue // the busy run has left the group: the next DoChan starts one
			}
			if r.Err != nil {
				return nil, r.Err
			}
			return r.Val.(*goModule), nil
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", DirectName, context.Cause(ctx))
		}
	}
}

// runModule is one run of module.
func (d *Direct) runModule(ctx context.Context, args ...string) (*goModule, error) {
	out, runErr := d.run(ctx, args...)
	return d.moduleOf(out, runErr, args)
}

// moduleOf reads the module a run with args printed on stdout (out), or the failure it
// printed or met (runErr).
func (d *Direct) moduleOf(out []byte, runErr error, args []string) (*goModule, error) {
	var m goModule
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &m); err != nil {
			if runErr != nil {
				return nil, runErr
			}
			return nil, &DirectError{Msg: fmt.Sprintf("go %s printed no module: %v", strings.Join(args, " "), err)}
		}
		if msg := m.errorText(); msg != "" {
			return nil, classify(d.hidePaths(msg))
		}
	}
	if runErr != nil {
		return nil, runErr
	}
	if m.Path == "" {
		return nil, &DirectError{Msg: fmt.Sprintf("go %s printed no module", strings.Join(args, " "))}
	}
	return &m, nil
}

// maxOutput bounds what a run may print; a module's version list stays far below.
const maxOutput = 8 << 20

// run runs the go command with args once a job slot is free, and returns what it printed
// on stdout. A failed run (its exit status, or the timeout) is a *DirectError carrying
// the first lines of its stderr; a run abandoned by ctx returns ctx's error.
func (d *Direct) run(ctx context.Context, args ...string) (_ []byte, runErr error) {
	// Close ends the run as its caller's giving up would.
	ctx, done, closed := d.procs.start(ctx)
	if closed != nil {
		return nil, closed
	}
	defer done()
	if b := BackgroundOf(ctx); b != nil && !b.promoted.Load() {
		// A background fetch holds one of at most half the slots (bgSem), so that the
		// clients' fetches always have the other half; promoted while it waits for one,
		// it waits as a client's.
		if cap(d.bgSem) == 0 {
			return nil, ErrDirectBusy
		}
		select {
		case d.bgSem <- struct{}{}:
			defer func() { <-d.bgSem }()
		case <-b.Promoted():
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: waiting for a free job: %w", DirectName, context.Cause(ctx))
		}
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: waiting for a free job: %w", DirectName, context.Cause(ctx))
	}
	defer func() { <-d.sem }()
	defer func() {
		select {
		case d.ranAny <- struct{}{}:
		default:
		}
	}()
	d.runs.Add(1)
	rctx, cancel := context.WithTimeoutCause(ctx, d.timeout, errRunTimeout)
	defer cancel()
	steps := directStepsFrom(ctx)
	runArgs := args
	if steps != nil {
		runArgs = withX(args)
	}
	cmd := exec.CommandContext(rctx, d.goBin, runArgs...)
	cmd.Dir = d.work
	cmd.Env = d.env
	var stdout, stderr capBuffer
	stdout.max, stderr.max = maxOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var xw *xWriter
	if steps != nil {
		xw = &xWriter{fn: steps, rest: &stderr, hide: d.hidePaths, now: time.Now}
		cmd.Stderr = xw
	}
	waitGroup := SetProcessGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	waitGroup() // a killed run's git processes are gone too before its files are removed
	what := "go " + strings.Join(args, " ")
	if xw != nil {
		xw.flush()
		defer func() {
			// Told last, with the run's outcome, once its steps are all told.
			result := ""
			if runErr != nil {
				result = runErr.Error()
			}
			steps(DirectStep{Kind: DirectStepRun, Command: d.hidePaths(what), Start: start, Took: time.Since(start), Result: result})
		}()
	}
	switch {
	case errors.Is(context.Cause(rctx), errRunTimeout):
		return nil, &DirectError{Msg: fmt.Sprintf("%s did not finish within %s", what, d.timeout), TimedOut: true}
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: %s: %w", DirectName, what, context.Cause(ctx))
	case stdout.over:
		return nil, &DirectError{Msg: fmt.Sprintf("%s printed more than %d bytes", what, stdout.max)}
	case err != nil:
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		if len(bytes.TrimSpace(stdout.Bytes())) > 0 {
			// The JSON on stdout says what failed better than the exit status.
			return stdout.Bytes(), classify(d.hidePaths(what + ": " + msg))
		}
		return nil, classify(d.hidePaths(msg))
	}
	return stdout.Bytes(), nil
}

var errRunTimeout = errors.New("direct run timed out")

// hideReplacer is hidePaths' replacer for a Direct in dir whose runs' module cache is
// modRoot. Its strings are compared in this order at each place: the specific directories
// before their parent.
func hideReplacer(dir, modRoot string) *strings.Replacer {
	return strings.NewReplacer(modRoot, "$GOMODCACHE", filepath.Join(dir, "gocache"), "$GOCACHE",
		filepath.Join(dir, "gopath"), "$GOPATH", dir, "$HOLOPROXY_DIRECT")
}

// hidePaths replaces the runs' directories in a message of the go command (git's messages
// name the clone's directory) by the variables that name them, $GOMODCACHE, $GOCACHE,
// $GOPATH, and any other path under d's directory by $HOLOPROXY_DIRECT: the message goes to
// clients, who need not learn where the server keeps its files.
func (d *Direct) hidePaths(msg string) string {
	if !strings.Contains(msg, d.root) {
		return msg
	}
	return d.hide.Replace(msg)
}

// capBuffer is a bytes.Buffer that keeps at most max bytes and remembers that it was
// offered more.
type capBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
