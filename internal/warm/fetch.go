package warm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/sync/errgroup"

	"github.com/holoproxy/holoproxy/internal/checksum"
	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/store"
)

// DefaultJobs is the default number of module versions fetched at once: far above the go
// command's GOMAXPROCS-way parallelism, because a cold download waits on round trips, not
// on bandwidth or CPU.
const DefaultJobs = 32

// MismatchError is a file whose hash is not the one go.sum (or the checksum database)
// records. Nothing of the module version is written.
type MismatchError struct {
	Module   module.Version
	Kind     goproxy.Kind
	Upstream string // where the file came from
	Against  string // "go.sum" or "checksum database"
	Want     string
	Got      string
}

// Error names the module version, the file, the upstream and both hashes on one line.
func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s@%s: .%s from %s: checksum mismatch: %s has %s, downloaded file has %s",
		e.Module.Path, e.Module.Version, e.Kind, e.Upstream, e.Against, e.Want, e.Got)
}

// Is makes errors.Is(err, checksum.ErrChecksumMismatch) hold.
func (e *MismatchError) Is(target error) bool { return target == checksum.ErrChecksumMismatch }

// Class returns the error class metrics use for a checksum failure.
func (e *MismatchError) Class() string { return netobs.ClassChecksumMismatch }

// verifyFile checks the n bytes of content in tmp against f: the go.sum hash of a .mod or
// .zip, or that a .info names f's version.
func verifyFile(f File, tmp *os.File, n int64) error {
	mv := module.Version{Path: f.Req.Module, Version: f.Req.Version}
	var got string
	switch f.Req.Kind {
	case goproxy.KindInfo:
		b, err := readAllAt(tmp, n)
		if err != nil {
			return err
		}
		return checkInfo(f, b)
	case goproxy.KindMod:
		b, err := readAllAt(tmp, n)
		if err != nil {
			return err
		}
		if got, err = checksum.HashMod(b); err != nil {
			return fmt.Errorf("%s: hashing .mod: %w", f, err)
		}
	case goproxy.KindZip:
		var err error
		if got, err = checksum.HashZipReader(tmp, n); err != nil {
			return fmt.Errorf("%s@%s: .zip is not a valid module zip: %w", mv.Path, mv.Version, err)
		}
	}
	if f.Want != "" && got != f.Want {
		return &MismatchError{Module: mv, Kind: f.Req.Kind, Against: "go.sum", Want: f.Want, Got: got}
	}
	return nil
}

func readAllAt(f *os.File, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("reading downloaded file: %w", err)
	}
	return b, nil
}

// Config configures Run.
type Config struct {
	// Chain is the GOPROXY list files are fetched from.
	Chain *goproxy.Chain
	// Dests receive the files; at least one is required.
	Dests []Dest
	// Jobs bounds the module versions in flight (each fetches its files in parallel). Zero
	// means DefaultJobs.
	Jobs int
	// Verifier, if set, also checks every .mod and .zip against the checksum database.
	Verifier *checksum.Verifier
	// Timeout bounds each upstream request; zero means 10 minutes. The transport bounds
	// each phase (connect, first byte, body idle) on its own.
	Timeout time.Duration
	// TempDir holds downloads until they are verified; "" means the temporary area of the
	// first store destination, else os.TempDir().
	TempDir string
	// Progress, if set, receives progress reports while Run works.
	Progress *Progress
}

// Failure is a module version that could not be warmed.
type Failure struct {
	Item Item
	Err  error
}

// Result is what Run did.
type Result struct {
	Modules int // module versions in the plan
	Files   int // files in the plan
	// Fetched counts files downloaded from upstream; Present those every destination
	// already held (skipped); Bytes the bytes downloaded.
	Fetched, Present int
	// Pushed counts files only push destinations lacked: asked of them, not fetched here.
	Pushed int
	Bytes  int64
	// Unverified counts files stored with no hash to check (a toolchain without --sumdb).
	Unverified int
	Wall       time.Duration
	// Failures are the module versions that failed, in plan order.
	Failures []Failure
}

