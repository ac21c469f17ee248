package warm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/holoproxy/holoproxy/internal/checksum"
	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/store"
)

// File is one file of a Plan item: its request and the hash it must have ("" for .info,
// and for a toolchain's files, which go.sum does not record).
type File struct {
	Req  goproxy.Request
	Want string
}

// Key returns the file's key in a GOPROXY tree.
func (f File) Key() string { return f.Req.Path() }

// String returns module@version kind.
func (f File) String() string { return f.Req.String() }

// files returns the files of it, in the order they are committed: .info, .mod, .zip. The
// zip comes last so that a module's source is never present without its go.mod.
func (it Item) files() []File {
	out := []File{
		{Req: goproxy.Request{Kind: goproxy.KindInfo, Module: it.Mod.Path, Version: it.Mod.Version}},
		{Req: goproxy.Request{Kind: goproxy.KindMod, Module: it.Mod.Path, Version: it.Mod.Version}, Want: it.ModHash},
	}
	if it.Zip {
		out = append(out, File{Req: goproxy.Request{Kind: goproxy.KindZip, Module: it.Mod.Path, Version: it.Mod.Version}, Want: it.ZipHash})
	}
	return out
}

// Dest is where warmed files go. Implementations are safe for concurrent use.
type Dest interface {
	// String names the destination in messages.
	String() string
	// Has reports whether the destination already holds f with the content f.Want names
	// (any content for a .info that parses). A file that is present but wrong is not held.
	Has(ctx context.Context, f File) (bool, error)
	// Put stores f, whose verified content is in src (read from its start), atomically.
	Put(ctx context.Context, f File, src *os.File) error
}

// StoreDest is a destination backed by a store.Store: a GOPROXY file tree, or the
// cache/download tree of a GOMODCACHE (which has the same layout).
type StoreDest struct {
	Store store.Store
	// Name names the destination in messages.
	Name string
	// ZipHash writes "<version>.ziphash" next to every zip, holding its h1: hash, as the
	// go command does in its module cache. The go command (checked with go1.26, GOPROXY=off)
	// does not require it: finding a zip without one, it re-hashes the zip and writes it.
	// Writing it saves that second hash of every zip at the first build.
	ZipHash bool
	// SumDBDir, set for a module cache that takes new files, is where its go command keeps
	// the checksum database's answers (checksum.GoCacheDir under it). A toolchain warmed
	// with a Verifier gets the answers that vouch for it there: the go command checks a
	// toolchain against the database every time, and offline it can only read them there.
	SumDBDir string
}

