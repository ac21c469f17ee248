package checksum

import (
	"archive/zip"
	"bufio"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// Hashing a module zip is inflating it: a profile of `holoproxy warm` showed half of its
// CPU in compress/flate. klauspost/compress/flate inflates the same streams faster (it
// decodes straight from a *bufio.Reader instead of through the io.ByteReader interface);
// docs/benchmarks.md ("checksum: verification cost") has the figures. A reader and its
// 4 KiB input buffer are pooled together, so hashing a zip of many small files allocates
// neither per file.

type inflater struct {
	in  *bufio.Reader
	dec io.ReadCloser // a klauspost flate reader; also a flate.Resetter
}

var inflaters sync.Pool

// pooledInflater is the io.ReadCloser archive/zip gets for one deflated file; Close
// returns its inflater to the pool (dirhash closes every file it opens).
type pooledInflater struct {
	*inflater
}

func newInflater(r io.Reader) io.ReadCloser {
	inf, _ := inflaters.Get().(*inflater)
	if inf == nil {
		in := bufio.NewReader(r)
		return &pooledInflater{&inflater{in: in, dec: flate.NewReader(in)}}
	}
	inf.in.Reset(r)
	// A *bufio.Reader is a flate.Reader, so Reset uses it as it is.
	if err := inf.dec.(flate.Resetter).Reset(inf.in, nil); err != nil {
		return &pooledInflater{&inflater{in: inf.in, dec: flate.NewReader(inf.in)}}
	}
	return &pooledInflater{inf}
}

func (p *pooledInflater) Read(b []byte) (int, error) {
	if p.inflater == nil {
		return 0, io.ErrClosedPipe
	}
	return p.dec.Read(b)
}

func (p *pooledInflater) Close() error {
	if p.inflater == nil {
		return nil
	}
	inf := p.inflater
	p.inflater = nil // a second Close must not pool the inflater twice
	err := inf.dec.Close()
	inf.in.Reset(nil)
	inflaters.Put(inf)
	return err
}

// fastInflate makes z inflate its deflated files with the pooled klauspost reader.
func fastInflate(z *zip.Reader) {
	z.RegisterDecompressor(zip.Deflate, newInflater)
}
