package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/holoproxy/holoproxy/internal/checksum"
	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/warm"
)

// warmOptions are the flags of holoproxy warm.
type warmOptions struct {
	proxy      string
	to         []string
	gomodcache []string
	push       []string
	jobs       int
	check      bool
	sumdb      bool
	gosumdb    string
	sumdbDir   string
	direct     directOptions
	directMax  byteSize // --direct-max-size
	toolchain  bool
	progress   string
	timeout    time.Duration
	net        upstreamFlags // --dns, --ca-file and the phase timeouts (upstream.go)
}

func newWarmCmd() *cobra.Command {
	var o warmOptions
	cmd := &cobra.Command{
		Use:   "warm [flags] [DIR|go.mod|go.work ...]",
		Short: "Fetch every module a project needs, verified, into a file tree, a GOMODCACHE or a running holoproxy",
		Long: "warm reads the go.sum files of the projects named (a directory holding go.work or go.mod,\n" +
			"a go.mod, a go.work; default the current directory) and fetches what `go mod download all`\n" +
			"would: .info, .mod and .zip for every go.sum zip line, .info and .mod for every /go.mod line.\n" +
			"Each .mod and .zip is checked against its go.sum hash before anything of the module is written.\n" +
			"Files a destination already holds, verified, are skipped, so an interrupted run resumes.\n\n" +
			"Destinations (at least one): --to DIR writes a GOPROXY file tree (use it as GOPROXY=file:///DIR),\n" +
			"--gomodcache DIR fills a module cache (GOMODCACHE=DIR GOPROXY=off go build), --push URL asks a\n" +
			"running holoproxy for every file so its cache holds them.\n\n" +
			"Exit status: 0 when everything is in place, 1 when a module failed (or, with --check, when\n" +
			"something is missing), 2 for bad usage.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(o.to)+len(o.gomodcache)+len(o.push) == 0 {
				return usagef("no destination: give --to DIR, --gomodcache DIR or --push URL")
			}
			if o.jobs < 1 {
				return usagef("--jobs must be at least 1, not %d", o.jobs)
			}
			if o.check && len(o.push) > 0 {
				return usagef("--check cannot check a --push destination without filling it")
			}
			if err := checkPositive(cmd, "timeout"); err != nil {
				return err
			}
			if err := o.direct.check(); err != nil {
				return err
			}
			if err := o.net.check(cmd); err != nil {
				return err
			}
			var bar bool
			switch o.progress {
			case "auto":
				bar = stderrIsTerminal(os.Stderr)
			case "bar":
				bar = true
			case "plain", "off":
			default:
				return usagef("--progress %q: want auto, bar, plain or off", o.progress)
			}
			plan, err := warm.Load(args, warm.LoadOptions{Toolchain: o.toolchain})
			if errors.Is(err, warm.ErrUsage) {
				return &usageError{err}
			}
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), stopSignals...)
			defer stop()
			if _, set := os.LookupEnv("GOGC"); !set {
				// A short run whose live heap stays small (buffers of the jobs in flight)
				// spent an eighth of its CPU in GC at the default; trade a little memory.
				debug.SetGCPercent(400)
			}
			var prog *warm.Progress
			if o.progress != "off" {
				prog = warm.NewProgress(cmd.ErrOrStderr(), bar, 0)
			}
			return runWarm(ctx, cmd, o, plan, prog)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.proxy, "proxy", "", "where to fetch from, in GOPROXY syntax (default: the output of 'go env GOPROXY')")
	f.StringArrayVar(&o.to, "to", nil, "write a GOPROXY file tree at this directory (repeatable)")
	f.StringArrayVar(&o.gomodcache, "gomodcache", nil, "fill the module cache at this directory (repeatable)")
	f.StringArrayVar(&o.push, "push", nil, "ask the holoproxy at this URL for every file (repeatable)")
	f.IntVarP(&o.jobs, "jobs", "j", warm.DefaultJobs, "module versions fetched at once")
	f.BoolVar(&o.check, "check", false, "fetch nothing: report whether the destinations hold everything (exit 0) or list what is missing (exit 1)")
	f.BoolVar(&o.sumdb, "sumdb", false, "also verify every .mod and .zip against the checksum database (GOSUMDB)")
	f.StringVar(&o.gosumdb, "gosumdb", "", "the checksum database for --sumdb, in GOSUMDB syntax (default: the output of 'go env GOSUMDB')")
	f.StringVar(&o.sumdbDir, "sumdb-dir", "", "where --sumdb keeps the database's verified state (default: holoproxy/sumdb under the user cache directory)")
	f.BoolVar(&o.toolchain, "toolchain", false, "also fetch the Go toolchain each go.mod or go.work makes an older go command download (GOTOOLCHAIN=auto): its toolchain line, or its go line's release when newer")
	f.StringVar(&o.progress, "progress", "auto", "progress on stderr: auto (a bar on a terminal, else a periodic line), bar, plain or off")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on each upstream request")
	o.direct.register(f)
	f.Var(&o.directMax, "direct-max-size", "after warming, keep the version control clones of direct (holoproxy/direct under the user cache directory, kept between runs so the next run fetches rather than clones) under this size by deleting those used longest ago; 0 keeps them all")
	o.net.register(f)
	return cmd
}

