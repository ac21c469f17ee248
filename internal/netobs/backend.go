package netobs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Answer is what a Backend returns for one query.
type Answer struct {
	Addrs []netip.Addr  // the A or AAAA records, in the order received
	TTL   time.Duration // the smallest record TTL (the negative TTL for NXDOMAIN/NODATA); zero if unknown
	Rcode string        // NOERROR, NXDOMAIN, SERVFAIL, REFUSED or another rcode name
}

// Backend asks one kind of DNS server. Implementations must be safe for concurrent use.
type Backend interface {
	// Exchange asks for the records of type qtype (dns.TypeA or dns.TypeAAAA) of name.
	// A DNS answer, whatever its rcode, is returned with a nil error; the error is for a
	// query that got no usable answer (timeout, connection failure, malformed reply).
	Exchange(ctx context.Context, name string, qtype uint16) (Answer, error)
	// String names the backend in metrics and Samples, e.g. "udp://127.0.0.1:53".
	String() string
}

// bootstrapper is a Backend whose server is reached by name: that name must be resolved
// without asking the backend itself.
type bootstrapper interface {
	serverHost() string
}

// BackendOptions configure the backends made by ParseBackend.
type BackendOptions struct {
	// TLSConfig is the client TLS configuration of the tls:// and https:// backends (roots,
	// client certificates). Nil means the system roots. ServerName is filled in per backend.
	TLSConfig *tls.Config
	// HTTPClient carries DoH queries. Nil means a client of its own; NewTransport hands the
	// shared client to a DoH backend of its Resolver that has none.
	HTTPClient *http.Client
}

// ParseBackend makes the Backend named by spec (the value of the --dns flag): "system",
// "udp://host:port", "tcp://host:port", "tls://host:port" (DNS over TLS, port 853 if
// omitted) or "https://host/path" (DNS over HTTPS).
func ParseBackend(spec string, opts BackendOptions) (Backend, error) {
	if spec == "" || spec == "system" {
		return System, nil
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("dns backend %q: %w", spec, err)
	}
	// The server: a host (":53" names none) and a port of 1 to 65535, defPort if none.
	hostport := func(defPort string) (string, error) {
		host := u.Hostname()
		if host == "" {
			return "", fmt.Errorf("dns backend %q: no host", spec)
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.Zone() != "" && !hostName(ip.Zone()) {
			return "", fmt.Errorf("dns backend %q: zone %q is not an interface name", spec, ip.Zone())
		} else if err != nil && !hostName(host) {
			return "", fmt.Errorf("dns backend %q: %q is neither a host name nor an IP address", spec, host)
		}
		port := u.Port()
		if port == "" {
			port = defPort
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("dns backend %q: port %q is not a number from 1 to 65535", spec, port)
		}
		return net.JoinHostPort(host, port), nil
	}
	// name is the backend's URL, an IPv6 zone escaped ("udp://[fe80::1%25eth0]:53").
	name := func(addr string) string { return (&url.URL{Scheme: u.Scheme, Host: addr}).String() }
	switch u.Scheme {
	case "udp", "tcp":
		addr, err := hostport("53")
		if err != nil {
			return nil, err
		}
		return &wireBackend{name: name(addr), addr: addr, net: u.Scheme}, nil
	case "tls":
		addr, err := hostport("853")
		if err != nil {
			return nil, err
		}
		cfg := cloneTLS(opts.TLSConfig)
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		return &dotBackend{name: name(addr), addr: addr, host: u.Hostname(), tls: cfg}, nil
	case "https":
		if _, err := hostport("443"); err != nil {
			return nil, err
		}
		return &DoHBackend{URL: u.String(), Client: opts.HTTPClient, tlsConfig: opts.TLSConfig, host: u.Hostname()}, nil
	}
	return nil, fmt.Errorf("dns backend %q: unknown scheme (want system, udp, tcp, tls or https)", spec)
}

// hostName reports whether s is made of the bytes of a host name (letters, digits, '-',
// '.', '_'; an internationalised name in its xn-- form).
func hostName(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") == ""
}

func cloneTLS(c *tls.Config) *tls.Config {
	if c == nil {
		return &tls.Config{}
	}
	return c.Clone()
}

// System is the Backend that asks the operating system's resolver (net.Resolver). It knows
// no TTLs (answers live MinTTL) and no rcodes beyond not-found (reported as NXDOMAIN, also
// for a name that merely lacks records of one type), timeout and failure (SERVFAIL).
var System Backend = systemBackend{}

// systemBackend asks r, or net.DefaultResolver when r is nil (tests point r at a loopback
// server).
type systemBackend struct{ r *net.Resolver }

func (systemBackend) String() string { return "system" }

func (b systemBackend) Exchange(ctx context.Context, name string, qtype uint16) (Answer, error) {
	network := "ip4"
	if qtype == dns.TypeAAAA {
		network = "ip6"
	}
	r := b.r
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, network, name)
	if err != nil {
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
			// The system resolver says not-found both for NXDOMAIN and for a name without
			// records of this type, and cannot tell which. Call it NXDOMAIN (cached
			// negatively): a name with addresses of the other type still resolves, since
			// LookupIP succeeds when either type has addresses, and a name with none fails
			// as dns_nxdomain, as it would through the other backends.
			return Answer{Rcode: RcodeNXDomain}, nil
		case isTimeout(err):
			return Answer{Rcode: RcodeTimeout}, err
		}
		return Answer{Rcode: RcodeServFail}, err
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return Answer{Addrs: addrs, Rcode: RcodeNoError}, nil
}

