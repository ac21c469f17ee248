package server

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/store"
)

// BenchmarkCached measures answers served from the store over loopback HTTP in process: a
// cached .info and a cached 1 MB .zip, through the Server's net/http front (holoproxy) and
// its fasthttp front (holoproxy-fasthttp, serve's default) and, as the baseline, through
// http.FileServer over the same store directory. Results are in docs/benchmarks.md.
func BenchmarkCached(b *testing.B) {
	// A module whose zip is about 1 MB: incompressible content.
	rnd := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	big := modtree.Module{Path: "example.com/big", Version: "v1.0.0", Files: map[string]string{
		"go.mod": "module example.com/big\n", "big.go": "package big\n", "data.bin": string(data),
	}}
	dir := b.TempDir()
	if err := modtree.Write(dir, []modtree.Module{big}); err != nil {
		b.Fatal(err)
	}
	origin := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer origin.Close()

	st, err := store.OpenDisk(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Timeout: time.Minute}
	chain, err := goproxy.ParseChain(origin.URL, hc)
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{
		Store:      st,
		Chain:      chain,
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	proxy := httptest.NewServer(s)
	defer proxy.Close()
	files := httptest.NewServer(http.FileServer(http.Dir(st.Root())))
	defer files.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fast := NewFastServer(s.ServeFast, FastServerConfig{ReadTimeout: time.Minute, IdleTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	go fast.Serve(ln)
	defer fast.Shutdown()

	paths := map[string]string{
		"info":    "example.com/big/@v/v1.0.0.info",
		"zip-1MB": "example.com/big/@v/v1.0.0.zip",
	}
	for _, p := range paths {
		get(b, hc, proxy.URL+"/"+p) // fill the store
	}
	for _, name := range []string{"info", "zip-1MB"} {
		for _, srv := range []struct{ name, url string }{
			{"holoproxy", proxy.URL}, {"holoproxy-fasthttp", "http://" + ln.Addr().String()}, {"fileserver", files.URL},
		} {
			b.Run(name+"/"+srv.name, func(b *testing.B) {
				u := srv.url + "/" + paths[name]
				var n int64
				for b.Loop() {
					n = get(b, hc, u)
				}
				b.SetBytes(n)
			})
		}
	}
}

// get fetches u, which must answer 200, and returns the body length.
func get(b *testing.B, hc *http.Client, u string) int64 {
	resp, err := hc.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d, %v", u, resp.StatusCode, err)
	}
	return n
}
