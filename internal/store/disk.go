package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// tmpDirName is where fills are written before Commit. Its leading dot keeps it out of
// every valid key (module paths have no element starting with a dot).
const tmpDirName = ".tmp"

// Disk is the embedded default Store: files under a root directory in the GOPROXY tree
// layout, written by temp file, fsync and rename.
//
// Several processes may use one root at once (two serves, a serve and a warm --to):
// each writes its temporary files in a directory of its own under .tmp, locked (flock)
// for as long as the process lives, and removes only the directories no live process
// holds.
type Disk struct {
	root string
	tmp  atomic.Pointer[tempDir] // this Disk's own directory under root/.tmp; nil until made
	// mu serialises the making of tmp (at open, and again when it was removed under us).
	mu sync.Mutex
	// closed is set by Close, and for a store attached beside its owner: no temporary
	// files any more.
	closed atomic.Bool
	// openErr is why the store could take no new file when it was opened (a read-only or
	// full file system), nil when it could.
	openErr error
}

// errDiskClosed is CreateTemp's error after Close.
var errDiskClosed = errors.New("no temporary files: the store was closed, or attached beside its owner")

// tempDir is a Disk's directory for temporary files, and the open directory holding its
// flock.
type tempDir struct {
	dir  string
	lock *os.File
}

// OpenDisk opens (creating it if needed) a disk store rooted at dir. Temporary files left by
// a process that died mid-fill are removed: they were never visible under any key. Those of
// live processes using the same root stay.
//
// A root on a read-only or full file system still opens, for what it holds: CreateTemp
// then fails with an error Unwritable recognises (trying again each time, in case room
// was made), and NewFileErr says why.
func OpenDisk(dir string) (*Disk, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("store: %w", err)
	case !st.IsDir():
		return nil, fmt.Errorf("store: %s is not a directory", abs)
	}
	d := &Disk{root: abs}
	if err := removeAbandoned(filepath.Join(abs, tmpDirName)); err != nil && !Unwritable(err) {
		return nil, fmt.Errorf("store: clearing leftover temporary files: %w", err)
	}
	if err := d.makeTemp(nil); err != nil {
		if !Unwritable(err) {
			return nil, fmt.Errorf("store: %w", err)
		}
		d.openErr = fmt.Errorf("store: %w", err)
	}
	return d, nil
}

// NewFileErr returns why the store could take no new file when it was opened (a read-only
// or full file system: it serves what it holds), nil when it could.
func (d *Disk) NewFileErr() error { return d.openErr }

// removeAbandoned removes what dead processes left under top: the directories no process
// holds locked, and loose files (the layout before process directories).
func removeAbandoned(top string) error {
	ents, err := os.ReadDir(top)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(top, e.Name())
		if e.IsDir() {
			f, busy, err := lockDir(p)
			if busy || errors.Is(err, fs.ErrNotExist) {
				continue // alive, or gone meanwhile
			}
			if err != nil {
				return err
			}
			err = os.RemoveAll(p) // still locked by us: no other process takes it meanwhile
			f.Close()
			if err != nil {
				return err
			}
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// makeTemp creates a new directory of this Disk's own under root/.tmp, locks it and makes
// it the one CreateTemp uses, unless the current one is no longer prev (another call made
// a new one meanwhile).
func (d *Disk) makeTemp(prev *tempDir) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return errDiskClosed
	}
	if d.tmp.Load() != prev {
		return nil
	}
	top := filepath.Join(d.root, tmpDirName)
	if err := os.MkdirAll(top, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(top, "p"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return err
	}
	f, _, err := lockDir(dir)
	if err != nil {
		os.Remove(dir)
		return err
	}
	d.tmp.Store(&tempDir{dir: dir, lock: f})
	if prev != nil {
		prev.lock.Close() // its directory was removed under us
	}
	return nil
}

// Close removes the Disk's temporary directory and releases its lock; the files it
// committed stay. Call it once its owner made its last CreateTemp (a server's fills are
// over); CreateTemp fails after.
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed.Store(true)
	t := d.tmp.Swap(nil)
	if t == nil {
		return nil
	}
	err := os.RemoveAll(t.dir)
	t.lock.Close()
	return err
}

// Root returns the directory the store keeps its files in.
func (d *Disk) Root() string { return d.root }

// CheckKey reports whether key is a relative slash path with no empty, dot or dot-dot
// element, no backslash and no NUL: the only keys a Store accepts.
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00") {
		return fmt.Errorf("store: invalid key %q", key)
	}
	for _, el := range strings.Split(key, "/") {
		if el == "" || el == "." || el == ".." || strings.HasPrefix(el, ".tmp") {
			return fmt.Errorf("store: invalid key %q", key)
		}
	}
	return nil
}

