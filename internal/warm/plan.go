package warm

import (
	"errors"
	"fmt"
	"go/version"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/holoproxy/holoproxy/internal/checksum"
)

// ToolchainModule is the module path under which the go command downloads toolchains.
const ToolchainModule = "golang.org/toolchain"

// Item is one module version of a Plan and what to fetch of it.
type Item struct {
	Mod module.Version
	// Zip is set when the module's source is needed: go.sum has its zip hash (or it is a
	// toolchain). Without it only .info and .mod are fetched.
	Zip bool
	// ZipHash and ModHash are the h1: hashes go.sum records; "" when none does (a
	// toolchain module, which only the checksum database can vouch for).
	ZipHash, ModHash string
	// Source names the file the item was first found in, for messages.
	Source string
}

// String returns module@version.
func (it Item) String() string { return it.Mod.Path + "@" + it.Mod.Version }

// Plan is the deduplicated list of module versions a project needs, sorted by path and
// version.
type Plan struct {
	Items []Item
	// Sources are the go.sum (and go.work.sum) files read.
	Sources []string
}

// Files returns how many files the plan fetches.
func (p *Plan) Files() int {
	n := 0
	for _, it := range p.Items {
		n += 2
		if it.Zip {
			n++
		}
	}
	return n
}

// LoadOptions tune Load.
type LoadOptions struct {
	// Toolchain adds the Go toolchain each go.mod or go.work asks for of a go command
	// older than it: its toolchain line, or its go line's release when that is newer (in
	// a workspace, go.work's lines alone).
	Toolchain bool
	// GOOS and GOARCH select the toolchain build; empty means the running program's.
	GOOS, GOARCH string
}

// ErrUsage marks an argument Load cannot use: a missing file or directory, or a file that
// is neither go.mod nor go.work.
var ErrUsage = errors.New("bad argument")

// Load reads the projects named by args (a directory, holding go.work or else go.mod; a
// go.mod; a go.work) and returns the Plan of everything their go.sum files name. A go.work
// contributes the go.sum of every module it uses plus go.work.sum.
func Load(args []string, opt LoadOptions) (*Plan, error) {
	if len(args) == 0 {
		args = []string{"."}
	}
	b := &planBuilder{items: map[module.Version]*Item{}, seen: map[string]bool{}}
	for _, arg := range args {
		file, err := projectFile(arg)
		if err != nil {
			return nil, err
		}
		if filepath.Base(file) == "go.work" {
			err = b.addWork(file, opt)
		} else {
			err = b.addMod(file, opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return b.plan(), nil
}

func projectFile(arg string) (string, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if st.IsDir() {
		for _, name := range []string{"go.work", "go.mod"} {
			f := filepath.Join(arg, name)
			if _, err := os.Stat(f); err == nil {
				return f, nil
			}
		}
		return "", fmt.Errorf("%w: %s holds neither go.work nor go.mod", ErrUsage, arg)
	}
	switch filepath.Base(arg) {
	case "go.mod", "go.work":
		return arg, nil
	}
	return "", fmt.Errorf("%w: %s is not a directory, go.mod or go.work", ErrUsage, arg)
}

type planBuilder struct {
	items   map[module.Version]*Item
	sources []string
	seen    map[string]bool
}

func (b *planBuilder) addMod(file string, opt LoadOptions) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	mf, err := modfile.Parse(file, data, nil)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", file, err)
	}
	if opt.Toolchain {
		if err := b.addToolchain(file, goLine(mf.Go), toolchainLine(mf.Toolchain), opt); err != nil {
			return err
		}
	}
	return b.addSum(filepath.Join(filepath.Dir(file), "go.sum"), true)
}

func (b *planBuilder) addWork(file string, opt LoadOptions) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	wf, err := modfile.ParseWork(file, data, nil)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", file, err)
	}
	dir := filepath.Dir(file)
	if opt.Toolchain {
		if err := b.addToolchain(file, goLine(wf.Go), toolchainLine(wf.Toolchain), opt); err != nil {
			return err
		}
	}
	// In a workspace the go command chooses its toolchain from go.work's lines alone (and
	// refuses a module whose go line is newer than go.work's): the modules' own lines
	// would only add toolchains the workspace never downloads.
	modOpt := opt
	modOpt.Toolchain = false
	for _, u := range wf.Use {
		p := u.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := b.addMod(filepath.Join(p, "go.mod"), modOpt); err != nil {
			return err
		}
	}
	return b.addSum(filepath.Join(dir, "go.work.sum"), true)
}

