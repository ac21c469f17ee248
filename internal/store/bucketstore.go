package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ListBucket is a Bucket that can list its objects.
type ListBucket interface {
	Bucket
	// List calls fn for every object whose key starts with prefix, in lexical order.
	List(ctx context.Context, prefix string, fn func(key string, obj Object) error) error
}

// BucketStore is a Store over a bucket alone, for the tools that check a shared cache's
// bucket (holoproxy verify): Walk lists it, Open copies an object to a temporary file
// (removed on Close) and checks it against the digest recorded with it, when it has one,
// and Delete removes it. It stores nothing: CreateTemp makes a scratch file, Commit is
// refused.
type BucketStore struct {
	Bucket ListBucket
	// TempDir holds the temporary files (default os.TempDir()).
	TempDir string
}

// errBucketReadOnly is the error of a Commit to a BucketStore.
var errBucketReadOnly = errors.New("store: a bucket store is read-only")

// Open implements Store.
func (b *BucketStore) Open(ctx context.Context, key string) (Entry, error) {
	rc, obj, err := b.Bucket.Get(ctx, key)
	if err != nil {
		return Entry{}, err
	}
	defer rc.Close()
	if err := obj.oversize(); err != nil {
		return Entry{}, fmt.Errorf("store: %s in %s: %w", key, b.Bucket, err)
	}
	tmp, err := b.CreateTemp(ctx)
	if err != nil {
		return Entry{}, err
	}
	n, got, err := copyObject(tmp, rc, obj)
	if err == nil && n != obj.Size {
		err = fmt.Errorf("object of %d bytes, %d read", obj.Size, n)
	}
	if err == nil && obj.SHA256 != "" && got != obj.SHA256 {
		err = fmt.Errorf("content has SHA-256 %s, the object records %s", got, obj.SHA256)
	}
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		b.Discard(tmp)
		return Entry{}, fmt.Errorf("store: %s in %s: %w", key, b.Bucket, err)
	}
	return Entry{Body: removeOnClose{tmp}, Info: Info{Size: n, ModTime: obj.ModTime}}, nil
}

// removeOnClose is a temporary file removed when closed.
type removeOnClose struct{ *os.File }

func (f removeOnClose) Close() error {
	err := f.File.Close()
	os.Remove(f.Name())
	return err
}

// Stat implements Store.
func (b *BucketStore) Stat(ctx context.Context, key string) (Info, error) {
	var info Info
	err := b.Bucket.List(ctx, key, func(k string, obj Object) error {
		if k == key {
			info = Info{Size: obj.Size, ModTime: obj.ModTime}
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return info, nil
	}
	if err == nil {
		err = fmt.Errorf("store: %s in %s: %w", key, b.Bucket, fs.ErrNotExist)
	}
	return Info{}, err
}

var errFound = errors.New("found")

// CreateTemp implements Store: a scratch file in TempDir.
func (b *BucketStore) CreateTemp(ctx context.Context) (*os.File, error) {
	f, err := os.CreateTemp(b.TempDir, "holoproxy-bucket-*")
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return f, nil
}

// Commit implements Store: refused.
func (b *BucketStore) Commit(ctx context.Context, key string, tmp *os.File) error {
	b.Discard(tmp)
	return errBucketReadOnly
}

// Discard implements Store.
func (b *BucketStore) Discard(tmp *os.File) {
	if tmp != nil {
		tmp.Close()
		os.Remove(tmp.Name())
	}
}

// Delete implements Store.
func (b *BucketStore) Delete(ctx context.Context, key string) error {
	return b.Bucket.Delete(ctx, key)
}

// Walk implements Store over the bucket's listing.
func (b *BucketStore) Walk(ctx context.Context, prefix string, fn func(key string, info Info) error) error {
	return b.Bucket.List(ctx, prefix, func(key string, obj Object) error {
		return fn(key, Info{Size: obj.Size, ModTime: obj.ModTime})
	})
}
