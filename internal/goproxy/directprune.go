package goproxy

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// PruneResult is what a Prune found and did.
type PruneResult struct {
	// Size is the bytes of Direct's directory before the pass, After after it.
	Size, After int64
	// Clones are the version control clones removed, Bytes what they held.
	Clones int
	Bytes  int64
	// Removed names the repositories whose clones went ("git3:https://git.test/repo").
	Removed []string
}

// Size returns the bytes of the files under Direct's directory: its module cache (the
// version control clones, and the .info and .mod files runs left), its build cache.
func (d *Direct) Size(ctx context.Context) (int64, error) {
	return dirSize(ctx, d.root)
}

// Prune keeps Direct's directory under max bytes: when it holds more, the version
// control clones used longest ago are removed until it holds low bytes at most (a clone
// counts as used when the go command last read its .info file, which it does on every
// use: the access time, which Linux's default relatime updates at most once a day, else
// the time it was made). A removed clone costs the next fetch from its repository a
// clone again. If removing every clone is not enough, the .info and .mod files runs left
// go too. Runs wait while files are removed (not while sizes are measured).
func (d *Direct) Prune(ctx context.Context, max, low int64) (PruneResult, error) {
	var res PruneResult
	size, err := d.Size(ctx)
	res.Size, res.After = size, size
	if err != nil || size <= max {
		return res, err
	}
	type clone struct {
		dir, key string
		used     time.Time
		bytes    int64
	}
	vcs := filepath.Join(d.modRoot, "cache", "vcs")
	entries, err := os.ReadDir(vcs)
	if err != nil && !os.IsNotExist(err) {
		return res, fmt.Errorf("%s: %w", DirectName, err)
	}
	var clones []clone
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(vcs, e.Name())
		c := clone{dir: dir}
		if fi, err := os.Stat(dir + ".info"); err == nil {
			c.used = lastUse(fi)
			if key, err := os.ReadFile(dir + ".info"); err == nil {
				c.key = strings.TrimSpace(string(key))
			}
		} else if fi, err := os.Stat(dir); err == nil {
			c.used = fi.ModTime() // no .info: a clone the go command would start again
		}
		if c.bytes, err = dirSize(ctx, dir); err != nil {
			return res, err
		}
		clones = append(clones, c)
	}
	slices.SortFunc(clones, func(a, b clone) int { return cmp.Or(a.used.Compare(b.used), strings.Compare(a.dir, b.dir)) })

	// Every job slot: no run is using a clone while it goes.
	n := cap(d.sem)
	for i := 0; i < n; i++ {
		select {
		case d.sem <- struct{}{}:
		case <-ctx.Done():
			for ; i > 0; i-- {
				<-d.sem
			}
			return res, ctx.Err()
		}
	}
	defer func() {
		for range n {
			<-d.sem
		}
	}()
	left := size
	for _, c := range clones {
		if left <= low {
			break
		}
		// The .info first: a clone without it is one the go command starts again, so a
		// removal cut short leaves nothing it would trust.
		os.Remove(c.dir + ".info")
		if err := os.RemoveAll(c.dir); err != nil {
			return res, fmt.Errorf("%s: removing a clone: %w", DirectName, err)
		}
		os.Remove(c.dir + ".lock")
		left -= c.bytes
		res.Clones++
		res.Bytes += c.bytes
		if c.key != "" {
			res.Removed = append(res.Removed, c.key)
		}
	}
	if left > low {
		// Still over: the .info and .mod files of earlier runs (fetched again when asked).
		dl := filepath.Join(d.modRoot, "cache", "download")
		if err := os.RemoveAll(dl); err != nil {
			return res, fmt.Errorf("%s: %w", DirectName, err)
		}
	}
	after, err := dirSize(ctx, d.root)
	res.After = after
	return res, err
}

// dirSize sums the sizes of the regular files under dir (0 when it does not exist).
func dirSize(ctx context.Context, dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed meanwhile
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// RunPruner keeps d's directory under max bytes (down to 90 % of it when over): a Prune
// at once, then every interval and after runs (at most six times per interval), until
// ctx ends; then it closes done (when not nil). report, when not nil, is told of each
// pass.
func (d *Direct) RunPruner(ctx context.Context, max int64, interval time.Duration, report func(PruneResult, error), done chan<- struct{}) {
	if done != nil {
		defer close(done)
	}
	low := max / 10 * 9
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := d.Prune(ctx, max, low)
		if report != nil && ctx.Err() == nil {
			report(res, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.ranAny:
			// A run may have cloned: look again, but not more often than interval/6.
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval / 6):
			}
		}
	}
}
