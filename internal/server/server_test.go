package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// statusFault answers every request with status.
func statusFault(status int) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "fault "+strconv.Itoa(status), status)
		return true
	}
}

// closedURL returns the URL of a server that no longer listens: connections are refused.
func closedURL() string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

func TestChain(t *testing.T) {
	const path = "example.com/m/@v/v1.0.0.mod"
	tests := []struct {
		name      string
		sep       string // between A and B
		faultA    int    // status A answers; 0 serves the tree
		faultB    int
		refusedA  bool // A's URL refuses connections
		want      int
		wantFrom  string   // "A" or "B": the upstream header of a 200
		wantInMsg []string // "A", "B" are replaced by the URLs
		wantHitsA int
		wantHitsB int
	}{
		{name: "A 404 then B", sep: ",", faultA: 404, want: 200, wantFrom: "B", wantHitsA: 1, wantHitsB: 1},
		{name: "A 410 then B", sep: ",", faultA: 410, want: 200, wantFrom: "B", wantHitsA: 1, wantHitsB: 1},
		{name: "A 500 with comma stops", sep: ",", faultA: 500, want: 502, wantInMsg: []string{"A", "500"}, wantHitsA: 1},
		{name: "A 500 with pipe then B", sep: "|", faultA: 500, want: 200, wantFrom: "B", wantHitsA: 1, wantHitsB: 1},
		{name: "A refused with pipe then B", sep: "|", refusedA: true, want: 200, wantFrom: "B", wantHitsB: 1},
		{name: "A refused with comma stops", sep: ",", refusedA: true, want: 502, wantInMsg: []string{"A"}},
		{name: "all 404", sep: ",", faultA: 404, faultB: 404, want: 404, wantInMsg: []string{"not found: example.com/m@v1.0.0", "404 from A", "404 from B"}, wantHitsA: 1, wantHitsB: 1},
		{name: "404 then 500 with pipe", sep: "|", faultA: 404, faultB: 500, want: 502, wantInMsg: []string{"B", "500"}, wantHitsA: 1, wantHitsB: 1},
		{name: "A serves", sep: ",", want: 200, wantFrom: "A", wantHitsA: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newOrigin(t), newOrigin(t)
			if tt.faultA != 0 {
				a.setFault(statusFault(tt.faultA))
			}
			if tt.faultB != 0 {
				b.setFault(statusFault(tt.faultB))
			}
			aURL := a.URL()
			if tt.refusedA {
				aURL = closedURL()
			}
			e := newEnv(t, aURL+tt.sep+b.URL(), nil)
			w := e.get(t, "/"+path, tt.want)
			name := map[string]string{"A": aURL, "B": b.URL()}
			if tt.want == 200 {
				if got := w.Header().Get(UpstreamHeader); got != name[tt.wantFrom] {
					t.Errorf("%s = %q; want %q", UpstreamHeader, got, name[tt.wantFrom])
				}
				if !bytes.Equal(w.Body.Bytes(), fixture(t, b, path)) {
					t.Errorf("body %q is not the fixture", w.Body.String())
				}
			} else {
				assertOneLine(t, w)
				for _, s := range tt.wantInMsg {
					s = strings.NewReplacer("A", aURL, "B", b.URL()).Replace(s)
					if !strings.Contains(w.Body.String(), s) {
						t.Errorf("body %q does not contain %q", w.Body.String(), s)
					}
				}
			}
			if got := w.Header().Get(CacheHeader); got != CacheMiss {
				t.Errorf("%s = %q; want miss", CacheHeader, got)
			}
			if a.count(path) != tt.wantHitsA || b.count(path) != tt.wantHitsB {
				t.Errorf("origin requests A=%d B=%d; want %d, %d", a.count(path), b.count(path), tt.wantHitsA, tt.wantHitsB)
			}
			// Only a 200 is stored.
			if keys := e.keys(t); (tt.want == 200) != (len(keys) == 1) {
				t.Errorf("store holds %v after a %d", keys, tt.want)
			}
		})
	}
}

// assertOneLine checks an error answer: one line of text/plain.
func assertOneLine(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("error Content-Type = %q", ct)
	}
	body := w.Body.String()
	if !strings.HasSuffix(body, "\n") || strings.Count(body, "\n") != 1 || len(strings.TrimSpace(body)) == 0 {
		t.Errorf("error body %q is not one line", body)
	}
}

