package goproxy

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

func TestDirectSample(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	msd := func(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
	// A run of 100 ms from 10 ms, with a lookup of 20 ms and a git command of 50 ms inside
	// it, answered at 110 ms and read by 130 ms.
	steps := []DirectStep{
		{Kind: DirectStepLookup, Command: "GET https://git.test/repo?go-get=1", Start: at(15), Took: msd(20), Result: "200 OK"},
		{Kind: DirectStepVCS, Command: "git fetch -f origin", Start: at(40), Took: msd(50)},
		{Kind: "unknown", Command: "ignored", Start: at(40), Took: msd(5)},
		{Kind: DirectStepRun, Command: "go list -m -json git.test/repo@v1.0.0", Start: at(10), Took: msd(100)},
	}
	for _, tc := range []struct {
		name      string
		fetched   time.Time
		end       time.Time
		steps     []DirectStep
		err       error
		status    int
		class     string
		lookup    time.Duration
		vcs, goD  time.Duration
		transfer  time.Duration
		stepCount int
	}{
		{name: "ok", fetched: at(110), end: at(130), steps: steps, status: 200,
			lookup: msd(20), vcs: msd(50), goD: msd(30), transfer: msd(20), stepCount: 3},
		{name: "not found", fetched: at(110), end: at(110), steps: steps,
			err: &DirectError{Msg: "unknown revision v9.0.0", NotFound: true}, class: "direct_not_found",
			lookup: msd(20), vcs: msd(50), goD: msd(30), stepCount: 3},
		{name: "timed out", fetched: at(110), end: at(110), err: &DirectError{Msg: "slow", TimedOut: true}, class: "direct_timeout"},
		{name: "failed", end: at(5), err: &DirectError{Msg: "unable to access"}, class: "direct_failed"},
		{name: "canceled", end: at(5), err: fmt.Errorf("direct: %w", context.Canceled), class: netobs.ClassCanceled},
		{name: "too large", fetched: at(1), end: at(5), err: fmt.Errorf("x: %w", ErrTooLarge), class: netobs.ClassInvalidResponse},
		{name: "other", fetched: at(1), end: at(5), err: errors.New("read: boom"), class: netobs.ClassOther},
		{name: "shared run, no steps", fetched: at(90), end: at(100), status: 200, transfer: msd(10)},
		// A step told with more time than the fetch lasted (-x rounds) is cut at its end.
		{name: "step past the end", fetched: at(10), end: at(10), status: 200,
			steps: []DirectStep{{Kind: DirectStepRun, Start: at(2), Took: msd(9)}}, goD: msd(8), stepCount: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DirectSample(DirectName, "direct/git.test/repo/@v/v1.0.0.info", "info", t0, tc.fetched, tc.end, 42, tc.steps, tc.err)
			if s.Upstream != DirectName || s.Kind != "info" || s.Start != t0 || s.Total != tc.end.Sub(t0) || s.Bytes != 42 {
				t.Errorf("labels %+v", s)
			}
			if s.Status != tc.status || s.ErrClass != tc.class || (tc.err == nil) != (s.Err == "") {
				t.Errorf("status %d class %q err %q; want %d %q (err %v)", s.Status, s.ErrClass, s.Err, tc.status, tc.class, tc.err)
			}
			if s.Lookup != tc.lookup || s.VCS != tc.vcs || s.Go != tc.goD || s.Transfer != tc.transfer {
				t.Errorf("lookup %s vcs %s go %s transfer %s; want %s %s %s %s", s.Lookup, s.VCS, s.Go, s.Transfer, tc.lookup, tc.vcs, tc.goD, tc.transfer)
			}
			if len(s.Steps) != tc.stepCount {
				t.Errorf("%d steps; want %d", len(s.Steps), tc.stepCount)
			}
			if s.DNS != 0 || s.Connect != 0 || s.TLS != 0 || s.TTFB != 0 {
				t.Errorf("HTTP phases in a direct Sample: %+v", s)
			}
			if sum := s.Lookup + s.VCS + s.Go + s.Transfer; sum > s.Total {
				t.Errorf("phases add up to %s, over the total %s", sum, s.Total)
			}
		})
	}
}

func TestDirectRecorderNil(t *testing.T) {
	var d *DirectRecorder
	d.Fetched()
	if s := d.Sample(1, nil); s.Upstream != "" || s.Status != 0 {
		t.Errorf("nil recorder's Sample %+v; want zero", s)
	}
}
