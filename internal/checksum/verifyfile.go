package checksum

import (
	"context"
	"fmt"
	"io"
	"os"

	modzip "golang.org/x/mod/zip"
)

// VerifyFile checks path@version's .mod (goMod set) or .zip held in f, the temporary file of
// a fill, read from its start whatever f's offset: the shape of the server's Verify hook.
// A nil error means the file may be stored; a mismatch is a *MismatchError.
func (v *Verifier) VerifyFile(ctx context.Context, path, version string, goMod bool, f *os.File) error {
	if v.Exempt(path) {
		v.exempt.Add(1) // as VerifyMod and VerifyZip would, without reading the file
		return nil
	}
	if !goMod {
		return v.VerifyZip(ctx, path, version, f.Name())
	}
	data, err := io.ReadAll(io.NewSectionReader(f, 0, modzip.MaxGoMod+1))
	if err != nil {
		return fmt.Errorf("%s@%s: reading the go.mod: %w", path, version, err)
	}
	if len(data) > modzip.MaxGoMod {
		return fmt.Errorf("%s@%s: go.mod larger than %d bytes", path, version, modzip.MaxGoMod)
	}
	return v.VerifyMod(ctx, path, version, data)
}
