package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http/httpguts"
)

// zeros is an io.ReadSeeker of size zero bytes that holds none of them, so that content
// of any size costs nothing to serve with http.ServeContent.
type zeros struct{ off, size int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.off >= z.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.size-z.off))
	clear(p[:n])
	z.off += int64(n)
	return n, nil
}

func (z *zeros) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += z.off
	case io.SeekEnd:
		off += z.size
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	z.off = off
	return off, nil
}

// FuzzFileAnswer checks the fasthttp front's answer to the Range and conditional headers
// of a request for a stored file (fileAnswer) against the net/http front's
// (http.ServeContent, for content without an ETag), the answer it promises to give: the
// same status and Content-Range, except that a request for several ranges is answered
// whole where ServeContent sends multipart/byteranges. It also checks fileAnswer's own
// invariants: a 206 is a non-empty range within the file, a 416 has a one-line reason.
func FuzzFileAnswer(f *testing.F) {
	mod := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC).Unix()
	at := func(d time.Duration) string { return time.Unix(mod, 0).Add(d).UTC().Format(http.TimeFormat) }
	type seed struct {
		size                                             int64
		modUnix                                          int64
		rng, ifRange, ifMatch, ifNoneMatch, ims, ifUnmod string
	}
	for _, s := range []seed{
		{size: 1000, modUnix: mod},
		{size: 1000, modUnix: mod, rng: "bytes=0-99"},
		{size: 1000, modUnix: mod, rng: "bytes=100-"},
		{size: 1000, modUnix: mod, rng: "bytes=-100"},
		{size: 1000, modUnix: mod, rng: "bytes=-0"},
		{size: 1000, modUnix: mod, rng: "bytes=10-5000"},
		{size: 1000, modUnix: mod, rng: "bytes=1000-"},
		{size: 1000, modUnix: mod, rng: "bytes=9-5"},
		{size: 1000, modUnix: mod, rng: "bytes= 5 - 9 ,"},
		{size: 1000, modUnix: mod, rng: "bytes=0-9,20-29"},
		{size: 1000, modUnix: mod, rng: "bytes=0-,0-999"},
		{size: 1000, modUnix: mod, rng: "items=0-5"},
		{size: 1000, modUnix: mod, rng: "bytes=a-5"},
		{size: 1000, modUnix: mod, rng: "bytes=--5"},
		{size: 1000, modUnix: mod, rng: "bytes=-9223372036854775807"},
		{size: 0, modUnix: mod, rng: "bytes=0-"},
		{size: 0, modUnix: mod, rng: "bytes=-1"},
		{size: 1000, modUnix: mod, ims: at(0)},
		{size: 1000, modUnix: mod, ims: at(-time.Hour)},
		{size: 1000, modUnix: mod, ims: "yesterday"},
		{size: 1000, modUnix: mod, ifNoneMatch: "*"},
		{size: 1000, modUnix: mod, ifNoneMatch: `"abc", *`},
		{size: 1000, modUnix: mod, ifNoneMatch: `"abc"`, ims: at(0)},
		{size: 1000, modUnix: mod, ifMatch: "*"},
		{size: 1000, modUnix: mod, ifMatch: `"abc"`},
		{size: 1000, modUnix: mod, ifMatch: `W/"abc", *`},
		{size: 1000, modUnix: mod, ifUnmod: at(-time.Hour)},
		{size: 1000, modUnix: mod, ifUnmod: at(0)},
		{size: 1000, modUnix: mod, rng: "bytes=0-9", ifRange: at(0)},
		{size: 1000, modUnix: mod, rng: "bytes=0-9", ifRange: at(-time.Hour)},
		{size: 1000, modUnix: mod, rng: "bytes=0-9", ifRange: `"abc"`},
		{size: 1000, modUnix: 0, rng: "bytes=0-9", ifRange: at(0)},
		{size: 1000, modUnix: 0, ims: at(0)},
		{size: 1000, modUnix: -1, ims: at(0)},
	} {
		f.Add(s.size, s.modUnix, s.rng, s.ifRange, s.ifMatch, s.ifNoneMatch, s.ims, s.ifUnmod)
	}
	f.Fuzz(func(t *testing.T, size, modUnix int64, rng, ifRange, ifMatch, ifNoneMatch, ims, ifUnmod string) {
		if size < 0 {
			return
		}
		// modUnix -1 stands for an unknown time (zero), as a store without one gives.
		var modTime time.Time
		if modUnix != -1 {
			modTime = time.Unix(modUnix, 0)
		}
		headers := [][2]string{{"Range", rng}, {"If-Range", ifRange}, {"If-Match", ifMatch},
			{"If-None-Match", ifNoneMatch}, {"If-Modified-Since", ims}, {"If-Unmodified-Since", ifUnmod}}
		var fh fasthttp.RequestHeader
		r := httptest.NewRequest(http.MethodHead, "/m/@v/v1.0.0.zip", nil)
		for _, h := range headers {
			// As a value arrives off the wire: valid, without white space around it.
			v := strings.Trim(h[1], " \t")
			if !httpguts.ValidHeaderFieldValue(v) {
				return
			}
			if v != "" {
				fh.Set(h[0], v)
				r.Header.Set(h[0], v)
			}
		}

		got := fileAnswer(&fh, modTime, size)
		switch got.status {
		case http.StatusOK:
			if got.start != 0 || got.length != size {
				t.Fatalf("200 of bytes %d+%d of %d", got.start, got.length, size)
			}
		case http.StatusPartialContent:
			if got.start < 0 || got.length < 1 || got.start+got.length > size || got.start+got.length < got.start {
				t.Fatalf("206 of bytes %d+%d of %d", got.start, got.length, size)
			}
			if want := fmt.Sprintf("bytes %d-%d/%d", got.start, got.start+got.length-1, size); got.contentRange != want {
				t.Fatalf("206 of bytes %d+%d with Content-Range %q; want %q", got.start, got.length, got.contentRange, want)
			}
		case http.StatusRequestedRangeNotSatisfiable:
			if got.msg == "" || strings.ContainsAny(got.msg, "\r\n") {
				t.Fatalf("416 with reason %q; want one line", got.msg)
			}
		case http.StatusNotModified, http.StatusPreconditionFailed:
		default:
			t.Fatalf("status %d", got.status)
		}

		w := httptest.NewRecorder()
		http.ServeContent(w, r, "", modTime, &zeros{size: size})
		want := w.Result()
		switch {
		case want.StatusCode == http.StatusPartialContent && strings.HasPrefix(want.Header.Get("Content-Type"), "multipart/byteranges"):
			// Several ranges are answered whole; net/http counts empty ones ("-0") among
			// them, which fileAnswer drops, so one range may be left.
			if got.status != http.StatusOK && got.status != http.StatusPartialContent {
				t.Fatalf("several ranges: %d %q; want 200 or 206 (net/http: multipart 206)", got.status, got.contentRange)
			}
			return
		case want.StatusCode == http.StatusPartialContent && want.Header.Get("Content-Length") == "0":
			// net/http answers a suffix range of no byte ("-0", or any suffix of an empty
			// file) with a 206 of no byte and a Content-Range whose end is before its
			// start; RFC 9110 section 14.1.3 makes it unsatisfiable.
			if got.status != http.StatusRequestedRangeNotSatisfiable && (size != 0 || got.status != http.StatusOK) {
				t.Fatalf("a range of no byte: %d %q; want 416 (200 for an empty file)", got.status, got.contentRange)
			}
			return
		}
		if got.status != want.StatusCode {
			t.Fatalf("status %d (%q %q); net/http answers %d (%q)", got.status, got.contentRange, got.msg,
				want.StatusCode, want.Header.Get("Content-Range"))
		}
		if (got.status == http.StatusPartialContent || got.status == http.StatusRequestedRangeNotSatisfiable) &&
			got.contentRange != want.Header.Get("Content-Range") {
			t.Fatalf("%d with Content-Range %q; net/http sends %q", got.status, got.contentRange, want.Header.Get("Content-Range"))
		}
	})
}

