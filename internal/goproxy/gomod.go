package goproxy

import (
	"errors"
	"fmt"

	"golang.org/x/mod/modfile"
)

// CheckGoMod accepts a module's .mod file that parses and declares the module path asked
// for (the synthesized "module <path>" of a module without go.mod included): what serve
// checks before storing a .mod, and verify checks again for a module the checksum
// database does not know.
func CheckGoMod(path string, data []byte) error {
	f, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		return err
	}
	if f.Module == nil {
		return errors.New("go.mod has no module directive")
	}
	if f.Module.Mod.Path != path {
		return fmt.Errorf("go.mod declares module %q, not %q", f.Module.Mod.Path, path)
	}
	return nil
}