// newQuery builds the query message for name and type.
func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	return m
}

// parseReply turns a reply into an Answer.
func parseReply(m *dns.Msg, qtype uint16) Answer {
	a := Answer{Rcode: dns.RcodeToString[m.Rcode]}
	if a.Rcode == "" {
		a.Rcode = fmt.Sprintf("RCODE%d", m.Rcode)
	}
	var ttl uint32
	first := true
	take := func(t uint32) {
		if first || t < ttl {
			ttl, first = t, false
		}
	}
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				if ip, ok := netip.AddrFromSlice(rr.A.To4()); ok {
					a.Addrs = append(a.Addrs, ip)
					take(rr.Hdr.Ttl)
				}
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				if ip, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok {
					a.Addrs = append(a.Addrs, ip.Unmap())
					take(rr.Hdr.Ttl)
				}
			}
		case *dns.CNAME:
			take(rr.Hdr.Ttl)
		}
	}
	if len(a.Addrs) == 0 {
		// RFC 2308: the negative TTL is the smaller of the SOA's TTL and its MINIMUM.
		first = true
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				take(min(soa.Hdr.Ttl, soa.Minttl))
			}
		}
	}
	if !first {
		a.TTL = time.Duration(ttl) * time.Second
	}
	return a
}

// wireBackend asks a server over plain UDP (falling back to TCP for truncated answers) or TCP.
type wireBackend struct {
	name string
	addr string
	net  string
}

func (b *wireBackend) String() string { return b.name }

func (b *wireBackend) Exchange(ctx context.Context, name string, qtype uint16) (Answer, error) {
	c := &dns.Client{Net: b.net}
	m, _, err := c.ExchangeContext(ctx, newQuery(name, qtype), b.addr)
	if err == nil && m.Truncated && b.net == "udp" {
		c.Net = "tcp"
		m, _, err = c.ExchangeContext(ctx, newQuery(name, qtype), b.addr)
	}
	if err != nil {
		return Answer{}, fmt.Errorf("%s: %w", b.name, err)
	}
	return parseReply(m, qtype), nil
}

// dotBackend asks a DNS-over-TLS server (RFC 7858) over one kept-alive connection that all
// queries share, one at a time. A broken or server-closed connection is redialled once.
type dotBackend struct {
	name string
	addr string
	host string
	tls  *tls.Config

	mu   sync.Mutex // held for a whole exchange: queries on conn are serialised
	conn *dns.Conn  // guarded by mu; nil until the first query or after a failure
}

func (b *dotBackend) String() string     { return b.name }
func (b *dotBackend) serverHost() string { return b.host }

