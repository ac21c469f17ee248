package trace

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/checksum"
)

// Target is one module the workload fetches.
type Target struct {
	Path string
	// Version is the version to fetch; empty asks for the latest, as `go get m@latest` does.
	Version string
	// ModOnly fetches only the .mod, as the go command's graph walk does for versions it
	// does not build (go.sum lines with only a /go.mod hash).
	ModOnly bool
}

func (t Target) String() string {
	if t.Version == "" {
		return t.Path + "@latest"
	}
	return t.Path + "@" + t.Version
}

// ParseTargets reads command-line arguments of the form module or module@version.
func ParseTargets(args []string) ([]Target, error) {
	var out []Target
	for _, a := range args {
		p, v, _ := strings.Cut(a, "@")
		if v == "latest" {
			v = ""
		}
		if err := module.CheckPath(p); err != nil {
			return nil, fmt.Errorf("%q: %w", a, err)
		}
		if v != "" {
			if err := module.Check(p, v); err != nil {
				return nil, fmt.Errorf("%q: %w", a, err)
			}
		}
		out = append(out, Target{Path: p, Version: v})
	}
	return out, nil
}

// TargetsFromGoMod returns the workload of `go mod download all` for the module whose go.mod
// is at path: every go.sum line with a zip hash is a full download (.info, .mod, .zip), every
// version with only a /go.mod line a .mod fetch. Without a go.sum, the go.mod's requirements
// are fully downloaded.
func TargetsFromGoMod(path string) ([]Target, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	mf, err := modfile.ParseLax(path, data, nil)
	if err != nil {
		return nil, err
	}
	sumData, err := os.ReadFile(filepath.Join(filepath.Dir(path), "go.sum"))
	if os.IsNotExist(err) {
		var out []Target
		for _, r := range mf.Require {
			out = append(out, Target{Path: r.Mod.Path, Version: r.Mod.Version})
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	sum, err := checksum.ParseGoSum(sumData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(filepath.Dir(path), "go.sum"), err)
	}
	full := map[module.Version]bool{}
	for _, l := range sum.Lines {
		v := module.Version{Path: l.Path, Version: l.Version}
		if !l.GoMod {
			full[v] = true
		} else if _, ok := full[v]; !ok {
			full[v] = false
		}
	}
	out := make([]Target, 0, len(full))
	for v, isFull := range full {
		out = append(out, Target{Path: v.Path, Version: v.Version, ModOnly: !isFull})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}
