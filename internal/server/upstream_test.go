package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/lab"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/netobs"
)

// checksumError is a Verify failure with an error class, like the checksum package's.
type checksumError struct{}

func (checksumError) Error() string { return "checksum mismatch: h1:abc in go.sum, h1:def here" }
func (checksumError) Class() string { return "checksum_mismatch" }

func TestUpstreamMisbehaviour(t *testing.T) {
	const (
		zipPath  = "example.com/m/@v/v1.0.0.zip"
		modPath  = "example.com/m/@v/v1.0.0.mod"
		infoPath = "example.com/m/@v/v1.0.0.info"
	)
	trueZip, err := modtree.Module{Path: "example.com/m", Version: "v1.0.0"}.Zip()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })

	tests := []struct {
		name   string
		path   string
		module string // module@version the log line names
		// fault answers the request at the origin given the fixture tree's files.
		fault         func(o *origin) func(w http.ResponseWriter, r *http.Request) bool
		clientTimeout time.Duration // of the upstream http.Client
		verify        func(ctx context.Context, r goproxy.Request, f *os.File) error
		reason        string
	}{
		{
			name: "truncated zip without Content-Length", path: zipPath, reason: ReasonInvalidZip,
			fault: serveBytes(func(o *origin) []byte { z := fixtureOf(o, zipPath); return z[:len(z)/2] }, false),
		},
		{
			name: "body shorter than Content-Length", path: zipPath, reason: ReasonTruncated,
			fault: func(o *origin) func(w http.ResponseWriter, r *http.Request) bool {
				z := fixtureOf(o, zipPath)
				return func(w http.ResponseWriter, r *http.Request) bool {
					w.Header().Set("Content-Length", strconv.Itoa(len(z)))
					w.Write(z[:len(z)/2])
					return true
				}
			},
		},
		{
			name: "zip of another module", path: zipPath, reason: ReasonInvalidZip,
			fault: serveBytes(func(o *origin) []byte { return fixtureOf(o, "example.com/other/@v/v1.0.0.zip") }, true),
		},
		{
			name: "zip of another version", path: zipPath, reason: ReasonInvalidZip,
			fault: serveBytes(func(o *origin) []byte { return fixtureOf(o, "example.com/m/@v/v1.1.0.zip") }, true),
		},
		{
			name: "not a zip", path: zipPath, reason: ReasonInvalidZip,
			fault: serveBytes(func(*origin) []byte { return []byte("<html>captive portal</html>") }, true),
		},
		{
			name: ".info of another version", path: infoPath, reason: ReasonInvalidInfo,
			fault: serveBytes(func(o *origin) []byte { return fixtureOf(o, "example.com/m/@v/v1.1.0.info") }, true),
		},
		{
			name: ".info not JSON", path: infoPath, reason: ReasonInvalidInfo,
			fault: serveBytes(func(*origin) []byte { return []byte("<html>") }, true),
		},
		{
			name: ".info over the size limit", path: infoPath, reason: ReasonTooLarge,
			fault: serveBytes(func(*origin) []byte {
				return []byte(`{"Version":"v1.0.0","Pad":"` + strings.Repeat("x", goproxy.MaxInfoSize) + `"}`)
			}, false),
		},
		{
			name: ".info declared over the size limit", path: infoPath, reason: ReasonTooLarge,
			fault: serveBytes(func(*origin) []byte {
				return []byte(`{"Version":"v1.0.0","Pad":"` + strings.Repeat("x", goproxy.MaxInfoSize) + `"}`)
			}, true),
		},
		{
			name: ".mod naming another module", path: modPath, reason: ReasonInvalidMod,
			fault: serveBytes(func(o *origin) []byte { return fixtureOf(o, "example.com/other/@v/v1.0.0.mod") }, true),
		},
		{
			name: ".mod that does not parse", path: modPath, reason: ReasonInvalidMod,
			fault: serveBytes(func(*origin) []byte { return []byte("<html>\n<body>") }, true),
		},
		{
			name: "list that is not a list", path: "example.com/m/@v/list", module: "example.com/m", reason: ReasonInvalidList,
			fault: serveBytes(func(*origin) []byte { return []byte("<!DOCTYPE html>\n<html>\n") }, true),
		},
		{
			name: "@latest with a non-canonical version", path: "example.com/pseudo/@latest", module: "example.com/pseudo@latest", reason: ReasonInvalidInfo,
			fault: serveBytes(func(*origin) []byte { return []byte(`{"Version":"master"}`) }, true),
		},
		{
			name: "body stalls", path: zipPath, reason: ReasonTimeout, clientTimeout: 500 * time.Millisecond,
			fault: func(o *origin) func(w http.ResponseWriter, r *http.Request) bool {
				z := fixtureOf(o, zipPath)
				return func(w http.ResponseWriter, r *http.Request) bool {
					w.Header().Set("Content-Length", strconv.Itoa(len(z)))
					w.Write(z[:100])
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
					case <-release:
					}
					return true
				}
			},
		},
		{
			// A serves a valid zip of the module@version with other content; Verify (as the
			// checksum hook would) accepts only the bytes of the true zip.
			name: "checksum refused by Verify", path: zipPath, reason: "checksum_mismatch",
			fault: serveBytes(func(*origin) []byte {
				z, err := modtree.Module{Path: "example.com/m", Version: "v1.0.0", Files: map[string]string{"evil.go": "package m\n"}}.Zip()
				if err != nil {
					panic(err)
				}
				return z
			}, true),
			verify: func(ctx context.Context, r goproxy.Request, f *os.File) error {
				got, err := io.ReadAll(f)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, trueZip) {
					return checksumError{}
				}
				return nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newOrigin(t), newOrigin(t)
			if tt.fault != nil {
				a.setFault(tt.fault(a))
			}
			module := tt.module
			if module == "" {
				module = "example.com/m@v1.0.0"
			}
			for _, sep := range []string{",", "|"} {
				e := newEnv(t, a.URL()+sep+b.URL(), func(c *Config) {
					c.Verify = tt.verify
					if tt.clientTimeout > 0 {
						// Only A's client has the short timeout: B must not be hurried.
						ca, err := goproxy.NewClient(a.URL(), &http.Client{Timeout: tt.clientTimeout})
						if err != nil {
							t.Fatal(err)
						}
						c.Chain.Entries[0].Client = ca
					}
				})
				var onFill []error
				e.s.cfg.OnFill = func(up string, r goproxy.Request, err error) {
					if up == a.URL() {
						onFill = append(onFill, err)
					}
				}
				w := e.do("GET", "/"+tt.path)
				if sep == "," {
					// The chain stops at A: 502 naming A and the reason, nothing stored.
					if w.Code != http.StatusBadGateway {
						t.Fatalf("status %d %q; want 502", w.Code, w.Body.String())
					}
					assertOneLine(t, w)
					for _, want := range []string{a.URL(), tt.reason} {
						if !strings.Contains(w.Body.String(), want) {
							t.Errorf("502 body %q does not name %q", w.Body.String(), want)
						}
					}
					if keys := e.keys(t); len(keys) != 0 {
						t.Errorf("store holds %v after a refused answer", keys)
					}
				} else {
					// After '|' B answers, and only B's answer is stored.
					if w.Code != 200 || w.Header().Get(UpstreamHeader) != b.URL() {
						t.Fatalf("status %d from %q; want 200 from B", w.Code, w.Header().Get(UpstreamHeader))
					}
					if string(w.Body.Bytes()) != string(fixtureOf(b, tt.path)) {
						t.Errorf("body is not B's fixture")
					}
				}
				var refused *RefusedError
				if len(onFill) != 1 || !errors.As(onFill[0], &refused) || refused.Reason != tt.reason {
					t.Errorf("OnFill for A got %v; want one RefusedError with reason %s", onFill, tt.reason)
				}
				if n := counterValue(e.s.metrics.refused.WithLabelValues(a.URL(), tt.reason)); n != 1 {
					t.Errorf("refused metric for %s = %v; want 1", tt.reason, n)
				}
				var line string
				for _, l := range strings.Split(e.logs.String(), "\n") {
					if strings.Contains(l, "upstream answer refused") {
						line = l
					}
				}
				for _, want := range []string{"module=" + module, "upstream=" + a.URL(), "reason=" + tt.reason} {
					if !strings.Contains(line, want) {
						t.Errorf("log line %q does not contain %q", line, want)
					}
				}
			}
		})
	}
}

