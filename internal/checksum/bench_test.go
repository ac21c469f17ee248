package checksum

import (
	"archive/zip"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeBenchZip writes a module-like zip of about size bytes: Go-like text files of 4-32 KiB,
// deflated as module zips are.
func writeBenchZip(b testing.TB, size int) (path string, inflated int) {
	b.Helper()
	p := filepath.Join(b.TempDir(), "bench.zip")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("func return if err != nil { } package import type struct interface map string int " +
		"byte for range go defer select case default var const ctx context.Context fmt.Errorf %w x y z")
	zw := zip.NewWriter(f)
	var written int
	for i := 0; ; i++ {
		fi, _ := f.Stat()
		if fi.Size() >= int64(size) {
			break
		}
		w, err := zw.Create(fmt.Sprintf("mods.test/bench@v1.0.0/pkg%03d/file%04d.go", i/50, i))
		if err != nil {
			b.Fatal(err)
		}
		var sb strings.Builder
		n := 4<<10 + rng.IntN(28<<10)
		for sb.Len() < n {
			sb.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(8) == 0 {
				sb.WriteString(fmt.Sprintf("%d\n\t", rng.IntN(1e6)))
			} else {
				sb.WriteByte(' ')
			}
		}
		w.Write([]byte(sb.String()))
		written += sb.Len()
		zw.Flush()
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p, written
}

func sha256File(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	return err
}

// BenchmarkZipVerifyCost measures the local cost of verifying a module zip, its h1: hash
// (open the zip, inflate and hash every file, hash the listing), against a baseline taken in
// the same iterations: a plain SHA-256 of the zip file's bytes. Metrics: ns per MB of zip
// for both, their ratio, and how many bytes of content a byte of this zip inflates to.
//
//	go test -run '^$' -bench ZipVerifyCost ./internal/checksum/
func BenchmarkZipVerifyCost(b *testing.B) {
	for _, mb := range []int{1, 16} {
		b.Run(fmt.Sprintf("zip=%dMB", mb), func(b *testing.B) {
			p, inflated := writeBenchZip(b, mb<<20)
			fi, err := os.Stat(p)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(fi.Size())
			// Warm the page cache so both measure hashing, not the disk.
			if err := sha256File(p); err != nil {
				b.Fatal(err)
			}
			var base, h1 time.Duration
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				if err := sha256File(p); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := HashZip(p); err != nil {
					b.Fatal(err)
				}
				base += t1.Sub(t0)
				h1 += time.Since(t1)
			}
			mbs := float64(fi.Size()) / 1e6 * float64(b.N)
			b.ReportMetric(float64(base.Nanoseconds())/mbs, "sha256-ns/MB")
			b.ReportMetric(float64(h1.Nanoseconds())/mbs, "h1-ns/MB")
			b.ReportMetric(float64(h1)/float64(base), "h1/sha256")
			b.ReportMetric(float64(inflated)/float64(fi.Size()), "inflated/zip")
		})
	}
}

// BenchmarkExemptZipCheck measures the check of an exempt module's zip (CheckZipData:
// inflate and CRC-32 only) against the h1: hash a verified zip gets (HashZip: the same
// inflate, plus SHA-256 of every file and of the listing), alternating within each
// iteration; ratio < 1 means the exempt check is cheaper.
//
//	go test -run '^$' -bench ExemptZipCheck -count 5 ./internal/checksum/
func BenchmarkExemptZipCheck(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			p, _ := writeBenchZip(b, size)
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				b.Fatal(err)
			}
			alternate(b, "hashzip", func() error { _, err := HashZip(p); return err },
				"checkzipdata", func() error { return CheckZipData(f, fi.Size()) })
		})
	}
}

// alternate runs base and then other in every iteration of b, and reports the mean time of
// each (as baseName-ns/op and otherName-ns/op) and their ratio other/base: a comparison
// measured in the same run, under the same load.
func alternate(b *testing.B, baseName string, base func() error, otherName string, other func() error) {
	var tb, to time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := base(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := other(); err != nil {
			b.Fatal(err)
		}
		tb += t1.Sub(t0)
		to += time.Since(t1)
	}
	b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N), baseName+"-ns/op")
	b.ReportMetric(float64(to.Nanoseconds())/float64(b.N), otherName+"-ns/op")
	b.ReportMetric(float64(to)/float64(tb), "ratio")
}
