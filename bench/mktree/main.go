// Command mktree writes the benchmark workload: a GOPROXY tree of a generated module graph
// sized like a real dependency set (zip sizes spread from a few KB to a few MB, seeded so every
// run writes the same bytes) and an app whose `go mod download all` fetches all of it.
//
//	go run ./bench/mktree -n 300 -out DIR    # writes DIR/tree and DIR/app
//
// The bench scripts use it instead of downloading a real dependency set so that no benchmark
// talks to anything but loopback; point them at a real tree with BENCH_TREE and BENCH_APP.
package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

func main() {
	n := flag.Int("n", 300, "modules in the graph")
	depth := flag.Int("depth", 6, "levels of the graph")
	fanout := flag.Int("fanout", 3, "requirements per module")
	out := flag.String("out", "", "directory to write tree/ and app/ into (required)")
	seed := flag.Uint64("seed", 1, "seed of the size distribution")
	huge := flag.Int("huge", 0, "also write bench.test/huge with a zip of about this many MB")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mktree: -out is required")
		os.Exit(2)
	}
	if err := run(*out, *n, *depth, *fanout, *seed, *huge); err != nil {
		fmt.Fprintln(os.Stderr, "mktree:", err)
		os.Exit(1)
	}
}

func run(out string, n, depth, fanout int, seed uint64, hugeMB int) error {
	mods, roots := modtree.Graph("bench.test/m", n, depth, fanout)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var total int64
	for i := range mods {
		// Log-normal sizes around 40 KB, like the zips of a typical dependency set; about one
		// in fifty is a few MB. Random bytes, base64 encoded, so zip cannot squeeze them.
		size := int(math.Exp(rng.NormFloat64()*1.2 + math.Log(40<<10)))
		size = min(max(size, 2<<10), 6<<20)
		raw := make([]byte, size*3/4)
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		mods[i].Extra = map[string]string{"testdata/blob.txt": base64.StdEncoding.EncodeToString(raw)}
		total += int64(size)
	}
	// One module of about 1 MB for the throughput measurement of a cached zip.
	big := modtree.Module{Path: "bench.test/big", Version: "v1.0.0"}
	raw := make([]byte, 768<<10)
	for j := range raw {
		raw[j] = byte(rng.Uint32())
	}
	big.Extra = map[string]string{"testdata/blob.txt": base64.StdEncoding.EncodeToString(raw)}
	mods = append(mods, big)
	roots = append(roots, big.ID())
	if hugeMB > 0 {
		// Served to the RSS measurement only; not required by the app. Stored, not
		// compressed, so the zip is as large as asked.
		raw := make([]byte, hugeMB<<20*3/4)
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		huge := modtree.Module{Path: "bench.test/huge", Version: "v1.0.0",
			Extra: map[string]string{"testdata/blob.txt": base64.StdEncoding.EncodeToString(raw)}}
		mods = append(mods, huge)
	}

	tree := filepath.Join(out, "tree")
	if err := modtree.Write(tree, mods); err != nil {
		return err
	}
	sum, err := modtree.AppGoSum(mods, roots)
	if err != nil {
		return err
	}
	if err := modtree.WriteApp(filepath.Join(out, "app"), "bench.test/app", mods, roots, sum); err != nil {
		return err
	}
	selected, graph := modtree.BuildList(mods, roots)
	fmt.Printf("mktree: %d module versions (%d in the build list), ~%d MB of blobs, tree %s\n",
		len(graph), len(selected), total>>20, tree)
	return nil
}
