package netobs

import "context"

type sampleHookKey struct{}

// WithSampleHook returns a context whose upstream exchanges also hand their finished Sample
// to hook, after the Transport's Sink. It is how a caller learns the Sample of the exchanges
// it made itself, where the shared Sink sees everyone's: the server puts the phases of the
// fill that produced an answer in that answer's Server-Timing header. An exchange that
// follows redirects calls hook once per request, the final one last. hook must be safe for
// concurrent use and must not block; it runs on the goroutine that ends the exchange (the one
// that reads or closes the body).
func WithSampleHook(ctx context.Context, hook func(Sample)) context.Context {
	return context.WithValue(ctx, sampleHookKey{}, hook)
}

// sampleHookFrom returns the hook set by WithSampleHook, or nil.
func sampleHookFrom(ctx context.Context) func(Sample) {
	h, _ := ctx.Value(sampleHookKey{}).(func(Sample))
	return h
}
