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
//
// An exempt module (GONOSUMDB, or verification off) is not looked up, but its zip is still
// read through (CheckZipData), each file inflated and checked against its CRC-32 and size,
// as hashing a verified one does: the server's CheckZip reads only the zip's directory, and a zip the go command
// cannot extract, once stored, would be served to every client until purged, where the
// next upstream of the chain had the intact one. (No such check exists for a go.mod: a
// changed one may well parse.)
func (v *Verifier) VerifyFile(ctx context.Context, path, version string, goMod bool, f *os.File) error {
	if v.Exempt(path) {
		if !goMod {
			fi, err := f.Stat()
			if err == nil {
				err = CheckZipData(f, fi.Size())
			}
			if err != nil {
				v.errs.Add(1)
				return fmt.Errorf("%s@%s: %w", path, version, err)
			}
		}
		v.exempt.Add(1) // as VerifyMod and VerifyZip would
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
