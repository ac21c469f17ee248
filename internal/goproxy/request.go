package goproxy

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

// Kind is the endpoint a request addresses.
type Kind string

// The endpoint kinds of the GOPROXY protocol.
const (
	KindList   Kind = "list"   // <module>/@v/list
	KindLatest Kind = "latest" // <module>/@latest
	KindInfo   Kind = "info"   // <module>/@v/<version>.info
	KindMod    Kind = "mod"    // <module>/@v/<version>.mod
	KindZip    Kind = "zip"    // <module>/@v/<version>.zip
)

// Size limits of answers, from golang.org/x/mod/zip; larger answers are refused before they
// are stored.
const (
	MaxZipSize  = modzip.MaxZipFile
	MaxModSize  = modzip.MaxGoMod
	MaxInfoSize = 64 << 10 // a .info is a small JSON object
	MaxListSize = 16 << 20 // a version list
)

// MaxPathLen is the longest request path accepted. Module paths in the wild stay far below.
const MaxPathLen = 2048

// ErrBadRequest marks a request path that is malformed: answered 400 with the error's text.
var ErrBadRequest = errors.New("bad request")

// Request is one parsed, validated GOPROXY request.
type Request struct {
	Kind    Kind
	Module  string // the module path, unescaped
	Version string // the version (or version query) for info, mod and zip; empty otherwise
}

// ParseRequest parses a request path relative to a proxy's base URL, as the go command sends
// it: case-encoded module path and version, no leading slash. A malformed path answers an
// error wrapping ErrBadRequest; a path that is well formed but names no endpoint of the
// protocol answers one wrapping fs.ErrNotExist.
func ParseRequest(p string) (Request, error) {
	if len(p) > MaxPathLen {
		return Request{}, fmt.Errorf("%w: path longer than %d bytes", ErrBadRequest, MaxPathLen)
	}
	if strings.ContainsAny(p, "\x00\\") {
		return Request{}, fmt.Errorf("%w: path contains NUL or backslash", ErrBadRequest)
	}
	if strings.HasPrefix(p, "/") {
		return Request{}, fmt.Errorf("%w: path must be relative", ErrBadRequest)
	}
	if mod, ok := strings.CutSuffix(p, "/@latest"); ok {
		path, err := unescapeModule(mod)
		if err != nil {
			return Request{}, err
		}
		return Request{Kind: KindLatest, Module: path}, nil
	}
	mod, rest, ok := strings.Cut(p, "/@v/")
	if !ok {
		return Request{}, fmt.Errorf("%w: no /@v/ or /@latest in %q", fs.ErrNotExist, p)
	}
	path, err := unescapeModule(mod)
	if err != nil {
		return Request{}, err
	}
	if rest == "list" {
		return Request{Kind: KindList, Module: path}, nil
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return Request{}, fmt.Errorf("%w: unknown endpoint %q", fs.ErrNotExist, "@v/"+rest)
	}
	ext := rest[dot+1:]
	var kind Kind
	switch ext {
	case "info":
		kind = KindInfo
	case "mod":
		kind = KindMod
	case "zip":
		kind = KindZip
	default:
		return Request{}, fmt.Errorf("%w: unknown endpoint %q", fs.ErrNotExist, "@v/"+rest)
	}
	escVer := strings.TrimSuffix(rest, "."+ext)
	if escVer == "" || strings.Contains(escVer, "/") {
		return Request{}, fmt.Errorf("%w: malformed version %q", ErrBadRequest, escVer)
	}
	ver, err := module.UnescapeVersion(escVer)
	if err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	r := Request{Kind: kind, Module: path, Version: ver}
	if kind != KindInfo {
		// The go command resolves a query through .info first and asks .mod and .zip only
		// for canonical versions.
		if err := module.Check(path, ver); err != nil {
			return Request{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		if !r.Canonical() {
			return Request{}, fmt.Errorf("%w: %s is not a canonical version; resolve it through .info", ErrBadRequest, ver)
		}
	}
	return r, nil
}

func unescapeModule(esc string) (string, error) {
	path, err := module.UnescapePath(esc)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return path, nil
}

// Canonical reports whether the request names a canonical semantic version, whose .info,
// .mod and .zip never change and may be cached forever.
func (r Request) Canonical() bool {
	return r.Version != "" && semver.IsValid(r.Version) && module.CanonicalVersion(r.Version) == r.Version
}

// Immutable reports whether the answer to r never changes once it exists.
func (r Request) Immutable() bool {
	switch r.Kind {
	case KindInfo, KindMod, KindZip:
		return r.Canonical()
	}
	return false
}

// Path returns the case-encoded path of r relative to a proxy's base URL. It is also the key
// under which the answer is stored, so a store's tree is a GOPROXY file tree.
func (r Request) Path() string {
	escMod, err := module.EscapePath(r.Module)
	if err != nil {
		// A Request from ParseRequest always escapes; a hand-made invalid one falls back.
		escMod = r.Module
	}
	switch r.Kind {
	case KindList:
		return escMod + "/@v/list"
	case KindLatest:
		return escMod + "/@latest"
	}
	escVer, err := module.EscapeVersion(r.Version)
	if err != nil {
		escVer = r.Version
	}
	return escMod + "/@v/" + escVer + "." + string(r.Kind)
}

// MaxSize returns the largest answer accepted for r's kind.
func (r Request) MaxSize() int64 {
	switch r.Kind {
	case KindZip:
		return MaxZipSize
	case KindMod:
		return MaxModSize
	case KindInfo, KindLatest:
		return MaxInfoSize
	}
	return MaxListSize
}

// String returns module@version/kind for logs.
func (r Request) String() string {
	if r.Version == "" {
		return r.Module + " " + string(r.Kind)
	}
	return r.Module + "@" + r.Version + " " + string(r.Kind)
}
