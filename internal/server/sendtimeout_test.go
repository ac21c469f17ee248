package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSendTimeout: a client that asks for a large zip and then reads nothing is cut off by
// the send timeout on both fronts, and the connection is closed on the server's side; a
// client that reads gets the whole zip.
func TestSendTimeout(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the send timeout is TCP_USER_TIMEOUT, a Linux socket option")
	}
	e := newBigEnv(t, 8<<20) // over the server's send buffer (4 MiB at most here)
	if w := e.do("GET", bigKey); w.Code != 200 {
		t.Fatalf("fill: %d %s", w.Code, w.Body)
	}
	zipSize := int64(e.do("HEAD", bigKey).Result().ContentLength)

	const timeout = 300 * time.Millisecond
	for _, front := range []string{"fasthttp", "net/http"} {
		t.Run(strings.ReplaceAll(front, "/", "-"), func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := e.s.SendTimeoutListener(raw, timeout)
			var openConns func() int64 // connections the server has not closed
			if front == "fasthttp" {
				fs := NewFastServer(e.s.ServeFast, FastServerConfig{ReadTimeout: 10 * time.Second, IdleTimeout: time.Minute,
					Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
				go fs.Serve(ln)
				t.Cleanup(func() { fs.Shutdown() })
				openConns = func() int64 { return int64(fs.GetOpenConnectionsCount()) }
			} else {
				var open atomic.Int64
				hs := &http.Server{Handler: e.s, ReadHeaderTimeout: 10 * time.Second,
					ConnState: func(_ net.Conn, st http.ConnState) {
						switch st {
						case http.StateNew:
							open.Add(1)
						case http.StateClosed, http.StateHijacked:
							open.Add(-1)
						}
					}}
				go hs.Serve(ln)
				t.Cleanup(func() { hs.Close() })
				openConns = open.Load
			}
			before := counterValue(e.s.metrics.sendTimeouts)
			testSendTimeout(t, raw.Addr().String(), zipSize, openConns)
			if got := counterValue(e.s.metrics.sendTimeouts) - before; got != 1 {
				t.Errorf("holoproxy_server_send_timeouts_total rose by %v; want 1", got)
			}
		})
	}
}

// testSendTimeout runs the stalled client and the reading client of bigKey against addr.
func testSendTimeout(t *testing.T, addr string, zipSize int64, openConns func() int64) {
	// The stalled client: a small receive buffer, a request, then nothing read.
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: p\r\n\r\n", bigKey); err != nil {
		t.Fatal(err)
	}
	// The server takes the connection, then closes it within the timeout and a few
	// zero-window probes.
	deadline := time.Now().Add(15 * time.Second)
	// <= 0: fasthttp's count is -1 until its Serve goroutine has started.
	for openConns() <= 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server did not take the stalled client's connection")
		}
		time.Sleep(time.Millisecond)
	}
	for openConns() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the server still holds the stalled client's connection after 15 s (send timeout 300 ms)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its connection was reset (or closed) with most of the zip unsent; a connection still
	// open would give the whole zip and then wait for the read deadline.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	var ne net.Error
	if n >= zipSize || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("the stalled client read %d bytes of a %d-byte zip, then %v: not cut off", n, zipSize, err)
	}
	t.Logf("stalled client: %d bytes, then %v", n, err)

	// A client that reads gets all of it over the same listener.
	resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + addr + bigKey)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	if err != nil || got != zipSize || resp.Header.Get("Content-Length") != strconv.FormatInt(zipSize, 10) {
		t.Fatalf("reading client: %d of %d bytes, %v", got, zipSize, err)
	}
}
