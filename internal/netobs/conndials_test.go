package netobs

import (
	"context"
	"crypto/tls"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestConcurrentRequestsOnNewConnections checks that a new connection's dial and handshake
// figures land in the Sample of the request that used it, even when net/http gives the
// connection to another request than the one whose context dialled it (requests that
// start together, over HTTP/2 and HTTP/1.1): the Samples that report a new connection are
// exactly the connections that carried requests, as the server counts them, and each
// carries its TLS handshake.
func TestConcurrentRequestsOnNewConnections(t *testing.T) {
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	cert := ca.issue(t, []string{"proxy-a.test"}, nil, time.Time{}, time.Time{}, false)
	for _, proto := range []string{"h2", "http/1.1"} {
		t.Run(proto, func(t *testing.T) {
			var mu sync.Mutex
			carried := map[string]bool{} // client addresses of connections that served a request
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				carried[r.RemoteAddr] = true
				mu.Unlock()
				w.Write([]byte("ok"))
			})
			o := startOrigin(t, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{proto}}, h)
			url := "https://proxy-a.test:" + o.port + "/"
			for round := 0; round < 10; round++ {
				var got samples
				tr, err := NewTransport(TransportConfig{Resolver: udpResolver(lab, nil, nil), CAFile: ca.pemFile, Sink: &got})
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				clear(carried)
				mu.Unlock()
				var wg sync.WaitGroup
				for range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := get(context.Background(), tr.Client(), url, false); err != nil {
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				tr.CloseIdleConnections()
				fresh := 0
				for _, s := range got.all() {
					if s.Reused {
						continue
					}
					fresh++
					if s.TLS <= 0 || s.TLSVersion == "" || s.Connect <= 0 {
						t.Errorf("round %d: a Sample on a new connection has no dial figures: %+v", round, s)
					}
				}
				mu.Lock()
				n := len(carried)
				mu.Unlock()
				if fresh != n {
					t.Fatalf("round %d: %d Samples report a new connection; the server saw %d connections carry requests", round, fresh, n)
				}
			}
		})
	}
}
