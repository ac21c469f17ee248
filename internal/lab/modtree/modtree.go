// Package modtree builds GOPROXY file trees of made-up modules for tests and benchmarks:
// real module zips (golang.org/x/mod/zip), .mod and .info files, version lists, the go.sum
// lines the go command would write, and generated module graphs of any size and depth. A
// tree it writes can be served by any static file server or used as GOPROXY=file:///DIR.
package modtree

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"go/token"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// Module is one version of a made-up module.
type Module struct {
	Path    string
	Version string
	// Time is the version's commit time in its .info; zero means a fixed date.
	Time time.Time
	// Require lists the module's requirements; they go into the generated go.mod and its
	// package imports theirs, so building a program exercises every module.
	Require []module.Version
	// GoModExtra is appended to the generated go.mod (retract directives, for example).
	GoModExtra string
	// NoGoMod makes a module without a go.mod file: its .mod is the one line the go command
	// synthesises ("module <path>") and its zip holds no go.mod.
	NoGoMod bool
	// Files replace the generated content of the zip, by path inside the module. Without
	// them the module holds one package, at its root, that imports its requirements.
	Files map[string]string
	// Extra files are added to the generated content (padding to a realistic size, say).
	Extra map[string]string
}

// ID returns the module.Version of m.
func (m Module) ID() module.Version { return module.Version{Path: m.Path, Version: m.Version} }

// PackageName returns the name of the package at the module root.
func (m Module) PackageName() string {
	base := path.Base(m.Path)
	if strings.HasPrefix(base, "v") && len(base) > 1 && strings.Trim(base[1:], "0123456789") == "" {
		base = path.Base(path.Dir(m.Path))
	}
	var b strings.Builder
	for _, r := range strings.ToLower(base) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9' && b.Len() > 0) {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 || token.IsKeyword(b.String()) {
		return "p" + b.String()
	}
	return b.String()
}

// GoMod returns the content of m's .mod file.
func (m Module) GoMod() []byte {
	if m.NoGoMod {
		return []byte("module " + m.Path + "\n")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "module %s\n\ngo 1.21\n", m.Path)
	if len(m.Require) > 0 {
		b.WriteString("\nrequire (\n")
		for _, r := range m.Require {
			fmt.Fprintf(&b, "\t%s %s\n", r.Path, r.Version)
		}
		b.WriteString(")\n")
	}
	if m.GoModExtra != "" {
		b.WriteString("\n" + m.GoModExtra + "\n")
	}
	return b.Bytes()
}

// Info returns the content of m's .info file.
func (m Module) Info() []byte {
	t := m.Time
	if t.IsZero() {
		t = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	}
	b, _ := json.Marshal(struct {
		Version string
		Time    time.Time
	}{m.Version, t.UTC()})
	return b
}

func (m Module) source() map[string]string {
	files := map[string]string{}
	if len(m.Files) > 0 {
		for k, v := range m.Files {
			files[k] = v
		}
	} else {
		var imports, calls strings.Builder
		for _, r := range m.Require {
			rm := Module{Path: r.Path}
			fmt.Fprintf(&imports, "\t%s %q\n", rm.PackageName(), r.Path)
			fmt.Fprintf(&calls, "\tn += %s.F()\n", rm.PackageName())
		}
		src := "package " + m.PackageName() + "\n\n"
		if imports.Len() > 0 {
			src += "import (\n" + imports.String() + ")\n\n"
		}
		src += "// F returns how many modules this one reaches, itself included.\nfunc F() int {\n\tn := 1\n" + calls.String() + "\treturn n\n}\n"
		files[m.PackageName()+".go"] = src
		files["LICENSE"] = "Test fixture; no rights reserved.\n"
	}
	for k, v := range m.Extra {
		files[k] = v
	}
	if !m.NoGoMod {
		files["go.mod"] = string(m.GoMod())
	}
	return files
}

type memFile struct {
	name string
	data string
}

func (f memFile) Path() string                { return f.name }
func (f memFile) Lstat() (os.FileInfo, error) { return memInfo(f), nil }
func (f memFile) Open() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(f.data)), nil
}

type memInfo memFile

func (i memInfo) Name() string       { return path.Base(i.name) }
func (i memInfo) Size() int64        { return int64(len(i.data)) }
func (i memInfo) Mode() os.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// Zip returns m's module zip.
func (m Module) Zip() ([]byte, error) {
	src := m.source()
	names := make([]string, 0, len(src))
	for k := range src {
		names = append(names, k)
	}
	sort.Strings(names)
	files := make([]modzip.File, 0, len(names))
	for _, n := range names {
		files = append(files, memFile{n, src[n]})
	}
	var b bytes.Buffer
	if err := modzip.Create(&b, m.ID(), files); err != nil {
		return nil, fmt.Errorf("zip %s@%s: %w", m.Path, m.Version, err)
	}
	return b.Bytes(), nil
}

