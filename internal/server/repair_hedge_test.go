package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/health"
)

// TestRepairHedgesSlowUpstream: A sends nothing for one file; the fill hedges to B after the
// hedge delay, B's answer is served and stored, A's request is cancelled without being
// charged or logged as a failure, and no temporary file is left (checked by newEnv's cleanup).
func TestRepairHedgesSlowUpstream(t *testing.T) {
	a, b := newOrigin(t), newOrigin(t)
	cancelled := make(chan struct{}, 1)
	a.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "v1.0.0.mod") {
			return false
		}
		<-r.Context().Done()
		cancelled <- struct{}{}
		return true
	})
	e, rp := newRepairEnv(t, a.URL()+"|"+b.URL(), RepairConfig{Hedge: health.HedgeConfig{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}}, nil)

	w := e.get(t, "/example.com/m/@v/v1.1.0.mod", http.StatusOK) // A answers: no hedge
	if got := w.Header().Get(UpstreamHeader); got != a.URL() {
		t.Fatalf("v1.1.0.mod served by %s, want A", got)
	}
	w = e.get(t, "/example.com/m/@v/v1.0.0.mod", http.StatusOK)
	if got := w.Header().Get(UpstreamHeader); got != b.URL() {
		t.Fatalf("v1.0.0.mod served by %s, want B (hedged)", got)
	}
	if w.Body.String() != string(fixture(t, b, "example.com/m/@v/v1.0.0.mod")) {
		t.Fatalf("served %q", w.Body.String())
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("A's stalled request was not cancelled")
	}
	if st := rp.Hedger.Stats(); st.Fired != 1 || st.Capped != 0 {
		t.Fatalf("hedge stats %+v, want one fired", st)
	}
	if n := a.count("example.com/m/@v/v1.0.0.mod"); n != 1 {
		t.Fatalf("A asked %d times for v1.0.0.mod, want 1", n)
	}
	if strings.Contains(e.logs.String(), "upstream failed") {
		t.Fatalf("the cancelled hedged attempt was logged as a failure:\n%s", e.logs)
	}
	for _, st := range rp.Scorer.Statuses() {
		if st.Upstream == a.URL() && st.ErrorsByClass["slow_first_byte"] != 1 {
			t.Fatalf("A's errors %v, want one slow signal", st.ErrorsByClass)
		}
	}
}
