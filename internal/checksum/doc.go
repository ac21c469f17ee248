// Package checksum keeps a tampered module out of holoproxy's cache and serves the checksum
// database to the clients behind it.
//
// It provides the h1: hashes of .mod and .zip files (HashMod, HashZip), a strict go.sum
// parser (ParseGoSum), the GOSUMDB configuration with keys read at run time from the local
// Go installation (ParseGOSUMDB), a Verifier that checks a file against the checksum
// database before it is stored (signed tree notes and inclusion proofs checked by
// golang.org/x/mod/sumdb, its state kept on disk so that a database that forks is detected),
// VerifyStore that re-checks a whole store, and SumDBProxy, the http.Handler serving
// /sumdb/<name>/ from a cache.
//
// No database host and no database key is written into this package: names, keys and URLs
// come from configuration or from the Go installation.
package checksum
