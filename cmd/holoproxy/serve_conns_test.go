package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connsOrigin is a GOPROXY origin on loopback that answers the .info of any module at
// v1.0.0 (after holding the request until release when the module's name starts with
// "stall"; with noStall, 404 for those), 404 for the rest, and counts the connections its
// listener accepted.
type connsOrigin struct {
	noStall  bool
	url      string
	accepted atomic.Int64
	entered  chan string // the path of each request that reached the handler
	stop     chan struct{}
	once     sync.Once
}

func (o *connsOrigin) release() { o.once.Do(func() { close(o.stop) }) }

func startConnsOrigin(t *testing.T, noStall bool) *connsOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &connsOrigin{noStall: noStall, url: "http://" + ln.Addr().String(), entered: make(chan string, 1000), stop: make(chan struct{})}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.entered <- r.URL.Path
		if !strings.HasSuffix(r.URL.Path, "/@v/v1.0.0.info") {
			http.NotFound(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/example.test/stall") {
			if o.noStall {
				http.NotFound(w, r)
				return
			}
			select {
			case <-o.stop:
			case <-r.Context().Done():
				return
			}
		} else {
			time.Sleep(5 * time.Millisecond) // let the misses pile up at the cap
		}
		fmt.Fprint(w, `{"Version":"v1.0.0","Time":"2026-01-01T00:00:00Z"}`)
	})}
	go srv.Serve(&acceptCounter{Listener: ln, n: &o.accepted})
	t.Cleanup(func() { o.release(); srv.Close() })
	return o
}

type acceptCounter struct {
	net.Listener
	n *atomic.Int64
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// syncBuffer is a bytes.Buffer safe for the logger's and the test's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingAddr = regexp.MustCompile(`msg=serving addr=(\S+)`)

// startServe runs serve in this process in front of upstream with the extra args and
// environment, until the test ends, and returns its base URL.
func startServe(t *testing.T, upstream string, env map[string]string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	root := newRootCmd(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	root.SetArgs(append([]string{"serve", "--listen=127.0.0.1:0", "--upstream=" + upstream, "--cache-dir=" + t.TempDir(),
		"--sumdb=off", "--probe-interval=0", "--prefetch=0", "--shutdown-timeout=5s"}, args...))
	root.SetOut(&logs)
	root.SetErr(&logs)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(time.Minute):
			t.Errorf("serve did not stop within a minute of its context's end")
		}
	})
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if m := servingAddr.FindStringSubmatch(logs.String()); m != nil {
			return "http://" + m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended before serving: %v\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start within a minute:\n%s", logs.String())
	return ""
}

// getBody GETs url and returns the status and body.
func getBody(t *testing.T, c *http.Client, url string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Many distinct misses at once through serve, with the cap at 4 (set by the environment
// twin HOLOPROXY_UPSTREAM_MAX_CONNS): the origin accepts at most 4 connections, and every
// request is answered.
func TestServeUpstreamMaxConns(t *testing.T) {
	const maxConns, misses = 4, 64
	o := startConnsOrigin(t, false)
	base := startServe(t, o.url, map[string]string{"HOLOPROXY_UPSTREAM_MAX_CONNS": fmt.Sprint(maxConns)})
	c := &http.Client{Timeout: time.Minute}
	var wg sync.WaitGroup
	for i := range misses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := getBody(t, c, fmt.Sprintf("%s/example.test/m%d/@v/v1.0.0.info", base, i))
			if err != nil || code != http.StatusOK || !strings.Contains(body, `"v1.0.0"`) {
				t.Errorf("miss %d: %d %q %v", i, code, body, err)
			}
		}()
	}
	wg.Wait()
	if n := o.accepted.Load(); n > maxConns || n < 1 {
		t.Errorf("the origin accepted %d connections for %d misses; the cap is %d", n, misses, maxConns)
	}
}