// fixtureOf reads a fixture file of o's tree.
func fixtureOf(o *origin, path string) []byte {
	b, err := os.ReadFile(o.dir + "/" + path)
	if err != nil {
		panic(err)
	}
	return b
}

// serveBytes answers with the bytes made from o's tree, with or without Content-Length.
func serveBytes(data func(o *origin) []byte, withLength bool) func(o *origin) func(w http.ResponseWriter, r *http.Request) bool {
	return func(o *origin) func(w http.ResponseWriter, r *http.Request) bool {
		b := data(o)
		return func(w http.ResponseWriter, r *http.Request) bool {
			if withLength {
				w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			} else {
				w.(http.Flusher).Flush() // headers out now: the body goes chunked
			}
			w.Write(b)
			return true
		}
	}
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// TestRefusedReasonThroughTransport: a body cut by the transport's body idle timeout is
// refused for "timeout" and one cut by a connection reset for "body_truncated", as
// holoproxy_server_refused_answers_total documents, when the answer comes through the
// observed transport serve uses (its errors are netobs classes, not net.Error timeouts or
// io.ErrUnexpectedEOF). The soak test found both counted as "read_error".
func TestRefusedReasonThroughTransport(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults lab.Faults
		reason string
	}{
		{"stalled body", lab.Faults{StallRate: 1}, ReasonTimeout},
		{"reset body", lab.Faults{ResetRate: 1}, ReasonTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newOrigin(t)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			a, err := lab.ServeOriginOn(ln, lab.OriginConfig{Tree: b.dir, Faults: tc.faults})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			tr, err := netobs.NewTransport(netobs.TransportConfig{BodyIdleTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			ca, err := goproxy.NewClient(a.URL(), tr.Client())
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, a.URL()+"|"+b.URL(), func(c *Config) { c.Chain.Entries[0].Client = ca })
			const zipPath = "example.com/m/@v/v1.0.0.zip"
			if w := e.do("GET", "/"+zipPath); w.Code != http.StatusOK || w.Header().Get(UpstreamHeader) != b.URL() {
				t.Fatalf("status %d from %q; want 200 from B", w.Code, w.Header().Get(UpstreamHeader))
			}
			if n := counterValue(e.s.metrics.refused.WithLabelValues(a.URL(), tc.reason)); n != 1 {
				t.Errorf("refused metric for %s = %v; want 1\n%s", tc.reason, n, e.logs.String())
			}
		})
	}
}
