package goproxy

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestXWriterSplitsSteps(t *testing.T) {
	// Lines as go1.26's -x prints them for a run against the lab git server.
	const dir = "/srv/direct/modcache/cache/vcs/260d857f"
	stderr := "# get https://git.test/repo?go-get=1\n" +
		"# get https://git.test/repo?go-get=1: 200 OK (0.014s)\n" +
		"mkdir -p /srv/direct/modcache/cache/vcs # git3 https://git.test/repo.git\n" +
		"# lock " + dir + ".lock\n" +
		"# " + dir + " for git3 https://git.test/repo.git\n" +
		"cd " + dir + "; git ls-remote -q --end-of-options https://git.test/repo.git\n" +
		"0.063s # cd " + dir + "; git ls-remote -q --end-of-options https://git.test/repo.git\n" +
		"# get https://git.test/nothere?go-get=1: 404 Not Found (0.002s)\n" +
		"go: git.test/repo@v9.0.0: invalid version: unknown revision v9.0.0\n" +
		"\tfatal: something " + dir + "\n" +
		"1.5s # git -c protocol.version=2 fetch -f origin" // no newline: flushed at the end
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var steps []DirectStep
	var rest bytes.Buffer
	w := &xWriter{fn: func(s DirectStep) { steps = append(steps, s) }, rest: &rest, now: func() time.Time { return now },
		hide: func(s string) string { return strings.ReplaceAll(s, "/srv/direct/modcache", "$GOMODCACHE") }}
	// Written in pieces that cut lines, as a pipe delivers them.
	for i := 0; i < len(stderr); i += 7 {
		w.Write([]byte(stderr[i:min(i+7, len(stderr))]))
	}
	w.flush()
	want := []DirectStep{
		{Kind: DirectStepLookup, Command: "GET https://git.test/repo?go-get=1", Took: 14 * time.Millisecond, Result: "200 OK"},
		{Kind: DirectStepVCS, Command: "git ls-remote -q --end-of-options https://git.test/repo.git", Took: 63 * time.Millisecond},
		{Kind: DirectStepLookup, Command: "GET https://git.test/nothere?go-get=1", Took: 2 * time.Millisecond, Result: "404 Not Found"},
		{Kind: DirectStepVCS, Command: "git -c protocol.version=2 fetch -f origin", Took: 1500 * time.Millisecond},
	}
	if len(steps) != len(want) {
		t.Fatalf("steps = %+v; want %d", steps, len(want))
	}
	for i, s := range steps {
		w := want[i]
		w.Start = now.Add(-w.Took)
		if s != w {
			t.Errorf("step %d = %+v; want %+v", i, s, w)
		}
	}
	wantRest := "go: git.test/repo@v9.0.0: invalid version: unknown revision v9.0.0\n\tfatal: something " + dir + "\n"
	if rest.String() != wantRest {
		t.Errorf("messages = %q; want %q (the go command's own lines, -x's left out)", rest.String(), wantRest)
	}
}

func TestWithX(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"list -m -json m@v1.0.0", "list -x -m -json m@v1.0.0"},
		{"mod download -json m@v1.0.0", "mod download -x -json m@v1.0.0"},
	} {
		if got := strings.Join(withX(strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("withX(%s) = %s; want %s", tc.in, got, tc.want)
		}
	}
}

// stepLog gathers the steps told to a context.
type stepLog struct {
	mu    sync.Mutex
	steps []DirectStep
}

func (l *stepLog) add(s DirectStep) {
	l.mu.Lock()
	l.steps = append(l.steps, s)
	l.mu.Unlock()
}

func (l *stepLog) kinds() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := map[string]int{}
	for _, s := range l.steps {
		n[s.Kind]++
	}
	return n
}