// With the cap's connections held by requests a stalled origin does not answer, the
// misses that wait for a connection are answered 502 once they waited --connect-timeout,
// with a reason that names the upstream and says its connection cap was reached, instead
// of waiting as long as the client does; /metrics counts them (class conn_cap) and has
// the waiters gauge. The held requests are answered when the origin goes on.
func TestServeUpstreamMaxConnsWaitBounded(t *testing.T) {
	o := startConnsOrigin(t, false)
	base := startServe(t, o.url, nil, "--upstream-max-conns=2", "--connect-timeout=300ms", "--first-byte-timeout=5m")
	c := &http.Client{Timeout: time.Minute}
	held := make(chan error, 2)
	for i := range 2 {
		go func() {
			code, _, err := getBody(t, c, fmt.Sprintf("%s/example.test/stall%d/@v/v1.0.0.info", base, i))
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("status %d", code)
			}
			held <- err
		}()
	}
	for range 2 {
		select {
		case <-o.entered:
		case <-time.After(time.Minute):
			t.Fatal("the stalled requests never reached the origin")
		}
	}
	host := strings.TrimPrefix(o.url, "http://")
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, err := getBody(t, c, fmt.Sprintf("%s/example.test/waiter%d/@v/v1.0.0.info", base, i))
			if err != nil {
				t.Errorf("waiter %d: %v (not cut by the cap's bound)", i, err)
				return
			}
			if code != http.StatusBadGateway || !strings.Contains(body, host) || !strings.Contains(body, "connection cap reached") {
				t.Errorf("waiter %d: %d %q; want 502 naming %s and the connection cap", i, code, body, host)
			}
			if strings.Count(strings.TrimSpace(body), "\n") != 0 {
				t.Errorf("waiter %d: a reason of more than one line: %q", i, body)
			}
		}()
	}
	wg.Wait()
	o.release()
	for range 2 {
		if err := <-held; err != nil {
			t.Errorf("a request holding a connection: %v", err)
		}
	}
	if n := o.accepted.Load(); n != 2 {
		t.Errorf("the origin accepted %d connections; the cap is 2", n)
	}
	_, metrics, err := getBody(t, c, base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`holoproxy_upstream_errors_total{class="conn_cap",upstream=%q} 3`, o.url),
		fmt.Sprintf(`holoproxy_upstream_connection_waiters{upstream=%q} 0`, o.url),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// A negative --upstream-max-conns (or twin), or one that is not a number, is a one-line
// usage error of serve, warm and trace.
func TestUpstreamMaxConnsFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"serve", "--upstream-max-conns=-1"}, nil, "--upstream-max-conns must be 0 (no cap) or more, not -1"},
		{[]string{"serve"}, map[string]string{"HOLOPROXY_UPSTREAM_MAX_CONNS": "-3"}, "--upstream-max-conns must be 0 (no cap) or more, not -3"},
		{[]string{"serve"}, map[string]string{"HOLOPROXY_UPSTREAM_MAX_CONNS": "lots"}, "HOLOPROXY_UPSTREAM_MAX_CONNS"},
		{[]string{"warm", "--upstream-max-conns=-1", "--to=" + t.TempDir()}, nil, "--upstream-max-conns"},
		{[]string{"trace", "--upstream-max-conns=-1"}, nil, "--upstream-max-conns"},
	} {
		args := tc.args
		if args[0] == "serve" {
			args = append(args, "--listen=127.0.0.1:0", "--upstream=http://127.0.0.1:1", "--cache-dir="+t.TempDir(), "--sumdb=off")
		}
		var out, errb bytes.Buffer
		code := execute(args, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want %d naming %s", tc.args, tc.env, code, errb.String(), exitUsage, tc.want)
		}
		if n := strings.Count(strings.TrimSpace(errb.String()), "\n"); n != 0 {
			t.Errorf("%v: usage error spans %d lines; want one", tc.args, n+1)
		}
	}
}

// Hedging still works for a request waiting at the cap: with upstream A's only connection
// held by a request it stalls on, a miss queued for A's connection (for longer than the
// client waits) is hedged to B, the next proxy of the '|' run, and answered from there.
func TestServeUpstreamMaxConnsHedged(t *testing.T) {
	a, b := startConnsOrigin(t, false), startConnsOrigin(t, true)
	base := startServe(t, a.url+"|"+b.url, nil, "--upstream-max-conns=1", "--connect-timeout=5m",
		"--first-byte-timeout=5m", "--hedge-min=20ms", "--hedge-max=100ms", "--hedge-share=1")
	c := &http.Client{Timeout: time.Minute}
	held := make(chan error, 1)
	go func() {
		code, _, err := getBody(t, c, base+"/example.test/stall0/@v/v1.0.0.info")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		held <- err
	}()
	select {
	case <-a.entered:
	case <-time.After(time.Minute):
		t.Fatal("the stalled request never reached upstream A")
	}
	resp, err := c.Get(base + "/example.test/m1/@v/v1.0.0.info")
	if err != nil {
		t.Fatalf("the miss waiting for A's connection: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Holoproxy-Upstream") != b.url {
		t.Errorf("the miss waiting for A's connection: %d from %q, %q; want 200 from %s", resp.StatusCode,
			resp.Header.Get("X-Holoproxy-Upstream"), body, b.url)
	}
	a.release()
	if err := <-held; err != nil {
		t.Errorf("the request holding A's connection: %v", err)
	}
	if n := a.accepted.Load(); n != 1 {
		t.Errorf("upstream A accepted %d connections; the cap is 1", n)
	}
}
