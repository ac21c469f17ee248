// Package trace runs the requests the go command would make for a set of modules against a
// GOPROXY chain — each proxy on its own and the chain as a whole with its fall-through rules —
// through the same goproxy.Chain and netobs.Transport that `serve` uses, and returns what it
// observed as a report.Trace. A chain's "direct" entry is fetched by the go command itself
// (goproxy.Direct, in a module cache of the Run's own that starts empty), with its go-get
// lookups and version control commands timed from its -x output. Comparisons (fresh against
// shared transports, one DNS backend against another) are several Runs of the same workload.
package trace
