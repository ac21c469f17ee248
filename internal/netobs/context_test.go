package netobs

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
)

type testKey struct{}

// TestExchangeContext checks the one context value a request runs under: httptrace finds
// the exchange's ClientTrace in it and the Dialer its Recorder, the parent's values and
// cancellation pass through, and a parent that carries a ClientTrace of its own gets both
// traces composed, as httptrace.WithClientTrace does.
func TestExchangeContext(t *testing.T) {
	if clientTraceKey == nil {
		t.Fatal("httptrace's context key was not learnt: every request pays for two context layers")
	}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), testKey{}, "v"))
	ex := &exchange{}
	ctx := ex.context(parent)
	if got := httptrace.ContextClientTrace(ctx); got != &ex.trace {
		t.Errorf("httptrace.ContextClientTrace = %p, want the exchange's %p", got, &ex.trace)
	}
	if got := RecorderFrom(ctx); got != &ex.rec {
		t.Errorf("RecorderFrom = %p, want the exchange's %p", got, &ex.rec)
	}
	if got := ctx.Value(testKey{}); got != "v" {
		t.Errorf("parent's value = %v, want v", got)
	}
	child, stop := context.WithCancel(ctx)
	defer stop()
	cancel()
	<-ctx.Done()
	<-child.Done()

	var callerHook, ourHook atomic.Int32
	traced := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotFirstResponseByte: func() { callerHook.Add(1) },
	})
	ex = &exchange{}
	ex.trace.GotFirstResponseByte = func() { ourHook.Add(1) }
	ctx = ex.context(traced)
	if RecorderFrom(ctx) != &ex.rec {
		t.Error("RecorderFrom under a caller's trace: not the exchange's Recorder")
	}
	httptrace.ContextClientTrace(ctx).GotFirstResponseByte()
	if callerHook.Load() != 1 || ourHook.Load() != 1 {
		t.Errorf("composed trace: caller's hook ran %d times, ours %d; want 1, 1", callerHook.Load(), ourHook.Load())
	}
}

// TestTransportKeepsCallerTrace checks that a caller's own ClientTrace still fires when
// the request goes through the Transport, and the Sample is recorded all the same.
func TestTransportKeepsCallerTrace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	var got samples
	tr, err := NewTransport(TransportConfig{Sink: &got})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	var gotConn, firstByte atomic.Int32
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn:              func(httptrace.GotConnInfo) { gotConn.Add(1) },
		GotFirstResponseByte: func() { firstByte.Add(1) },
	})
	if err := get(ctx, tr.Client(), srv.URL+"/", false); err != nil {
		t.Fatal(err)
	}
	if gotConn.Load() != 1 || firstByte.Load() != 1 {
		t.Errorf("caller's hooks: GotConn %d, GotFirstResponseByte %d; want 1, 1", gotConn.Load(), firstByte.Load())
	}
	s := got.all()
	if len(s) != 1 || s[0].Status != 200 || s[0].TTFB <= 0 || s[0].Connect <= 0 {
		t.Errorf("Sample under a caller's trace: %+v", s)
	}
}