// Run fetches every file of plan that a destination lacks, verifies it, and stores it in
// each destination that lacks it, then updates the @v/list files of the store
// destinations. A module version whose files fail to fetch or verify is reported in
// Result.Failures and nothing of it is written. The error is for a run that could not
// start or was cancelled.
func Run(ctx context.Context, plan *Plan, cfg Config) (Result, error) {
	start := time.Now()
	if cfg.Chain == nil || len(cfg.Dests) == 0 {
		return Result{}, fmt.Errorf("warm: a chain and at least one destination are required")
	}
	jobs := cfg.Jobs
	if jobs <= 0 {
		jobs = DefaultJobs
	}
	w := &warmer{cfg: cfg}
	w.createTemp = func(context.Context) (*os.File, error) { return os.CreateTemp(cfg.TempDir, "holoproxy-warm-*") }
	w.discard = func(f *os.File) { f.Close(); os.Remove(f.Name()) }
	for _, d := range cfg.Dests {
		if sd, ok := d.(*StoreDest); ok && cfg.TempDir == "" {
			w.owner = sd
			w.createTemp, w.discard = sd.Store.CreateTemp, sd.Store.Discard
			break
		}
	}
	if w.cfg.Timeout == 0 {
		w.cfg.Timeout = 10 * time.Minute
	}
	res := Result{Modules: len(plan.Items), Files: plan.Files()}
	if p := cfg.Progress; p != nil {
		p.start(plan, start)
		defer p.stop()
	}
	errs := make([]error, len(plan.Items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i, it := range plan.Items {
		g.Go(func() error {
			errs[i] = w.item(gctx, it)
			if p := cfg.Progress; p != nil {
				p.modDone(errs[i] != nil)
			}
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("warm: %w", err)
	}
	versions := map[string][]string{}
	for i, it := range plan.Items {
		if errs[i] != nil {
			res.Failures = append(res.Failures, Failure{Item: it, Err: errs[i]})
			continue
		}
		versions[it.Mod.Path] = append(versions[it.Mod.Path], it.Mod.Version)
	}
	var listErrs []error
	for _, d := range cfg.Dests {
		sd, ok := d.(*StoreDest)
		if !ok {
			continue
		}
		paths := make([]string, 0, len(versions))
		for p := range versions {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			if err := sd.writeList(ctx, p, versions[p]); err != nil {
				listErrs = append(listErrs, err)
			}
		}
	}
	res.Fetched = int(w.fetched.Load())
	res.Present = int(w.present.Load())
	res.Pushed = int(w.pushed.Load())
	res.Bytes = w.bytes.Load()
	res.Unverified = int(w.unverified.Load())
	res.Wall = time.Since(start)
	if len(listErrs) > 0 {
		return res, fmt.Errorf("warm: writing version lists: %w", errors.Join(listErrs...))
	}
	return res, nil
}

type warmer struct {
	// createTemp and discard make and remove the files downloads are verified in: in the
	// first store destination's temporary area when there is one, so that a killed run
	// leaves nothing behind that the next one does not clear.
	createTemp func(context.Context) (*os.File, error)
	discard    func(*os.File)
	// owner is the destination createTemp makes files in, which can adopt a download by
	// committing it; nil when downloads go to TempDir.
	owner *StoreDest

	cfg                                  Config
	fetched, present, pushed, unverified atomic.Int64
	bytes                                atomic.Int64
}

// job is one file of an item on its way: the destinations that lack it and, once
// fetched, the verified download.
type job struct {
	f        File
	need     []Dest
	tmp      *os.File
	n        int64
	upstream string
}

// item warms one module version: it finds which destinations lack which files, fetches
// those files in parallel, verifies them all, and only then stores them.
func (w *warmer) item(ctx context.Context, it Item) error {
	var jobs []*job
	for _, f := range it.files() {
		j := &job{f: f}
		for _, d := range w.cfg.Dests {
			has, err := d.Has(ctx, f)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", d, f, err)
			}
			if !has {
				j.need = append(j.need, d)
			}
		}
		if len(j.need) == 0 {
			w.present.Add(1)
			w.progressFile(0)
			continue
		}
		jobs = append(jobs, j)
	}
	defer func() {
		for _, j := range jobs {
			if j.tmp != nil {
				w.discard(j.tmp)
			}
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	for _, j := range jobs {
		if !needsContent(j.need) {
			continue
		}
		g.Go(func() error { return w.fetch(gctx, j) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, j := range jobs {
		var adopt *StoreDest // the destination whose temporary file holds the download
		for _, d := range j.need {
			if d == Dest(w.owner) && j.tmp != nil {
				adopt = w.owner
				continue
			}
			if err := d.Put(ctx, j.f, j.tmp); err != nil {
				return err
			}
		}
		if adopt != nil {
			// Last, since committing consumes the temporary file: a rename, no copy.
			tmp := j.tmp
			j.tmp = nil
			if err := adopt.commit(ctx, j.f, tmp); err != nil {
				return err
			}
		}
		if !needsContent(j.need) {
			w.pushed.Add(1)
			w.progressFile(0) // filled by the push destinations themselves
		}
	}
	return w.exportSumDB(ctx, it)
}

// exportSumDB writes, for a toolchain verified against the checksum database, the
// database's answers that vouch for it into every module cache destination, whether the
// zip was fetched now or found there (a cache warmed before this was done lacks them).
func (w *warmer) exportSumDB(ctx context.Context, it Item) error {
	if w.cfg.Verifier == nil || it.Mod.Path != ToolchainModule || !it.Zip {
		return nil
	}
	for _, d := range w.cfg.Dests {
		if sd, ok := d.(*StoreDest); ok && sd.SumDBDir != "" {
			if err := w.cfg.Verifier.ExportGoCache(ctx, sd.SumDBDir, it.Mod); err != nil {
				return fmt.Errorf("%s: %w", sd.Name, err)
			}
		}
	}
	return nil
}

// needsContent reports whether any of dests stores content Run must download; a push
// destination fetches for itself.
func needsContent(dests []Dest) bool {
	for _, d := range dests {
		if _, ok := d.(*PushDest); !ok {
			return true
		}
	}
	return false
}

// fetch downloads j's file through the chain into a temporary file and verifies it.
func (w *warmer) fetch(ctx context.Context, j *job) error {
	tmp, err := w.createTemp(ctx)
	if err != nil {
		return fmt.Errorf("warm: %w", err)
	}
	j.tmp = tmp
	var n int64
	var upstream string
	walk := func(ctx context.Context, c *goproxy.Client) error {
		var err error
		n, err = w.download(ctx, c, j.f.Req, tmp)
		upstream = c.Name()
		return err
	}
	err = w.cfg.Chain.Walk(ctx, nil, walk)
	if err != nil && transient(err) && ctx.Err() == nil {
		// One more try for a failure on the way (reset, truncated body, 5xx).
		err = w.cfg.Chain.Walk(ctx, nil, walk)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", j.f, err)
	}
	j.n, j.upstream = n, upstream
	if err := verifyFile(j.f, tmp, n); err != nil {
		var mm *MismatchError
		if errors.As(err, &mm) {
			mm.Upstream = upstream
		}
		return err
	}
	if err := w.verifySumDB(ctx, j); err != nil {
		return err
	}
	if j.f.Want == "" && j.f.Req.Kind != goproxy.KindInfo && w.cfg.Verifier == nil {
		w.unverified.Add(1)
	}
	w.fetched.Add(1)
	w.bytes.Add(n)
	w.progressFile(n)
	return nil
}

// transient reports whether a failed walk may succeed when tried again.
func transient(err error) bool {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, goproxy.ErrTooLarge) ||
		errors.Is(err, goproxy.ErrOff) || errors.Is(err, goproxy.ErrDirect) {
		return false
	}
	var se *goproxy.StatusError
	if errors.As(err, &se) {
		return se.Status >= 500
	}
	return true
}

// download GETs r from c into tmp, replacing what an earlier attempt left there.
func (w *warmer) download(ctx context.Context, c *goproxy.Client, r goproxy.Request, tmp *os.File) (int64, error) {
	if err := tmp.Truncate(0); err != nil {
		return 0, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	resp, err := c.Fetch(ctx, r)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := store.CopyToFile(tmp, io.LimitReader(resp.Body, r.MaxSize()+1))
	if err != nil {
		return n, fmt.Errorf("%s: %s: reading body: %w", c.Name(), r, err)
	}
	if n > r.MaxSize() {
		return n, fmt.Errorf("%s: %s: more than %d bytes: %w", c.Name(), r, r.MaxSize(), goproxy.ErrTooLarge)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("%s: %s: body of %d bytes, %d declared", c.Name(), r, n, resp.ContentLength)
	}
	return n, nil
}

// verifySumDB checks a .mod or .zip against the checksum database when a Verifier is set.
func (w *warmer) verifySumDB(ctx context.Context, j *job) error {
	v := w.cfg.Verifier
	if v == nil || j.f.Req.Kind == goproxy.KindInfo {
		return nil
	}
	var err error
	if j.f.Req.Kind == goproxy.KindMod {
		var b []byte
		if b, err = readAllAt(j.tmp, j.n); err != nil {
			return err
		}
		err = v.VerifyMod(ctx, j.f.Req.Module, j.f.Req.Version, b)
	} else {
		err = v.VerifyZip(ctx, j.f.Req.Module, j.f.Req.Version, j.tmp.Name())
	}
	if err == nil {
		return nil
	}
	var cm *checksum.MismatchError
	if errors.As(err, &cm) {
		return &MismatchError{
			Module:   module.Version{Path: j.f.Req.Module, Version: j.f.Req.Version},
			Kind:     j.f.Req.Kind,
			Upstream: j.upstream,
			Against:  "checksum database",
			Want:     cm.Want,
			Got:      cm.Got,
		}
	}
	return fmt.Errorf("%s: checksum database: %w", j.f, err)
}

func (w *warmer) progressFile(n int64) {
	if p := w.cfg.Progress; p != nil {
		p.fileDone(n)
	}
}

// Missing is a file a destination lacks (or holds with the wrong content).
type Missing struct {
	Dest string
	File File
}

// Check reports, without fetching anything, the files of plan that dests lack, in plan
// order. Push destinations cannot be checked and are refused.
func Check(ctx context.Context, plan *Plan, dests []Dest, jobs int) ([]Missing, error) {
	if jobs <= 0 {
		jobs = DefaultJobs
	}
	for _, d := range dests {
		if _, ok := d.(*PushDest); ok {
			return nil, fmt.Errorf("warm: %s cannot be checked without filling it", d)
		}
	}
	per := make([][]Missing, len(plan.Items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i, it := range plan.Items {
		g.Go(func() error {
			for _, f := range it.files() {
				for _, d := range dests {
					has, err := d.Has(gctx, f)
					if err != nil {
						return fmt.Errorf("%s: %s: %w", d, f, err)
					}
					if !has {
						per[i] = append(per[i], Missing{Dest: d.String(), File: f})
					}
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []Missing
	for _, m := range per {
		out = append(out, m...)
	}
	return out, nil
}

// Samples collects the Samples of the observed transport, for the summary. It is a
// netobs.Sink.
type Samples struct {
	mu sync.Mutex
	s  []netobs.Sample
}

// Observe implements netobs.Sink.
func (s *Samples) Observe(x netobs.Sample) {
	s.mu.Lock()
	s.s = append(s.s, x)
	s.mu.Unlock()
}

// All returns the Samples collected so far.
func (s *Samples) All() []netobs.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netobs.Sample(nil), s.s...)
}
