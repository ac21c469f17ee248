package checksum

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// ErrNoKey reports a GOSUMDB value naming a database whose verifier key is neither given
// nor known to the local Go installation. holoproxy then runs with verification off and
// says how to pass name+key.
var ErrNoKey = errors.New("no verifier key known for checksum database")

// SumDB is a checksum database configuration, parsed from a GOSUMDB value.
type SumDB struct {
	// Off is set for GOSUMDB=off: nothing is verified.
	Off bool
	// Name is the database name (the verifier key's name), like "sum.test".
	Name string
	// Key is the verifier key ("name+hash+keydata") the database's signed notes must carry.
	Key string
	// URL is the database URL given in the GOSUMDB value, or "" when it is to be resolved
	// (through the upstream proxies, else https://<name>).
	URL string
	// Warning, set with Off by SumDBOrOff, says why verification is off although a
	// database was asked for: to be logged at start and shown on /metrics.
	Warning string
}

// String returns the configuration in GOSUMDB syntax.
func (db SumDB) String() string {
	switch {
	case db.Off:
		return "off"
	case db.URL != "":
		return db.Key + " " + db.URL
	}
	return db.Key
}

// KeyFile returns where the Go installation at goroot keeps its known databases' keys.
func KeyFile(goroot string) string {
	return filepath.Join(goroot, "src", "cmd", "go", "internal", "modfetch", "key.go")
}

// KnownKeys returns the checksum databases the go command of the installation at goroot
// trusts by name, read from the map literal in its source (KeyFile). The keys are read at
// run time so that none is ever written into holoproxy.
func KnownKeys(goroot string) (map[string]string, error) {
	file := KeyFile(goroot)
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading known checksum databases: %w", err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), file, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("parsing known checksum databases: %w", err)
	}
	keys := map[string]string{}
	var found bool
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		mt, ok := lit.Type.(*ast.MapType)
		if !ok || !isIdent(mt.Key, "string") || !isIdent(mt.Value, "string") {
			return true
		}
		found = true
		for _, el := range lit.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			k, kok := stringLit(kv.Key)
			v, vok := stringLit(kv.Value)
			if kok && vok {
				keys[k] = v
			}
		}
		return false
	})
	if !found {
		return nil, fmt.Errorf("parsing known checksum databases: no map[string]string literal in %s", file)
	}
	return keys, nil
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

// ParseGOSUMDB parses a GOSUMDB value as the go command does: "off", "name",
// "name+key" (a full verifier key) or either of those followed by a URL. A bare name is
// resolved to its key through KnownKeys(goroot); when none is found the error wraps ErrNoKey.
func ParseGOSUMDB(value, goroot string) (SumDB, error) {
	value = strings.TrimSpace(value)
	if value == "off" {
		return SumDB{Off: true}, nil
	}
	f := strings.Fields(value)
	switch {
	case len(f) == 0:
		return SumDB{}, fmt.Errorf("GOSUMDB is empty; set it to off, a name, name+key or name+key URL")
	case len(f) > 2:
		return SumDB{}, fmt.Errorf("invalid GOSUMDB %q: too many fields", value)
	}
	db := SumDB{Key: f[0]}
	if !strings.Contains(f[0], "+") {
		known, err := KnownKeys(goroot)
		if err != nil {
			return SumDB{Name: f[0]}, fmt.Errorf("%w %q (%v); pass --sumdb name+key", ErrNoKey, f[0], err)
		}
		k, ok := known[f[0]]
		if !ok {
			return SumDB{Name: f[0]}, fmt.Errorf("%w %q: the Go installation knows no key for it; pass --sumdb name+key", ErrNoKey, f[0])
		}
		db.Key = k
	}
	v, err := note.NewVerifier(db.Key)
	if err != nil {
		return SumDB{}, fmt.Errorf("invalid GOSUMDB key %q: %w", db.Key, err)
	}
	db.Name = v.Name()
	if err := checkSumDBName(db.Name); err != nil {
		return SumDB{}, err
	}
	if len(f) == 2 {
		u, err := url.Parse(f[1])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return SumDB{}, fmt.Errorf("invalid GOSUMDB URL %q: want http(s)://host[/path]", f[1])
		}
		db.URL = strings.TrimSuffix(f[1], "/")
	}
	return db, nil
}

// checkSumDBName refuses a database name that is not host[/path], as the go command does
// (a name is also the start of the database's URLs), or whose path has an empty, "." or
// ".." element, which could not name the cached answers of the /sumdb/ proxy.
func checkSumDBName(name string) error {
	u, err := url.Parse("https://" + name)
	if err != nil || strings.HasSuffix(name, "/") || u.Host == "" || u.RawPath != "" ||
		*u != (url.URL{Scheme: "https", Host: u.Host, Path: u.Path}) {
		return fmt.Errorf("invalid GOSUMDB: checksum database name %q is not host[/path]", name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("invalid GOSUMDB: checksum database name %q has an empty, . or .. path element", name)
		}
	}
	return nil
}

// NoSumDBPatterns returns the module path patterns exempt from the checksum database, with
// the go command's meaning: GONOSUMDB when it is set, else GOPRIVATE.
func NoSumDBPatterns(gonosumdb, goprivate string) string {
	if gonosumdb != "" {
		return gonosumdb
	}
	return goprivate
}

// SumDBOrOff parses a --sumdb value like ParseGOSUMDB, except that a database without a
// known key turns verification off instead of failing: the result has Off set and a
// Warning that says how to pass name+key. Other parse errors are returned.
func SumDBOrOff(value, goroot string) (SumDB, error) {
	db, err := ParseGOSUMDB(value, goroot)
	if errors.Is(err, ErrNoKey) {
		return SumDB{Off: true, Name: db.Name, Warning: fmt.Sprintf(
			"CHECKSUM VERIFICATION IS OFF: no verifier key is known for checksum database %q, "+
				"so modules are cached unverified; pass --sumdb \"%s+<key>\" (GOSUMDB syntax, optionally followed by the database URL)",
			db.Name, db.Name)}, nil
	}
	return db, err
}
