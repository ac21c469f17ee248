package checksum

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/module"
)

// ErrMalformedGoSum marks a go.sum file that ParseGoSum refuses; the error names the line.
var ErrMalformedGoSum = errors.New("malformed go.sum")

// SumLine is one line of a go.sum file: the hash of a module version's zip, or of its
// go.mod when GoMod is set.
type SumLine struct {
	Path    string
	Version string
	GoMod   bool   // the line is "<path> <version>/go.mod <hash>"
	Hash    string // "h1:" and the base64 of a SHA-256
	Line    int    // line number in the file, from 1
}

// String returns the line as it appears in go.sum.
func (l SumLine) String() string {
	v := l.Version
	if l.GoMod {
		v += "/go.mod"
	}
	return l.Path + " " + v + " " + l.Hash
}

// GoSum is a parsed go.sum file: its lines in file order and a lookup by module version.
type GoSum struct {
	Lines []SumLine
	index map[sumKey]string
}

type sumKey struct {
	path, version string
	goMod         bool
}

// Hash returns the hash go.sum records for path@version (its go.mod hash with goMod set).
func (s *GoSum) Hash(path, version string, goMod bool) (string, bool) {
	h, ok := s.index[sumKey{path, version, goMod}]
	return h, ok
}

// ParseGoSum parses a go.sum file strictly. golang.org/x/mod has no go.sum parser in its
// public API (the go command's is internal), so this is a small one: every non-blank line
// must be "<module path> <version>[/go.mod] h1:<base64 SHA-256>" with a valid module path
// and canonical version; a repeated line is allowed, two different hashes for the same
// module version are not. Errors wrap ErrMalformedGoSum and name the line number.
func ParseGoSum(data []byte) (*GoSum, error) {
	s := &GoSum{index: map[sumKey]string{}}
	firstLine := map[sumKey]int{}
	for i, raw := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		line := strings.TrimSuffix(string(raw), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		l, err := parseSumLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v: %q", ErrMalformedGoSum, n, err, line)
		}
		l.Line = n
		k := sumKey{l.Path, l.Version, l.GoMod}
		if prev, ok := s.index[k]; ok {
			if prev != l.Hash {
				return nil, fmt.Errorf("%w: line %d: hash for %s differs from line %d", ErrMalformedGoSum, n, l.Path+" "+l.Version, firstLine[k])
			}
			continue
		}
		s.index[k] = l.Hash
		firstLine[k] = n
		s.Lines = append(s.Lines, l)
	}
	return s, nil
}

func parseSumLine(line string) (SumLine, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return SumLine{}, fmt.Errorf("want 3 fields, have %d", len(f))
	}
	l := SumLine{Path: f[0], Hash: f[2]}
	l.Version, l.GoMod = strings.CutSuffix(f[1], "/go.mod")
	if err := module.Check(l.Path, l.Version); err != nil {
		return SumLine{}, err
	}
	if module.CanonicalVersion(l.Version) != l.Version {
		return SumLine{}, fmt.Errorf("version %q is not canonical", l.Version)
	}
	if err := checkHash(l.Hash); err != nil {
		return SumLine{}, err
	}
	return l, nil
}

// checkHash checks that h is an h1: hash: "h1:" and the standard base64 of 32 bytes.
func checkHash(h string) error {
	b64, ok := strings.CutPrefix(h, "h1:")
	if !ok {
		return fmt.Errorf("hash %q is not an h1: hash", h)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 32 {
		return fmt.Errorf("hash %q is not the base64 of a SHA-256", h)
	}
	return nil
}
