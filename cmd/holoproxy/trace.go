package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	rtrace "runtime/trace"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/progress"
	"github.com/holoproxy/holoproxy/internal/report"
	"github.com/holoproxy/holoproxy/internal/trace"
)

// traceOptions are the flags of holoproxy trace.
type traceOptions struct {
	proxy        string
	goMod        string
	jobs         int
	count        int
	compare      string
	html         string
	json         string
	runtimeTrace string
	progress     string
	gomodcache   string
	upstream     upstreamFlags
	direct       directOptions
}

func newTraceCmd() *cobra.Command {
	var o traceOptions
	cmd := &cobra.Command{
		Use:   "trace [flags] [--go-mod PATH | module[@version] ... | -- COMMAND [ARG ...]]",
		Short: "Diagnose a GOPROXY chain phase by phase: DNS, connect, TLS, first byte, transfer",
		Long: "trace makes the requests the go command makes for the modules named (module or\n" +
			"module@version; default every module of the go.mod in the current directory, or of\n" +
			"--go-mod, with its go.sum) against each proxy of the chain on its own and against the\n" +
			"chain as a whole with its fall-through rules, through the networking `serve` uses, and\n" +
			"reports where the time went: per upstream and phase, as a terminal report on stdout\n" +
			"and, with --html and --json, as a standalone page and a JSON document\n" +
			"(docs/trace-json.md).\n\n" +
			"--compare runs the chain in several configurations side by side: 'transports' (a fresh\n" +
			"transport per pass and proxy, as a series of go commands, against one shared transport,\n" +
			"as serve) or 'dns=BACKEND,BACKEND,...' (one run per resolver backend).\n\n" +
			"A direct entry is traced too: the go command fetches from the version control origin\n" +
			"(GOPROXY=direct, as a client would, in a module cache of the trace's own that starts\n" +
			"empty and is removed at the end), and each request shows its go-get lookups, version\n" +
			"control commands and the go command's own work. --direct-jobs 0 leaves it untraced.\n\n" +
			"Exit status: 0 when every request through the chain succeeded, 1 when some failed (the\n" +
			"reports are still written), 2 for bad usage. A proxy alone answering 404 for a module\n" +
			"the chain finds elsewhere is not a failure.\n\n" +
			"trace -- COMMAND records a real command instead (go build ./..., go test ./...,\n" +
			"go mod download): it runs COMMAND with GOPROXY pointed at a relay on the loopback\n" +
			"interface that passes each of its requests to the chain's proxies, and reports every\n" +
			"upstream exchange the command caused and how much of its wall time they took. The\n" +
			"command's module cache starts empty (a CI job without a cache) unless --gomodcache\n" +
			"names one; its output goes to stderr. Exit status 1 when the command failed.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if err := checkRecordFlags(cmd, &o, args, dash); err != nil {
					return err
				}
				ctx, stop := signal.NotifyContext(cmd.Context(), stopSignals...)
				defer stop()
				return runRecord(ctx, cmd, o, args[dash:])
			}
			if onCommandLine(cmd, "gomodcache") {
				return usagef("--gomodcache is for a recorded command (trace -- COMMAND)")
			}
			if err := checkTraceFlags(cmd, &o, args); err != nil {
				return err
			}
			targets, what, err := traceTargets(o, args)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), stopSignals...)
			defer stop()
			return runTrace(ctx, cmd, o, targets, what)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.proxy, "proxy", "", "the chain to trace, a `LIST` in GOPROXY syntax (default: the output of 'go env GOPROXY')")
	f.StringVar(&o.goMod, "go-mod", "", "trace every module of the go.mod at `PATH` and its go.sum, as 'go mod download all' fetches them")
	f.IntVarP(&o.jobs, "jobs", "j", runtime.GOMAXPROCS(0), "modules fetched at once (the go command uses GOMAXPROCS)")
	f.IntVar(&o.count, "count", 1, "repeat the workload this many times in each run")
	f.StringVar(&o.compare, "compare", "", "run the chain in several configurations side by side; `SPEC` is transports (fresh against shared) or dns=BACKEND,BACKEND,...")
	f.StringVar(&o.html, "html", "", "also write the report as a standalone HTML page to `FILE`")
	f.StringVar(&o.json, "json", "", "also write every observation as JSON (docs/trace-json.md) to `FILE`")
	f.StringVar(&o.runtimeTrace, "runtime-trace", "", "write a Go runtime trace with one task per request and a region per phase to `FILE` (see it with 'go tool trace FILE')")
	f.StringVar(&o.progress, "progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), bar (always; --progress alone), plain or off")
	f.Lookup("progress").NoOptDefVal = "bar"
	f.StringVar(&o.gomodcache, "gomodcache", "", "with -- COMMAND: the module cache the command uses, e.g. \"$(go env GOMODCACHE)\" to see what a developer's machine fetches (default: an empty one, removed at the end)")
	o.upstream.register(f)
	o.direct.register(f)
	return cmd
}

