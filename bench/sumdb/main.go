// Command sumdb serves a checksum database over a GOPROXY file tree for the benchmarks: every
// module version of the tree gets a record with the h1: hashes of its .zip and .mod, signed
// with a key made at start (internal/checksum/sumdbtest), served on 127.0.0.1.
//
//	go run ./bench/sumdb -tree DIR    # prints "KEY URL" (a GOSUMDB value) on its first line
//
// It serves until SIGINT or SIGTERM. bench/serve.sh passes that line to holoproxy serve as
// --sumdb to measure verification; no benchmark talks to anything but loopback.
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/checksum"
	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
)

func main() {
	tree := flag.String("tree", "", "GOPROXY file tree to vouch for (required)")
	name := flag.String("name", sumdbtest.DefaultName, "database name")
	flag.Parse()
	if *tree == "" {
		fmt.Fprintln(os.Stderr, "sumdb: -tree is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *tree, *name); err != nil {
		fmt.Fprintln(os.Stderr, "sumdb:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, tree, name string) error {
	start := time.Now()
	recs, err := records(tree)
	if err != nil {
		return err
	}
	hashed := time.Since(start)
	db, err := sumdbtest.Start(name)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, r := range recs {
		if err := db.AddRecord(r.path, r.version, r.lines...); err != nil {
			return err
		}
	}
	fmt.Printf("%s %s\n", db.Key, db.URL)
	// The hashing is what holoproxy's verification does locally per file: one goroutine,
	// so its wall time is its CPU time on an idle machine.
	fmt.Fprintf(os.Stderr, "sumdb: %d module versions of %s at %s; hashing every .mod and .zip took %.2fs\n",
		len(recs), tree, db.URL, hashed.Seconds())
	<-ctx.Done()
	return nil
}

// record is the go.sum lines of one module version.
type record struct {
	path, version string
	lines         []string
}

// records hashes every .zip and .mod of the tree, one record per module version, in a
// stable order.
func records(tree string) ([]record, error) {
	byID := map[string]*record{}
	err := filepath.WalkDir(tree, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		ext := filepath.Ext(p)
		if ext != ".mod" && ext != ".zip" {
			return nil
		}
		rel, err := filepath.Rel(tree, p)
		if err != nil {
			return err
		}
		escPath, file, ok := strings.Cut(filepath.ToSlash(rel), "/@v/")
		if !ok {
			return nil
		}
		mpath, err := module.UnescapePath(escPath)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		version, err := module.UnescapeVersion(strings.TrimSuffix(file, ext))
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		var line string
		if ext == ".mod" {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h, err := checksum.HashMod(data)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			line = fmt.Sprintf("%s %s/go.mod %s", mpath, version, h)
		} else {
			h, err := checksum.HashZip(p)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			line = fmt.Sprintf("%s %s %s", mpath, version, h)
		}
		id := mpath + "@" + version
		r := byID[id]
		if r == nil {
			r = &record{path: mpath, version: version}
			byID[id] = r
		}
		r.lines = append(r.lines, line)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]record, 0, len(byID))
	for _, r := range byID {
		sort.Strings(r.lines) // "<v> h1:" sorts before "<v>/go.mod h1:", as in go.sum
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].path != out[j].path {
			return out[i].path < out[j].path
		}
		return out[i].version < out[j].version
	})
	return out, nil
}
