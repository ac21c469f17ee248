package checksum

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
)

// GoCacheDir is where, under a go command's module cache ($GOMODCACHE), the go command
// keeps the checksum database's answers: lookups and tiles, under the same names as the
// Verifier's cache (x/mod's sumdb client names them).
const GoCacheDir = "cache/download/sumdb"

// ExportGoCache writes into dir (a module cache's GoCacheDir) the checksum database's
// answers a go command that starts with no checksum state of its own needs to verify
// mod offline: the lookup and the tiles that prove it, authenticated as a fresh client
// authenticates them, read from the Verifier's cache where it has them and from the
// database otherwise. A go command checks a toolchain (golang.org/toolchain) against
// the database every time, even one in its module cache, since no go.sum lists
// toolchains: without these files an offline switch to it fails.
//
// The go command's own state ($GOPATH/pkg/sumdb) is not written: a go command whose
// latest tree is newer than the lookup's needs tiles of that tree, which it fetches.
func (v *Verifier) ExportGoCache(ctx context.Context, dir string, mod module.Version) error {
	if v.cfg.DB.Name == "" {
		return errors.New("checksum: no checksum database to export from")
	}
	ops := &exportOps{v: v, dir: dir, ctx: ctx}
	c := sumdb.NewClient(ops)
	if _, err := c.Lookup(mod.Path, mod.Version); err != nil {
		return fmt.Errorf("checksum: exporting %s@%s for the go command: %w", mod.Path, mod.Version, err)
	}
	ops.mu.Lock()
	defer ops.mu.Unlock()
	if ops.err != nil {
		return fmt.Errorf("checksum: exporting %s@%s for the go command: %w", mod.Path, mod.Version, ops.err)
	}
	return nil
}

// exportOps are the sumdb.ClientOps of ExportGoCache's fresh client: no tree of its own,
// the Verifier's cache before the database, and every file it caches written into dir.
type exportOps struct {
	v   *Verifier
	dir string
	ctx context.Context

	mu  sync.Mutex
	err error // guarded by mu; the first file that could not be written, or a security error
}

func (o *exportOps) fail(err error) {
	o.mu.Lock()
	if o.err == nil {
		o.err = err
	}
	o.mu.Unlock()
}

func (o *exportOps) ReadConfig(file string) ([]byte, error) {
	if file == "key" {
		return []byte(o.v.cfg.DB.Key), nil
	}
	return nil, nil // no tree seen: start from the empty one, as a new go command does
}

// WriteConfig keeps nothing: the export is the lookup and tiles, not a tree to trust.
func (o *exportOps) WriteConfig(file string, old, new []byte) error { return nil }

func (o *exportOps) ReadRemote(path string) ([]byte, error) {
	ctx := o.ctx
	if o.v.cfg.RequestContext != nil {
		ctx = o.v.cfg.RequestContext(ctx)
	}
	data, _, err := fetch(ctx, o.v.cfg.Client, o.v.cfg.BaseURL, path, o.v.cfg.Timeout, "")
	return data, err
}

// ReadCache reads a file from dir, else from the Verifier's cache, copying it into dir:
// the client writes back only what it fetched, and a file it read from a cache is one the
// go command will read too. The Verifier's cache holds only authenticated files, and the
// client authenticates what it reads against the lookup's tree again.
func (o *exportOps) ReadCache(file string) ([]byte, error) {
	if data, err := os.ReadFile(o.path(file)); err == nil {
		return data, nil
	}
	data, err := o.v.readState("cache", file)
	if err != nil {
		return nil, err
	}
	o.WriteCache(file, data)
	return data, nil
}

// WriteCache writes an authenticated file the go command will read: temporary file,
// fsync, rename, so a go command never reads half of one.
func (o *exportOps) WriteCache(file string, data []byte) {
	if !filepath.IsLocal(filepath.FromSlash(file)) {
		o.fail(fmt.Errorf("refusing non-local file name %q", file))
		return
	}
	p := o.path(file)
	if err := writeFileAtomic(p, data); err != nil {
		o.fail(err)
	}
}

func (o *exportOps) path(file string) string { return filepath.Join(o.dir, filepath.FromSlash(file)) }

func (o *exportOps) Log(msg string) { o.v.log.Debug("sumdb export client", "msg", msg) }

func (o *exportOps) SecurityError(msg string) { o.fail(errors.New(msg)) }
