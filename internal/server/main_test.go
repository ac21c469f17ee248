package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine is still running after all of them:
// every goroutine has an owner who stops it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp refreshes the Date header of every fasthttp server from one global
		// goroutine, started once and never stopped: it lives for the process by design.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// A fasthttp server's worker pool cleaner sleeps MaxIdleWorkerDuration (10s by
		// default) between passes and sees Shutdown's stop only when it wakes: it ends by
		// itself within that time after Shutdown, and fasthttp gives no way to wake it. A
		// front a test did not shut down still shows as its Serve and worker goroutines.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}
