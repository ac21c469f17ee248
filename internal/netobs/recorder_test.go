package netobs

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestRecorderSample checks the Sample a Recorder makes from its hooks when driven by hand,
// as callers outside a Transport do: request fields from the start, a failed dial's figures
// when no connection was got, a reused connection without them, the outcome, and that a
// second Finish returns the first one's Sample even when hooks fired in between.
func TestRecorderSample(t *testing.T) {
	newReq := func() *http.Request {
		req, err := http.NewRequestWithContext(WithLabels(t.Context(), Labels{Upstream: "up", Kind: "mod"}),
			http.MethodGet, "https://proxy.test/example.test/m/@v/v1.0.0.mod", nil)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}

	t.Run("failed dial", func(t *testing.T) {
		var got []Sample
		r := NewRecorder(newReq(), SinkFunc(func(s Sample) { got = append(got, s) }))
		r.DNSDone(Lookup{Duration: time.Millisecond, Backend: "udp", Rcode: RcodeNoError, Cache: CacheMiss}, nil)
		r.ConnectDone("", 2, 3*time.Millisecond, errors.New("refused"))
		dialErr := &Error{Class: ClassTCPRefused, Phase: PhaseConnect, Err: errors.New("refused")}
		s := r.Finish(dialErr)
		if u := s.URLString(); u != "https://proxy.test/example.test/m/@v/v1.0.0.mod" {
			t.Errorf("URLString() = %q", u)
		}
		want := Sample{Upstream: "up", Kind: "mod", Method: "GET", url: s.url,
			Host: "proxy.test:443", DNS: time.Millisecond, DNSBackend: "udp", DNSRcode: RcodeNoError, DNSCache: CacheMiss,
			Connect: 3 * time.Millisecond, DialAttempts: 2, ErrClass: ClassTCPRefused, Err: dialErr.Error()}
		want.Start, want.Total = s.Start, s.Total
		if !reflect.DeepEqual(s, want) {
			t.Errorf("Sample\n got %+v\nwant %+v", s, want)
		}
		if len(got) != 1 || !reflect.DeepEqual(got[0], s) {
			t.Errorf("sink got %d Samples, want the one returned", len(got))
		}
	})

	t.Run("reused connection", func(t *testing.T) {
		var got []Sample
		r := NewRecorder(newReq(), SinkFunc(func(s Sample) { got = append(got, s) }))
		// A dial this request started, whose connection went to the pool: not reported.
		r.TLSDone(&tls.ConnectionState{HandshakeComplete: true, Version: tls.VersionTLS13}, time.Millisecond, nil)
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		r.GotConn(httptrace.GotConnInfo{Conn: c1, Reused: true, WasIdle: true, IdleTime: time.Second})
		r.WroteRequest(httptrace.WroteRequestInfo{})
		r.GotFirstResponseByte()
		r.GotResponse(&http.Response{StatusCode: 200, Proto: "HTTP/2.0"})
		r.BodyRead(10)
		s := r.Finish(nil)
		if !s.Reused || s.IdleTime != time.Second || s.TLS != 0 || s.TLSVersion != "" || s.RemoteAddr != c1.RemoteAddr().String() {
			t.Errorf("reused: Reused %v IdleTime %v TLS %v %q RemoteAddr %q", s.Reused, s.IdleTime, s.TLS, s.TLSVersion, s.RemoteAddr)
		}
		if s.Status != 200 || s.Proto != "HTTP/2.0" || s.Bytes != 10 || s.Wrote <= 0 || s.Total < s.Wrote+s.TTFB+s.Transfer {
			t.Errorf("outcome: %+v", s)
		}
		// Hooks that fire after the end change nothing.
		r.BodyRead(5)
		r.GotFirstResponseByte()
		r.WroteRequest(httptrace.WroteRequestInfo{})
		if again := r.Finish(errors.New("late")); !reflect.DeepEqual(again, s) {
			t.Errorf("second Finish\n got %+v\nwant %+v", again, s)
		}
		if len(got) != 1 {
			t.Errorf("sink got %d Samples, want 1", len(got))
		}
	})
}

// TestSampleURL: a Recorder's Sample formats its URL only when asked, and JSON and log
// output carry it as a Sample with URL set would.
func TestSampleURL(t *testing.T) {
	req, err := http.NewRequest(http.MethodGet, "https://proxy.test/example.test/!m/@v/v1.0.0.info", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewRecorder(req, nil).Finish(nil)
	const want = "https://proxy.test/example.test/!m/@v/v1.0.0.info"
	if s.URL != "" {
		t.Errorf("URL = %q, want it left to URLString", s.URL)
	}
	if got := s.URLString(); got != want {
		t.Errorf("URLString() = %q, want %q", got, want)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Sample
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.URL != want || back.Method != http.MethodGet || back.Host != "proxy.test:443" {
		t.Errorf("JSON round trip: url %q method %q host %q; JSON %s", back.URL, back.Method, back.Host, b)
	}
	// A Sample made by hand (the prober's) keeps its URL.
	if got := (&Sample{URL: "http://x.test/y"}).URLString(); got != "http://x.test/y" {
		t.Errorf("URLString of a set URL = %q", got)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "sample", s)
	if !strings.Contains(buf.String(), "sample.url="+want) {
		t.Errorf("log line %q lacks sample.url=%s", buf.String(), want)
	}
}
