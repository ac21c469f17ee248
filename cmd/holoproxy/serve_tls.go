package main

import (
	"crypto/tls"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/holoproxy/holoproxy/internal/server"
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
// a server.CertReloader, and HTTP/2 offered when the front speaks it (net/http's; fasthttp's
// speaks HTTP/1.1 only). The certificate's expiry is exported on reg.
func (o tlsOptions) config(log *slog.Logger, reg prometheus.Registerer, h2 bool) (*tls.Config, error) {
	r, err := server.NewCertReloader(o.certFile, o.keyFile, log)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "holoproxy_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate served by --tls-cert expires (Unix time); it follows the file when it is rotated.",
		}, func() float64 { return float64(r.NotAfter().Unix()) })
		if err := reg.Register(g); err != nil {
			return nil, err
		}
	}
	protos := []string{"http/1.1"}
	if h2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate, NextProtos: protos}, nil
}
