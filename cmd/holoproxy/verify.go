package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/holoproxy/holoproxy/internal/checksum"
	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/store"
)

// verifyOptions are the flags of holoproxy verify.
type verifyOptions struct {
	cacheDir string
	purge    bool
	upstream string
	timeout  time.Duration
	checks   checksumOptions
	shared   sharedOptions // --shared-cache: verify that bucket instead of the cache directory
}

func newVerifyCmd() *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Re-check every cached .mod and .zip against the checksum database",
		Long: "verify re-checks every .mod and .zip in a holoproxy cache directory against the\n" +
			"checksum database (the one serve verifies with) and, with --purge, removes the files\n" +
			"that fail, so that the next request fills them again. It can run beside a serve on\n" +
			"the same cache directory. Files of exempt modules (--gonosumdb, --goprivate) are not\n" +
			"looked up but checked to be whole: a .zip read through, a .mod that parses and names\n" +
			"its module.\n\n" +
			"Exit status: 0 when every file matched (or is exempt and whole), 1 when a file failed or could\n" +
			"not be checked (database unreachable, version unknown to it), 2 for bad usage.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkPositive(cmd, "timeout"); err != nil {
				return err
			}
			if err := o.shared.check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), stopSignals...)
			defer stop()
			return runVerify(ctx, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cacheDir, "cache-dir", "", "cache directory of holoproxy serve (default: holoproxy under the user cache directory, e.g. ~/.cache/holoproxy)")
	f.BoolVar(&o.purge, "purge", false, "remove the files that fail verification")
	f.StringVar(&o.upstream, "upstream", "", "upstream chain (GOPROXY syntax) whose proxies may serve the checksum database, used when --sumdb has no URL (default: 'go env GOPROXY')")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound on each request to the checksum database")
	addChecksumFlags(f, &o.checks)
	o.shared.register(f)
	f.Lookup("shared-cache").Usage = "verify the objects of this S3 bucket of serve --shared-cache (s3://BUCKET[/PREFIX]) instead of the cache directory; with --purge, remove those that fail (an object whose content does not match the SHA-256 recorded with it fails too)"
	f.Lookup("sumdb").Usage = "checksum database to verify against, in GOSUMDB syntax: name or name+key, either followed by a URL (default: the output of 'go env GOSUMDB')"
	return cmd
}

// runVerify verifies the store at o.cacheDir and writes one line per failure and the counts
// to out. It returns an error when a file failed or could not be checked.
func runVerify(ctx context.Context, o verifyOptions, out io.Writer) error {
	st, cacheDir, err := attachCache(o.cacheDir)
	if err != nil {
		return err
	}
	db, nosumdb, err := resolveSumDB(ctx, o.checks)
	if err != nil {
		return err
	}
	if db.Off {
		if db.Warning != "" {
			return usagef("%s", db.Warning)
		}
		return usagef("checksum database is off: pass --sumdb name+key [URL]")
	}
	t, err := netobs.NewTransport(netobs.TransportConfig{})
	if err != nil {
		return err
	}
	defer t.CloseIdleConnections()
	hc := &http.Client{Transport: userAgentTransport{rt: t, ua: userAgent()}}
	var upstreams []string
	if db.URL == "" {
		// The go command's rule: the first upstream proxy that serves the database.
		list, err := proxyList(ctx, o.upstream, "upstream")
		if err != nil {
			return err
		}
		logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "holoproxy verify: "+format+"\n", args...) }
		creds, err := upstreamCredentials(ctx, list, logf)
		if err != nil {
			return err
		}
		defer closeCredentials(creds, logf)
		hc.Transport = creds.RoundTripper(hc.Transport)
		chain, err := goproxy.ParseChain(list, hc)
		if err != nil {
			return usagef("--upstream %q: %v", goproxy.Redact(list), err)
		}
		for _, c := range chain.Clients() {
			upstreams = append(upstreams, c.Name())
		}
	}
	v, err := checksum.NewVerifier(checksum.VerifierConfig{
		DB:      db,
		NoSumDB: nosumdb,
		Dir:     filepath.Join(cacheDir, sumdbStateDir),
		BaseURL: checksum.ResolveBaseURL(db, upstreams, hc, o.timeout, 0),
		Client:  hc,
		Timeout: o.timeout,
		Logger:  discardLogger(),
	})
	if err != nil {
		return err
	}
	var target store.Store = st
	where := cacheDir
	if o.shared.url != "" {
		b, _, err := o.shared.newBucket(ctx, t) // not hc: upstream credentials are not the bucket's
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, o.timeout)
		err = b.Check(cctx)
		cancel()
		if err != nil {
			return err
		}
		target, where = &store.BucketStore{Bucket: b}, b.String()
	}
	rep, err := checksum.VerifyStore(ctx, target, v, o.purge)
	for _, f := range rep.Failures {
		purged := ""
		if f.Purged {
			purged = " (purged)"
		}
		fmt.Fprintf(out, "FAIL %s: %s%s\n", f.Key, f.Reason, purged)
	}
	for _, f := range rep.Unverifiable {
		fmt.Fprintf(out, "UNVERIFIED %s: %s\n", f.Key, f.Reason)
	}
	fmt.Fprintf(out, "%s (%s, database %s)\n", rep, where, db.Name)
	if err != nil {
		return fmt.Errorf("verify stopped: %w", err)
	}
	if !rep.Clean() {
		return fmt.Errorf("%d of %d files failed verification (%d removed), %d could not be checked",
			rep.Failed, rep.Checked, rep.Purged, rep.Unverified)
	}
	return nil
}

// discardLogger drops the Verifier's log lines: verify reports every failure itself.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
