package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

// tlsOptions are serve's --tls-cert and --tls-key.
type tlsOptions struct {
	certFile, keyFile string
}

func (o *tlsOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.certFile, "tls-cert", "", "serve HTTPS with this PEM certificate file (the server's certificate first, then its chain), with --tls-key; both files are read again when they change, so a rotated certificate is used without a restart")
	f.StringVar(&o.keyFile, "tls-key", "", "PEM private key of --tls-cert")
}

func (o tlsOptions) enabled() bool { return o.certFile != "" || o.keyFile != "" }

// check returns a usage error unless both files are given or neither.
func (o tlsOptions) check() error {
	if (o.certFile == "") != (o.keyFile == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	return nil
}

// config returns the listener's TLS configuration: TLS 1.2 at least, the certificate from
// a certReloader, and HTTP/2 offered when the front speaks it (net/http's; fasthttp's
// speaks HTTP/1.1 only). The certificate's expiry is exported on reg.
func (o tlsOptions) config(log *slog.Logger, reg prometheus.Registerer, h2 bool) (*tls.Config, error) {
	r, err := newCertReloader(o.certFile, o.keyFile, log)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "holoproxy_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate served by --tls-cert expires (Unix time); it follows the file when it is rotated.",
		}, func() float64 { return float64(r.current().Leaf.NotAfter.Unix()) })
		if err := reg.Register(g); err != nil {
			return nil, err
		}
	}
	protos := []string{"http/1.1"}
	if h2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.getCertificate, NextProtos: protos}, nil
}

// certCheckInterval is how often, at most, a handshake looks whether the certificate
// files changed.
const certCheckInterval = time.Second

// certReloader serves the certificate of a certificate and key file pair, and loads them
// again when either changes (size or modification time): certificate managers rotate
// them in place. A pair that does not load (one file written, the other not yet) leaves
// the last good certificate in use; it is logged once.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  [2]fileStamp // of the pair in cert
	failed  [2]fileStamp // of the last pair that failed to load, logged once
	checked time.Time
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func stampOf(name string) fileStamp {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{size: -1}
	}
	return fileStamp{fi.Size(), fi.ModTime()}
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	st := r.stamps()
	cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.loaded, r.checked = cert, st, time.Now()
	log.Info("TLS certificate", certAttrs(cert)...)
	return r, nil
}

func (r *certReloader) stamps() [2]fileStamp {
	return [2]fileStamp{stampOf(r.certFile), stampOf(r.keyFile)}
}

func (r *certReloader) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	return &cert, nil // Leaf is set by LoadX509KeyPair
}

func certAttrs(c *tls.Certificate) []any {
	return []any{"subject", c.Leaf.Subject.String(), "serial", c.Leaf.SerialNumber.String(),
		"not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339)}
}

func (r *certReloader) current() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= certCheckInterval {
		r.checked = now
		if st := r.stamps(); st != r.loaded {
			cert, err := r.load()
			switch {
			case err == nil:
				r.cert, r.loaded = cert, st
				r.log.Info("TLS certificate reloaded", certAttrs(cert)...)
			case st != r.failed:
				r.failed = st
				r.log.Warn("TLS certificate files changed but do not load: serving the last good one", "err", err)
			}
		}
	}
	return r.cert, nil
}
