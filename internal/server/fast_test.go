package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFastHTTP runs the server's protocol tests again with every request sent to the
// fasthttp front (ServeFast) over loopback instead of ServeHTTP in process: both fronts
// must give the same answers. newEnv starts the front for tests under this name.
func TestFastHTTP(t *testing.T) {
	for _, tt := range []struct {
		name string
		test func(*testing.T)
	}{
		{"BadInput", TestBadInput},
		{"LoopGuard", TestLoopGuard},
		{"Protocol", TestProtocol},
		{"Chain", TestChain},
		{"ChainEnds", TestChainEnds},
		{"HotCache", TestHotCache},
		{"ListTTL", TestListTTL},
		{"ListFailures", TestListFailures},
		{"NegativeCache", TestNegativeCache},
		{"VersionQuery", TestVersionQuery},
		{"Stampede", TestStampede},
		{"RequestLogAndMetrics", TestRequestLogAndMetrics},
		{"ModNeverPullsZip", TestModNeverPullsZip},
		{"UpstreamMisbehaviour", TestUpstreamMisbehaviour},
		{"ServerTimingOfFilledAnswers", TestServerTimingOfFilledAnswers},
		{"Settle", TestSettle},
		{"RecoveredPanics", TestRecoveredPanics},
		{"FullDiskRelaysFromMemory", TestFullDiskRelaysFromMemory},
		{"FullDiskRelayLimits", TestFullDiskRelayLimits},
	} {
		t.Run(tt.name, tt.test)
	}
}

// TestFastHTTPWire sends requests no net/http client sends, straight on the wire, to the
// fasthttp front: each is refused with a one-line reason, and none reaches the origin.
func TestFastHTTPWire(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	e.startFast(t)
	tests := []struct {
		name    string
		request string
		want    int
		reason  string
	}{
		{"bad escape", "GET /example.com/m/@v/%zz.info HTTP/1.1\r\nHost: p\r\n\r\n", 400, "malformed request URI"},
		{"encoded NUL", "GET /example.com/m/@v/v1.0.0%00.info HTTP/1.1\r\nHost: p\r\n\r\n", 400, "NUL"},
		{"encoded dot-dot", "GET /example.com/m/%2e%2e/@v/list HTTP/1.1\r\nHost: p\r\n\r\n", 400, "bad request"},
		{"absolute form", "GET http://p/example.com/m/@v/v1.0.0.tar HTTP/1.1\r\nHost: p\r\n\r\n", 404, "unknown endpoint"},
		{"query ignored", "GET /example.com/m/@v/v1.0.0.tar?x=1 HTTP/1.1\r\nHost: p\r\n\r\n", 404, "unknown endpoint"},
		{"headers too long", "GET /example.com/m/@v/list HTTP/1.1\r\nHost: p\r\nX-Big: " + strings.Repeat("a", MaxRequestHeaderBytes) + "\r\n\r\n", 431, "longer than"},
		{"not HTTP", "HELLO\r\n\r\n", 400, "bad request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", e.fast, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, tt.request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d %q; want %d", resp.StatusCode, body, tt.want)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q; want text/plain", ct)
			}
			if s := string(body); !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 || !strings.Contains(s, tt.reason) {
				t.Errorf("body %q: want one line giving %q", s, tt.reason)
			}
		})
	}
	if n := o.total(); n != 0 {
		t.Errorf("origin saw %d requests; want 0", n)
	}
}

