package lab

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeOriginOnLoopback: an origin on a loopback listener (no lab, no root) serves its
// tree, injects the hang and corrupt faults as documented (corrupt only .mod and .zip, one
// byte, the length kept), logs them, and DropIdle closes the connections it holds idle.
func TestServeOriginOnLoopback(t *testing.T) {
	tree := t.TempDir()
	files := map[string]string{
		"m.test/a/@v/v1.0.0.mod":  "module m.test/a\n",
		"m.test/a/@v/v1.0.0.zip":  strings.Repeat("z", 4096),
		"m.test/a/@v/v1.0.0.info": `{"Version":"v1.0.0"}`,
		"m.test/a/@v/list":        "v1.0.0\n",
	}
	for p, data := range files {
		f := filepath.Join(tree, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o, err := ServeOriginOn(ln, OriginConfig{Tree: tree})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if want := "http://" + ln.Addr().String(); o.URL() != want || o.Host() != nil {
		t.Errorf("URL %q, Host %v; want %q and no host", o.URL(), o.Host(), want)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(ctx context.Context, p string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL()+"/"+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}

	for p, data := range files {
		if code, b, err := get(t.Context(), p); err != nil || code != 200 || string(b) != data {
			t.Errorf("clean GET %s: %d %q %v", p, code, b, err)
		}
	}

	o.SetFaults(Faults{CorruptRate: 1, Seed: 1})
	for p, data := range files {
		code, b, err := get(t.Context(), p)
		if err != nil || code != 200 || len(b) != len(data) {
			t.Errorf("corrupt GET %s: %d, %d bytes, %v; want 200 and %d bytes", p, code, len(b), err, len(data))
			continue
		}
		diff := 0
		for i := range b {
			if b[i] != data[i] {
				diff++
			}
		}
		covered := strings.HasSuffix(p, ".mod") || strings.HasSuffix(p, ".zip")
		if covered && diff != 1 || !covered && diff != 0 {
			t.Errorf("corrupt GET %s: %d bytes changed; want %d", p, diff, map[bool]int{true: 1, false: 0}[covered])
		}
	}

	o.SetFaults(Faults{HangRate: 1, Seed: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	start := time.Now()
	if _, _, err := get(ctx, "m.test/a/@v/list"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("HangRate 1: %v; want no answer until the deadline", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("HangRate 1: gave up after %v", el)
	}
	cancel()

	faults := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for faults["hang"] == 0 && time.Now().Before(deadline) { // logged once the handler sees the client gone
		faults = map[string]int{}
		for _, r := range o.Log() {
			faults[r.Fault]++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if faults["corrupt"] != 2 || faults["hang"] != 1 || faults[""] != len(files)+2 {
		t.Errorf("log faults %v; want 2 corrupt, 1 hang, %d clean", faults, len(files)+2)
	}

	// DropIdle: the client's idle connection is closed by the origin, so the next request
	// needs a new one.
	o.SetFaults(Faults{})
	if code, _, err := get(t.Context(), "m.test/a/@v/list"); err != nil || code != 200 {
		t.Fatalf("GET after faults: %d %v", code, err)
	}
	conns := o.Stats().Conns
	if code, _, err := get(t.Context(), "m.test/a/@v/list"); err != nil || code != 200 {
		t.Fatalf("GET after faults: %d %v", code, err)
	}
	if n := o.Stats().Conns; n != conns {
		t.Errorf("a kept-alive request opened %d connections; want it to reuse one", n-conns)
	}
	time.Sleep(50 * time.Millisecond) // the server has marked the connection idle
	o.DropIdle()
	time.Sleep(50 * time.Millisecond) // the client's pool has seen the close
	if code, b, err := get(t.Context(), "m.test/a/@v/list"); err != nil || code != 200 || !bytes.Equal(b, []byte(files["m.test/a/@v/list"])) {
		t.Fatalf("GET after DropIdle: %d %q %v", code, b, err)
	}
	if n := o.Stats().Conns; n != conns+1 {
		t.Errorf("after DropIdle: %d new connections; want 1", n-conns)
	}
}
