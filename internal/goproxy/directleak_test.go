package goproxy

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDirectMissingFileNamesNoPath: when the file a run of the go command named is gone
// before it is opened (pruned, removed by another process), the error, which clients are
// shown, names the module cache $GOMODCACHE, not the server's directory.
func TestDirectMissingFileNamesNoPath(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake go command is a shell script")
	}
	bin := filepath.Join(t.TempDir(), "go")
	script := `#!/bin/sh
case "$1" in
env) echo /dev/null; echo go1.26 ;;
list) printf '{"Path":"example.com/m","Version":"v1.0.0","GoMod":"%s/cache/download/example.com/m/@v/v1.0.0.mod"}\n' "$GOMODCACHE" ;;
mod) printf '{"Path":"example.com/m","Version":"v1.0.0","Zip":"%s/cache/download/example.com/m/@v/v1.0.0.zip"}\n' "$GOMODCACHE" ;;
esac
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := NewDirect(ctx, DirectConfig{Go: bin, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	for _, kind := range []Kind{KindMod, KindZip} {
		r := Request{Kind: kind, Module: "example.com/m", Version: "v1.0.0"}
		_, err := d.Fetch(ctx, r)
		if err == nil {
			t.Fatalf("%s: fetched a file that is not there", r)
		}
		if msg := err.Error(); strings.Contains(msg, dir) || !strings.Contains(msg, "$GOMODCACHE") {
			t.Errorf("%s: error %q: want the module cache named $GOMODCACHE, not %s", r, msg, dir)
		}
	}
}

// TestDirectHidePaths: every directory of the runs is named in messages by the variable
// that names it for the go command, anything else under Direct's directory by
// $HOLOPROXY_DIRECT; a message naming none is left as it is.
func TestDirectHidePaths(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake go command is a shell script")
	}
	bin := filepath.Join(t.TempDir(), "go")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho /dev/null; echo go1.26\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d, err := NewDirect(context.Background(), DirectConfig{Go: bin, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	for _, tc := range []struct{ msg, want string }{
		{"git clone " + filepath.Join(dir, "modcache", "cache", "vcs", "abc") + " failed", "git clone $GOMODCACHE/cache/vcs/abc failed"},
		{"open " + filepath.Join(dir, "gocache", "x") + ": denied", "open $GOCACHE/x: denied"},
		{"mkdir " + filepath.Join(dir, "gopath", "pkg") + ": denied", "mkdir $GOPATH/pkg: denied"},
		{"chdir " + filepath.Join(dir, "work") + ": gone", "chdir $HOLOPROXY_DIRECT/work: gone"},
		{"unknown revision v9.0.0", "unknown revision v9.0.0"},
	} {
		if got := d.hidePaths(tc.msg); got != filepath.FromSlash(tc.want) && got != tc.want {
			t.Errorf("hidePaths(%q) = %q; want %q", tc.msg, got, tc.want)
		}
	}
}
