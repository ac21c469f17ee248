// Package report renders what `holoproxy trace` observed: the Samples of one or more Runs
// become per-upstream summaries, a verdict naming the dominant cost, latency heatmaps and
// waterfalls of the slowest requests, written for a terminal (256-colour ANSI or plain
// characters), as one standalone HTML page (inline SVG and CSS, printable, no network
// assets) or as JSON (schema in docs/trace-json.md).
//
// Everything here is a pure function of its input: no network, no clock reads. Times come
// from the Samples and the figures the caller puts in each Run. Several Runs are
// comparisons (for example "shared transport" against "fresh transports") and are shown
// side by side in every output.
package report
