// Package health scores each upstream proxy from the Samples of its real traffic, from a
// light active probe and from checksum verification results, turns the score into a state
// (healthy, degraded, unhealthy with its circuit open, half-open while it is retried) and
// makes the decisions that follow from it: the order in which interchangeable upstreams
// are tried, and when a request is hedged to the next one. It knows nothing of modules or of
// the server: upstreams are names (their base URLs, the label their Samples carry).
//
// The score formula, its defaults and the state machine are documented in docs/health.md.
package health
