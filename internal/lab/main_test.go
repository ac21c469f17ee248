package lab

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain is Main with a goroutine check: after the tests, and after closing the labs they
// left open, no goroutine may still be running.
func TestMain(m *testing.M) {
	if name := os.Getenv(HelperEnv); name != "" {
		os.Exit(RunHelper(name, os.Args[1:]))
	}
	goleak.VerifyTestMain(labTests{m})
}

// labTests runs the tests as Main does, for goleak.VerifyTestMain.
type labTests struct{ m *testing.M }

// Run runs the tests, closes the labs they left open and returns the exit code.
func (t labTests) Run() int { return runTests(t.m) }