func (b *dotBackend) Exchange(ctx context.Context, name string, qtype uint16) (Answer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := newQuery(name, qtype)
	// The EDNS TCP keepalive option (RFC 7828) asks the server to keep the connection.
	if opt := q.IsEdns0(); opt != nil {
		opt.Option = append(opt.Option, &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE})
	}
	for attempt := 0; ; attempt++ {
		reused := b.conn != nil
		if b.conn == nil {
			c, err := b.dial(ctx)
			if err != nil {
				return Answer{}, fmt.Errorf("%s: %w", b.name, err)
			}
			b.conn = c
		}
		m, err := b.exchange(ctx, b.conn, q)
		if err == nil {
			return parseReply(m, qtype), nil
		}
		b.conn.Close()
		b.conn = nil
		// A kept-alive connection the server closed fails at once: redial once.
		if !reused || attempt > 0 || ctx.Err() != nil {
			return Answer{}, fmt.Errorf("%s: %w", b.name, err)
		}
	}
}

func (b *dotBackend) dial(ctx context.Context) (*dns.Conn, error) {
	d := tls.Dialer{Config: b.tls}
	c, err := d.DialContext(ctx, "tcp", b.addr)
	if err != nil {
		return nil, err
	}
	return &dns.Conn{Conn: c}, nil
}

func (b *dotBackend) exchange(ctx context.Context, c *dns.Conn, q *dns.Msg) (*dns.Msg, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(5 * time.Second)
	}
	c.SetDeadline(dl)
	// Interrupt the blocked read if the context is cancelled before its deadline.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	q.Id = dns.Id()
	if err := c.WriteMsg(q); err != nil {
		return nil, err
	}
	for {
		m, err := c.ReadMsg()
		if err != nil {
			return nil, err
		}
		if m.Id == q.Id {
			c.SetDeadline(time.Time{})
			return m, nil
		}
	}
}

// DoHBackend asks a DNS-over-HTTPS server (RFC 8484) with wire-format POSTs.
type DoHBackend struct {
	// URL is the server's query URL, e.g. "https://127.0.0.1:8443/dns-query".
	URL string
	// Client carries the queries; it should speak HTTP/2. Nil means a client of its own.
	Client *http.Client

	tlsConfig *tls.Config
	host      string
	once      sync.Once
	own       *http.Client
}

// String names the backend by its URL, without its user info (a DoH server that wants
// basic credentials gets them from URL; metric labels, logs and errors show "xxxxx").
func (b *DoHBackend) String() string {
	u, err := url.Parse(b.URL)
	if err != nil || u.User == nil {
		return b.URL
	}
	u.User = url.User("xxxxx")
	return u.String()
}

func (b *DoHBackend) serverHost() string { return b.host }

func (b *DoHBackend) client() *http.Client {
	if b.Client != nil {
		return b.Client
	}
	b.once.Do(func() {
		b.own = &http.Client{Transport: &http.Transport{
			TLSClientConfig:   cloneTLS(b.tlsConfig),
			ForceAttemptHTTP2: true,
			IdleConnTimeout:   90 * time.Second,
		}}
	})
	return b.own
}

// Exchange implements Backend.
func (b *DoHBackend) Exchange(ctx context.Context, name string, qtype uint16) (Answer, error) {
	q := newQuery(name, qtype)
	q.Id = 0 // RFC 8484 4.1: ID 0 keeps answers cacheable by HTTP caches
	wire, err := q.Pack()
	if err != nil {
		return Answer{}, fmt.Errorf("doh: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL, bytes.NewReader(wire))
	if err != nil {
		return Answer{}, fmt.Errorf("doh: %w", err)
	}
	req.Header.Set("Content-Type", "application/dns-message")
	req.Header.Set("Accept", "application/dns-message")
	resp, err := b.client().Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("doh %s: %w", b, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 65536))
	if err != nil {
		return Answer{}, fmt.Errorf("doh %s: %w", b, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Answer{Rcode: RcodeServFail}, fmt.Errorf("doh %s: HTTP %d", b, resp.StatusCode)
	}
	m := new(dns.Msg)
	if err := m.Unpack(body); err != nil {
		return Answer{}, fmt.Errorf("doh %s: %w", b, err)
	}
	return parseReply(m, qtype), nil
}

// isTimeout reports whether err is a timeout or deadline.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
