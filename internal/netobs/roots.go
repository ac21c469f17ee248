package netobs

import (
	"crypto/x509"
	"fmt"
	"os"
)

// AddCAFile returns a copy of pool (nil means the system roots) that also trusts the PEM
// certificates of file: how --ca-file extends the roots of upstreams and of DNS over TLS
// and HTTPS alike.
func AddCAFile(pool *x509.CertPool, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	if pool == nil {
		if pool, err = x509.SystemCertPool(); err != nil {
			pool = x509.NewCertPool()
		}
	} else {
		pool = pool.Clone()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate found", file)
	}
	return pool, nil
}
