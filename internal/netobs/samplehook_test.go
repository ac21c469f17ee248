package netobs

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
)

// A request whose context carries a sample hook hands its Sample to the hook as well as to
// the Sink, once the body is done; a request without the hook reaches only the Sink.
func TestWithSampleHook(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer srv.Close()
	var (
		mu           sync.Mutex
		sunk, hooked []Sample
	)
	tr, err := NewTransport(TransportConfig{Sink: SinkFunc(func(s Sample) {
		mu.Lock()
		sunk = append(sunk, s)
		mu.Unlock()
	})})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	hook := func(s Sample) {
		mu.Lock()
		hooked = append(hooked, s)
		mu.Unlock()
	}
	get := func(ctx context.Context, path string) {
		t.Helper()
		mu.Lock()
		before := len(hooked)
		mu.Unlock()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(hooked)
		mu.Unlock()
		if n != before {
			t.Errorf("hook called before the body was read")
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ctx := WithLabels(context.Background(), Labels{Upstream: "proxy-a.test", Kind: "mod"})
	get(WithSampleHook(ctx, hook), "/hooked")
	get(ctx, "/plain")

	mu.Lock()
	defer mu.Unlock()
	if len(sunk) != 2 {
		t.Fatalf("sink got %d samples; want 2", len(sunk))
	}
	if len(hooked) != 1 {
		t.Fatalf("hook got %d samples; want 1 (only the request that carried it)", len(hooked))
	}
	h := hooked[0]
	if h.URLString() != srv.URL+"/hooked" || h.Upstream != "proxy-a.test" || h.Bytes != 5 || h.Status != http.StatusOK {
		t.Errorf("hooked sample = %+v; want the /hooked exchange, upstream proxy-a.test, 5 bytes, 200", h)
	}
	if !reflect.DeepEqual(h, sunk[0]) {
		t.Errorf("hook and sink saw different samples:\n%+v\n%+v", h, sunk[0])
	}
}
