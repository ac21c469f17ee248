// Package repairlab holds the network-lab tests of serve's repair side (upstream health,
// circuit breaking, hedging): a holoproxy server runs in a lab host (the test binary
// re-executed as a helper, with the same networking stack serve uses) in front of lab
// origins whose links and answers the tests break and heal. It has no code outside its
// tests.
package repairlab
