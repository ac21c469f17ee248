package trace

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// TestMain fails the package's tests when a goroutine is still running after all of them:
// every goroutine has an owner who stops it.
func TestMain(m *testing.M) {
	lab.NoForwardProxies() // the transports honour HTTPS_PROXY; the lab's go with its git gets its own
	goleak.VerifyTestMain(m)
}