// TestFastHTTPRangesAndConditionals sends conditional and Range requests for a stored file
// to both fronts: the fasthttp front answers as net/http's ServeContent does (status,
// Content-Range, Content-Length, body), except that several ranges get the whole file.
func TestFastHTTPRangesAndConditionals(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	e.startFast(t)
	const key = "example.com/m/@v/v1.0.0.zip"
	if w := e.do("GET", "/"+key); w.Code != 200 { // fill and store it
		t.Fatalf("fill: %d %s", w.Code, w.Body)
	}
	stored, err := os.ReadFile(filepath.Join(e.store.Root(), key))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(e.store.Root(), key))
	if err != nil {
		t.Fatal(err)
	}
	size := len(stored)
	if size < 200 {
		t.Fatalf("the fixture zip has %d bytes; the ranges below need 200", size)
	}
	lastMod := st.ModTime().UTC().Format(http.TimeFormat)
	before := st.ModTime().Add(-time.Hour).UTC().Format(http.TimeFormat)
	after := st.ModTime().Add(time.Hour).UTC().Format(http.TimeFormat)

	type answer struct {
		status             int
		contentRange, clen string
		lastModified       bool
		body               string
	}
	get := func(resp *http.Response, body []byte) answer {
		return answer{resp.StatusCode, resp.Header.Get("Content-Range"), resp.Header.Get("Content-Length"),
			resp.Header.Get("Last-Modified") != "", string(body)}
	}
	for _, tt := range []struct {
		name   string
		method string
		header map[string]string
		want   int
	}{
		{"whole", "GET", nil, 200},
		{"first bytes", "GET", map[string]string{"Range": "bytes=0-99"}, 206},
		{"from an offset", "GET", map[string]string{"Range": "bytes=100-"}, 206},
		{"suffix", "GET", map[string]string{"Range": "bytes=-100"}, 206},
		{"end past the end", "GET", map[string]string{"Range": fmt.Sprintf("bytes=10-%d", size+50)}, 206},
		{"suffix longer than the file", "GET", map[string]string{"Range": fmt.Sprintf("bytes=-%d", size+50)}, 206},
		{"spaces", "GET", map[string]string{"Range": "bytes= 5 - 9 "}, 206},
		{"head of a range", "HEAD", map[string]string{"Range": "bytes=0-99"}, 206},
		{"starts past the end", "GET", map[string]string{"Range": fmt.Sprintf("bytes=%d-", size)}, 416},
		{"suffix of no byte", "GET", map[string]string{"Range": "bytes=-0"}, 416},
		{"suffix of no byte, signed", "GET", map[string]string{"Range": "bytes= -+0 "}, 416},
		{"suffix of no byte and a range", "GET", map[string]string{"Range": "bytes=-0, 0-9"}, 206},
		{"backwards", "GET", map[string]string{"Range": "bytes=9-5"}, 416},
		{"other unit", "GET", map[string]string{"Range": "items=0-5"}, 416},
		{"not a number", "GET", map[string]string{"Range": "bytes=a-5"}, 416},
		{"ranges adding up past the size", "GET", map[string]string{"Range": fmt.Sprintf("bytes=0-,0-%d", size-1)}, 200},
		{"modified since before", "GET", map[string]string{"If-Modified-Since": before}, 200},
		{"not modified since", "GET", map[string]string{"If-Modified-Since": lastMod}, 304},
		{"not modified since, later", "HEAD", map[string]string{"If-Modified-Since": after}, 304},
		{"none match any", "GET", map[string]string{"If-None-Match": "*"}, 304},
		{"none match a tag", "GET", map[string]string{"If-None-Match": `"abc"`}, 200},
		{"none match wins over modified since", "GET", map[string]string{"If-None-Match": `"abc"`, "If-Modified-Since": lastMod}, 200},
		{"match any", "GET", map[string]string{"If-Match": "*"}, 200},
		{"match a tag", "GET", map[string]string{"If-Match": `"abc"`}, 412},
		{"unmodified since before", "GET", map[string]string{"If-Unmodified-Since": before}, 412},
		{"unmodified since", "GET", map[string]string{"If-Unmodified-Since": lastMod}, 200},
		{"if-range date", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": lastMod}, 206},
		{"if-range old date", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": before}, 200},
		{"if-range tag", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": `"abc"`}, 200},
		{"bad date", "GET", map[string]string{"If-Modified-Since": "yesterday"}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/"+key, nil)
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			e.s.ServeHTTP(w, r)
			ref := w.Result()
			want := get(ref, w.Body.Bytes())

			req, err := http.NewRequest(tt.method, "http://"+e.fast+"/"+key, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := e.fastClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			got := get(resp, body)
			if got.status != tt.want || want.status != tt.want {
				t.Fatalf("status: fasthttp %d, net/http %d; want %d", got.status, want.status, tt.want)
			}
			if got.status >= 400 {
				// Both one line of text; the wording may differ.
				if got.contentRange != want.contentRange || !strings.HasSuffix(got.body, "\n") || strings.Count(got.body, "\n") != 1 {
					t.Errorf("fasthttp %d: Content-Range %q body %q; net/http: Content-Range %q body %q",
						got.status, got.contentRange, got.body, want.contentRange, want.body)
				}
				return
			}
			if got != want {
				t.Errorf("fasthttp answered %+v\nnet/http answered %+v", short(got), short(want))
			}
			if got.status == 206 && tt.method == "GET" {
				var first, last int
				if _, err := fmt.Sscanf(got.contentRange, "bytes %d-%d/", &first, &last); err != nil || got.body != string(stored[first:last+1]) {
					t.Errorf("206 body is not bytes %d-%d of the stored file (%v)", first, last, err)
				}
			}
		})
	}

	// Several ranges: net/http sends multipart/byteranges, the fasthttp front the whole file.
	req, _ := http.NewRequest("GET", "http://"+e.fast+"/"+key, nil)
	req.Header.Set("Range", "bytes=0-9,20-29")
	resp, err := e.fastClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, stored) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("several ranges on fasthttp: %d, %d bytes, Accept-Ranges %q; want 200 and the whole file",
			resp.StatusCode, len(body), resp.Header.Get("Accept-Ranges"))
	}
}

// short shortens an answer's body for a failure message.
func short[T any](a T) string {
	s := fmt.Sprintf("%+v", a)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
