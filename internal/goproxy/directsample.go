package goproxy

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// DirectRecorder records one fetch through the direct entry as a netobs.Sample, the
// record an HTTP exchange gets from netobs's Recorder: the go command's steps (its
// go-get lookups, version control commands and the run) become the Sample's lookup, vcs
// and go phases, and reading the file the run left its transfer. trace and serve both
// record direct's fetches with it.
//
//	ctx, rec := goproxy.RecordDirect(ctx, c, r)
//	resp, err := c.Fetch(ctx, r)
//	rec.Fetched()
//	n, err := io.Copy(dst, resp.Body) // when err was nil
//	sink.Observe(rec.Sample(n, err))
//
// Its methods are safe for concurrent use; a nil *DirectRecorder does nothing.
type DirectRecorder struct {
	upstream, url, kind string
	start               time.Time

	mu      sync.Mutex
	fetched time.Time    // guarded by mu
	steps   []DirectStep // guarded by mu
}

// RecordDirect starts the record of the fetch of r through c, the direct entry, and
// returns the context to fetch with (WithDirectSteps: the go command runs with -x).
func RecordDirect(ctx context.Context, c *Client, r Request) (context.Context, *DirectRecorder) {
	d := &DirectRecorder{upstream: c.Name(), url: c.URL(r), kind: string(r.Kind), start: time.Now()}
	return WithDirectSteps(ctx, d.add), d
}

func (d *DirectRecorder) add(s DirectStep) {
	d.mu.Lock()
	d.steps = append(d.steps, s)
	d.mu.Unlock()
}

// Fetched marks the moment the fetch returned: what follows, reading its answer, is the
// transfer.
func (d *DirectRecorder) Fetched() {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.fetched = time.Now()
	d.mu.Unlock()
}

// Sample returns the Sample of the fetch, ended now, after n bytes of its answer were
// read; err is the fetch's or the read's failure (nil when the answer was read whole).
// A fetch that shared the run of an earlier one, or that was answered from the files an
// earlier run left, has no steps: its Sample has only a transfer.
func (d *DirectRecorder) Sample(n int64, err error) netobs.Sample {
	if d == nil {
		return netobs.Sample{}
	}
	end := time.Now()
	d.mu.Lock()
	steps, fetched := d.steps, d.fetched
	d.mu.Unlock()
	return DirectSample(d.upstream, d.url, d.kind, d.start, fetched, end, n, steps, err)
}

// DirectSample is the Sample of a fetch through direct that started at start, had its
// answer at fetched (zero when it failed before), was read to its end at end, with n
// bytes, the go command's steps and err. The steps become its lookup, vcs and go phases
// (netobs.StepSpans); reading the file the go command left is its transfer. A success
// has Status 200; a failure has no Status and the class of err (DirectError.Class,
// canceled, invalid_response for an answer over the size limit, other).
func DirectSample(upstream, url, kind string, start, fetched, end time.Time, n int64, steps []DirectStep, err error) netobs.Sample {
	s := netobs.Sample{Upstream: upstream, Kind: kind, URL: url, Start: start, Total: max(0, end.Sub(start)), Bytes: n}
	for _, st := range steps {
		var ph netobs.Phase
		switch st.Kind {
		case DirectStepLookup:
			ph = netobs.PhaseLookup
		case DirectStepVCS:
			ph = netobs.PhaseVCS
		case DirectStepRun:
			ph = netobs.PhaseGo
		default:
			continue
		}
		off := max(0, st.Start.Sub(start))
		d := min(st.Took, s.Total-off) // -x rounds to the millisecond
		s.Steps = append(s.Steps, netobs.Step{Phase: ph, Command: st.Command, Offset: off, Duration: max(0, d), Result: st.Result})
	}
	s.SetStepPhases()
	if !fetched.IsZero() && err == nil {
		s.Transfer = max(0, end.Sub(fetched))
	}
	var de *DirectError
	switch {
	case err == nil:
		s.Status = 200
		return s
	case errors.As(err, &de):
		s.ErrClass = de.Class()
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		s.ErrClass = netobs.ClassCanceled
	case errors.Is(err, ErrTooLarge):
		s.ErrClass = netobs.ClassInvalidResponse
	default:
		s.ErrClass = netobs.ClassOther
	}
	s.Err = err.Error()
	return s
}
