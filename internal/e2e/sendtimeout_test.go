package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSendTimeoutBinary: holoproxy serve with HOLOPROXY_SEND_TIMEOUT gives up on the
// connection of a client that asks for a large zip and reads nothing (its metric counts it,
// and the client's next read is reset); a client that reads still gets the whole zip.
func TestSendTimeoutBinary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the send timeout is TCP_USER_TIMEOUT, a Linux socket option")
	}
	for _, front := range []string{"fasthttp", "net/http"} {
		t.Run(strings.ReplaceAll(front, "/", "-"), func(t *testing.T) { testSendTimeoutBinary(t, front) })
	}
}

func testSendTimeoutBinary(t *testing.T, front string) {
	mods := bigModules("stall.test/m", 1, 8<<20) // over the server's send buffer
	org := newOrigin(t, mods)
	p := startHoloproxy(t, nil, []string{"HOLOPROXY_CACHE_DIR=" + t.TempDir(), "GOPROXY=" + org.URL,
		"HOLOPROXY_SEND_TIMEOUT=300ms", "HOLOPROXY_HTTP_SERVER=" + front})
	key := fileKeys(t, mods[0])[2]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want, err := fetch(ctx, &http.Client{}, p.addr, key) // fills it; a reading client gets it all
	if err != nil {
		t.Fatal(err)
	}

	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	c, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: p\r\n\r\n", key); err != nil {
		t.Fatal(err)
	}
	// The server gives up on the connection (the kernel aborts it without telling the
	// client, which sees the reset at its next packet) and counts it.
	deadline := time.Now().Add(20 * time.Second)
	const series = "holoproxy_server_send_timeouts_total"
	for scrape(t, p.addr)[series] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v 20 s after the stalled client's request (send timeout 300 ms); want 1\n%s",
				series, scrape(t, p.addr)[series], p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if n >= int64(len(want)) || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the stalled client read %d bytes of a %d-byte zip, then %v; want fewer and a reset", n, len(want), err)
	}
	if got, err := fetch(ctx, &http.Client{}, p.addr, key); err != nil || len(got) != len(want) {
		t.Errorf("a reading client after the reset: %d of %d bytes, %v", len(got), len(want), err)
	}
}
