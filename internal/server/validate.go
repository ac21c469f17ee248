package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
)

// Reasons an upstream answer is refused: the reason label of the refused-answers metric and
// RefusedError.Reason.
const (
	ReasonTooLarge     = "too_large"                  // longer than the protocol allows for the kind
	ReasonTruncated    = netobs.ClassBodyTruncated    // shorter than its Content-Length, or cut off
	ReasonTimeout      = netobs.ClassTimeout          // the body stalled past the fill's deadline
	ReasonReadError    = "read_error"                 // the body failed otherwise
	ReasonInvalidMod   = "invalid_mod"                // not a go.mod, or one naming another module
	ReasonInvalidZip   = "invalid_zip"                // not a valid zip of the module@version asked
	ReasonInvalidInfo  = "invalid_info"               // not a .info of the version asked
	ReasonInvalidList  = "invalid_list"               // a version list with a line that is no version
	ReasonChecksum     = netobs.ClassChecksumMismatch // the Verify hook refused it
	ReasonVerifyFailed = "verify_failed"              // the Verify hook failed without a class
)

// RefusedError is an upstream answer (status 200) that holoproxy refused to store: too long,
// cut short, or not the file that was asked for. OnFill receives it.
type RefusedError struct {
	Upstream string
	Request  goproxy.Request
	Reason   string // one of the Reason constants, or the Verify error's class
	Err      error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused the answer of %s: %s: %s", e.Upstream, e.Reason, oneLine(e.Err.Error()))
}

// Unwrap returns the cause.
func (e *RefusedError) Unwrap() error { return e.Err }

// Class returns the reason, the error class metrics and health group failures by.
func (e *RefusedError) Class() string { return e.Reason }

// refuse returns the refusal of upstream's answer to req. An answer came, so the refusal
// is never a not found (whose ',' fall-through and 404 it would get): a cause that wraps
// fs.ErrNotExist (a lookup the Verify hook made) is kept as its message only.
func refuse(upstream string, req goproxy.Request, reason string, err error) *RefusedError {
	if errors.Is(err, fs.ErrNotExist) {
		err = errors.New(err.Error())
	}
	return &RefusedError{Upstream: upstream, Request: req, Reason: reason, Err: err}
}

// checkError is a validation failure with its reason.
type checkError struct {
	reason string
	err    error
}

func (e *checkError) Error() string { return e.err.Error() }
func (e *checkError) Unwrap() error { return e.err }

// checkLength refuses a body longer than limit or of another length than declared.
func checkLength(n, limit, declared int64) *checkError {
	if n > limit {
		return &checkError{ReasonTooLarge, fmt.Errorf("body longer than the limit of %d bytes", limit)}
	}
	if declared >= 0 && n != declared {
		return &checkError{ReasonTruncated, fmt.Errorf("body of %d bytes, Content-Length %d", n, declared)}
	}
	return nil
}

// readReason classifies a failure while reading an upstream body. Through the observed
// transport the failure carries a netobs class (its body idle timeout is no net.Error, a
// reset no io.ErrUnexpectedEOF): a body cut off by the upstream is truncated, a body
// that stalled past a timeout is a timeout.
func readReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return ReasonTruncated
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	}
	switch netobs.ClassOf(err) {
	case netobs.ClassTimeout:
		return ReasonTimeout
	case netobs.ClassBodyTruncated, netobs.ClassTCPReset:
		return ReasonTruncated
	}
	return ReasonReadError
}

// verifyReason classifies a Verify failure by its Class method when it has one.
func verifyReason(err error) string {
	var c interface{ Class() string }
	if errors.As(err, &c) && c.Class() != "" {
		return c.Class()
	}
	return ReasonVerifyFailed
}

// check validates an answer written to f (at any offset) for req.
func (s *Server) check(req goproxy.Request, f *os.File) *checkError {
	if req.Kind == goproxy.KindZip {
		// CheckZip reads the directory by itself; the body is never loaded whole.
		if _, err := modzip.CheckZip(module.Version{Path: req.Module, Version: req.Version}, f.Name()); err != nil {
			return &checkError{ReasonInvalidZip, err}
		}
		return nil
	}
	// Every other kind is small (the limits of MaxSize): read it back.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return &checkError{ReasonReadError, err}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return &checkError{ReasonReadError, err}
	}
	switch req.Kind {
	case goproxy.KindMod:
		if err := checkMod(req, data); err != nil {
			return &checkError{ReasonInvalidMod, err}
		}
	case goproxy.KindInfo, goproxy.KindLatest:
		if err := checkInfo(req, data); err != nil {
			return &checkError{ReasonInvalidInfo, err}
		}
	case goproxy.KindList:
		if err := checkList(data); err != nil {
			return &checkError{ReasonInvalidList, err}
		}
	}
	return nil
}

// checkMod accepts a go.mod that parses and declares the module asked for.
func checkMod(req goproxy.Request, data []byte) error { return goproxy.CheckGoMod(req.Module, data) }

// infoVersion returns the Version of a .info answer, after checking it has one.
func infoVersion(data []byte) (string, error) {
	var info struct {
		Version string
		Time    *time.Time
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return "", fmt.Errorf("not a .info JSON object: %w", err)
	}
	if info.Version == "" {
		return "", errors.New(".info has no Version")
	}
	return info.Version, nil
}

// checkInfo accepts a .info (or @latest) whose Version is the canonical version asked for
// or, for a version query and @latest, any valid canonical version of the module.
func checkInfo(req goproxy.Request, data []byte) error {
	v, err := infoVersion(data)
	if err != nil {
		return err
	}
	if req.Kind == goproxy.KindInfo && req.Immutable() {
		if v != req.Version {
			return fmt.Errorf(".info names version %q, not %q", v, req.Version)
		}
		return nil
	}
	if !semver.IsValid(v) || module.CanonicalVersion(v) != v {
		return fmt.Errorf(".info names %q, not a canonical version", v)
	}
	if err := module.Check(req.Module, v); err != nil {
		return fmt.Errorf(".info names a version that does not fit the module: %w", err)
	}
	return nil
}

// checkList accepts a version list: UTF-8 lines whose first field, when there is one, is a
// semantic version (the go command ignores what follows it).
func checkList(data []byte) error {
	if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		return errors.New("list is not text")
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && !semver.IsValid(f[0]) {
			return fmt.Errorf("list line %d is not a version: %q", line, truncate(f[0], 40))
		}
	}
	return sc.Err()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// CheckStored runs the checks of a fill's answer on a file about to be stored under key
// from somewhere other than an upstream (a shared cache's bucket, store.Shared.Check): the
// size limit and validation of its kind, and Verify for a .mod or .zip. A file that fails
// is refused with the reason, as an upstream's answer would be.
func (s *Server) CheckStored(ctx context.Context, key string, f *os.File) error {
	req, err := goproxy.ParseRequest(key)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := checkLength(st.Size(), req.MaxSize(), -1); err != nil {
		return fmt.Errorf("%s: %w", err.reason, err)
	}
	if err := s.check(req, f); err != nil {
		return fmt.Errorf("%s: %w", err.reason, err)
	}
	if s.cfg.Verify != nil && (req.Kind == goproxy.KindMod || req.Kind == goproxy.KindZip) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := s.cfg.Verify(ctx, req, f); err != nil {
			return fmt.Errorf("%s: %w", verifyReason(err), err)
		}
	}
	return nil
}