// addSum adds every line of a go.sum file; a missing file is no error when optional (a
// module without dependencies has none).
func (b *planBuilder) addSum(file string, optional bool) error {
	abs, err := filepath.Abs(file)
	if err == nil {
		file = abs
	}
	if b.seen[file] {
		return nil
	}
	b.seen[file] = true
	data, err := os.ReadFile(file)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("reading %s: %w", file, err)
	}
	sum, err := checksum.ParseGoSum(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	b.sources = append(b.sources, file)
	for _, l := range sum.Lines {
		mv := module.Version{Path: l.Path, Version: l.Version}
		it := b.item(mv, fmt.Sprintf("%s:%d", file, l.Line))
		have := &it.ZipHash
		if l.GoMod {
			have = &it.ModHash
		} else {
			it.Zip = true
		}
		if *have != "" && *have != l.Hash {
			return fmt.Errorf("%s:%d: %s has hash %s here but %s in %s", file, l.Line, l.String(), l.Hash, *have, it.Source)
		}
		*have = l.Hash
	}
	return nil
}

func (b *planBuilder) item(mv module.Version, source string) *Item {
	it := b.items[mv]
	if it == nil {
		it = &Item{Mod: mv, Source: source}
		b.items[mv] = it
	}
	return it
}

// goLine returns the version of a go line ("1.22.3"), "" without one.
func goLine(g *modfile.Go) string {
	if g == nil {
		return ""
	}
	return g.Version
}

// toolchainLine returns the name of a toolchain line ("go1.22.3"), "" without one.
func toolchainLine(t *modfile.Toolchain) string {
	if t == nil {
		return ""
	}
	return t.Name
}

// addToolchain adds the toolchain the go command downloads for a go.mod or go.work with
// the go line goVers and the toolchain line toolchain when its own Go is older than both
// (GOTOOLCHAIN=auto, the default): the toolchain line, unless the go line asks for a newer
// Go, whose first release it then takes ("go 1.23" asks for go1.23.0). The module is named
// as the go command names it: golang.org/toolchain@v0.0.1-go1.22.3.<goos>-<goarch>.
// Nothing is added when neither line asks for a Go of 1.21 or later: older ones are never
// downloaded (there is no toolchain module before go1.21.0).
func (b *planBuilder) addToolchain(file, goVers, toolchain string, opt LoadOptions) error {
	name := ""
	if toolchain != "" && toolchain != "default" && toolchain != "local" {
		if !strings.HasPrefix(toolchain, "go") || !version.IsValid(toolchain) {
			return fmt.Errorf("%s: toolchain %q is not a Go toolchain name (go1.22.3)", file, toolchain)
		}
		name = toolchain
	}
	if goVers != "" {
		if g := "go" + goVers; name == "" || version.Compare(g, name) > 0 {
			if version.Lang(g) == g && version.Compare(g, "go1.21") >= 0 {
				g += ".0" // the first release of a language version
			}
			name = g
		}
	}
	if name == "" || version.Compare(name, "go1.21.0") < 0 {
		return nil
	}
	goos, goarch := opt.GOOS, opt.GOARCH
	if goos == "" {
		goos = runtime.GOOS
	}
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	v := "v0.0.1-" + name + "." + goos + "-" + goarch
	if err := module.Check(ToolchainModule, v); err != nil {
		return fmt.Errorf("%s: toolchain %q: %w", file, name, err)
	}
	it := b.item(module.Version{Path: ToolchainModule, Version: v}, file)
	it.Zip = true
	return nil
}

func (b *planBuilder) plan() *Plan {
	p := &Plan{Sources: b.sources}
	for _, it := range b.items {
		p.Items = append(p.Items, *it)
	}
	sort.Slice(p.Items, func(i, j int) bool {
		a, c := p.Items[i].Mod, p.Items[j].Mod
		if a.Path != c.Path {
			return a.Path < c.Path
		}
		return semver.Compare(a.Version, c.Version) < 0
	})
	return p
}
