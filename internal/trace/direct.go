package trace

import (
	"context"
	"errors"
	"fmt"
	"os"
	rtrace "runtime/trace"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
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
		// Runs still going are killed (each within the go command's WaitDelay); the
		// files go after them.
		ds.ds[i].Close(context.Background())
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

// fetchDirect fetches r through the direct entry c, reads the answer to its end and
// records the exchange's Sample, with the go command's steps (goproxy.DirectRecorder).
func (p *pass) fetchDirect(ctx context.Context, c *goproxy.Client, r goproxy.Request) ([]byte, error) {
	dctx, rec := goproxy.RecordDirect(ctx, c, r)
	var body []byte
	var n int64
	var err error
	rtrace.WithRegion(ctx, "direct", func() {
		resp, ferr := c.Fetch(dctx, r)
		rec.Fetched()
		if err = ferr; ferr != nil {
			return
		}
		defer resp.Body.Close()
		body, n, err = readAnswer(resp.Body, r)
	})
	p.col.Observe(rec.Sample(n, err))
	return body, err
}