func TestDirectStepsFromARun(t *testing.T) {
	f := newDirectFixture(t)
	d, dir := f.direct(t, 0)
	var log stepLog
	ctx, cancel := context.WithTimeout(WithDirectSteps(context.Background(), log.add), 2*time.Minute)
	defer cancel()
	start := time.Now()
	resp, err := d.Client().Fetch(ctx, Request{Kind: KindList, Module: "git.test/repo"})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	took := time.Since(start)
	if n := log.kinds(); n[DirectStepLookup] != 1 || n[DirectStepVCS] == 0 || n[DirectStepRun] != 1 {
		t.Fatalf("steps by kind %v; want one lookup, version control commands and one run", n)
	}
	run := log.steps[len(log.steps)-1]
	if run.Kind != DirectStepRun || run.Result != "" || !strings.HasPrefix(run.Command, "go list -m") || run.Took <= 0 || run.Took > took {
		t.Errorf("last step %+v; want the run, told last, within the fetch's %s", run, took)
	}
	for _, s := range log.steps {
		if s.Kind == DirectStepRun {
			continue
		}
		// -x rounds to the millisecond: allow that much outside the run.
		if s.Start.Before(run.Start.Add(-time.Millisecond)) || s.Start.Add(s.Took).After(run.Start.Add(run.Took+time.Millisecond)) {
			t.Errorf("step %+v lies outside its run %s+%s", s, run.Start, run.Took)
		}
		if strings.Contains(s.Command, dir) {
			t.Errorf("step %q names the runs' directory", s.Command)
		}
		if s.Kind == DirectStepLookup && (s.Command != "GET https://git.test/repo?go-get=1" || s.Result != "200 OK") {
			t.Errorf("lookup %+v", s)
		}
	}

	// With -x, a failure keeps the go command's reason (the -x lines are not in it).
	var log2 stepLog
	_, err = d.Client().Fetch(WithDirectSteps(ctx, log2.add), Request{Kind: KindZip, Module: "git.test/repo", Version: "v9.0.0"})
	var de *DirectError
	if !errors.As(err, &de) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "unknown revision v9.0.0") ||
		strings.Contains(err.Error(), "# get") || strings.Contains(err.Error(), "s # ") {
		t.Errorf("v9.0.0.zip: %v; want not found with the go command's reason and no -x line", err)
	}
	if n := log2.kinds(); n[DirectStepRun] != 1 || n[DirectStepVCS] == 0 {
		t.Errorf("failed run: steps %v; want its version control commands and the run", n)
	}
	if err := d.Close(ctx); err != nil || d.procs.running.Load() != 0 {
		t.Errorf("Close: %v with %d runs going", err, d.procs.running.Load())
	}
}

// FuzzXWriter checks the reading of a run's stderr with -x (the go command's lines, and
// git's and the origins' text within them) as it arrives in pieces: steps take no negative
// time and start no later than their line arrived, the same steps and messages come out
// however the text is cut, and every line that is no -x line is passed on.
func FuzzXWriter(f *testing.F) {
	for _, s := range []string{
		"# get https://git.test/repo?go-get=1\n# get https://git.test/repo?go-get=1: 200 OK (0.014s)\n",
		"cd /m/cache/vcs/1; git ls-remote -q origin\n0.063s # cd /m/cache/vcs/1; git ls-remote -q origin\n",
		"go: git.test/repo@v9.0.0: invalid version\n\tfatal: something\n", "1.5s # git fetch",
		"99999999999999999999s # git fetch\n", "# get https://x.test: 200 OK (99999999999.5s)\n",
		"0.000000000001s # x\n", "9223372036.854775s # x\n", "# get : 200 OK (1s)\n", "mkdir -p /x\nrm -rf /y\n# lock /z\n", "\n\n",
	} {
		f.Add(s, uint16(7))
	}
	f.Fuzz(func(t *testing.T, stderr string, cut uint16) {
		if len(stderr) > maxXLine {
			return // a longer line is passed on in pieces, wherever the writes cut it
		}
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		run := func(piece int) ([]DirectStep, string) {
			var steps []DirectStep
			var rest bytes.Buffer
			w := &xWriter{fn: func(s DirectStep) { steps = append(steps, s) }, rest: &rest,
				now: func() time.Time { return now }, hide: func(s string) string { return s }}
			for i := 0; i < len(stderr); i += piece {
				w.Write([]byte(stderr[i:min(i+piece, len(stderr))]))
			}
			w.flush()
			return steps, rest.String()
		}
		steps, rest := run(max(len(stderr), 1))
		for _, s := range steps {
			if s.Took < 0 || s.Start.After(now) {
				t.Fatalf("step %+v: took %v, started after its line arrived", s, s.Took)
			}
			if s.Kind != DirectStepLookup && s.Kind != DirectStepVCS {
				t.Fatalf("step of kind %q", s.Kind)
			}
		}
		for _, line := range strings.SplitAfter(rest, "\n") {
			if line != "" && !strings.HasSuffix(line, "\n") {
				t.Fatalf("message %q passed on without its newline", line)
			}
		}
		if strings.Count(rest, "\n") > strings.Count(stderr, "\n")+1 {
			t.Fatalf("%d message lines from %d lines", strings.Count(rest, "\n"), strings.Count(stderr, "\n")+1)
		}
		steps2, rest2 := run(int(cut%64) + 1)
		if !reflect.DeepEqual(steps, steps2) || rest != rest2 {
			t.Fatalf("cut every %d bytes: %+v %q; whole: %+v %q", cut%64+1, steps2, rest2, steps, rest)
		}
	})
}
