package checksum

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// VerifyFile checks a fill's temporary file whatever its offset, .mod and .zip alike.
func TestVerifyFile(t *testing.T) {
	db := sumdbtest.New(t, []modtree.Module{modA, modB})
	v := newVerifier(t, db, t.TempDir(), "")
	ctx := context.Background()
	open := func(data []byte) *os.File {
		t.Helper()
		f, err := os.Open(writeTemp(t, data))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		f.Seek(0, io.SeekEnd) // as a fill leaves it after writing
		return f
	}
	zipA, err := modA.Zip()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		m       modtree.Module
		goMod   bool
		data    []byte
		wantErr error
	}{
		{"honest mod", modA, true, modA.GoMod(), nil},
		{"honest zip", modA, false, zipA, nil},
		{"changed mod", modB, true, append(modB.GoMod(), "// changed\n"...), ErrChecksumMismatch},
		{"tampered zip", modB, false, tamperZip(t, modB), ErrChecksumMismatch},
	} {
		err := v.VerifyFile(ctx, tt.m.Path, tt.m.Version, tt.goMod, open(tt.data))
		if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: VerifyFile = %v; want %v", tt.name, err, tt.wantErr)
		}
	}
}