// checkTraceFlags returns a usage error for flags that cannot work together or alone.
func checkTraceFlags(cmd *cobra.Command, o *traceOptions, args []string) error {
	if o.goMod != "" && len(args) > 0 {
		return usagef("give modules or --go-mod, not both")
	}
	if o.jobs < 1 {
		return usagef("--jobs must be at least 1, not %d", o.jobs)
	}
	if o.count < 1 {
		return usagef("--count must be at least 1, not %d", o.count)
	}
	switch o.progress {
	case "auto", "bar", "plain", "off":
	default:
		return usagef("--progress %q: want auto, bar, plain or off", o.progress)
	}
	if err := o.upstream.check(cmd); err != nil {
		return err
	}
	if err := o.direct.check(); err != nil {
		return err
	}
	if strings.HasPrefix(o.compare, "dns=") && cmd.Flags().Changed("dns") {
		return usagef("--dns and --compare dns=... both choose the resolver: give one")
	}
	if o.compare != "" {
		// The chain does not matter to a comparison's shape; check the spec now, before
		// `go env` is asked for the chain.
		if _, err := trace.CompareSetups(o.compare, "off", o.upstream.dns); err != nil {
			return usagef("--compare %v", err)
		}
	}
	return checkReportPaths(o)
}

// traceTargets returns the workload: the modules named, else the modules of --go-mod (or
// ./go.mod), and a few words saying what it is for the report's title.
func traceTargets(o traceOptions, args []string) ([]trace.Target, string, error) {
	if len(args) > 0 {
		ts, err := trace.ParseTargets(args)
		if err != nil {
			return nil, "", usagef("bad module: %v", err)
		}
		what := args[0]
		if len(args) > 1 {
			what = fmt.Sprintf("%d modules", len(args))
		}
		return ts, what, nil
	}
	path := o.goMod
	if path == "" {
		path = "go.mod"
		if _, err := os.Stat(path); err != nil {
			return nil, "", usagef("nothing to trace: name modules, or give --go-mod (no go.mod in the current directory)")
		}
	}
	ts, err := trace.TargetsFromGoMod(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", usagef("--go-mod: %v", err)
	}
	if err != nil {
		return nil, "", err
	}
	if len(ts) == 0 {
		return nil, "", usagef("nothing to trace: %s requires no module", path)
	}
	return ts, fmt.Sprintf("%s (%d module versions)", path, len(ts)), nil
}

