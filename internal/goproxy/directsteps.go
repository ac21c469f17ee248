package goproxy

import (
	"bytes"
	"context"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kinds of DirectStep.
const (
	// DirectStepLookup is an HTTP GET of the go command's go-get discovery
	// (https://host/path?go-get=1), which finds the repository of a module path.
	DirectStepLookup = "lookup"
	// DirectStepVCS is a version control command (git ls-remote, git fetch, ...).
	DirectStepVCS = "vcs"
	// DirectStepRun is a run of the go command as a whole.
	DirectStepRun = "run"
)

// DirectStep is one timed step of a fetch through a Direct, as the go command's -x output
// times it: each go-get lookup and each version control command, and the run itself.
type DirectStep struct {
	// Kind is DirectStepLookup, DirectStepVCS or DirectStepRun.
	Kind string
	// Command says what ran: "GET https://git.test/repo?go-get=1", "git ls-remote -q
	// --end-of-options origin", "go list -m -json git.test/repo@v1.0.0". The runs' own
	// directories show as $GOMODCACHE, as in Direct's errors.
	Command string
	// Start is when the step began and Took how long it lasted. The go command prints
	// durations with millisecond resolution; Start is when its line arrived less Took.
	Start time.Time
	Took  time.Duration
	// Result is, for a lookup, the status or error the go command printed ("200 OK",
	// "404 Not Found"); for a run, its failure ("" when it succeeded); empty for vcs.
	Result string
}

type directStepsKey struct{}

// WithDirectSteps returns a context whose fetches through a Direct run the go command
// with -x and tell fn of every step, as each ends (a run after its steps). Calls come one
// at a time for a run, from a goroutine of the run. A fetch that shares the run of an
// earlier one (the same arguments at the same time) is told nothing: its steps go to the
// context of the fetch that started the run. Without it (serve, warm) runs go without -x.
func WithDirectSteps(ctx context.Context, fn func(DirectStep)) context.Context {
	return context.WithValue(ctx, directStepsKey{}, fn)
}

func directStepsFrom(ctx context.Context) func(DirectStep) {
	fn, _ := ctx.Value(directStepsKey{}).(func(DirectStep))
	return fn
}

// withX returns args with -x after the go subcommand ("list", "mod download").
func withX(args []string) []string {
	at := 1
	if len(args) > 1 && args[0] == "mod" {
		at = 2
	}
	if len(args) < at {
		return args
	}
	out := append([]string(nil), args[:at]...)
	out = append(out, "-x")
	return append(out, args[at:]...)
}

var (
	// "# get https://git.test/repo?go-get=1: 200 OK (0.014s)", the end of a GET.
	xLookupRE = regexp.MustCompile(`^# get (\S+): (.*) \(([0-9]+(?:\.[0-9]+)?)s\)$`)
	// "0.063s # cd DIR; git ls-remote -q origin", the end of a version control command.
	xTimedRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)s # (.*)$`)
)

// xWriter is the stderr of a run with -x: the lines -x adds become DirectSteps for fn;
// the others (the go command's messages) go on to rest.
type xWriter struct {
	fn   func(DirectStep)
	rest io.Writer
	hide func(string) string
	now  func() time.Time
	buf  []byte
}

// maxXLine bounds a line held while waiting for its end.
const maxXLine = 64 << 10

func (w *xWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxXLine {
		w.rest.Write(w.buf)
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// flush passes on a last line without its newline.
func (w *xWriter) flush() {
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

// seconds reads a duration the go command printed in seconds ("0.014"); 0 for one that
// does not read or that no time.Duration holds (converting it would overflow).
func seconds(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	ns := f * float64(time.Second)
	if err != nil || ns < 0 || ns >= math.MaxInt64 { // float64(MaxInt64) is 2^63, the first too large
		return 0
	}
	return time.Duration(ns)
}

func (w *xWriter) line(l string) {
	if m := xLookupRE.FindStringSubmatch(l); m != nil {
		took := seconds(m[3])
		w.fn(DirectStep{Kind: DirectStepLookup, Command: "GET " + m[1], Start: w.now().Add(-took), Took: took, Result: w.hide(m[2])})
		return
	}
	if m := xTimedRE.FindStringSubmatch(l); m != nil {
		took := seconds(m[1])
		cmd := m[2]
		if strings.HasPrefix(cmd, "cd ") {
			if _, after, ok := strings.Cut(cmd, "; "); ok {
				cmd = after
			}
		}
		w.fn(DirectStep{Kind: DirectStepVCS, Command: w.hide(cmd), Start: w.now().Add(-took), Took: took})
		return
	}
	// The other lines -x adds: "# get URL" (a GET begins), "# lock ...", "# DIR for git3
	// URL", "cd DIR; git ..." (a command begins), "mkdir -p ...", "rm -rf ...".
	for _, prefix := range []string{"# ", "cd ", "mkdir ", "rm "} {
		if strings.HasPrefix(l, prefix) {
			return
		}
	}
	w.rest.Write([]byte(l + "\n"))
}
