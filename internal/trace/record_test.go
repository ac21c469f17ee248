package trace

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestRecordInterrupted: a recorded command whose trace is interrupted gets SIGINT, as
// Ctrl-C would send it, so that it can clean up (the go command removes its work
// directory); one that ignores SIGINT is killed with its group after the grace.
func TestRecordInterrupted(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the recorded command is a shell script")
	}
	for _, tc := range []struct {
		name      string
		script    string
		cleanedUp bool
	}{
		{"cleans up on SIGINT", `trap 'echo cleaned > "$MARK"; exit 3' INT; echo started > "$READY"; while :; do sleep 0.05; done`, true},
		{"ignores SIGINT", `trap '' INT; echo started > "$READY"; while :; do sleep 0.05; done`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mark, ready := filepath.Join(dir, "mark"), filepath.Join(dir, "ready")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := Record(ctx, RecordOptions{
					Proxy:   "http://127.0.0.1:9",
					Command: []string{"sh", "-c", tc.script},
					Env:     append(os.Environ(), "MARK="+mark, "READY="+ready),
				})
				done <- err
			}()
			for {
				if _, err := os.Stat(ready); err == nil {
					break
				}
				if time.Since(start) > 20*time.Second {
					t.Fatal("the recorded command never started")
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			cancelled := time.Now()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Record after the cancel: %v; want context.Canceled", err)
				}
			case <-time.After(4 * interruptGrace):
				t.Fatalf("Record did not return within %s of the cancel", 4*interruptGrace)
			}
			took := time.Since(cancelled)
			_, err := os.Stat(mark)
			if cleaned := err == nil; cleaned != tc.cleanedUp {
				t.Errorf("the command ran its SIGINT trap: %v; want %v", cleaned, tc.cleanedUp)
			}
			if !tc.cleanedUp && took < interruptGrace {
				t.Errorf("a command ignoring SIGINT ended %s after the cancel, before the %s grace", took, interruptGrace)
			}
			t.Logf("ended %s after the cancel", took.Round(time.Millisecond))
		})
	}
}
