package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/holoproxy/holoproxy/internal/store"
)

// trimOptions are the flags of holoproxy trim.
type trimOptions struct {
	cacheDir string
	maxSize  byteSize
}

func newTrimCmd() *cobra.Command {
	var o trimOptions
	cmd := &cobra.Command{
		Use:   "trim",
		Short: "Bring a cache directory under a size, deleting the least recently read zips",
		Long: "trim makes one pass of serve's --cache-max-size over a cache directory: when its\n" +
			"files take more than --max-size, the .zip files read longest ago are deleted until\n" +
			"they take 90% of it (.mod and .info files stay). For caches no serve bounds: a\n" +
			"tree made by warm --to, a cache a CI system saves between runs. It can run beside a\n" +
			"serve on the same directory.\n\n" +
			"Exit status: 0 when the directory is under --max-size afterwards, 1 when it is not\n" +
			"(what is left is not zips) or it could not be read, 2 for bad usage.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.maxSize <= 0 {
				return usagef("--max-size: want a size above 0, e.g. 10GiB")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), stopSignals...)
			defer stop()
			return runTrim(ctx, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cacheDir, "cache-dir", "", "cache directory (default: holoproxy under the user cache directory, e.g. ~/.cache/holoproxy)")
	f.Var(&o.maxSize, "max-size", "the size to bring the directory under (e.g. 10GiB); required")
	return cmd
}

// runTrim makes one eviction pass and reports it on out.
func runTrim(ctx context.Context, o trimOptions, out io.Writer) error {
	st, cacheDir, err := attachCache(o.cacheDir)
	if err != nil {
		return err
	}
	res, err := store.NewEvictor(st, store.EvictorConfig{Max: int64(o.maxSize), Logger: discardLogger()}).Pass(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "trim: deleted %d zips (%s); %s left of %s\n", res.Deleted, byteSize(res.Freed).String(),
		byteSize(res.Size).String(), o.maxSize.String())
	if res.Size > int64(o.maxSize) {
		return fmt.Errorf("%s is still over %s: what is left is not zips", cacheDir, o.maxSize.String())
	}
	return nil
}