// SumLines returns the two go.sum lines of m (zip hash, then go.mod hash).
func (m Module) SumLines() ([]string, error) {
	z, err := m.Zip()
	if err != nil {
		return nil, err
	}
	zh, err := HashZipBytes(z)
	if err != nil {
		return nil, err
	}
	mh, err := HashGoMod(m.GoMod())
	if err != nil {
		return nil, err
	}
	return []string{
		fmt.Sprintf("%s %s %s", m.Path, m.Version, zh),
		fmt.Sprintf("%s %s/go.mod %s", m.Path, m.Version, mh),
	}, nil
}

// HashGoMod returns the h1: hash the go command records for a go.mod file.
func HashGoMod(data []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// HashZipBytes returns the h1: hash of a module zip held in memory.
func HashZipBytes(z []byte) (string, error) {
	f, err := os.CreateTemp("", "modtree-*.zip")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(z); err != nil {
		return "", err
	}
	return dirhash.HashZip(f.Name(), dirhash.Hash1)
}

// Write writes the GOPROXY tree of mods under dir: for every version its .info, .mod and
// .zip, and per module a list of its tagged (non-pseudo) versions; a module with only
// pseudo-versions gets an @latest instead.
func Write(dir string, mods []Module) error {
	byPath := map[string][]Module{}
	for _, m := range mods {
		byPath[m.Path] = append(byPath[m.Path], m)
	}
	for p, vs := range byPath {
		escPath, err := module.EscapePath(p)
		if err != nil {
			return err
		}
		vdir := filepath.Join(dir, filepath.FromSlash(escPath), "@v")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return err
		}
		var tagged []string
		var newest Module
		for _, m := range vs {
			escVer, err := module.EscapeVersion(m.Version)
			if err != nil {
				return err
			}
			z, err := m.Zip()
			if err != nil {
				return err
			}
			for ext, data := range map[string][]byte{".info": m.Info(), ".mod": m.GoMod(), ".zip": z} {
				if err := os.WriteFile(filepath.Join(vdir, escVer+ext), data, 0o644); err != nil {
					return err
				}
			}
			if !module.IsPseudoVersion(m.Version) {
				tagged = append(tagged, m.Version)
			}
			if newest.Version == "" || semver.Compare(m.Version, newest.Version) > 0 {
				newest = m
			}
		}
		semver.Sort(tagged)
		list := strings.Join(tagged, "\n")
		if list != "" {
			list += "\n"
		}
		if err := os.WriteFile(filepath.Join(vdir, "list"), []byte(list), 0o644); err != nil {
			return err
		}
		if len(tagged) == 0 {
			if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(escPath), "@latest"), newest.Info(), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// GoSum returns the go.sum content for mods, sorted as the go command sorts it.
func GoSum(mods []Module) ([]byte, error) {
	var lines []string
	for _, m := range mods {
		l, err := m.SumLines()
		if err != nil {
			return nil, err
		}
		lines = append(lines, l...)
	}
	sort.Strings(lines)
	return []byte(strings.Join(lines, "\n") + "\n"), nil
}

// Graph generates n modules under the path prefix (e.g. "mods.test/g") arranged in depth
// levels: every module of a level requires up to fanout modules of the next level, and the
// returned roots are those of the first level. Each module has a v1.0.0; every fifth one also
// has a v1.1.0, and its requirers ask for one or the other, so MVS has choices to make.
func Graph(prefix string, n, depth, fanout int) (mods []Module, roots []module.Version) {
	if depth < 1 {
		depth = 1
	}
	levels := make([][]int, depth)
	for i := 0; i < n; i++ {
		l := i * depth / n
		levels[l] = append(levels[l], i)
	}
	version := func(i int) string {
		if i%5 == 4 {
			return "v1.1.0"
		}
		return "v1.0.0"
	}
	pathOf := func(i int) string { return fmt.Sprintf("%s%03d", prefix, i) }
	for l, idx := range levels {
		for k, i := range idx {
			m := Module{Path: pathOf(i), Version: version(i)}
			if l+1 < depth && len(levels[l+1]) > 0 {
				next := levels[l+1]
				for f := 0; f < fanout && f < len(next); f++ {
					j := next[(k*fanout+f)%len(next)]
					v := version(j)
					if k%2 == 0 {
						v = "v1.0.0"
					}
					m.Require = appendUnique(m.Require, module.Version{Path: pathOf(j), Version: v})
				}
			}
			mods = append(mods, m)
			if m.Version == "v1.1.0" {
				old := m
				old.Version = "v1.0.0"
				old.Require = nil
				mods = append(mods, old)
			}
			if l == 0 {
				roots = append(roots, m.ID())
			}
		}
	}
	return mods, roots
}

func appendUnique(list []module.Version, v module.Version) []module.Version {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// BuildList returns the modules of mods that minimal version selection picks for a main
// module requiring roots: for every path reachable from roots, its highest required version.
// The go.sum of an app needs these plus the go.mod of every version in the graph.
func BuildList(mods []Module, roots []module.Version) (selected, graph []Module) {
	byID := map[module.Version]Module{}
	for _, m := range mods {
		byID[m.ID()] = m
	}
	seen := map[module.Version]bool{}
	best := map[string]Module{}
	var visit func(v module.Version)
	visit = func(v module.Version) {
		if seen[v] {
			return
		}
		seen[v] = true
		m, ok := byID[v]
		if !ok {
			return
		}
		graph = append(graph, m)
		if b, ok := best[v.Path]; !ok || semver.Compare(v.Version, b.Version) > 0 {
			best[v.Path] = m
		}
		for _, r := range m.Require {
			visit(r)
		}
	}
	for _, r := range roots {
		visit(r)
	}
	// A selected version's own requirements count too, even if first reached at a lower one.
	for changed := true; changed; {
		changed = false
		for _, m := range best {
			for _, r := range m.Require {
				if !seen[r] {
					visit(r)
					changed = true
				}
			}
		}
	}
	for _, m := range best {
		selected = append(selected, m)
	}
	sort.Slice(selected, func(i, j int) bool { return selected[i].Path < selected[j].Path })
	sort.Slice(graph, func(i, j int) bool {
		if graph[i].Path != graph[j].Path {
			return graph[i].Path < graph[j].Path
		}
		return semver.Compare(graph[i].Version, graph[j].Version) < 0
	})
	return selected, graph
}

// AppGoSum returns the go.sum the go command writes for an app requiring roots: zip and
// go.mod hashes of the selected versions, go.mod hashes of every other version in the graph.
func AppGoSum(mods []Module, roots []module.Version) ([]byte, error) {
	selected, graph := BuildList(mods, roots)
	isSel := map[module.Version]bool{}
	for _, m := range selected {
		isSel[m.ID()] = true
	}
	var lines []string
	for _, m := range graph {
		l, err := m.SumLines()
		if err != nil {
			return nil, err
		}
		if isSel[m.ID()] {
			lines = append(lines, l...)
		} else {
			lines = append(lines, l[1])
		}
	}
	sort.Strings(lines)
	return []byte(strings.Join(lines, "\n") + "\n"), nil
}

// WriteApp writes a main module at dir that requires roots directly and the rest of their
// build list as indirect (as go mod tidy would), with a main package importing each root's
// package, so `go mod download all` and `go build` exercise every module reachable from
// roots. With sum non-nil, it is written as the app's go.sum.
func WriteApp(dir, modPath string, mods []Module, roots []module.Version, sum []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	app := Module{Path: modPath, Version: "v0.0.0", Require: roots}
	src := app.source()
	main := strings.Replace(src[app.PackageName()+".go"], "package "+app.PackageName(), "package main", 1)
	main += "\nfunc main() { println(F()) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(main), 0o644); err != nil {
		return err
	}
	direct := map[string]bool{}
	for _, r := range roots {
		direct[r.Path] = true
	}
	selected, _ := BuildList(mods, roots)
	var b bytes.Buffer
	fmt.Fprintf(&b, "module %s\n\ngo 1.21\n\nrequire (\n", modPath)
	for _, m := range selected {
		if direct[m.Path] {
			fmt.Fprintf(&b, "\t%s %s\n", m.Path, m.Version)
		}
	}
	b.WriteString(")\n\nrequire (\n")
	for _, m := range selected {
		if !direct[m.Path] {
			fmt.Fprintf(&b, "\t%s %s // indirect\n", m.Path, m.Version)
		}
	}
	b.WriteString(")\n")
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), b.Bytes(), 0o644); err != nil {
		return err
	}
	if sum != nil {
		return os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644)
	}
	return nil
}

// TamperZip returns the module zip z with the content of one file (not go.mod) changed:
// the same module@version and file list, other bytes, so another h1: hash. Tests use it to
// play an upstream that serves a tampered module.
func TamperZip(z []byte) ([]byte, error) {
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	changed := false
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return nil, err
		}
		if !changed && !strings.HasSuffix(f.Name, "/go.mod") {
			b = append(b, "\n// tampered\n"...)
			changed = true
		}
		w, err := zw.Create(f.Name)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if !changed {
		return nil, fmt.Errorf("modtree: no file besides go.mod to tamper with")
	}
	return out.Bytes(), nil
}
