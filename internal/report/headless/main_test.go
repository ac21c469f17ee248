package headless

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine is still running after all of them:
// a Session's Close must stop its console reader and chromedp's browser handling.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
