package checksum

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/store"
)

// dirStore is a minimal store.Store over a directory, for these tests only (the real disk
// store lives in internal/store).
type dirStore struct{ dir string }

var _ store.Store = dirStore{}

func newDirStore(t *testing.T) dirStore { return dirStore{t.TempDir()} }

func (s dirStore) path(key string) string { return filepath.Join(s.dir, filepath.FromSlash(key)) }

func (s dirStore) Open(ctx context.Context, key string) (store.Entry, error) {
	f, err := os.Open(s.path(key))
	if err != nil {
		return store.Entry{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return store.Entry{}, err
	}
	return store.Entry{Body: f, Info: store.Info{Size: fi.Size(), ModTime: fi.ModTime()}}, nil
}

func (s dirStore) Stat(ctx context.Context, key string) (store.Info, error) {
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return store.Info{}, err
	}
	return store.Info{Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (s dirStore) CreateTemp(ctx context.Context) (*os.File, error) {
	return os.CreateTemp(s.dir, ".tmp-*")
}

func (s dirStore) Commit(ctx context.Context, key string, tmp *os.File) error {
	defer os.Remove(tmp.Name())
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path(key)), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.path(key))
}

func (s dirStore) Discard(tmp *os.File) { tmp.Close(); os.Remove(tmp.Name()) }

func (s dirStore) Delete(ctx context.Context, key string) error {
	if err := os.Remove(s.path(key)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func (s dirStore) Walk(ctx context.Context, prefix string, fn func(string, store.Info) error) error {
	var keys []string
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return err
		}
		rel, _ := filepath.Rel(s.dir, p)
		if k := filepath.ToSlash(rel); strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(keys)
	for _, k := range keys {
		info, err := s.Stat(ctx, k)
		if err != nil {
			return err
		}
		if err := fn(k, info); err != nil {
			return err
		}
	}
	return nil
}

// age makes a stored entry look committed d ago, to expire it.
func (s dirStore) age(t *testing.T, key string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	if err := os.Chtimes(s.path(key), old, old); err != nil {
		t.Fatal(err)
	}
}
