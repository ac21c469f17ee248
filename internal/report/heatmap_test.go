package report

import (
	"testing"
	"time"
)

const us = time.Microsecond

func TestScaleBetween(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi time.Duration
		want   logScale
	}{
		{"1-2-5 fits", time.Millisecond, 50 * ms,
			logScale{[levels]time.Duration{ms, 2 * ms, 5 * ms, 10 * ms, 20 * ms, 50 * ms, 100 * ms, 200 * ms, 500 * ms}, time.Second}},
		{"1-3 when 1-2-5 falls short", 100 * us, 500 * ms,
			logScale{[levels]time.Duration{100 * us, 300 * us, ms, 3 * ms, 10 * ms, 30 * ms, 100 * ms, 300 * ms, time.Second}, 3 * time.Second}},
		{"lo rounds down within the series", 150 * us, 40 * ms,
			logScale{[levels]time.Duration{100 * us, 200 * us, 500 * us, ms, 2 * ms, 5 * ms, 10 * ms, 20 * ms, 50 * ms}, 100 * ms}},
		{"decades for a huge range", 100 * us, time.Hour,
			logScale{[levels]time.Duration{100 * us, ms, 10 * ms, 100 * ms, time.Second, 10 * time.Second, 100 * time.Second, 1000 * time.Second, 10000 * time.Second}, 100000 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := scaleBetween(tc.lo, tc.hi); got != tc.want {
				t.Errorf("scaleBetween(%v, %v) =\n%v\nwant\n%v", tc.lo, tc.hi, got, tc.want)
			}
		})
	}
}

func TestLevel(t *testing.T) {
	sc := scaleBetween(100*us, 500*ms) // 100µs 300µs 1ms 3ms 10ms 30ms 100ms 300ms 1s
	tests := []struct {
		d    time.Duration
		want int
	}{
		{0, 0}, {50 * us, 0}, {100 * us, 0}, {299 * us, 0}, {300 * us, 1}, {ms, 2},
		{29 * ms, 4}, {30 * ms, 5}, {999 * ms, 7}, {time.Second, 8}, {time.Hour, 8},
	}
	for _, tc := range tests {
		if got := sc.level(tc.d); got != tc.want {
			t.Errorf("level(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestFmtRound(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{ms, "1ms"}, {3 * ms, "3ms"}, {10 * ms, "10ms"}, {2500 * ms, "2.5s"}, {150 * ms, "150ms"},
		{1234 * us, "1.23ms"}, {300 * us, "300µs"}, {0, "0"}, {time.Second, "1s"},
	}
	for _, tc := range tests {
		if got := fmtRound(tc.d); got != tc.want {
			t.Errorf("fmtRound(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
