package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DNS is the lab's authoritative server for its domain, on UDP and TCP port 53 of its own
// host. Every host resolves through it, answers come from the records set here (each host
// has <name>.<Domain> from the start), other names are NXDOMAIN, and every query is logged.
type DNS struct {
	lab  *Lab
	host *Host
	udp  *dns.Server
	tcp  *dns.Server
	done chan struct{}

	mu      sync.Mutex
	records map[string]*dnsRecord // by lower-case name without the final dot
	delay   time.Duration         // added to every answer
	queries []Query
}

type dnsRecord struct {
	addrs []netip.Addr
	ttl   time.Duration
	delay time.Duration
	rcode int // dns.RcodeSuccess: answer normally
}

// Query is one question the DNS server answered.
type Query struct {
	Time  time.Time     // when it arrived
	From  netip.Addr    // the asking host's address
	Proto string        // "udp" or "tcp"
	Name  string        // as asked, lower case, without the final dot
	Type  string        // "A", "AAAA", ...
	Rcode string        // "NOERROR", "NXDOMAIN", ...
	Delay time.Duration // delay added before answering
}

// DNS returns the lab's DNS server, starting it (and its host, Options.DNSHost) on first use.
// Start it before running commands in hosts: a process sees the resolv.conf that existed when
// it started.
func (l *Lab) DNS() (*DNS, error) {
	l.dnsMu.Lock()
	defer l.dnsMu.Unlock()
	l.mu.Lock()
	if d := l.dns; d != nil {
		l.mu.Unlock()
		return d, nil
	}
	l.mu.Unlock()
	h := l.Host(l.opts.DNSHost)
	if h == nil {
		var err error
		if h, err = l.AddHost(l.opts.DNSHost); err != nil {
			return nil, err
		}
	}
	d := &DNS{lab: l, host: h, records: map[string]*dnsRecord{}, done: make(chan struct{})}
	pc, err := h.ListenPacket("udp", net.JoinHostPort(h.addr.String(), "53"))
	if err != nil {
		return nil, err
	}
	ln, err := h.Listen("tcp", net.JoinHostPort(h.addr.String(), "53"))
	if err != nil {
		pc.Close()
		return nil, err
	}
	d.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve)}
	d.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(d.serve)}
	for _, s := range []*dns.Server{d.udp, d.tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			return nil, errors.New("lab dns: server did not start")
		}
	}
	l.mu.Lock()
	l.dns = d
	hosts := append([]*Host(nil), l.order...)
	l.closers = append(l.closers, func() error { d.close(); return nil })
	l.mu.Unlock()
	for _, h := range hosts {
		if err := d.addHost(h); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *DNS) close() {
	select {
	case <-d.done:
		return
	default:
	}
	close(d.done)
	for _, s := range []*dns.Server{d.udp, d.tcp} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.ShutdownContext(ctx)
		cancel()
	}
}

// addHost gives h its record and makes it resolve through the server.
func (d *DNS) addHost(h *Host) error {
	d.SetRecord(h.DNSName(), d.lab.opts.TTL, h.addr)
	dir := filepath.Join(etcNetnsDir, h.ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab dns: %w", err)
	}
	conf := fmt.Sprintf("# holoproxy lab %s\nnameserver %s\noptions ndots:1 timeout:2 attempts:2\n", d.lab.name, d.host.addr)
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("lab dns: %w", err)
	}
	return nil
}

// Host returns the host the server runs on.
func (d *DNS) Host() *Host { return d.host }

// Addr returns the server's address (port 53, UDP and TCP).
func (d *DNS) Addr() netip.AddrPort { return netip.AddrPortFrom(d.host.addr, 53) }

func normName(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// SetRecord makes name answer with the addresses addrs (IPv4 as A, IPv6 as AAAA) and the TTL
// ttl, replacing what it answered before. No addresses makes the name exist without records.
// Use Host.Addr for a lab host's address.
func (d *DNS) SetRecord(name string, ttl time.Duration, addrs ...netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.records[normName(name)]
	if r == nil {
		r = &dnsRecord{}
		d.records[normName(name)] = r
	}
	r.addrs = append([]netip.Addr(nil), addrs...)
	r.ttl = ttl
}

// SetDelay adds delay before every answer for name; name "" sets the delay of every answer
// (added to a name's own).
func (d *DNS) SetDelay(name string, delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if name == "" {
		d.delay = delay
		return
	}
	r := d.records[normName(name)]
	if r == nil {
		r = &dnsRecord{rcode: dns.RcodeNameError}
		d.records[normName(name)] = r
	}
	r.delay = delay
}

// SetRcode makes every answer for name carry rcode (dns.RcodeServerFailure, dns.RcodeRefused,
// dns.RcodeNameError...) with no records; dns.RcodeSuccess restores normal answers (for a
// name without a record it makes the name exist with no addresses).
func (d *DNS) SetRcode(name string, rcode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.records[normName(name)]
	if r == nil {
		r = &dnsRecord{}
		d.records[normName(name)] = r
	}
	r.rcode = rcode
}

// Queries returns the log of answered queries, oldest first.
func (d *DNS) Queries() []Query {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Query(nil), d.queries...)
}

func (d *DNS) lookup(name string) (netip.Addr, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.records[normName(name)]
	if r == nil || r.rcode != dns.RcodeSuccess {
		return netip.Addr{}, false
	}
	for _, a := range r.addrs {
		if a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (d *DNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	q := Query{Time: time.Now(), Proto: "udp"}
	if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		q.From = ap.Addr().Unmap()
	}
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		q.Proto = "tcp"
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		q.Rcode = dns.RcodeToString[m.Rcode]
		d.log(q)
		_ = w.WriteMsg(m)
		return
	}
	qq := req.Question[0]
	q.Name = normName(qq.Name)
	q.Type = dns.TypeToString[qq.Qtype]
	d.mu.Lock()
	delay := d.delay
	r := d.records[q.Name]
	if r == nil {
		m.Rcode = dns.RcodeNameError
	} else {
		delay += r.delay
		m.Rcode = r.rcode
		if r.rcode == dns.RcodeSuccess {
			for _, a := range r.addrs {
				hdr := dns.RR_Header{Name: qq.Name, Class: dns.ClassINET, Ttl: uint32(r.ttl / time.Second)}
				switch {
				case a.Is4() && qq.Qtype == dns.TypeA:
					hdr.Rrtype = dns.TypeA
					m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
				case a.Is6() && qq.Qtype == dns.TypeAAAA:
					hdr.Rrtype = dns.TypeAAAA
					m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
				}
			}
		}
	}
	d.mu.Unlock()
	q.Rcode = dns.RcodeToString[m.Rcode]
	q.Delay = delay
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-d.done:
			t.Stop()
			return
		}
	}
	d.log(q)
	_ = w.WriteMsg(m)
}

func (d *DNS) log(q Query) {
	d.mu.Lock()
	d.queries = append(d.queries, q)
	d.mu.Unlock()
}

// Resolver returns a resolver for Go code in the test process that asks the lab's DNS server
// from host h, as a process in h would (queries appear in the log with h's address).
func (d *DNS) Resolver(h *Host) *net.Resolver {
	server := d.Addr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return h.DialContext(ctx, network, server)
		},
	}
}
