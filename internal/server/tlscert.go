package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"
)

// CertReloader serves the certificate of a PEM certificate and key file pair and loads them
// again when either changes (see reloader): a pair rotated in place reaches new
// connections without a restart; a pair caught half written keeps the last good
// certificate, logged once.
type CertReloader struct {
	pair *reloader[*tls.Certificate]
}

// NewCertReloader loads the pair; a pair that does not load is an error.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	if log == nil {
		log = slog.Default()
	}
	load := func() (*tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, err)
		}
		return &cert, nil // Leaf is set by LoadX509KeyPair
	}
	r, err := newReloader(load,
		func(c *tls.Certificate) { log.Info("TLS certificate reloaded", certAttrs(c)...) },
		func(err error) {
			log.Warn("TLS certificate files changed but do not load: serving the last good one", "err", err)
		}, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	log.Info("TLS certificate", certAttrs(r.current())...)
	return &CertReloader{pair: r}, nil
}

func certAttrs(c *tls.Certificate) []any {
	return []any{"subject", c.Leaf.Subject.String(), "serial", c.Leaf.SerialNumber.String(),
		"not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339)}
}

// GetCertificate is tls.Config.GetCertificate: the current certificate, loaded again first
// when its files changed.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.pair.get(), nil
}

// NotAfter returns when the certificate in use expires.
func (c *CertReloader) NotAfter() time.Time { return c.pair.current().Leaf.NotAfter }
