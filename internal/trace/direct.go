package trace

import (
	"context"
	"errors"
	"fmt"
	"os"
	rtrace "runtime/trace"
	"sync"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
)

// DirectOptions configure the runs of the go command for the chain's "direct" entry, as
// serve's --direct-jobs and --direct-timeout do.
type DirectOptions struct {
	// Go is the go command; "go" on PATH when empty.
	Go string
	// Jobs is how many runs may go at once; default 4.
	Jobs int
	// Timeout bounds each run, clone included; default 10 minutes.
	Timeout time.Duration
	// Env is added to the process's environment for the runs (goproxy.DirectConfig.Env).
	Env []string
}

// directs are the Directs of one Run, each in a temporary directory of its own: its
// module cache starts empty, as a go process's does when GOMODCACHE holds nothing yet.
// Without fresh transports one serves every pass (its clones stay between passes, as
// serve keeps them); with fresh transports each pass has its own.
type directs struct {
	ds   []*goproxy.Direct
	dirs []string
}

// newDirects makes the Directs a Run of s needs: none when the chain it walks has no
// direct or opt does not trace it. On error the ones made are removed by close.
func newDirects(ctx context.Context, opt Options, s Setup) (*directs, error) {
	out := &directs{}
	list := opt.Proxy
	if s.Only != "" {
		list = s.Only
	}
	if opt.Direct == nil || !goproxy.ListHasDirect(list) {
		return out, nil
	}
	n := 1
	if s.Fresh {
		n = opt.Count
	}
	for range n {
		dir, err := os.MkdirTemp("", "holoproxy-trace-direct-")
		if err != nil {
			return out, fmt.Errorf("direct's module cache: %w", err)
		}
		out.dirs = append(out.dirs, dir)
		d, err := goproxy.NewDirect(ctx, goproxy.DirectConfig{
			Go: opt.Direct.Go, Dir: dir, Env: opt.Direct.Env, Jobs: opt.Direct.Jobs, Timeout: opt.Direct.Timeout,
		})
		if err != nil {
			return out, err
		}
		out.ds = append(out.ds, d)
	}
	return out, nil
}

// forPass returns the Direct of pass i, nil when there is none.
func (ds *directs) forPass(i int) *goproxy.Direct {
	switch len(ds.ds) {
	case 0:
		return nil
	case 1:
		return ds.ds[0]
	}
	return ds.ds[i]
}

// closePass removes the module cache of pass i once its runs are over, when each pass has
// one of its own.
func (ds *directs) closePass(i int) error {
	if len(ds.ds) < 2 || i >= len(ds.dirs) {
		return nil
	}
	return ds.remove(i)
}

func (ds *directs) remove(i int) error {
	if ds.dirs[i] == "" {
		return nil
	}
	if i < len(ds.ds) {
		ds.ds[i].Wait() // a run cancelled is killed; its files go after it
	}
	dir := ds.dirs[i]
	ds.dirs[i] = ""
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing direct's module cache: %w", err)
	}
	return nil
}

// close removes every module cache left, after their runs ended.
func (ds *directs) close() error {
	var errs []error
	for i := range ds.dirs {
		errs = append(errs, ds.remove(i))
	}
	return errors.Join(errs...)
}

// stepLog gathers the steps of one fetch through direct.
type stepLog struct {
	mu    sync.Mutex
	steps []goproxy.DirectStep
}

func (l *stepLog) add(s goproxy.DirectStep) {
	l.mu.Lock()
	l.steps = append(l.steps, s)
	l.mu.Unlock()
}

// fetchDirect fetches r through the direct entry c, reads the answer to its end and
// records the exchange's Sample, with the go command's steps.
func (p *pass) fetchDirect(ctx context.Context, c *goproxy.Client, r goproxy.Request) ([]byte, error) {
	var log stepLog
	start := time.Now()
	var body []byte
	var n int64
	var fetched time.Time
	var err error
	rtrace.WithRegion(ctx, "direct", func() {
		resp, ferr := c.Fetch(goproxy.WithDirectSteps(ctx, log.add), r)
		fetched, err = time.Now(), ferr
		if ferr != nil {
			return
		}
		defer resp.Body.Close()
		body, n, err = readAnswer(resp.Body, r)
	})
	log.mu.Lock()
	steps := log.steps
	log.mu.Unlock()
	p.col.Observe(directSample(c.Name(), c.URL(r), string(r.Kind), start, fetched, time.Now(), n, steps, err))
	return body, err
}

// directSample is the Sample of a fetch through direct that started at start, had its
// answer at fetched (zero when it failed before), was read to its end at end, with n
// bytes, the go command's steps and err. The steps become its lookup, vcs and go phases;
// reading the file the go command left is its transfer.
func directSample(upstream, url, kind string, start, fetched, end time.Time, n int64, steps []goproxy.DirectStep, err error) netobs.Sample {
	s := netobs.Sample{Upstream: upstream, Kind: kind, URL: url, Start: start, Total: end.Sub(start), Bytes: n}
	phase := map[string]netobs.Phase{
		goproxy.DirectStepLookup: netobs.PhaseLookup, goproxy.DirectStepVCS: netobs.PhaseVCS, goproxy.DirectStepRun: netobs.PhaseGo,
	}
	for _, st := range steps {
		ph, ok := phase[st.Kind]
		if !ok {
			continue
		}
		off := max(0, st.Start.Sub(start))
		d := min(st.Took, s.Total-off) // -x rounds to the millisecond
		s.Steps = append(s.Steps, netobs.Step{Phase: ph, Command: st.Command, Offset: off, Duration: max(0, d), Result: st.Result})
	}
	s.SetStepPhases()
	if !fetched.IsZero() && err == nil {
		s.Transfer = end.Sub(fetched)
	}
	var de *goproxy.DirectError
	switch {
	case err == nil:
		s.Status = 200
		return s
	case errors.As(err, &de):
		s.ErrClass = de.Class()
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		s.ErrClass = netobs.ClassCanceled
	case errors.Is(err, goproxy.ErrTooLarge):
		s.ErrClass = netobs.ClassInvalidResponse
	default:
		s.ErrClass = netobs.ClassOther
	}
	s.Err = err.Error()
	return s
}
