package main

import (
	"crypto/tls"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
)

// upstreamFlags are the flags that shape the connections to upstreams: the resolver
// backend, extra trusted certificates, the timeout of each phase and the cap on
// connections per upstream host. A subcommand that
// talks to upstreams registers them with register and builds its transport from them.
type upstreamFlags struct {
	dns            string
	caFile         string
	connectTimeout time.Duration
	tlsTimeout     time.Duration
	firstByte      time.Duration
	bodyIdle       time.Duration
	maxConns       int
}

// defaultMaxConns is --upstream-max-conns's default: no cap. A cap is for an upstream that
// must be protected (a company proxy that rate-limits), chosen for it: under a cap a
// request beyond it waits for a connection, and fails after --connect-timeout, a .mod
// behind the zips of a slow HTTP/1 upstream included; and bounding that wait costs every
// request about a microsecond (docs/benchmarks.md), which a loopback upstream notices.
const defaultMaxConns = 0

// register adds the flags to f.
func (u *upstreamFlags) register(f *pflag.FlagSet) {
	f.StringVar(&u.dns, "dns", "system", "DNS `BACKEND` of the upstream lookups: system, udp://HOST:PORT, tcp://HOST:PORT, tls://HOST[:PORT] (DNS over TLS) or https://HOST/PATH (DNS over HTTPS)")
	f.StringVar(&u.caFile, "ca-file", "", "PEM `FILE` of extra root certificates trusted for upstreams and DNS over TLS/HTTPS, besides the system roots")
	f.DurationVar(&u.connectTimeout, "connect-timeout", 5*time.Second, "upstream TCP connect timeout")
	f.DurationVar(&u.tlsTimeout, "tls-timeout", 5*time.Second, "upstream TLS handshake timeout")
	f.DurationVar(&u.firstByte, "first-byte-timeout", 30*time.Second, "upstream wait from request sent to first response byte")
	f.DurationVar(&u.bodyIdle, "body-idle-timeout", 30*time.Second, "upstream response body cut after this long without a byte")
	f.IntVar(&u.maxConns, "upstream-max-conns", defaultMaxConns, "cap on the connections to each upstream host (dialling, in use and idle); a request that finds it reached waits for a connection at most --connect-timeout; 0 means no cap (e.g. 64 for a company proxy that rate-limits)")
}

// check returns a usage error for a flag value that cannot work.
func (u *upstreamFlags) check(cmd *cobra.Command) error {
	if err := checkPositive(cmd, "connect-timeout", "tls-timeout", "first-byte-timeout", "body-idle-timeout"); err != nil {
		return err
	}
	if u.maxConns < 0 {
		return usagef("--upstream-max-conns must be 0 (no cap) or more, not %d", u.maxConns)
	}
	if _, err := netobs.ParseBackend(u.dns, netobs.BackendOptions{}); err != nil {
		return usagef("--dns %q: %v", u.dns, err)
	}
	if u.caFile != "" {
		if _, err := os.Stat(u.caFile); err != nil {
			return usagef("--ca-file: %v", err)
		}
	}
	return checkEnvProxy()
}

// checkEnvProxy refuses forward proxy variables that holoproxy cannot use, naming them
// without their credentials: a URL that does not parse, or a scheme other than http,
// https, socks5 and socks5h.
func checkEnvProxy() error {
	cfg := httpproxy.FromEnvironment()
	for _, v := range []struct{ name, value string }{{"HTTPS_PROXY", cfg.HTTPSProxy}, {"HTTP_PROXY", cfg.HTTPProxy}} {
		if v.value == "" {
			continue
		}
		pu, err := parseEnvProxy(v.value)
		if err != nil {
			return usagef("%s: not a URL (its value is not shown: it may hold a password)", v.name)
		}
		if err := netobs.CheckProxyURL(pu); err != nil {
			return usagef("%s: %v", v.name, err)
		}
	}
	return nil
}

// parseEnvProxy reads a proxy variable as golang.org/x/net/http/httpproxy does: a value
// without a scheme or host is taken as http://value.
func parseEnvProxy(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || u.Host == "" {
		if u2, err2 := url.Parse("http://" + v); err2 == nil {
			return u2, nil
		}
	}
	return u, err
}

// redactProxy returns a proxy variable's value without its credentials.
func redactProxy(p string) string {
	if !strings.Contains(p, "://") {
		p = "http://" + p // as httpproxy reads it
	}
	return goproxy.Redact(p)
}

// transportConfig returns the transport configuration the flags describe (the resolver is
// left to the caller, which knows whether it shares one).
func (u *upstreamFlags) transportConfig() netobs.TransportConfig {
	return netobs.TransportConfig{
		Proxy:            envProxy(),
		CAFile:           u.caFile,
		ConnectTimeout:   u.connectTimeout,
		TLSTimeout:       u.tlsTimeout,
		FirstByteTimeout: u.firstByte,
		BodyIdleTimeout:  u.bodyIdle,
		MaxConnsPerHost:  u.maxConns,
	}
}

// envProxy returns the forward proxy choice the go command makes: HTTPS_PROXY for https
// upstreams, HTTP_PROXY for http ones (or their lower-case forms), none for the hosts
// NO_PROXY names and never for loopback; nil when neither proxy variable is set.
func envProxy() netobs.ProxyFunc {
	cfg := httpproxy.FromEnvironment()
	if cfg.HTTPProxy == "" && cfg.HTTPSProxy == "" {
		return nil
	}
	return netobs.ProxyFunc(cfg.ProxyFunc())
}

// describeEnvProxy says, for the start log, which forward proxies envProxy uses (without
// their credentials); "" when none.
func describeEnvProxy() string {
	cfg := httpproxy.FromEnvironment()
	redact := redactProxy
	var parts []string
	if cfg.HTTPSProxy != "" {
		parts = append(parts, "https via "+redact(cfg.HTTPSProxy))
	}
	if cfg.HTTPProxy != "" {
		parts = append(parts, "http via "+redact(cfg.HTTPProxy))
	}
	if len(parts) > 0 && cfg.NoProxy != "" {
		parts = append(parts, "except NO_PROXY "+cfg.NoProxy)
	}
	return strings.Join(parts, ", ")
}

// backend returns the DNS backend --dns names, trusting --ca-file besides the system roots
// for DNS over TLS and HTTPS.
func (u *upstreamFlags) backend() (netobs.Backend, error) {
	var opts netobs.BackendOptions
	if u.caFile != "" {
		pool, err := netobs.AddCAFile(nil, u.caFile)
		if err != nil {
			return nil, usagef("--ca-file: %v", err)
		}
		opts.TLSConfig = &tls.Config{RootCAs: pool}
	}
	b, err := netobs.ParseBackend(u.dns, opts)
	if err != nil {
		return nil, usagef("--dns %q: %v", u.dns, err)
	}
	return b, nil
}
