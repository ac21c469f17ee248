package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Link is what a host's link does to the frames the host sends, like netem on the host's
// interface: a frame from A to B waits A's Delay (± Jitter), and a TCP connect between hosts
// with 20 ms each takes 40 ms. Loss and Rate apply to the same direction.
type Link struct {
	// Delay is the one-way delay added to every frame the host sends.
	Delay time.Duration
	// Jitter varies Delay uniformly by up to ± Jitter. Frames are never reordered (TCP
	// would take reordering for loss), so a frame sent right behind another waits at least
	// until that one is delivered: back-to-back frames see delays skewed to the high end.
	Jitter time.Duration
	// Loss is the probability, 0 to 1, that a frame the host sends is lost; 1 blackholes the
	// host (nothing it sends arrives anywhere, so no connection to or from it completes).
	Loss float64
	// Rate caps what the host sends, in bits per second (a tbf qdisc); 0 means no cap.
	Rate int64
}

// Host is one machine of the lab: a network namespace with one interface (eth0) on the
// lab's switch.
type Host struct {
	lab  *Lab
	name string
	ns   string
	idx  int
	addr netip.Addr
	mac  net.HardwareAddr
	port string // its switch port, in the router namespace
	link Link   // guarded by lab.mu
}

// Name returns the host's name within the lab.
func (h *Host) Name() string { return h.name }

// Netns returns the name of the host's network namespace (for `ip netns exec`).
func (h *Host) Netns() string { return h.ns }

// Addr returns the host's address.
func (h *Host) Addr() netip.Addr { return h.addr }

// DNSName returns the host's name in the lab's DNS: <name>.<Domain>.
func (h *Host) DNSName() string { return h.name + "." + h.lab.opts.Domain }

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// Link returns the host's current link settings.
func (h *Host) Link() Link {
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	return h.link
}

// SetLink changes the host's link at once, also while traffic flows: frames already in the
// delay line keep the delay they were given.
func (h *Host) SetLink(l Link) error {
	if l.Loss < 0 || l.Loss > 1 || l.Delay < 0 || l.Jitter < 0 || l.Rate < 0 {
		return fmt.Errorf("lab: invalid link %+v", l)
	}
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	if l.Rate != h.link.Rate {
		var err error
		if l.Rate == 0 {
			err = run(context.Background(), "", "tc", "-n", h.ns, "qdisc", "del", "dev", "eth0", "root")
		} else {
			// Burst: 5 ms worth of the rate, at least two full frames.
			burst := max(l.Rate/8/200, 3100)
			err = run(context.Background(), "", "tc", "-n", h.ns, "qdisc", "replace", "dev", "eth0", "root",
				"tbf", "rate", strconv.FormatInt(l.Rate, 10)+"bit", "burst", strconv.FormatInt(burst, 10), "latency", "100ms")
		}
		if err != nil {
			return err
		}
		h.link.Rate = l.Rate
	}
	if err := h.lab.sw.setLink(h.port, l); err != nil {
		return err
	}
	h.link = l
	return nil
}

// LinkStats count what a host's link did to the frames the host sent.
type LinkStats struct {
	Forwarded int64 // frames delivered to the switch's other ports
	Dropped   int64 // frames lost (Loss, or a full delay line)
	Delayed   int64 // frames that waited in the delay line
	// MeanLate and MaxLate are how much later than their due time delayed frames left: the
	// emulator's own error, which grows when the machine is overloaded.
	MeanLate, MaxLate time.Duration
}

// Stats returns the host's link counters.
func (h *Host) Stats() (LinkStats, error) {
	return h.lab.sw.stats(h.port)
}

// Command returns a command that runs name in the host's namespace (through `ip netns exec`,
// which also makes /etc/resolv.conf the lab's). Its environment is the test process's plus
// SSL_CERT_FILE naming the lab CA; change cmd.Env to adjust. The process and its children are
// killed when ctx is done, when the lab closes, and when the test process dies.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if !strings.Contains(name, "/") {
		if p, err := exec.LookPath(name); err == nil {
			name = p
		}
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+h.lab.ca.CertFile())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Listen announces on the host's network (e.g. "tcp", ":8080"; "udp", ":53"), for a Go server
// run by the test process: the socket is created inside the host's namespace and stays there.
func (h *Host) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := h.lab.inHost(h, func() (err error) { ln, err = net.Listen(network, address); return err })
	if err != nil {
		return nil, fmt.Errorf("lab: listen on %s: %w", h.name, err)
	}
	return ln, nil
}

// ListenPacket is Listen for packet networks ("udp").
func (h *Host) ListenPacket(network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.lab.inHost(h, func() (err error) { pc, err = net.ListenPacket(network, address); return err })
	if err != nil {
		return nil, fmt.Errorf("lab: listen on %s: %w", h.name, err)
	}
	return pc, nil
}

// DialContext connects from the host to address, as a process in the host would; it has the
// signature of net.Dialer.DialContext, for http.Transport. A host name in address is looked
// up in the lab's DNS records (in memory, no query is sent), so nothing leaves the lab.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("lab: dial %s: %w", address, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		ip, ok := h.lab.lookup(host)
		if !ok {
			return nil, fmt.Errorf("lab: dial %s: no lab host or record named %s", address, host)
		}
		address = net.JoinHostPort(ip.String(), port)
	}
	var c net.Conn
	err = h.lab.inHost(h, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// inHost runs fn inside h's namespace.
func (l *Lab) inHost(h *Host, fn func() error) error { return inNetns(h.ns, fn) }

// lookup resolves a lab name without a query: DNS records first, then host names.
func (l *Lab) lookup(name string) (netip.Addr, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	l.mu.Lock()
	d := l.dns
	l.mu.Unlock()
	if d != nil {
		if a, ok := d.lookup(name); ok {
			return a, true
		}
	}
	for _, h := range l.Hosts() {
		if name == h.name || name == h.DNSName() {
			return h.addr, true
		}
	}
	return netip.Addr{}, false
}