// runTrace runs the trace, writes the reports and turns failures through the chain into
// the exit status.
func runTrace(ctx context.Context, cmd *cobra.Command, o traceOptions, targets []trace.Target, what string) error {
	list, chain, err := traceChain(ctx, o, func(c *goproxy.Chain) error {
		if len(c.Clients()) == 0 && !(c.HasDirect() && o.direct.jobs > 0) {
			return errors.New("no proxy to trace (off is not traced, nor direct with --direct-jobs 0)")
		}
		return nil
	})
	if err != nil {
		return err
	}
	traceDirect := chain.HasDirect() && o.direct.jobs > 0
	stderr := cmd.ErrOrStderr()
	if chain.HasDirect() && !traceDirect {
		fmt.Fprintf(stderr, "holoproxy trace: direct is not traced (--direct-jobs 0): the chain ends there\n")
	}
	setups, err := trace.CompareSetups(o.compare, list, o.upstream.dns)
	if err != nil {
		return usagef("--compare %v", err)
	}
	creds, stopTrace, err := traceStart(ctx, o, list, stderr)
	if err != nil {
		return err
	}
	defer stopTrace()
	opt := trace.Options{
		Proxy:       list,
		Credentials: creds,
		Targets:     targets,
		Jobs:        o.jobs,
		Count:       o.count,
		Transport:   o.upstream.transportConfig(),
	}
	if traceDirect {
		opt.Direct = &trace.DirectOptions{Jobs: o.direct.jobs, Timeout: o.direct.timeout}
	}
	bar := progressBar(stderr, o.progress)
	if bar != nil {
		opt.Progress = bar.Set
		defer bar.Stop()
	}
	t, err := trace.Run(ctx, opt, setups)
	if bar != nil {
		bar.Stop() // before the report: the bar's line must be ended first
	}
	if err != nil {
		return err
	}
	t.Title = what + ", " + t.Title
	if !strings.HasPrefix(o.compare, "dns=") && o.upstream.dns != "system" {
		t.Title += ", DNS " + o.upstream.dns
	}
	if o.count > 1 {
		t.Title += fmt.Sprintf(", %d passes", o.count)
	}
	if err := writeTraceReports(cmd.OutOrStdout(), o, t, stderr); err != nil {
		return err
	}
	if failed, requests := trace.ChainFailures(setups, t); failed > 0 {
		return fmt.Errorf("%d of %d requests through the chain failed", failed, requests)
	}
	return nil
}

// progressBar returns the progress display mode asks for on w, or nil for none: auto is a
// bar when w is a terminal.
func progressBar(w io.Writer, mode string) *progress.Bar {
	switch mode {
	case "bar":
		return progress.New(w, "requests", 0)
	case "plain":
		return progress.NewPlain(w, "requests", 0)
	case "auto":
		if isTerminal(w) {
			return progress.New(w, "requests", 0)
		}
	}
	return nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// writeTraceReports writes the terminal report to stdout (in colour, fitted to the width,
// when stdout is a terminal) and the HTML and JSON files asked for.
func writeTraceReports(stdout io.Writer, o traceOptions, t report.Trace, stderr io.Writer) error {
	topt := report.TerminalOptions{}
	if isTerminal(stdout) {
		topt.Color = true
		if w, _, err := term.GetSize(int(stdout.(*os.File).Fd())); err == nil && w >= 60 {
			topt.Width = w
		}
	}
	var errs []error
	if err := report.WriteTerminal(stdout, t, topt); err != nil {
		errs = append(errs, fmt.Errorf("terminal report: %w", err))
	}
	files := []struct {
		path  string
		write func(io.Writer) error
	}{
		{o.html, func(w io.Writer) error { return report.WriteHTML(w, t, report.HTMLOptions{}) }},
		{o.json, func(w io.Writer) error { return report.WriteJSON(w, t) }},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if err := writeFile(f.path, f.write); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stderr, "holoproxy trace: wrote %s\n", f.path)
	}
	return errors.Join(errs...)
}

// writeFile writes path with write, reporting the first failure of writing or closing.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// checkRecordFlags returns a usage error for a recorded command (trace -- COMMAND) given
// flags that only shape trace's own workload, or no command.
func checkRecordFlags(cmd *cobra.Command, o *traceOptions, args []string, dash int) error {
	if dash > 0 {
		return usagef("give modules or -- COMMAND, not both")
	}
	if len(args) == 0 {
		return usagef("-- must be followed by the command to record")
	}
	// Given by an environment twin (HOLOPROXY_JOBS is warm's too), they are ignored.
	for _, name := range []string{"go-mod", "jobs", "count", "compare", "progress", "direct-jobs", "direct-timeout"} {
		if onCommandLine(cmd, name) {
			return usagef("--%s does not apply to a recorded command (its own requests are recorded)", name)
		}
	}
	if err := o.upstream.check(cmd); err != nil {
		return err
	}
	if o.gomodcache != "" {
		if st, err := os.Stat(o.gomodcache); err != nil || !st.IsDir() {
			return usagef("--gomodcache %s: no such directory", o.gomodcache)
		}
	}
	return checkReportPaths(o)
}

