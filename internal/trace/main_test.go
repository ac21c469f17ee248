package trace

import (
	"os"
	"testing"

	"github.com/holoproxy/holoproxy/internal/lab"
)

func TestMain(m *testing.M) {
	lab.NoForwardProxies() // the transports honour HTTPS_PROXY; the lab's go with its git gets its own
	os.Exit(m.Run())
}