// runWarm wires the destinations, the observed transport and the optional checksum
// database to warm.Run (or warm.Check) and reports the outcome.
func runWarm(ctx context.Context, cmd *cobra.Command, o warmOptions, plan *warm.Plan, prog *warm.Progress) error {
	stderr := cmd.ErrOrStderr()
	var dests []warm.Dest
	for _, dir := range o.to {
		d, err := warm.NewTreeDest(dir, o.check)
		if err != nil {
			return err
		}
		defer d.Close()
		dests = append(dests, d)
	}
	for _, dir := range o.gomodcache {
		d, err := warm.NewModCacheDest(dir, o.check)
		if err != nil {
			return err
		}
		defer d.Close()
		dests = append(dests, d)
	}
	if o.check {
		missing, err := warm.Check(ctx, plan, dests, o.jobs)
		if err != nil {
			return err
		}
		for _, m := range missing {
			fmt.Fprintf(cmd.OutOrStdout(), "missing %s in %s\n", m.File, m.Dest)
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d files missing", len(missing), plan.Files()*len(dests))
		}
		fmt.Fprintf(stderr, "warm: all %d modules (%d files) present in every destination\n", len(plan.Items), plan.Files())
		return nil
	}

	var samples warm.Samples
	backend, err := o.net.backend()
	if err != nil {
		return err
	}
	cfg := o.net.transportConfig()
	cfg.Resolver, cfg.Sink = &netobs.Resolver{Backend: backend}, &samples
	tr, err := netobs.NewTransport(cfg)
	if err != nil {
		return fmt.Errorf("upstream transport: %w", err)
	}
	defer tr.CloseIdleConnections()
	hc := tr.Client()
	for _, u := range o.push {
		if _, err := goproxy.NewClient(u, hc); err != nil {
			return usagef("--push %q: %v", goproxy.Redact(u), err)
		}
		dests = append(dests, &warm.PushDest{URL: u, Client: hc, Timeout: o.timeout})
	}
	list, err := proxyList(ctx, o.proxy, "proxy")
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "warm: "+format+"\n", args...) }
	creds, err := upstreamCredentials(ctx, list, logf)
	if err != nil {
		return err
	}
	defer closeCredentials(creds, logf)
	if !creds.Empty() {
		hc = &http.Client{Transport: creds.RoundTripper(hc.Transport)}
	}
	chain, err := goproxy.ParseChain(list, hc)
	if err != nil {
		return usagef("--proxy %q: %v", goproxy.Redact(list), err)
	}
	var direct *goproxy.Direct
	if chain.HasDirect() && o.direct.jobs > 0 {
		base, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no directory for direct's module cache (%w): set HOME or XDG_CACHE_HOME, or pass --direct-jobs 0", err)
		}
		d, err := newDirect(ctx, o.direct, []string{list}, filepath.Join(base, "holoproxy", "direct"), "", nil, nil)
		if err != nil {
			return err
		}
		chain.UseDirect(d)
		direct = d
		defer closeDirect(d, logf) // an interrupted warm leaves no clone running
	}
	var verifier *checksum.Verifier
	if o.sumdb {
		if verifier, err = warmVerifier(ctx, o, chain, hc); err != nil {
			return err
		}
	}
	res, err := warm.Run(ctx, plan, warm.Config{
		Chain:    chain,
		Dests:    dests,
		Jobs:     o.jobs,
		Verifier: verifier,
		Timeout:  o.timeout,
		Progress: prog,
	})
	warm.WriteSummary(stderr, res, samples.All())
	if direct != nil && o.directMax > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		pr, perr := direct.Prune(pctx, int64(o.directMax), int64(o.directMax)/10*9)
		cancel()
		switch {
		case perr != nil:
			fmt.Fprintf(stderr, "holoproxy warm: keeping direct's clones under --direct-max-size: %v\n", perr)
		case pr.Clones > 0:
			fmt.Fprintf(stderr, "direct: %d clones removed (%s -> %s, --direct-max-size %s): %s\n", pr.Clones,
				humanize.IBytes(uint64(pr.Size)), humanize.IBytes(uint64(pr.After)), o.directMax, strings.Join(pr.Removed, " "))
		}
	}
	if err != nil {
		return err
	}
	if len(res.Failures) > 0 {
		return fmt.Errorf("%d of %d modules failed", len(res.Failures), res.Modules)
	}
	return nil
}

// warmVerifier makes the checksum database verifier for --sumdb, configured as the go
// command would be: GOSUMDB (or --gosumdb), GONOSUMDB/GOPRIVATE, keys from GOROOT.
func warmVerifier(ctx context.Context, o warmOptions, chain *goproxy.Chain, hc *http.Client) (*checksum.Verifier, error) {
	env, err := goEnv(ctx, "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GOROOT")
	if err != nil {
		return nil, err
	}
	value := o.gosumdb
	if value == "" {
		value = env[0]
	}
	db, err := checksum.ParseGOSUMDB(value, env[3])
	if err != nil {
		return nil, usagef("checksum database %q: %v", value, err)
	}
	if db.Off {
		return nil, usagef("--sumdb with GOSUMDB=off: name a database with --gosumdb")
	}
	dir := o.sumdbDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("no default directory for the checksum database state (%w): pass --sumdb-dir", err)
		}
		dir = filepath.Join(base, "holoproxy", "sumdb")
	}
	var upstreams []string
	for _, c := range chain.Clients() {
		upstreams = append(upstreams, c.Name())
	}
	return checksum.NewVerifier(checksum.VerifierConfig{
		DB:      db,
		NoSumDB: checksum.NoSumDBPatterns(env[1], env[2]),
		Dir:     dir,
		BaseURL: checksum.ResolveBaseURL(db, upstreams, hc, 0, 0),
		Client:  hc,
	})
}

// stderrIsTerminal reports whether f is a terminal (a character device).
func stderrIsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
