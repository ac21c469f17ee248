// Package store keeps holoproxy's cached files. A key is a slash-separated path in the
// GOPROXY tree layout ("github.com/!azure/sdk/@v/v1.2.3.zip"), so a disk store's directory
// is itself a valid GOPROXY file tree (usable as GOPROXY=file:///DIR). Entries are written
// whole or not at all: a fill is written to a temporary file, verified, then committed.
package store

import (
	"context"
	"io"
	"os"
	"time"
)

// Info describes a stored entry.
type Info struct {
	Size    int64
	ModTime time.Time // when the entry was committed; used for the TTL of list and @latest
	// Accessed is when the entry was last read, as far as the store knows (the disk store
	// reports the file's access time, which Linux's default relatime updates at most once
	// a day); zero when it does not know. Set by Walk only.
	Accessed time.Time
}

// Entry is an open stored entry. Close it when done.
type Entry struct {
	// Body reads the entry. For the disk store it is an *os.File, so serving it can use
	// sendfile.
	Body io.ReadSeekCloser
	Info
}

// Store is where verified files live. Implementations are safe for concurrent use.
// Missing keys answer errors that satisfy errors.Is(err, fs.ErrNotExist).
type Store interface {
	// Open returns the entry stored under key.
	Open(ctx context.Context, key string) (Entry, error)
	// Stat returns the Info of the entry stored under key.
	Stat(ctx context.Context, key string) (Info, error)
	// CreateTemp returns a new empty temporary file, on the same file system as the store
	// where that matters, into which a fill is written and verified before Commit.
	CreateTemp(ctx context.Context) (*os.File, error)
	// Commit makes the complete content of tmp visible under key atomically (fsync, then
	// rename or upload) and removes tmp, whether or not it succeeds. An existing entry is
	// replaced.
	Commit(ctx context.Context, key string, tmp *os.File) error
	// Discard removes an uncommitted temporary file.
	Discard(tmp *os.File)
	// Delete removes the entry under key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Walk calls fn for every committed entry whose key starts with prefix, in lexical order.
	Walk(ctx context.Context, prefix string, fn func(key string, info Info) error) error
}
