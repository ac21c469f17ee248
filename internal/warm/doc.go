// Package warm fills caches ahead of a build: it reads what a project needs from its
// go.mod, go.sum and go.work files (Load, a deduplicated Plan of module versions), fetches
// every file of that plan once through a GOPROXY Chain with bounded parallelism, verifies
// each .mod and .zip against its go.sum hash (and optionally the checksum database) before
// anything is written, and stores the files in one or more destinations: a GOPROXY file
// tree, a GOMODCACHE, or a running holoproxy asked for each file (Run). Files a
// destination already holds and that re-hash to the go.sum hash are skipped, so an
// interrupted run resumes where it stopped. Check answers, without fetching, whether the
// destinations already hold the whole plan.
package warm
