package netobs

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
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

// TestNewRequest checks a request of NewRequest: the Transport sends it as it is (no copy)
// and records it under its Labels; a redirect is recorded as an exchange of its own under
// the same Labels; the request's context passes the parent's values and cancellation
// through and answers the Labels before it is sent; and under a caller's ClientTrace both
// traces fire.
func TestNewRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new", http.StatusFound)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	var got samples
	tr, err := NewTransport(TransportConfig{Sink: &got})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	labels := Labels{Upstream: "proxy-a.test", Kind: "mod"}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), testKey{}, "v"))
	defer cancel()

	req, err := NewRequest(parent, http.MethodGet, srv.URL+"/plain", nil, labels)
	if err != nil {
		t.Fatal(err)
	}
	if l := LabelsFrom(req.Context()); l != labels {
		t.Errorf("LabelsFrom before sending = %+v; want %+v", l, labels)
	}
	if v, _ := req.Context().Value(labelsKey{}).(Labels); v != labels {
		t.Errorf("Value(labelsKey) before sending = %+v; want %+v", v, labels)
	}
	if RecorderFrom(req.Context()) != nil || httptrace.ContextClientTrace(req.Context()) != nil {
		t.Error("an unsent request's context answers the Recorder's or the ClientTrace's key")
	}
	if req.Context().Value(testKey{}) != "v" {
		t.Error("the parent's value does not pass through")
	}
	resp, err := tr.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Request != req {
		t.Error("the Transport copied a request of NewRequest")
	}

	req, err = NewRequest(parent, http.MethodGet, srv.URL+"/old", nil, labels)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = tr.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("after the redirect: %q", body)
	}
	s := got.all()
	if len(s) != 3 {
		t.Fatalf("%d Samples; want 3 (one request, a redirect and its target)", len(s))
	}
	for i, want := range []int{200, 302, 200} {
		if s[i].Upstream != labels.Upstream || s[i].Kind != labels.Kind || s[i].Status != want {
			t.Errorf("Sample %d: upstream %q kind %q status %d; want %q %q %d", i, s[i].Upstream, s[i].Kind, s[i].Status, labels.Upstream, labels.Kind, want)
		}
	}
	if !strings.HasSuffix(s[2].URLString(), "/new") {
		t.Errorf("the redirect's Sample is for %s; want /new", s[2].URLString())
	}

	var callerHook atomic.Int32
	traced := httptrace.WithClientTrace(parent, &httptrace.ClientTrace{GotFirstResponseByte: func() { callerHook.Add(1) }})
	req, err = NewRequest(traced, http.MethodGet, srv.URL+"/plain", nil, labels)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = tr.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s = got.all()
	if callerHook.Load() != 1 || len(s) != 4 || s[3].TTFB <= 0 || s[3].Upstream != labels.Upstream {
		t.Errorf("under a caller's trace: caller's hook ran %d times; Samples %d, last %+v", callerHook.Load(), len(s), s[len(s)-1])
	}
	cancel()
	<-req.Context().Done()
}
