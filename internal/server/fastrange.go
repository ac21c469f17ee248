package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// filePart is how the fasthttp front answers a GET or HEAD of a stored file: the status and
// the bytes to send.
type filePart struct {
	status        int // 200, 206, 304, 412 or 416
	start, length int64
	// contentRange is the Content-Range header of a 206 or 416.
	contentRange string
	msg          string // the one-line body of a 416
}

// fileAnswer decides filePart for a file of size bytes last modified at modTime (zero when
// unknown) from the request's conditional and Range headers, as http.ServeContent does for
// content without an ETag (the net/http front's answer), with one difference: a request
// for several ranges gets the whole file, where ServeContent sends a multipart/byteranges
// body (RFC 9110 lets a server ignore a Range header; no client of a module proxy asks for
// several ranges).
func fileAnswer(h *fasthttp.RequestHeader, modTime time.Time, size int64) filePart {
	whole := filePart{status: http.StatusOK, length: size}
	modTime = modTime.Truncate(time.Second) // HTTP dates have whole seconds
	// A file dated at the Unix epoch (a tree unpacked from an archive that zeroes times)
	// has no known time for the date preconditions, as for ServeContent.
	known := knownTime(modTime)
	// Preconditions, in the order of RFC 9110 section 13.2.2. Stored files have no ETag: no
	// entity tag but "*" matches.
	if v := h.Peek("If-Match"); len(v) > 0 {
		if !matchesAny(string(v)) {
			return filePart{status: http.StatusPreconditionFailed}
		}
	} else if t, ok := headerTime(h, "If-Unmodified-Since"); ok && known && modTime.After(t) {
		return filePart{status: http.StatusPreconditionFailed}
	}
	if v := h.Peek("If-None-Match"); len(v) > 0 {
		if matchesAny(string(v)) {
			return filePart{status: http.StatusNotModified}
		}
	} else if t, ok := headerTime(h, "If-Modified-Since"); ok && known && !modTime.After(t) {
		return filePart{status: http.StatusNotModified}
	}

	spec := string(h.Peek("Range"))
	if spec == "" {
		return whole
	}
	if ir := textproto.TrimString(string(h.Peek("If-Range"))); ir != "" {
		// An entity tag never matches; a date matches the exact modification time.
		t, err := http.ParseTime(ir)
		if strings.HasPrefix(ir, `"`) || strings.HasPrefix(ir, "W/") || err != nil || modTime.IsZero() || !modTime.Equal(t) {
			return whole
		}
	}
	ranges, err := parseByteRanges(spec, size)
	switch {
	case errors.Is(err, errNoOverlap) && size == 0:
		// No range of an empty file is satisfiable: it is sent whole (empty), as
		// ServeContent does for clients that send a Range with every request.
		return whole
	case errors.Is(err, errNoOverlap):
		return filePart{status: http.StatusRequestedRangeNotSatisfiable,
			contentRange: fmt.Sprintf("bytes */%d", size), msg: "invalid range: " + err.Error()}
	case err != nil:
		return filePart{status: http.StatusRequestedRangeNotSatisfiable, msg: err.Error()}
	case len(ranges) != 1:
		return whole
	}
	r := ranges[0]
	return filePart{status: http.StatusPartialContent, start: r.start, length: r.length,
		contentRange: fmt.Sprintf("bytes %d-%d/%d", r.start, r.start+r.length-1, size)}
}

// knownTime reports whether t is a modification time to send and to compare with the
// date preconditions: not zero, nor the Unix epoch (http.ServeContent's rule).
func knownTime(t time.Time) bool { return !t.IsZero() && !t.Equal(time.Unix(0, 0)) }

// matchesAny reports whether an If-Match or If-None-Match value lists "*", the one entity
// tag a stored file (which has none) matches. It reads the list as ServeContent does: up
// to the first element that is not an entity tag, with any element that starts with '*'
// taken for "*".
func matchesAny(v string) bool {
	for {
		v = textproto.TrimString(v)
		switch {
		case v == "":
			return false
		case v[0] == ',':
			v = v[1:]
		case v[0] == '*':
			return true
		default:
			rest, ok := skipETag(v)
			if !ok {
				return false
			}
			v = rest
		}
	}
}

// skipETag returns what follows the entity tag (W/"..." or "...") that starts s, and
// whether s starts with one (RFC 9110 section 8.8.3).
func skipETag(s string) (string, bool) {
	s = strings.TrimPrefix(s, "W/")
	if len(s) < 2 || s[0] != '"' {
		return "", false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[i+1:], true
		case c == 0x21 || c >= 0x23 && c <= 0x7e || c >= 0x80:
		default:
			return "", false
		}
	}
	return "", false
}

// headerTime returns the HTTP date in the header name, when there is one that parses.
func headerTime(h *fasthttp.RequestHeader, name string) (time.Time, bool) {
	v := h.Peek(name)
	if len(v) == 0 {
		return time.Time{}, false
	}
	t, err := http.ParseTime(string(v))
	return t, err == nil
}

// byteRange is one range of a Range header, resolved against the size of the content.
type byteRange struct{ start, length int64 }

// errNoOverlap is the error of a Range header none of whose ranges overlaps the content.
var errNoOverlap = errors.New("failed to overlap")

// parseByteRanges parses a Range header value ("bytes=0-99,200-", "bytes=-500") against
// content of size bytes (RFC 9110 section 14.1.2). Ranges that select no byte (starting
// past the end, a suffix of 0) are dropped, errNoOverlap when none is left; an end past
// the end is cut to it. It returns
// nil when the ranges add up to more than the content: answered whole, as a request that
// costs more than the content is not worth honouring.
func parseByteRanges(spec string, size int64) ([]byteRange, error) {
	set, ok := strings.CutPrefix(spec, "bytes=")
	if !ok {
		return nil, errors.New("invalid range")
	}
	var out []byteRange
	var total int64
	skipped := false
	for part := range strings.SplitSeq(set, ",") {
		part = textproto.TrimString(part)
		if part == "" {
			continue
		}
		first, last, ok := strings.Cut(part, "-")
		if !ok {
			return nil, errors.New("invalid range")
		}
		first, last = textproto.TrimString(first), textproto.TrimString(last)
		var r byteRange
		if first == "" { // the last n bytes
			n, err := strconv.ParseInt(last, 10, 64)
			if last == "" || last[0] == '-' || err != nil {
				return nil, errors.New("invalid range")
			}
			if n == 0 || size == 0 { // no byte: unsatisfiable (RFC 9110 section 14.1.3)
				skipped = true
				continue
			}
			n = min(n, size)
			r = byteRange{start: size - n, length: n}
		} else {
			a, err := strconv.ParseInt(first, 10, 64)
			if err != nil || a < 0 {
				return nil, errors.New("invalid range")
			}
			if a >= size {
				skipped = true
				continue
			}
			r = byteRange{start: a, length: size - a}
			if last != "" {
				b, err := strconv.ParseInt(last, 10, 64)
				if err != nil || b < a {
					return nil, errors.New("invalid range")
				}
				r.length = min(b, size-1) - a + 1
			}
		}
		out = append(out, r)
		total += r.length
	}
	if skipped && len(out) == 0 {
		return nil, errNoOverlap
	}
	if total > size {
		return nil, nil
	}
	return out, nil
}
