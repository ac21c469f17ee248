package netobs

import (
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// ServerTiming renders s as a Server-Timing header value (W3C Server Timing): one metric
// per phase with its duration in milliseconds, then the upstream as a description, e.g.
// `dns;dur=0.4, connect;dur=0.2, tls;dur=3.1, ttfb;dur=20.5, transfer;dur=1.2, upstream;desc="https://proxy-a.test"`.
// Every phase is listed, zero when it did not happen (a reused connection).
func ServerTiming(s Sample) string {
	var b strings.Builder
	for i, p := range Phases {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(p))
		b.WriteString(";dur=")
		b.WriteString(ms(s.PhaseDuration(p)))
	}
	up := s.Upstream
	if up == "" {
		up = s.Host
	}
	if up != "" {
		b.WriteString(`, upstream;desc=`)
		b.WriteString(quote(up))
	}
	return b.String()
}

// ms formats d in milliseconds with microsecond precision.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', -1, 64)
}

// quote makes an RFC 9110 quoted-string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		if c < 0x20 || c == 0x7f {
			continue // control characters are not allowed in a quoted-string
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

// LogValue makes a Sample loggable with log/slog (slog.LogValuer): the request, the phase
// durations that happened, and the connection, TLS and error details that are set.
func (s Sample) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, 24)
	add := func(a slog.Attr) { attrs = append(attrs, a) }
	str := func(k, v string) {
		if v != "" {
			add(slog.String(k, v))
		}
	}
	str("upstream", s.Upstream)
	str("kind", s.Kind)
	str("method", s.Method)
	str("url", s.URLString())
	str("host", s.Host)
	if s.Status != 0 {
		add(slog.Int("status", s.Status))
	}
	add(slog.Int64("bytes", s.Bytes))
	for _, p := range Phases {
		if d := s.PhaseDuration(p); d > 0 {
			add(slog.Duration(string(p), d))
		}
	}
	add(slog.Duration("total", s.Total))
	str("dns_backend", s.DNSBackend)
	str("dns_rcode", s.DNSRcode)
	str("dns_cache", s.DNSCache)
	str("remote", s.RemoteAddr)
	if s.DialAttempts > 1 {
		add(slog.Int("dial_attempts", s.DialAttempts))
	}
	add(slog.Bool("reused", s.Reused))
	str("proto", s.Proto)
	str("tls_version", s.TLSVersion)
	str("tls_cipher", s.TLSCipher)
	str("tls_group", s.TLSCurve)
	if s.TLSVersion != "" {
		add(slog.Bool("tls_resumed", s.TLSResumed))
		add(slog.Bool("tls_hrr", s.TLSHRR))
		add(slog.Int("peer_chain", s.PeerChainLen))
		add(slog.Bool("ocsp_stapled", s.OCSPStapled))
	}
	str("alpn", s.ALPN)
	str("err_class", s.ErrClass)
	str("err", s.Err)
	return slog.GroupValue(attrs...)
}
