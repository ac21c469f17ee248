package store

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// put commits data under key through a temporary file, as a fill does, and checks that
// Commit left no temporary file behind.
func put(t *testing.T, d *Disk, key, data string) {
	t.Helper()
	ctx := context.Background()
	f, err := d.CreateTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, key, f); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Name()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temp file %s still there after Commit", f.Name())
	}
}

func TestDiskCommitOpenWalk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	put(t, d, "example.com/m/@v/v1.0.0.mod", "module example.com/m\n")
	put(t, d, "example.com/m/@v/list", "v1.0.0\n")
	put(t, d, "example.com/!upper/@v/list", "v0.1.0\n")

	e, err := d.Open(ctx, "example.com/m/@v/v1.0.0.mod")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(e.Body)
	e.Body.Close()
	if string(b) != "module example.com/m\n" || e.Size != int64(len(b)) {
		t.Errorf("Open = %q size %d", b, e.Size)
	}
	if _, ok := e.Body.(*os.File); !ok {
		t.Errorf("disk entry body is %T; want *os.File so serving can use sendfile", e.Body)
	}
	if _, err := d.Open(ctx, "example.com/m/@v/v9.9.9.mod"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) error = %v; want fs.ErrNotExist", err)
	}
	if _, err := d.Stat(ctx, "example.com/m/@v"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(directory) error = %v; want fs.ErrNotExist", err)
	}
	var keys []string
	if err := d.Walk(ctx, "example.com/m/", func(k string, _ Info) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != "example.com/m/@v/list" || keys[1] != "example.com/m/@v/v1.0.0.mod" {
		t.Errorf("Walk = %q", keys)
	}
	if err := d.Delete(ctx, "example.com/m/@v/list"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, "example.com/m/@v/list"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestDiskRejectsBadKeys(t *testing.T) {
	d, err := OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"", "/etc/passwd", "a/../../b", "a/./b", "a//b", "a\\b", "a\x00b", ".tmp/x", "a/.tmpfoo"} {
		if _, err := d.Open(context.Background(), k); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%q) error = %v; want an invalid-key error", k, err)
		}
		f, _ := d.CreateTemp(context.Background())
		if err := d.Commit(context.Background(), k, f); err == nil {
			t.Errorf("Commit(%q) succeeded", k)
		}
	}
}

// TestOpenDiskClearsLeftovers: opening a store removes the temporary files of processes
// that died mid-fill (their directories' locks are gone; loose files are of the layout
// before process directories), never those of a live process using the same root (a
// second serve, a warm --to beside a serve); Close removes the store's own directory.
func TestOpenDiskClearsLeftovers(t *testing.T) {
	if !haveFlock {
		t.Skip("no flock here: every process directory looks abandoned")
	}
	ctx := context.Background()
	dir := t.TempDir()
	dead, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := dead.CreateTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half a zip")
	f.Close()
	alive, err := OpenDisk(dir) // while dead is still alive: its file stays
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Name()); err != nil {
		t.Fatalf("opening a second store on the root removed a live store's temporary file: %v", err)
	}
	g, err := alive.CreateTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g.WriteString("a fill in progress")
	// The first process dies: the kernel releases its lock, nothing removes its directory.
	deadDir := dead.tempDir()
	dead.tmp.Load().lock.Close()
	loose := filepath.Join(dir, tmpDirName, "fill-1")
	if err := os.WriteFile(loose, []byte("left by an older holoproxy"), 0o600); err != nil {
		t.Fatal(err)
	}
	third, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{deadDir, loose} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after a reopen (%v)", p, err)
		}
	}
	if err := alive.Commit(ctx, "m/@v/v1.0.0.mod", g); err != nil {
		t.Errorf("the live store's fill could not be committed after a third store opened: %v", err)
	}
	for _, d := range []*Disk{alive, third} {
		own := d.tempDir()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(own); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Close left its directory %s (%v)", own, err)
		}
		if _, err := d.CreateTemp(ctx); err == nil {
			t.Error("CreateTemp after Close succeeded")
		}
	}
	if left, _ := os.ReadDir(filepath.Join(dir, tmpDirName)); len(left) != 0 {
		t.Errorf("left under %s after every store closed: %v", tmpDirName, left)
	}
	if e, err := third.Open(ctx, "m/@v/v1.0.0.mod"); err != nil {
		t.Errorf("the committed file: %v", err)
	} else {
		e.Body.Close()
	}
}