// TestFileAnswerEdges pins down the answers FuzzFileAnswer found differing from
// ServeContent's: a file dated at the Unix epoch has no date to compare (a tree unpacked
// from an archive that zeroes times), an empty file ignores the Range header, and an
// If-None-Match element starting with '*' counts as "*".
func TestFileAnswerEdges(t *testing.T) {
	epoch := time.Unix(0, 0)
	for _, tt := range []struct {
		name    string
		modTime time.Time
		size    int64
		header  map[string]string
		want    int
	}{
		{"epoch, modified since", epoch, 10, map[string]string{"If-Modified-Since": epoch.UTC().Format(http.TimeFormat)}, 200},
		{"epoch, unmodified since", epoch, 10, map[string]string{"If-Unmodified-Since": "Thu, 01 Jan 1960 00:00:00 GMT"}, 200},
		{"empty file, range", time.Time{}, 0, map[string]string{"Range": "bytes=0-"}, 200},
		{"empty file, suffix", time.Time{}, 0, map[string]string{"Range": "bytes=-1"}, 200},
		{"empty file, bad range", time.Time{}, 0, map[string]string{"Range": "bytes=x-"}, 416},
		{"none match *0", time.Time{}, 10, map[string]string{"If-None-Match": "*0"}, 304},
		{"none match after a malformed tag", time.Time{}, 10, map[string]string{"If-None-Match": `"a b", *`}, 200},
		{"match after tags", time.Time{}, 10, map[string]string{"If-Match": `W/"a", "b" ,*`}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			for k, v := range tt.header {
				h.Set(k, v)
			}
			if got := fileAnswer(&h, tt.modTime, tt.size); got.status != tt.want {
				t.Errorf("status %d; want %d", got.status, tt.want)
			}
		})
	}
}

