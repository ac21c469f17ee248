package report

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// fixtureTrace simulates a cold `go mod download` of 24 modules through the chain
// https://proxy-a.test,https://proxy-b.test with two workers, once on a shared transport
// and once with a fresh transport per request. It is deterministic; -update writes it to
// testdata/trace.json, which the golden tests read.
func fixtureTrace() Trace {
	return Trace{
		Title: "go mod download (24 modules), GOPROXY=https://proxy-a.test,https://proxy-b.test",
		Runs:  []Run{simulate("shared transport", false, 1), simulate("fresh transports", true, 2)},
	}
}

type upstreamModel struct {
	base, host, addr string
	rtt              time.Duration
	mbps             float64 // transfer rate, 10^6 bytes per second
}

var (
	proxyA = upstreamModel{"https://proxy-a.test", "proxy-a.test:443", "10.0.1.10:443", 18 * time.Millisecond, 40}
	proxyB = upstreamModel{"https://proxy-b.test", "proxy-b.test:443", "10.0.2.10:443", 42 * time.Millisecond, 12}
)

func simulate(name string, fresh bool, seed uint64) Run {
	rng := rand.New(rand.NewPCG(seed, 7))
	jitter := func(d time.Duration, spread float64) time.Duration {
		return time.Duration(float64(d) * (1 + spread*(rng.Float64()-0.5)*2))
	}
	base := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	run := Run{Name: name}
	type lane struct {
		clock time.Time
		conns map[string]bool
	}
	lanes := []*lane{{clock: base, conns: map[string]bool{}}, {clock: base.Add(300 * time.Microsecond), conns: map[string]bool{}}}
	resolved := map[string]bool{}

	exchange := func(l *lane, up upstreamModel, kind, path string, status int, size int64, serverTime time.Duration, errClass string) {
		s := netobs.Sample{
			Upstream: up.base, Kind: kind, Method: "GET", URL: up.base + "/" + path, Host: up.host,
			Start: l.clock, Proto: "HTTP/1.1", RemoteAddr: up.addr,
		}
		newConn := fresh || !l.conns[up.host]
		t := time.Duration(0)
		if newConn {
			hostname := up.host[:len(up.host)-4]
			if fresh || !resolved[hostname] {
				s.DNS = jitter(3*time.Millisecond, 0.6)
				s.DNSBackend, s.DNSRcode, s.DNSCache = "system", "NOERROR", "miss"
				for _, typ := range []string{"A", "AAAA"} {
					run.DNSQueries = append(run.DNSQueries, DNSQuery{Backend: "system", Name: hostname, Type: typ, Rcode: "NOERROR", Latency: s.DNS})
				}
				resolved[hostname] = true
			} else {
				run.DNSQueries = append(run.DNSQueries, DNSQuery{Backend: "system", Name: hostname, Type: "A", Rcode: "NOERROR", Latency: 20 * time.Microsecond, Cached: true})
				s.DNSCache = "hit"
			}
			s.Connect = jitter(up.rtt, 0.15)
			s.TLS = jitter(up.rtt+2*time.Millisecond, 0.15)
			s.TLSVersion, s.TLSCipher, s.TLSCurve, s.ALPN = "TLS 1.3", "TLS_AES_128_GCM_SHA256", "X25519MLKEM768", "http/1.1"
			s.PeerChainLen, s.DialAttempts = 2, 1
			t = s.DNS + s.Connect + s.TLS
			l.conns[up.host] = true
		} else {
			s.Reused = true
			s.IdleTime = jitter(2*time.Millisecond, 0.5)
		}
		s.Wrote = t + 150*time.Microsecond
		s.TTFB = jitter(up.rtt, 0.1) + serverTime
		s.Status = status
		s.Bytes = size
		switch errClass {
		case netobs.ClassBodyTruncated:
			s.Transfer = time.Duration(float64(size/3) / (up.mbps * 1e6) * float64(time.Second))
			s.Bytes = size / 3
			s.ErrClass, s.Err = errClass, "unexpected EOF"
		default:
			s.Transfer = time.Duration(float64(size) / (up.mbps * 1e6) * float64(time.Second))
			if status != 200 {
				s.ErrClass = netobs.HTTPClass(status)
			}
		}
		s.Total = s.Wrote + s.TTFB + s.Transfer
		run.Samples = append(run.Samples, s)
		l.clock = l.clock.Add(s.Total + jitter(1500*time.Microsecond, 0.8)) // the client's own work
	}

	names := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
		"kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform",
		"victor", "whiskey", "xray"}
	for i, n := range names {
		l := lanes[0]
		for _, o := range lanes[1:] {
			if o.clock.Before(l.clock) {
				l = o
			}
		}
		mod := "example.test/" + n
		private := i%4 == 3 // only proxy-b has these: proxy-a answers 404 and the client falls through
		if private {
			mod = "corp.test/" + n
		}
		version := fmt.Sprintf("v1.%d.%d", i%5, i%3)
		for _, kind := range []string{"info", "mod", "zip"} {
			path := mod + "/@v/" + version + "." + kind
			size := int64(150 + rng.IntN(200))
			server := jitter(4*time.Millisecond, 0.5)
			if kind == "mod" {
				size = int64(300 + rng.IntN(1500))
			}
			if kind == "zip" {
				size = int64(40_000 + rng.IntN(3_000_000))
				server = jitter(120*time.Millisecond, 0.9) // proxy-a fills its cache from the origin
			}
			if private {
				for range 2 { // the go command retries every 4xx once
					exchange(l, proxyA, kind, path, 404, 60, jitter(2*time.Millisecond, 0.5), "")
				}
				run.FallThroughs++
				if fresh && n == "lima" && kind == "zip" {
					exchange(l, proxyB, kind, path, 502, 90, jitter(300*time.Millisecond, 0.2), "")
					run.Failed++
					continue
				}
				exchange(l, proxyB, kind, path, 200, size, server, "")
				continue
			}
			if !fresh && n == "golf" && kind == "zip" {
				exchange(l, proxyA, kind, path, 200, size, server, netobs.ClassBodyTruncated)
				l.conns[proxyA.host] = false // a truncated body closes the connection
				exchange(l, proxyA, kind, path, 200, size, jitter(5*time.Millisecond, 0.5), "")
				continue
			}
			exchange(l, proxyA, kind, path, 200, size, server, "")
		}
		run.Requests += 3
	}
	var last time.Time
	for _, l := range lanes {
		if l.clock.After(last) {
			last = l.clock
		}
	}
	run.Wall = last.Sub(base) + 40*time.Millisecond // process start and module graph work
	return run
}
