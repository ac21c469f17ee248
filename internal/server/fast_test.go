package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
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
