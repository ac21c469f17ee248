// Package e2e holds holoproxy's end-to-end tests: the real go command through an in-process
// server, and the built holoproxy binary killed and restarted over one cache directory, both
// against fixture module origins (internal/lab/modtree) served on loopback. It has no code
// outside its tests.
package e2e
