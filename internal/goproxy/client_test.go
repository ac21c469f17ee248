package goproxy

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzRetryAfter checks the reading of an upstream's Retry-After header: a wait of 0 (none,
// malformed, past) up to a day, whether it is given in seconds or as a date.
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, s := range []string{
		"", "0", "120", "-5", "86401", "9223372036854775807", "99999999999999999999", "1.5", " 120",
		now.Add(time.Hour).Format(http.TimeFormat), now.Add(-time.Hour).Format(http.TimeFormat),
		"Fri, 31 Dec 9999 23:59:59 GMT", "Monday, 02-Jan-06 15:04:05 MST", "Mon Jan  2 15:04:05 2006", "soon",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > 24*time.Hour {
			t.Fatalf("retryAfter(%q) = %v; want 0 to 24h", v, d)
		}
	})
}

// FuzzFirstLine checks the reading of an upstream's error body, whose first line becomes
// the message of a StatusError that clients are shown: one line, at most 200 bytes and an
// ellipsis, valid UTF-8.
func FuzzFirstLine(f *testing.F) {
	for _, s := range []string{
		"", "not found\n", "  gone: v1.0.0 retracted  \r\nsecond line\n", "a\rb", strings.Repeat("é", 150),
		"x" + strings.Repeat("é", 150), strings.Repeat("x", 5000), "\xff\xfe", "<html>\n<body>", "\n\nthird",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		line := firstLine(strings.NewReader(string(body)))
		if strings.ContainsAny(line, "\r\n") || !utf8.ValidString(line) || len(strings.TrimSuffix(line, "…")) > 200 {
			t.Fatalf("firstLine(%q) = %q; want one valid UTF-8 line of at most 200 bytes", body, line)
		}
	})
}
