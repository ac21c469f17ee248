// Package netobs is holoproxy's observed networking: one DNS cache (Resolver) with several
// backends, one Dialer that resolves through it and races addresses, one shared
// http.Transport for every upstream, and a Recorder that turns each upstream exchange into a
// Sample with every phase timed (dns, connect, tls, ttfb, transfer) and every failure
// classified. It knows nothing of Go modules: callers attach Labels to a request.
//
// Wiring, as cmd/ does it:
//
//	m, _ := netobs.NewMetrics(prometheus.DefaultRegisterer)
//	backend, _ := netobs.ParseBackend(dnsFlag, netobs.BackendOptions{}) // "system", "udp://…", "tls://…", "https://…"
//	res := &netobs.Resolver{Backend: backend, Observer: m}
//	tr, _ := netobs.NewTransport(netobs.TransportConfig{Resolver: res, CAFile: caFlag, Sink: netobs.Sinks{m, health, ring}})
//	client := tr.Client()
//
//	req, _ := netobs.NewRequest(ctx, "GET", u, nil, netobs.Labels{Upstream: base, Kind: "mod"})
//	resp, err := client.Do(req)  // the Sample goes to the Sink when the body ends
//	class := netobs.ClassOf(err) // dns_nxdomain, tcp_refused, tls_alert:…, timeout, …
//
// A request made otherwise is recorded too, under the Labels of netobs.WithLabels(ctx, …)
// if its context has them, but RoundTrip has to copy it to attach the exchange's state.
//
// What is timed where: httptrace does not fire for a failed dial, for the end of a body,
// for DNS of IP literals, nor (on a reused connection) for anything but GotConn,
// WroteRequest and GotFirstResponseByte. So DNS is timed in the Resolver, the connect in
// the Dialer, the TLS handshake in the Transport's own DialTLSContext, and the end of the
// transfer in a wrapped body; httptrace supplies reuse, request written and first byte.
//
// Timeouts: each phase has its own (Resolver.Timeout, TransportConfig.ConnectTimeout,
// TLSTimeout, FirstByteTimeout, BodyIdleTimeout); the caller's context bounds the whole.
package netobs
