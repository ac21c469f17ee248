// Package netobs is holoproxy's observed networking: one DNS cache (Resolver) with several
// backends, one Dialer that resolves through it and races addresses, one shared
// http.Transport for every upstream, and a Recorder that turns each upstream exchange into a
// Sample with every phase timed (dns, connect, tls, ttfb, transfer) and every failure
// classified. It knows nothing of Go modules: callers attach Labels to a request's context.
package netobs