// Close releases the destination: a store opened for writing removes its temporary
// directory. Call it once nothing is written to it any more.
func (d *StoreDest) Close() error {
	if c, ok := d.Store.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// NewTreeDest opens (creating it) a GOPROXY file tree at dir, usable as
// GOPROXY=file:///dir. A readOnly destination is for Check: it creates nothing, writes
// nothing, and leaves alone the temporary files of a run filling the tree meanwhile.
func NewTreeDest(dir string, readOnly bool) (*StoreDest, error) {
	st, err := openStore(dir, readOnly)
	if err != nil {
		return nil, err
	}
	return &StoreDest{Store: st, Name: "tree " + dir}, nil
}

// NewModCacheDest opens (creating it) the module cache at dir (a GOMODCACHE): files go to
// dir/cache/download, with .ziphash files beside the zips. readOnly is as for NewTreeDest.
func NewModCacheDest(dir string, readOnly bool) (*StoreDest, error) {
	st, err := openStore(filepath.Join(dir, "cache", "download"), readOnly)
	if err != nil {
		return nil, err
	}
	d := &StoreDest{Store: st, Name: "gomodcache " + dir, ZipHash: true}
	if !readOnly {
		d.SumDBDir = filepath.Join(dir, filepath.FromSlash(checksum.GoCacheDir))
	}
	return d, nil
}

func openStore(dir string, readOnly bool) (store.Store, error) {
	if readOnly {
		return readOnlyDir(dir), nil
	}
	d, err := store.OpenDisk(dir)
	if err != nil {
		return nil, err
	}
	if err := d.NewFileErr(); err != nil {
		// A read-only or full file system: serve can still answer from such a tree, warm
		// has nothing to do with it but fail every file.
		d.Close()
		return nil, fmt.Errorf("%s takes no new file: %w", dir, err)
	}
	return d, nil
}

// errReadOnly is the error of a write to a read-only destination.
var errReadOnly = errors.New("warm: destination opened read-only")

// readOnlyDir reads a directory in the store layout without opening it as a store.Disk,
// which would create its own temporary directory there.
type readOnlyDir string

func (d readOnlyDir) name(key string) (string, error) {
	if err := store.CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(string(d), filepath.FromSlash(key)), nil
}

func (d readOnlyDir) Open(ctx context.Context, key string) (store.Entry, error) {
	name, err := d.name(key)
	if err != nil {
		return store.Entry{}, err
	}
	f, err := os.Open(name)
	if err != nil {
		return store.Entry{}, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return store.Entry{}, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	return store.Entry{Body: f, Info: store.Info{Size: st.Size(), ModTime: st.ModTime()}}, nil
}

func (d readOnlyDir) Stat(ctx context.Context, key string) (store.Info, error) {
	e, err := d.Open(ctx, key)
	if err != nil {
		return store.Info{}, err
	}
	e.Body.Close()
	return e.Info, nil
}

func (d readOnlyDir) CreateTemp(context.Context) (*os.File, error)   { return nil, errReadOnly }
func (d readOnlyDir) Commit(context.Context, string, *os.File) error { return errReadOnly }
func (d readOnlyDir) Discard(*os.File)                               {}
func (d readOnlyDir) Delete(context.Context, string) error           { return errReadOnly }
func (d readOnlyDir) Walk(context.Context, string, func(string, store.Info) error) error {
	return errReadOnly
}

// String names the destination in messages.
func (d *StoreDest) String() string { return d.Name }

func ziphashKey(f File) string { return strings.TrimSuffix(f.Key(), ".zip") + ".ziphash" }

// Has implements Dest.
func (d *StoreDest) Has(ctx context.Context, f File) (bool, error) {
	e, err := d.Store.Open(ctx, f.Key())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer e.Body.Close()
	ok, err := holds(f, e.Body, e.Size)
	if !ok || err != nil || !d.ZipHash || f.Req.Kind != goproxy.KindZip {
		return ok, err
	}
	// The zip is right; the module cache also needs its .ziphash.
	zh, err := d.Store.Open(ctx, ziphashKey(f))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer zh.Body.Close()
	b, err := io.ReadAll(io.LimitReader(zh.Body, 1024))
	if err != nil {
		return false, err
	}
	return f.Want == "" || strings.TrimSpace(string(b)) == f.Want, nil
}

// holds reports whether body is a right copy of f.
func holds(f File, body io.ReadSeeker, size int64) (bool, error) {
	switch f.Req.Kind {
	case goproxy.KindInfo:
		b, err := io.ReadAll(io.LimitReader(body, goproxy.MaxInfoSize))
		if err != nil {
			return false, err
		}
		return checkInfo(f, b) == nil, nil
	case goproxy.KindMod:
		if f.Want == "" {
			return size > 0, nil
		}
		b, err := io.ReadAll(io.LimitReader(body, goproxy.MaxModSize))
		if err != nil {
			return false, err
		}
		h, err := checksum.HashMod(b)
		return err == nil && h == f.Want, nil
	case goproxy.KindZip:
		if f.Want == "" {
			return size > 0, nil
		}
		ra, ok := body.(io.ReaderAt)
		if !ok {
			b, err := io.ReadAll(body)
			if err != nil {
				return false, err
			}
			ra = bytes.NewReader(b)
		}
		h, err := checksum.HashZipReader(ra, size)
		return err == nil && h == f.Want, nil
	}
	return false, fmt.Errorf("warm: unexpected file kind %s", f.Req.Kind)
}

// checkInfo checks that b is a .info answer for f's version.
func checkInfo(f File, b []byte) error {
	var info struct {
		Version string
		Time    time.Time
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("%s: malformed .info: %w", f.Req.Module+"@"+f.Req.Version, err)
	}
	if info.Version != f.Req.Version {
		return fmt.Errorf("%s: .info names version %q", f.Req.Module+"@"+f.Req.Version, info.Version)
	}
	return nil
}

// Put implements Dest.
func (d *StoreDest) Put(ctx context.Context, f File, src *os.File) error {
	if err := d.put(ctx, f.Key(), src); err != nil {
		return err
	}
	if d.ZipHash && f.Req.Kind == goproxy.KindZip && f.Want != "" {
		return d.put(ctx, ziphashKey(f), strings.NewReader(f.Want))
	}
	return nil
}

// commit stores f by committing tmp, a temporary file of d's store holding the verified
// download; tmp is consumed, whatever the outcome.
func (d *StoreDest) commit(ctx context.Context, f File, tmp *os.File) error {
	if err := d.Store.Commit(ctx, f.Key(), tmp); err != nil {
		return fmt.Errorf("%s: %w", d.Name, err)
	}
	if d.ZipHash && f.Req.Kind == goproxy.KindZip && f.Want != "" {
		return d.put(ctx, ziphashKey(f), strings.NewReader(f.Want))
	}
	return nil
}

func (d *StoreDest) put(ctx context.Context, key string, src io.Reader) error {
	if s, ok := src.(io.Seeker); ok {
		if _, err := s.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("%s: %w", d.Name, err)
		}
	}
	tmp, err := d.Store.CreateTemp(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", d.Name, err)
	}
	if _, err := io.Copy(tmp, src); err != nil {
		d.Store.Discard(tmp)
		return fmt.Errorf("%s: writing %s: %w", d.Name, key, err)
	}
	if err := d.Store.Commit(ctx, key, tmp); err != nil {
		return fmt.Errorf("%s: %w", d.Name, err)
	}
	return nil
}

// writeList merges versions into the module's @v/list: the versions listed before plus
// the given ones that are not pseudo-versions, sorted. It writes only when that changes
// the list.
func (d *StoreDest) writeList(ctx context.Context, path string, versions []string) error {
	key := goproxy.Request{Kind: goproxy.KindList, Module: path}.Path()
	set := map[string]bool{}
	var old []byte
	if e, err := d.Store.Open(ctx, key); err == nil {
		old, err = io.ReadAll(io.LimitReader(e.Body, goproxy.MaxListSize))
		e.Body.Close()
		if err != nil {
			return fmt.Errorf("%s: reading %s: %w", d.Name, key, err)
		}
		for _, v := range strings.Fields(string(old)) {
			set[v] = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", d.Name, err)
	}
	for _, v := range versions {
		if !module.IsPseudoVersion(v) {
			set[v] = true
		}
	}
	list := make([]string, 0, len(set))
	for v := range set {
		list = append(list, v)
	}
	semver.Sort(list)
	var b strings.Builder
	for _, v := range list {
		b.WriteString(v + "\n")
	}
	if b.String() == string(old) {
		return nil
	}
	return d.put(ctx, key, strings.NewReader(b.String()))
}

// PushDest is a running holoproxy asked for every file, so that its cache holds the
// plan. It checks what the proxy answers against the go.sum hash; it never holds a file in
// advance (Has is always false) since asking is how it is filled.
type PushDest struct {
	// URL is the proxy's base URL, as a GOPROXY entry.
	URL string
	// Client sends the requests.
	Client *http.Client
	// Timeout bounds each request; 0 means 10 minutes (the proxy may be filling a large zip).
	Timeout time.Duration
}

// String names the destination in messages.
func (p *PushDest) String() string { return "push " + p.URL }

// Has implements Dest: a proxy is filled by asking, so it never counts as holding a file.
func (p *PushDest) Has(ctx context.Context, f File) (bool, error) { return false, nil }

// Put implements Dest: it asks the proxy for f and checks the answer; src is not used.
func (p *PushDest) Put(ctx context.Context, f File, src *os.File) error {
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := strings.TrimSuffix(p.URL, "/") + "/" + f.Key()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", p, f, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: answered %s", p, f, resp.Status)
	}
	tmp, err := os.CreateTemp("", "holoproxy-push-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, io.LimitReader(resp.Body, f.Req.MaxSize()+1))
	if err != nil {
		return fmt.Errorf("%s: %s: reading answer: %w", p, f, err)
	}
	if n > f.Req.MaxSize() {
		return fmt.Errorf("%s: %s: %w", p, f, goproxy.ErrTooLarge)
	}
	if err := verifyFile(f, tmp, n); err != nil {
		var mm *MismatchError
		if errors.As(err, &mm) {
			mm.Upstream = p.URL
		}
		return err
	}
	return nil
}