// FuzzFastPath checks the fasthttp front's reading of a request URI that fasthttp takes
// off the wire against net/http's (url.ParseRequestURI, which the net/http front answers
// 400 when it fails): the same path, or an error for both.
func FuzzFastPath(f *testing.F) {
	for _, s := range []string{
		"/mods.test/m/@v/list", "/mods.test/m/@v/list?x=1", "/mods.test/%21upper/@v/v1.0.0.zip", "/%zz", "/a%2Fb",
		"*", "http://holoproxy.test/mods.test/m/@latest", "//x/y", "/a#b", "/a b", "/a\x01b", "/a\x7fb", "",
		"/a%00b", "mods.test/m/@v/list", "/sumdb/sum.test/lookup/m@v1.0.0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		var ctx fasthttp.RequestCtx
		if err := ctx.Request.Read(bufio.NewReader(strings.NewReader("GET " + uri + " HTTP/1.1\r\nHost: x\r\n\r\n"))); err != nil {
			return // fasthttp answers 400 itself
		}
		raw := string(ctx.Request.Header.RequestURI()) // as fasthttp keeps it
		got, err := FastPath(&ctx)
		u, werr := url.ParseRequestURI(raw)
		switch {
		case werr == nil && (err != nil || got != u.Path):
			t.Fatalf("FastPath(%q) = %q, %v; net/http reads %q", raw, got, err, u.Path)
		case werr != nil && err == nil:
			t.Fatalf("FastPath(%q) = %q; net/http refuses it: %v", raw, got, werr)
		case err != nil && strings.ContainsAny(err.Error(), "\r\n"):
			t.Fatalf("FastPath(%q): error of more than one line: %q", raw, err)
		}
	})
}
