package checksum

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	modzip "golang.org/x/mod/zip"

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

// TestVerifyFileExemptZipReadThrough: a zip exempt from the database (GONOSUMDB) is not
// looked up, but it is still read through as a verified zip is, so that a zip whose file
// content does not match its CRC-32 is refused: CheckZip, which reads only the directory,
// passes it, and the go command, which reads it all, cannot extract it. The soak test found
// serve storing such zips of private modules from a corrupting upstream, and serving them
// to every go command after.
func TestVerifyFileExemptZipReadThrough(t *testing.T) {
	db := sumdbtest.New(t, []modtree.Module{modA})
	v := newVerifier(t, db, t.TempDir(), "corp.test")
	good, err := modPriv.Zip()
	if err != nil {
		t.Fatal(err)
	}
	bad := corruptZipContent(t, good)
	name := writeTemp(t, bad)
	if _, err := modzip.CheckZip(modPriv.ID(), name); err != nil {
		t.Fatalf("CheckZip refuses the corrupt zip (%v): the test does not test what it means to", err)
	}
	for _, tt := range []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"intact zip", good, false},
		{"zip with a file's content changed", bad, true},
	} {
		f, err := os.Open(writeTemp(t, tt.data))
		if err != nil {
			t.Fatal(err)
		}
		err = v.VerifyFile(context.Background(), modPriv.Path, modPriv.Version, false, f)
		f.Close()
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: VerifyFile = %v; want an error: %v", tt.name, err, tt.wantErr)
		}
		// The upstream served wrong bytes: the class charges it, as CheckZip's refusal would.
		var c interface{ Class() string }
		if err != nil && (!errors.As(err, &c) || c.Class() != "invalid_zip") {
			t.Errorf("%s: VerifyFile = %v; want class invalid_zip", tt.name, err)
		}
	}
	if n := db.Count("corp.test"); n != 0 {
		t.Errorf("the database got %d requests for the exempt module", n)
	}
	if st := v.Stats(); st.Exempt != 1 || st.Errors != 1 {
		t.Errorf("stats %+v; want 1 exempt, 1 error", st)
	}
}

// corruptZipContent returns z with one byte of its first file's stored data changed: its
// directory and headers intact.
func corruptZipContent(t *testing.T, z []byte) []byte {
	t.Helper()
	r, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	f := r.File[0]
	off, err := f.DataOffset()
	if err != nil || f.CompressedSize64 == 0 {
		t.Fatalf("%s: data offset %d, %d bytes: %v", f.Name, off, f.CompressedSize64, err)
	}
	bad := bytes.Clone(z)
	bad[off+int64(f.CompressedSize64)/2] ^= 0xff
	return bad
}
