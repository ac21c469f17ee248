package checksum

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// upstreamProxy starts a proxy that answers /sumdb/<name>/supported with status for name.
func upstreamProxy(t *testing.T, name string, status int, hits *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/sumdb/"+name+"/supported" {
			w.WriteHeader(status)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestResolveBaseURL(t *testing.T) {
	var hitsNo, hitsYes, hitsYes2 atomic.Int64
	no := upstreamProxy(t, "sum.test", 404, &hitsNo)
	yes := upstreamProxy(t, "sum.test", 200, &hitsYes)
	yes2 := upstreamProxy(t, "sum.test", 200, &hitsYes2)
	down := "http://127.0.0.1:1" // nothing listens on port 1
	tests := []struct {
		name      string
		db        SumDB
		upstreams []string
		want      string
	}{
		{"URL in GOSUMDB wins", SumDB{Name: "sum.test", URL: "http://127.0.0.1:9/db"}, []string{yes}, "http://127.0.0.1:9/db"},
		{"first upstream that supports it", SumDB{Name: "sum.test"}, []string{"direct", down, no, yes, yes2}, yes + "/sumdb/sum.test"},
		{"no upstream supports it", SumDB{Name: "sum.test"}, []string{"off", no, down}, "https://sum.test"},
		{"no upstreams", SumDB{Name: "sum.test"}, nil, "https://sum.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ResolveBaseURL(tt.db, tt.upstreams, nil, 2*time.Second, time.Hour)
			for i := 0; i < 2; i++ {
				got, err := f(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Fatalf("call %d: %q, want %q", i, got, tt.want)
				}
			}
		})
	}
	if hitsYes2.Load() != 0 {
		t.Errorf("upstream after the first supporting one was probed %d times", hitsYes2.Load())
	}
	if hitsYes.Load() != 1 {
		t.Errorf("supporting upstream probed %d times over two calls, want 1 (answer remembered)", hitsYes.Load())
	}
	// A cancelled context stops the probing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ResolveBaseURL(SumDB{Name: "sum.test"}, []string{yes}, nil, time.Second, time.Hour)(ctx); err == nil {
		t.Error("resolution with a cancelled context succeeded")
	}
}
