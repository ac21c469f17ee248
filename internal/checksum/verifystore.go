package checksum

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/store"
	"golang.org/x/mod/module"
)

// Failure is one stored file that failed verification.
type Failure struct {
	Key    string // the store key
	Reason string // one line: the mismatch with both hashes, or why the file is unreadable
	Purged bool   // removed from the store
}

// Report is the outcome of VerifyStore.
type Report struct {
	Checked      int // .mod and .zip files examined
	OK           int // matched the checksum database
	Exempt       int // not looked up (GONOSUMDB/GOPRIVATE, or verification off), and whole
	Failed       int // mismatched the database or are unreadable/corrupt
	Purged       int // failed files removed (with purge)
	Unverified   int // could not be checked: database unreachable or version unknown to it
	Failures     []Failure
	Unverifiable []Failure // the Unverified files and why
}

// Clean reports whether every checked file was verified or exempt; a verify command exits
// non-zero otherwise.
func (r Report) Clean() bool { return r.Failed == 0 && r.Unverified == 0 }

// String returns the counts on one line.
func (r Report) String() string {
	return fmt.Sprintf("checked %d: ok %d, exempt %d, failed %d, purged %d, unverified %d",
		r.Checked, r.OK, r.Exempt, r.Failed, r.Purged, r.Unverified)
}

// VerifyStore re-checks every .mod and .zip in st against the checksum database through v
// and, with purge, deletes the files that fail (a mismatch, or content that cannot be
// hashed). Files that cannot be checked (database unreachable, version unknown to it) are
// counted, never deleted. It stops with an error, returning the report so far, when the
// context ends or the database misbehaves (ErrSumDBMisbehavior).
func VerifyStore(ctx context.Context, st store.Store, v *Verifier, purge bool) (Report, error) {
	var keys []string
	err := st.Walk(ctx, "", func(key string, _ store.Info) error {
		if _, _, _, ok := parseVersionKey(key); ok {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("verify store: listing: %w", err)
	}
	var rep Report
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("verify store: %w", err)
		}
		path, version, isZip, _ := parseVersionKey(key)
		rep.Checked++
		exempt := v.Exempt(path)
		err := verifyEntry(ctx, st, v, key, path, version, isZip, exempt)
		switch {
		case err == nil && exempt:
			rep.Exempt++
		case err == nil:
			rep.OK++
		case errors.Is(err, ErrSumDBMisbehavior):
			return rep, fmt.Errorf("verify store: %w", err)
		case errors.Is(err, ErrNotInDatabase), errors.Is(err, ErrSumDBUnavailable), errors.Is(err, errLookup):
			rep.Unverified++
			rep.Unverifiable = append(rep.Unverifiable, Failure{Key: key, Reason: oneLine(err)})
		default:
			f := Failure{Key: key, Reason: oneLine(err)}
			rep.Failed++
			if purge {
				if derr := st.Delete(ctx, key); derr != nil {
					f.Reason += "; purge failed: " + oneLine(derr)
				} else {
					f.Purged = true
					rep.Purged++
				}
			}
			v.log.Error("stored file failed verification", "key", key, "reason", f.Reason, "purged", f.Purged)
			rep.Failures = append(rep.Failures, f)
		}
	}
	v.log.Info("verify store done", slog.String("report", rep.String()))
	return rep, nil
}

// errLookup marks an error of the database lookup itself, as opposed to the stored file.
var errLookup = errors.New("checksum database lookup failed")

// verifyEntry checks the stored file under key against the database; an exempt one is
// not looked up, only checked to be whole: a zip read through (every file inflated, its
// CRC-32 and size checked), a go.mod that parses and names its module.
func verifyEntry(ctx context.Context, st store.Store, v *Verifier, key, path, version string, isZip, exempt bool) error {
	e, err := st.Open(ctx, key)
	if err != nil {
		return fmt.Errorf("opening: %w", err)
	}
	defer e.Body.Close()
	var hash, hv string
	switch {
	case isZip && exempt:
		err = readZipEntry(ctx, st, e, CheckZipData)
	case isZip:
		hash, err = hashZipEntry(ctx, st, e)
		hv = version
	default:
		var data []byte
		data, err = io.ReadAll(io.LimitReader(e.Body, maxModSize+1))
		if err == nil && len(data) > maxModSize {
			err = fmt.Errorf("go.mod larger than %d bytes", maxModSize)
		}
		switch {
		case err == nil && exempt:
			err = goproxy.CheckGoMod(path, data)
		case err == nil:
			hash, err = HashMod(data)
		}
		hv = version + "/go.mod"
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if exempt {
		return nil
	}
	err = v.VerifyHash(ctx, path, hv, hash)
	if err != nil && !errors.Is(err, ErrChecksumMismatch) && !errors.Is(err, ErrSumDBMisbehavior) &&
		!errors.Is(err, ErrNotInDatabase) && !errors.Is(err, ErrSumDBUnavailable) {
		return fmt.Errorf("%w: %w", errLookup, err)
	}
	return err
}

// maxModSize is the largest go.mod accepted (golang.org/x/mod/zip's MaxGoMod).
const maxModSize = 16 << 20

func hashZipEntry(ctx context.Context, st store.Store, e store.Entry) (hash string, err error) {
	err = readZipEntry(ctx, st, e, func(r io.ReaderAt, size int64) (err error) {
		hash, err = HashZipReader(r, size)
		return err
	})
	return hash, err
}

// readZipEntry calls fn with the zip of entry e as an io.ReaderAt: its body when it is one
// (a file), else a temporary copy (a bucket's object).
func readZipEntry(ctx context.Context, st store.Store, e store.Entry, fn func(io.ReaderAt, int64) error) error {
	if ra, ok := e.Body.(io.ReaderAt); ok {
		return fn(ra, e.Size)
	}
	tmp, err := st.CreateTemp(ctx)
	if err != nil {
		return err
	}
	defer st.Discard(tmp)
	n, err := io.Copy(tmp, e.Body)
	if err != nil {
		return err
	}
	return fn(tmp, n)
}

// parseVersionKey recognises the store key of a .mod or .zip file,
// "<escaped path>/@v/<escaped version>.mod|.zip", and returns its module path and version.
func parseVersionKey(key string) (path, version string, isZip, ok bool) {
	escPath, file, found := strings.Cut(key, "/@v/")
	if !found || strings.HasPrefix(key, "sumdb/") {
		return "", "", false, false
	}
	var escVer string
	switch {
	case strings.HasSuffix(file, ".zip"):
		escVer, isZip = strings.TrimSuffix(file, ".zip"), true
	case strings.HasSuffix(file, ".mod"):
		escVer = strings.TrimSuffix(file, ".mod")
	default:
		return "", "", false, false
	}
	p, err := module.UnescapePath(escPath)
	if err != nil {
		return "", "", false, false
	}
	ver, err := module.UnescapeVersion(escVer)
	if err != nil || module.Check(p, ver) != nil {
		return "", "", false, false
	}
	return p, ver, isZip, true
}