func TestProtocol(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	tests := []struct {
		path, contentType string
	}{
		{"example.com/m/@v/list", "text/plain; charset=utf-8"},
		{"example.com/m/@v/v1.0.0.info", "application/json"},
		{"example.com/m/@v/v1.0.0.mod", "text/plain; charset=utf-8"},
		{"example.com/m/@v/v1.0.0.zip", "application/zip"},
		{"example.com/!upper/@v/v1.0.0.mod", "text/plain; charset=utf-8"},
		{"example.com/!upper/@v/v1.0.0.zip", "application/zip"},
		{"example.com/nomod/@v/v1.0.0.mod", "text/plain; charset=utf-8"},
		{"example.com/nomod/@v/v1.0.0.zip", "application/zip"},
		{"example.com/pseudo/@latest", "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			want := fixture(t, o, tt.path)
			for i, wantCache := range []string{CacheMiss, CacheHit} {
				w := e.get(t, "/"+tt.path, 200)
				if !bytes.Equal(w.Body.Bytes(), want) {
					t.Errorf("request %d: body differs from the fixture (%d bytes, want %d)", i, w.Body.Len(), len(want))
				}
				if got := w.Header().Get("Content-Type"); got != tt.contentType {
					t.Errorf("request %d: Content-Type = %q; want %q", i, got, tt.contentType)
				}
				if got := w.Header().Get("Content-Length"); got != strconv.Itoa(len(want)) {
					t.Errorf("request %d: Content-Length = %q; want %d", i, got, len(want))
				}
				if got := w.Header().Get(CacheHeader); got != wantCache {
					t.Errorf("request %d: %s = %q; want %q", i, CacheHeader, got, wantCache)
				}
				if wantCache == CacheMiss && w.Header().Get(UpstreamHeader) != o.URL() {
					t.Errorf("miss without %s", UpstreamHeader)
				}
			}
			h := e.do(http.MethodHead, "/"+tt.path)
			if h.Code != 200 || h.Body.Len() != 0 || h.Header().Get("Content-Length") != strconv.Itoa(len(want)) {
				t.Errorf("HEAD = %d, %d body bytes, Content-Length %q; want 200, 0, %d", h.Code, h.Body.Len(), h.Header().Get("Content-Length"), len(want))
			}
			if n := o.count(tt.path); n != 1 {
				t.Errorf("origin asked %d times; want 1", n)
			}
		})
	}
}

// TestModNeverPullsZip: .mod and .info requests fetch only the file asked for.
func TestModNeverPullsZip(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	e.get(t, "/example.com/m/@v/v1.1.0.mod", 200)
	e.get(t, "/example.com/m/@v/v1.1.0.info", 200)
	if n := o.count("example.com/m/@v/v1.1.0.zip"); n != 0 {
		t.Errorf("origin served the zip %d times for .mod and .info requests", n)
	}
	if n := o.total(); n != 2 {
		t.Errorf("origin saw %d requests; want 2", n)
	}
	keys := e.keys(t)
	if strings.Join(keys, " ") != "example.com/m/@v/v1.1.0.info example.com/m/@v/v1.1.0.mod" {
		t.Errorf("store holds %v", keys)
	}
}

// TestRequestLogAndMetrics: one info line per request with its fields, and the answer
// counted by kind and cache state.
func TestRequestLogAndMetrics(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	const path = "/example.com/m/@v/v1.0.0.mod"
	size := len(fixture(t, o, path[1:]))
	e.get(t, path, 200)
	e.get(t, path, 200)
	e.do("POST", path)
	var lines []string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, "msg=request") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d request log lines; want 3:\n%s", len(lines), e.logs.String())
	}
	wants := [][]string{
		{"level=INFO", "method=GET", "path=" + path, "status=200", "cache=miss", "upstream=" + o.URL(), "bytes=" + strconv.Itoa(size), "duration="},
		{"method=GET", "status=200", "cache=hit", `upstream=""`, "bytes=" + strconv.Itoa(size)},
		{"method=POST", "status=405"},
	}
	for i, want := range wants {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("log line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
	for _, c := range []struct {
		kind, cache string
		want        float64
	}{{"mod", CacheMiss, 1}, {"mod", CacheHit, 1}, {"invalid", CacheMiss, 1}} {
		if got := counterValue(e.s.metrics.cache.WithLabelValues(c.kind, c.cache)); got != c.want {
			t.Errorf("answers{kind=%s,cache=%s} = %v; want %v", c.kind, c.cache, got, c.want)
		}
	}
	if got := counterValue(e.s.metrics.bytes.WithLabelValues("mod", CacheHit)); got != float64(size) {
		t.Errorf("bytes served from the store = %v; want %d", got, size)
	}
	if got := counterValue(e.s.metrics.fills.WithLabelValues(o.URL(), "ok")); got != 1 {
		t.Errorf("fills{ok} = %v; want 1", got)
	}
	// The metrics are registered on Config.Registerer.
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"holoproxy_server_request_duration_seconds", "holoproxy_server_cache_answers_total", "holoproxy_server_response_bytes_total", "holoproxy_server_fill_attempts_total"} {
		if !names[n] {
			t.Errorf("%s not registered", n)
		}
	}
}

// TestChainEnds: off and direct end the list; after not-found answers they are a 404 (so
// the go command's own fallback works), after a failure a 502.
func TestChainEnds(t *testing.T) {
	const path = "example.com/m/@v/v1.0.0.mod"
	tests := []struct {
		list   string // A is the origin, answering status
		status int
		want   int
		inBody []string
	}{
		{"off", 0, 404, []string{"GOPROXY=off"}},
		{"A,off", 404, 404, []string{"404 from A", "GOPROXY=off"}},
		{"A,direct", 404, 404, []string{"404 from A", "direct"}},
		{"A|off", 500, 502, []string{"A answered 500"}},
		{"A,direct", 200, 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			a := newOrigin(t)
			if tt.status != 200 && tt.status != 0 {
				a.setFault(statusFault(tt.status))
			}
			e := newEnv(t, strings.ReplaceAll(tt.list, "A", a.URL()), nil)
			w := e.get(t, "/"+path, tt.want)
			for _, s := range tt.inBody {
				s = strings.ReplaceAll(s, "A", a.URL())
				if !strings.Contains(w.Body.String(), s) {
					t.Errorf("body %q lacks %q", w.Body.String(), s)
				}
			}
			if tt.list == "off" && a.total() != 0 {
				t.Errorf("origin asked with GOPROXY=off")
			}
		})
	}
}
