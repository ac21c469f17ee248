package checksum

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine is still running after all of them:
// every goroutine has an owner who stops it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
