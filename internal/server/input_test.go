package server

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

func TestBadInput(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	tests := []struct {
		name   string
		method string
		path   string // set as the decoded URL.Path, as net/http hands it over
		want   int
		reason string // a part of the one-line body
	}{
		{"upper case not encoded", "GET", "/example.com/Upper/@v/list", 400, "bad request"},
		{"bad escape", "GET", "/example.com/!!m/@v/list", 400, "bad request"},
		{"malformed version", "GET", "/example.com/m/@v/v1.0.0.0.mod", 400, "bad request"},
		{"non-canonical zip", "GET", "/example.com/m/@v/v1.0.zip", 400, "not a canonical version"},
		{"version with slash", "GET", "/example.com/m/@v/a/b.info", 400, "malformed version"},
		{"dot-dot in module", "GET", "/example.com/../@v/list", 400, "bad request"},
		{"dot-dot climbing", "GET", "/../../etc/passwd/@v/list", 400, "bad request"},
		{"dot-dot version", "GET", "/example.com/m/@v/...info", 400, "bad request"},
		{"absolute", "GET", "//etc/passwd/@v/list", 400, "relative"},
		{"NUL", "GET", "/example.com/m/@v/v1.0.0\x00.info", 400, "NUL"},
		{"backslash", "GET", "/example.com\\m/@v/list", 400, "backslash"},
		{"over-long", "GET", "/example.com/" + strings.Repeat("a", 3000) + "/@v/list", 400, "longer than"},
		{"unknown endpoint", "GET", "/example.com/m/@v/v1.0.0.tar", 404, "unknown endpoint"},
		{"no endpoint", "GET", "/example.com/m", 404, "no /@v/"},
		{"root", "GET", "/", 404, "no /@v/"},
		{"sumdb", "GET", "/sumdb/sum.example.test/supported", 404, "no /@v/"},
		{"POST", "POST", "/example.com/m/@v/list", 405, "use GET or HEAD"},
		{"DELETE", "DELETE", "/example.com/m/@v/v1.0.0.zip", 405, "use GET or HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(tt.method, tt.path)
			if w.Code != tt.want {
				t.Fatalf("%s %q = %d %q; want %d", tt.method, tt.path, w.Code, w.Body.String(), tt.want)
			}
			assertOneLine(t, w)
			if !strings.Contains(w.Body.String(), tt.reason) {
				t.Errorf("body %q does not give the reason %q", w.Body.String(), tt.reason)
			}
			if tt.want == 405 && w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("405 without Allow: GET, HEAD")
			}
		})
	}
	// The request from the real wire: %00 and %5C decoded by net/http.
	for _, raw := range []string{"/example.com/m/@v/v1.0.0%00.info", "/example.com%5Cm/@v/list", "/example.com/m/%2e%2e/@v/list"} {
		r, err := http.NewRequest("GET", "http://proxy.test"+raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		if w := e.do("GET", r.URL.Path); w.Code != 400 {
			t.Errorf("GET %s = %d; want 400", raw, w.Code)
		}
	}
	if n := o.total(); n != 0 {
		t.Errorf("origin saw %d requests for bad input; want 0", n)
	}
	if keys := e.keys(t); len(keys) != 0 {
		t.Errorf("store holds %v after bad input", keys)
	}
}

func TestLoopGuard(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), func(c *Config) { c.MaxHops = 3 })
	tests := []struct {
		name string
		hops []string // values of the hop header
		want int
	}{
		{"no hop header", nil, 200},
		{"another instance", []string{"edge-1"}, 200},
		{"this instance", []string{"test-instance"}, 508},
		{"this instance in a list", []string{"edge-1, test-instance"}, 508},
		{"this instance in a second header line", []string{"edge-1", "test-instance"}, 508},
		{"too many hops", []string{"a, b, c"}, 508},
		{"similar name", []string{"test-instance-2"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := o.total()
			r, _ := http.NewRequest("GET", "http://proxy.test/example.com/m/@v/list", nil)
			for _, h := range tt.hops {
				r.Header.Add(HopHeader, h)
			}
			// The list is refreshed every time so that each 200 asks the origin.
			e.clock.Advance(DefaultListTTL)
			w := e.serve(r)
			e.settle()
			e.settle()
			if w.Code != tt.want {
				t.Fatalf("status %d %q; want %d", w.Code, w.Body.String(), tt.want)
			}
			if tt.want == 508 {
				assertOneLine(t, w)
				if !strings.Contains(w.Body.String(), "loop") {
					t.Errorf("508 body %q does not say loop", w.Body.String())
				}
				if o.total() != before {
					t.Errorf("a looping request reached the origin")
				}
				return
			}
			// The origin saw the hops so far plus this instance.
			o.mu.Lock()
			got := o.hops[len(o.hops)-1]
			o.mu.Unlock()
			want := strings.Join(append(tt.hops, "test-instance"), ", ")
			if got != want {
				t.Errorf("origin saw %s %q; want %q", HopHeader, got, want)
			}
		})
	}
}

func TestCheckNotSelf(t *testing.T) {
	tests := []struct {
		listen, upstreams string
		self              bool
	}{
		{"127.0.0.1:7070", "http://127.0.0.1:7070", true},
		{"127.0.0.1:7070", "http://localhost:7070/", true},
		{"127.0.0.1:7070", "http://[::1]:7070", true},
		{"127.0.0.1:7070", "http://127.0.0.1:7071", false},
		{"127.0.0.1:7070", "http://proxy-a.test:7070", false},
		{":7070", "http://localhost:7070", true},
		{":7070", "http://127.0.0.1:7070", true},
		{":7070", "http://[::1]:7070", true},
		{"0.0.0.0:7070", "http://0.0.0.0:7070", true},
		{"[::]:7070", "http://127.0.0.1:7070", true},
		{":80", "http://localhost", true},
		{":443", "https://localhost", true},
		{":443", "http://localhost", false},
		{"localhost:7070", "http://LOCALHOST:7070", true},
		{"10.1.2.3:7070", "http://127.0.0.1:7070", false},
		{":7070", "https://proxy-a.test,http://localhost:7070", true},
		{":7070", "https://proxy-a.test|http://proxy-b.test:7070,off", false},
		{":7070", "direct", false},
	}
	for _, tt := range tests {
		chain, err := goproxy.ParseChain(tt.upstreams, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckNotSelf(tt.listen, chain)
		if got := errors.Is(err, ErrSelfUpstream); got != tt.self {
			t.Errorf("CheckNotSelf(%q, %q) = %v; want self=%v", tt.listen, tt.upstreams, err, tt.self)
		}
	}
	if err := CheckNotSelf("7070", nil); err == nil {
		t.Errorf("CheckNotSelf accepted a listen address without a port")
	}
}