// runRecord runs command through the relay of trace.Record, writes the reports, and turns
// the command's failure into the exit status.
func runRecord(ctx context.Context, cmd *cobra.Command, o traceOptions, command []string) error {
	list, _, err := traceChain(ctx, o, func(c *goproxy.Chain) error {
		if len(c.Clients()) == 0 {
			return errors.New("no proxy to relay to (the command's direct and off are its own)")
		}
		return nil
	})
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	creds, stopTrace, err := traceStart(ctx, o, list, stderr)
	if err != nil {
		return err
	}
	defer stopTrace()
	t, err := trace.Record(ctx, trace.RecordOptions{
		Proxy:       list,
		Credentials: creds,
		Transport:   o.upstream.transportConfig(),
		DNS:         o.upstream.dns,
		Command:     command,
		ModCache:    o.gomodcache,
		Output:      stderr,
	})
	if err != nil {
		return err
	}
	t.Title = strings.Join(command, " ") + " (recorded), " + t.Title
	if o.upstream.dns != "system" {
		t.Title += ", DNS " + o.upstream.dns
	}
	if err := writeTraceReports(cmd.OutOrStdout(), o, t, stderr); err != nil {
		return err
	}
	if c := t.Runs[0].Command; c.Error != "" {
		return fmt.Errorf("%s: %s", command[0], c.Error)
	}
	return nil
}

// traceChain returns the list to trace (--proxy, else go env GOPROXY) and its chain;
// usable says why a chain cannot be traced. A bad --proxy is a usage error.
func traceChain(ctx context.Context, o traceOptions, usable func(*goproxy.Chain) error) (string, *goproxy.Chain, error) {
	list, err := proxyList(ctx, o.proxy, "proxy")
	if err != nil {
		return "", nil, err
	}
	chain, err := goproxy.ParseChain(list, nil)
	if err == nil {
		err = usable(chain)
	}
	if err != nil && o.proxy != "" {
		return "", nil, usagef("--proxy %q: %v", goproxy.Redact(list), err)
	}
	if err != nil {
		return "", nil, fmt.Errorf("GOPROXY %q (from go env): %w; pass --proxy", goproxy.Redact(list), err)
	}
	return list, chain, nil
}

// traceStart starts the runtime trace --runtime-trace asks for and reads the credentials
// of list's proxies; stop ends the runtime trace and the GOAUTH commands still running.
func traceStart(ctx context.Context, o traceOptions, list string, stderr io.Writer) (creds *goproxy.Credentials, stop func(), err error) {
	stop = func() {}
	if o.runtimeTrace != "" {
		if stop, err = startRuntimeTrace(o.runtimeTrace, stderr); err != nil {
			return nil, nil, err
		}
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "holoproxy trace: "+format+"\n", args...) }
	creds, err = upstreamCredentials(ctx, list, logf)
	if err != nil {
		stop()
		return nil, nil, err
	}
	stopTrace := stop
	stop = func() {
		closeCredentials(creds, logf)
		stopTrace()
	}
	return creds, stop, nil
}

// checkReportPaths returns a usage error when a report file of o would go to a directory
// that does not exist.
func checkReportPaths(o *traceOptions) error {
	for _, p := range []struct{ flag, path string }{{"html", o.html}, {"json", o.json}, {"runtime-trace", o.runtimeTrace}} {
		if p.path == "" {
			continue
		}
		if st, err := os.Stat(filepath.Dir(p.path)); err != nil || !st.IsDir() {
			return usagef("--%s %s: no such directory %s", p.flag, p.path, filepath.Dir(p.path))
		}
	}
	return nil
}

// startRuntimeTrace starts a Go runtime trace into path; stop ends it and closes the file,
// reporting a failure on stderr.
func startRuntimeTrace(path string, stderr io.Writer) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("runtime trace: %w", err)
	}
	if err := rtrace.Start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("runtime trace: %w", err)
	}
	return func() {
		rtrace.Stop()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "holoproxy: runtime trace: %v\n", err)
		}
	}, nil
}