func (d *Disk) file(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

// Open implements Store.
func (d *Disk) Open(ctx context.Context, key string) (Entry, error) {
	name, err := d.file(key)
	if err != nil {
		return Entry{}, err
	}
	f, err := openRead(name)
	if err != nil {
		return Entry{}, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return Entry{}, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return Entry{}, fmt.Errorf("store: %s: %w", key, fs.ErrNotExist)
	}
	return Entry{Body: f, Info: Info{Size: st.Size(), ModTime: st.ModTime()}}, nil
}

// Stat implements Store.
func (d *Disk) Stat(ctx context.Context, key string) (Info, error) {
	name, err := d.file(key)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(name)
	if err != nil {
		return Info{}, err
	}
	if !st.Mode().IsRegular() {
		return Info{}, fmt.Errorf("store: %s: %w", key, fs.ErrNotExist)
	}
	return Info{Size: st.Size(), ModTime: st.ModTime()}, nil
}

// CreateTemp implements Store: the file lives on the store's own file system, so Commit
// is a rename.
func (d *Disk) CreateTemp(ctx context.Context) (*os.File, error) {
	t := d.tmp.Load()
	f, err := d.createTemp(t)
	if errors.Is(err, fs.ErrNotExist) {
		// No directory yet (the file system took none at open), or someone removed it
		// under a running server: make a new one, locked.
		if err = d.makeTemp(t); err == nil {
			f, err = d.createTemp(d.tmp.Load())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return f, nil
}

// createTemp creates a new file named fill-<random> in the temporary directory, as
// os.CreateTemp does, but without adding it to the network poller (createExcl).
func (d *Disk) createTemp(t *tempDir) (*os.File, error) {
	switch {
	case d.closed.Load():
		return nil, errDiskClosed
	case t == nil:
		return nil, fs.ErrNotExist
	}
	for try := 0; ; try++ {
		f, err := createExcl(filepath.Join(t.dir, "fill-"+strconv.FormatUint(uint64(rand.Uint32()), 10)))
		if errors.Is(err, fs.ErrExist) && try < 10000 {
			continue
		}
		return f, err
	}
}

// Commit implements Store: fsync the file, then rename it into place. The fsync before the
// rename is what keeps a torn file from ever being visible under a key, even after a power
// cut. The directory is not fsynced after the rename: that would only make the new name
// itself survive a power cut, and for a cache losing a just-committed name costs one fetch
// again, never a wrong answer; it cost every fill a second fsync (a fifth of a cold
// `go mod download all` through holoproxy on this project's machines, docs/benchmarks.md).
func (d *Disk) Commit(ctx context.Context, key string, tmp *os.File) (err error) {
	defer func() {
		if err != nil { // once renamed, the temporary name is gone: no unlink to try
			d.Discard(tmp)
		}
	}()
	name, err := d.file(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Readable by others whatever the umask (other tools read a GOPROXY tree); on the open
	// file, which spares a path lookup.
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", key, err)
	}
	// Rename first: the directory mostly exists (a version's other files, other versions),
	// and making it first would cost a system call on every commit.
	err = rename(tmp.Name(), name)
	if errors.Is(err, fs.ErrNotExist) {
		if err := mkdirs(filepath.Dir(name)); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		err = rename(tmp.Name(), name)
	}
	if err != nil {
		return fmt.Errorf("store: commit %s: %w", key, err)
	}
	return nil
}

// mkdirs makes dir and the parents it lacks. Unlike os.MkdirAll it tries mkdir before any
// stat: a commit needs it only when dir is missing, and mostly only dir itself is.
func mkdirs(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrNotExist) {
		if parent := filepath.Dir(dir); parent != dir {
			if err := mkdirs(parent); err != nil {
				return err
			}
			err = os.Mkdir(dir, 0o755)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		return nil // made meanwhile by another commit; a file there fails the rename
	}
	return err
}

// Discard implements Store.
func (d *Disk) Discard(tmp *os.File) {
	if tmp == nil {
		return
	}
	tmp.Close()
	os.Remove(tmp.Name())
}

// Delete implements Store.
func (d *Disk) Delete(ctx context.Context, key string) error {
	name, err := d.file(key)
	if err != nil {
		return err
	}
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Walk implements Store.
func (d *Disk) Walk(ctx context.Context, prefix string, fn func(key string, info Info) error) error {
	start := d.root
	if dir := path.Dir(prefix); prefix != "" && dir != "." {
		start = filepath.Join(d.root, filepath.FromSlash(dir))
	}
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() {
			// No key has an element with a leading dot (module paths and versions cannot
			// start with one): such directories hold private state, like the temporary
			// files and the checksum verifier's, kept next to the tree.
			if p != d.root && strings.HasPrefix(e.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) || !e.Type().IsRegular() {
			return nil
		}
		st, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		return fn(key, Info{Size: st.Size(), ModTime: st.ModTime(), Accessed: accessTime(st)})
	})
	if err != nil {
		return fmt.Errorf("store: walk: %w", err)
	}
	return nil
}

var _ Store = (*Disk)(nil)
