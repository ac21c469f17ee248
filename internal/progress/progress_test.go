package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the bar's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestQuickTaskDrawsNothing(t *testing.T) {
	var out syncBuffer
	b := New(&out, "requests", time.Hour)
	b.Set(5, 10)
	b.Stop()
	b.Stop() // a second Stop is harmless
	if out.String() != "" {
		t.Errorf("a task shorter than the delay drew %q; want nothing", out.String())
	}
}

func TestLongTaskDrawsAndEndsTheLine(t *testing.T) {
	var out syncBuffer
	b := New(&out, "requests", time.Millisecond)
	b.Set(3, 12)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "3/12 requests") {
		if time.Now().After(deadline) {
			t.Fatalf("no bar drawn within 10s; output %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Set(12, 12)
	b.Stop()
	s := out.String()
	if !strings.HasPrefix(s, "\r\x1b[K[") {
		t.Errorf("output %q does not start by erasing the line", s)
	}
	last := s[strings.LastIndex(s, "\r\x1b[K")+len("\r\x1b[K"):]
	if !strings.HasSuffix(last, "\n") || !strings.Contains(last, "100% 12/12 requests") || !strings.Contains(last, "[==============================]") {
		t.Errorf("last draw %q; want the full bar at 12/12 ending the line", last)
	}
}

func TestSetIsMonotonic(t *testing.T) {
	b := New(&syncBuffer{}, "requests", time.Hour)
	defer b.Stop()
	b.Set(7, 5)
	if l := b.Line(); !strings.Contains(l, "7/7 requests") || !strings.Contains(l, "100%") {
		t.Errorf("Line() = %q; want 7/7 at 100%%", l)
	}
	b.Set(6, 20) // a late report of an earlier count
	if l := b.Line(); !strings.Contains(l, "7/20 requests") {
		t.Errorf("after a late report Line() = %q; want 7/20 (done never goes back)", l)
	}
}

func TestPlainWritesLines(t *testing.T) {
	var out syncBuffer
	b := NewPlain(&out, "requests", time.Millisecond)
	b.Set(2, 4)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "2/4 requests") {
		if time.Now().After(deadline) {
			t.Fatalf("no line within 10s; output %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Set(4, 4)
	b.Stop()
	s := out.String()
	if strings.ContainsAny(s, "\r\x1b[") {
		t.Errorf("plain output %q has terminal control characters or a bar", s)
	}
	if !strings.HasSuffix(s, "\n") || !strings.Contains(s[strings.LastIndex(s[:len(s)-1], "\n")+1:], "4/4 requests") {
		t.Errorf("plain output %q does not end with a 4/4 line", s)
	}
}

func TestDetailFollowsCounts(t *testing.T) {
	var buf bytes.Buffer
	b := NewPlain(&buf, "files", time.Millisecond)
	b.SetDetail(func() string { return "3/4 modules, 1.5 MiB" })
	b.Set(7, 9)
	time.Sleep(20 * time.Millisecond)
	b.Stop()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "7/9 files, ") || !strings.HasSuffix(last, ", 3/4 modules, 1.5 MiB") {
		t.Errorf("last line %q; want the counts, then the detail", last)
	}
}