// A fill's waiters read the answer through Reopen while Commit closes and renames the
// temporary file; Commit makes the directories a key lacks; a key whose directory is taken
// by a file fails its Commit cleanly.
func TestDiskReopenAndCommitDirectories(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := d.CreateTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const data = "module example.com/deep/er/m\n"
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	rd, err := Reopen(f)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	key := "example.com/deep/er/m/@v/v1.0.0.mod" // four directories to make
	if err := d.Commit(ctx, key, f); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(data))
	if _, err := rd.ReadAt(buf, 0); err != nil || string(buf) != data {
		t.Fatalf("ReadAt through Reopen after Commit = %q, %v; want %q", buf, err, data)
	}
	got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
	if err != nil || string(got) != data {
		t.Fatalf("stored file = %q, %v", got, err)
	}
	for p := filepath.Dir(filepath.Join(dir, filepath.FromSlash(key))); p != dir; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			t.Errorf("%s: %v; want a directory", p, err)
		}
	}
	// A second version in the same directory, and a file where a directory should be.
	put(t, d, "example.com/deep/er/m/@v/v1.1.0.mod", data)
	if err := os.WriteFile(filepath.Join(dir, "example.com", "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err = d.CreateTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, "example.com/file/@v/list", f); err == nil {
		t.Fatal("Commit under a file succeeded")
	}
	if _, err := os.Stat(f.Name()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed Commit left its temporary file %s", f.Name())
	}
	// Temporary files have names of their own.
	seen := map[string]bool{}
	for range 50 {
		f, err := d.CreateTemp(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if seen[f.Name()] {
			t.Fatalf("CreateTemp returned %s twice", f.Name())
		}
		seen[f.Name()] = true
		defer d.Discard(f)
	}
}

// FuzzCheckKey checks the one gate of every key a Store takes (from a request, a cache
// directory's file names, a bucket listing): an accepted key is a local slash path that
// stays below the store's root, with no empty, dot, dot-dot or .tmp element, no backslash
// and no NUL; a refusal is one line.
func FuzzCheckKey(f *testing.F) {
	for _, s := range []string{
		"mods.test/m/@v/v1.0.0.zip", "sumdb/sum.test/latest", "", "/abs", "a//b", "a/./b", "a/../b", "..", "a/",
		".tmp-1/x", "a/.tmpx", "a\\b", "a\x00b", "C:/x", "a/.hidden", "a/b:c",
	} {
		f.Add(s)
	}
	root := filepath.FromSlash("/cache/root")
	f.Fuzz(func(t *testing.T, key string) {
		if err := CheckKey(key); err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("CheckKey(%q): error of more than one line: %q", key, msg)
			}
			return
		}
		if !filepath.IsLocal(filepath.FromSlash(key)) || strings.ContainsAny(key, "\\\x00") {
			t.Fatalf("CheckKey accepted %q, not a local path", key)
		}
		p := filepath.Join(root, filepath.FromSlash(key))
		if rel, err := filepath.Rel(root, p); err != nil || filepath.ToSlash(rel) != key {
			t.Fatalf("CheckKey accepted %q, which is %q below the root", key, rel)
		}
		for _, el := range strings.Split(key, "/") {
			if el == "" || el == "." || el == ".." || strings.HasPrefix(el, ".tmp") {
				t.Fatalf("CheckKey accepted %q, with element %q", key, el)
			}
		}
	})
}

// tempDir returns the directory CreateTemp writes in now ("" when closed).
func (d *Disk) tempDir() string {
	if t := d.tmp.Load(); t != nil {
		return t.dir
	}
	return ""
}
