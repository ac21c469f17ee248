package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Prefix starts the name of every namespace, directory and file the lab creates, followed by
// the id of the process that owns it; Start sweeps those whose owner is gone.
const Prefix = "hlab"

// Subnet is the private range lab hosts take their addresses from. It exists only inside the
// lab's namespaces: no route to it exists outside them.
var Subnet = netip.MustParsePrefix("10.213.0.0/16")

// Options configure a Lab. The zero value is ready to use.
type Options struct {
	// Domain is the DNS suffix of host names: host "proxy-a" is "proxy-a.<Domain>".
	// Default "test".
	Domain string
	// DNSHost is the name of the host the DNS server runs on, added by the first call to
	// Lab.DNS if it does not exist. Default "dns".
	DNSHost string
	// TTL is the TTL of the record each host gets in the lab's DNS. Default 60s.
	TTL time.Duration
	// MTUFrames makes hosts send MTU-sized frames (no segmentation offload through the
	// switch), so Loss and Rate act per packet as on a real network. Without it TCP crosses
	// the switch in super-frames of up to 64 KiB: each loss draw drops a whole one (a burst
	// of up to ~45 packets, as netem on an interface with offloads does). It costs
	// throughput: see docs/benchmarks.md.
	MTUFrames bool
	// Logf, if set, receives one line per lab event (bring-up, tear-down, sweep).
	Logf func(format string, args ...any)
}

// Lab is one set of hosts joined by the link emulator, with their DNS server, CA and
// origins. Its methods are safe for concurrent use.
type Lab struct {
	name string
	dir  string
	opts Options
	sw   *switchProc // nil until the router namespace exists
	ca   *CA

	dnsMu   sync.Mutex // serialises starting the DNS server
	mu      sync.Mutex
	hosts   map[string]*Host
	order   []*Host
	dns     *DNS
	origins []*Origin
	closers []func() error // run last-in first-out by Close
	closed  bool
}

var (
	labSeq  atomic.Int64
	liveMu  sync.Mutex
	liveSet = map[*Lab]bool{}
)

// Available reports why a lab cannot run here (not root, no ip or tc command), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("lab needs root (network namespaces, veth pairs, AF_PACKET sockets)")
	}
	for _, c := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("lab needs the %s command (iproute2): %w", c, err)
		}
	}
	return nil
}

// Require skips tb when a lab cannot run here, with the reason; under CI (CI=true) it fails
// tb instead, because CI must run every lab test.
func Require(tb testing.TB) {
	tb.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true but the lab cannot run: %v", err)
		}
		tb.Skipf("skipping lab test: %v", err)
	}
}

// New starts a lab for a test or benchmark, or skips it (see Require). The lab is closed by
// tb.Cleanup, whether the test passes or fails.
func New(tb testing.TB, opts Options) *Lab {
	tb.Helper()
	Require(tb)
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	l, err := Start(opts)
	if err != nil {
		tb.Fatalf("lab: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("lab close: %v", err)
		}
	})
	return l
}

// Start brings up an empty lab (the router namespace with the link emulator, and the CA)
// after sweeping what stale labs left behind. The caller must Close it; outside tests, call
// Main or Close from the program's exit path.
func Start(opts Options) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if opts.Domain == "" {
		opts.Domain = "test"
	}
	if opts.DNSHost == "" {
		opts.DNSHost = "dns"
	}
	if opts.TTL <= 0 {
		opts.TTL = 60 * time.Second
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	Sweep(opts.Logf)
	l := &Lab{
		name:  fmt.Sprintf("%s%d-%d", Prefix, os.Getpid(), labSeq.Add(1)),
		opts:  opts,
		hosts: map[string]*Host{},
	}
	liveMu.Lock()
	liveSet[l] = true
	liveMu.Unlock()
	ok := false
	defer func() {
		if !ok {
			_ = l.Close()
		}
	}()
	dir, err := os.MkdirTemp("", l.name+"-")
	if err != nil {
		return nil, fmt.Errorf("lab dir: %w", err)
	}
	l.dir = dir
	l.closers = append(l.closers, func() error { return os.RemoveAll(dir) })
	if err := run(context.Background(), "", "ip", "netns", "add", l.routerNS()); err != nil {
		return nil, err
	}
	l.closers = append(l.closers, func() error { return deleteNetns(l.routerNS()) })
	if err := sysctlNetns(l.routerNS(), noIPv6); err != nil {
		return nil, err
	}
	if l.sw, err = startSwitch(l.routerNS()); err != nil {
		return nil, err
	}
	if l.ca, err = newCA(filepath.Join(dir, "ca.pem"), l.name); err != nil {
		return nil, err
	}
	ok = true
	opts.Logf("lab %s: up (dir %s)", l.name, dir)
	return l, nil
}

// noIPv6 turns IPv6 off in a namespace, so no router solicitation or neighbour discovery
// crosses the switch and every address is the one the lab assigned.
var noIPv6 = map[string]string{
	"ipv6/conf/all/disable_ipv6":     "1",
	"ipv6/conf/default/disable_ipv6": "1",
}

// Name returns the lab's name, the prefix of its namespaces.
func (l *Lab) Name() string { return l.name }

// Dir returns a directory private to the lab, removed by Close.
func (l *Lab) Dir() string { return l.dir }

// Domain returns the DNS suffix of the lab's host names.
func (l *Lab) Domain() string { return l.opts.Domain }

// CA returns the lab's throwaway certificate authority.
func (l *Lab) CA() *CA { return l.ca }

func (l *Lab) routerNS() string { return l.name + "-r" }

// Host returns the host called name, or nil.
func (l *Lab) Host(name string) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hosts[name]
}

// Hosts returns the lab's hosts in the order they were added.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.order...)
}

var hostName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// AddHost creates a host: its own network namespace, joined by a veth pair to the switch,
// with the next address of Subnet, loopback up and static neighbour entries for every other
// host (so no ARP exchange adds a round trip). With a DNS server running, the host resolves
// through it and gets the record <name>.<Domain>.
func (l *Lab) AddHost(name string) (*Host, error) {
	if !hostName.MatchString(name) {
		return nil, fmt.Errorf("lab: host name %q: want 1-20 of [a-z0-9-], starting with a letter", name)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab: closed")
	}
	if l.hosts[name] != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab: host %s exists", name)
	}
	idx := len(l.order) + 1
	if idx > 250 {
		l.mu.Unlock()
		return nil, errors.New("lab: too many hosts")
	}
	h := &Host{
		lab:  l,
		name: name,
		ns:   l.name + "-" + name,
		idx:  idx,
		addr: netip.AddrFrom4([4]byte{10, 213, 1, byte(idx)}),
		mac:  net.HardwareAddr{0x02, 0x68, 0x6c, 0x00, 0x00, byte(idx)},
	}
	l.hosts[name] = h
	l.order = append(l.order, h)
	peers := append([]*Host(nil), l.order...)
	l.mu.Unlock()

	ctx := context.Background()
	if err := run(ctx, "", "ip", "netns", "add", h.ns); err != nil {
		return nil, err
	}
	l.addCloser(func() error { return deleteNetns(h.ns) })
	if err := sysctlNetns(h.ns, noIPv6); err != nil {
		return nil, err
	}
	port := "p" + strconv.Itoa(idx)
	rmac := net.HardwareAddr{0x02, 0x68, 0x6c, 0x01, 0x00, byte(idx)}
	if err := run(ctx, "", "ip", "-n", l.routerNS(), "link", "add", port, "address", rmac.String(),
		"type", "veth", "peer", "name", "eth0", "address", h.mac.String(), "netns", h.ns); err != nil {
		return nil, err
	}
	if err := run(ctx, "", "ip", "-n", l.routerNS(), "link", "set", port, "up", "promisc", "on"); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "addr add %s/%d dev eth0\nlink set eth0 up\nlink set lo up\n", h.addr, Subnet.Bits())
	if l.opts.MTUFrames {
		b.WriteString("link set eth0 gso_max_segs 1 gso_max_size 1500\n")
	}
	for _, p := range peers {
		if p != h {
			fmt.Fprintf(&b, "neigh replace %s lladdr %s dev eth0 nud permanent\n", p.addr, p.mac)
		}
	}
	if err := run(ctx, b.String(), "ip", "-n", h.ns, "-batch", "-"); err != nil {
		return nil, err
	}
	for _, p := range peers {
		if p != h {
			if err := run(ctx, "", "ip", "-n", p.ns, "neigh", "replace", h.addr.String(), "lladdr", h.mac.String(),
				"dev", "eth0", "nud", "permanent"); err != nil {
				return nil, err
			}
		}
	}
	if err := l.sw.addPort(port, h.mac, uint64(idx)); err != nil {
		return nil, err
	}
	h.port = port
	l.mu.Lock()
	d := l.dns
	l.mu.Unlock()
	if d != nil {
		if err := d.addHost(h); err != nil {
			return nil, err
		}
	}
	l.opts.Logf("lab %s: host %s at %s", l.name, name, h.addr)
	return h, nil
}

// MustAddHost is AddHost for tests: it fails tb on error.
func (l *Lab) MustAddHost(tb testing.TB, name string) *Host {
	tb.Helper()
	h, err := l.AddHost(name)
	if err != nil {
		tb.Fatalf("lab: %v", err)
	}
	return h
}

func (l *Lab) addCloser(f func() error) {
	l.mu.Lock()
	l.closers = append(l.closers, f)
	l.mu.Unlock()
}

// Close stops every server and process of the lab and deletes its namespaces, links and
// files. It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	closers := l.closers
	l.closers = nil
	hosts := append([]*Host(nil), l.order...)
	l.mu.Unlock()
	// Processes first, in parallel, so servers see their clients vanish.
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); killNetns(h.ns) }()
	}
	wg.Wait()
	if l.sw != nil {
		l.sw.close()
	}
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	liveMu.Lock()
	delete(liveSet, l)
	liveMu.Unlock()
	l.opts.Logf("lab %s: down", l.name)
	return errors.Join(errs...)
}

// closeAll closes every lab this process still has open.
func closeAll() {
	liveMu.Lock()
	var ls []*Lab
	for l := range liveSet {
		ls = append(ls, l)
	}
	liveMu.Unlock()
	for _, l := range ls {
		_ = l.Close()
	}
}

var staleName = regexp.MustCompile(`^` + Prefix + `([0-9]+)-`)

// ownerGone reports whether name is a lab artefact whose owning process no longer exists.
func ownerGone(name string) bool {
	m := staleName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || pid == os.Getpid() {
		return false
	}
	_, err = os.Stat(filepath.Join("/proc", m[1]))
	return errors.Is(err, fs.ErrNotExist)
}

// Sweep deletes what labs of dead processes left behind: namespaces named with Prefix (and
// every process still in them), their /etc/netns directories, and lab directories in the
// temporary and tmpfs directories. Labs of live processes are left alone. Start calls it.
func Sweep(logf func(format string, args ...any)) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	for _, dir := range []string{netnsDir, etcNetnsDir} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !ownerGone(e.Name()) {
				continue
			}
			if err := deleteNetns(e.Name()); err != nil {
				logf("lab sweep: %v", err)
			} else {
				logf("lab sweep: removed stale namespace %s", e.Name())
			}
		}
	}
	for _, dir := range []string{os.TempDir(), shmDir} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if ownerGone(e.Name()) {
				_ = removeAllWritable(filepath.Join(dir, e.Name()))
				logf("lab sweep: removed stale %s", filepath.Join(dir, e.Name()))
			}
		}
	}
}

// shmDir is a tmpfs every Linux system mounts.
const shmDir = "/dev/shm"

// TmpfsDir returns a new directory on a tmpfs, removed by Close. Benchmarks put the go
// command's GOMODCACHE there: extracting hundreds of module zips on a disk costs seconds of
// system CPU that would drown the network figures.
func (l *Lab) TmpfsDir(name string) (string, error) {
	base := shmDir
	if _, err := os.Stat(base); err != nil {
		base = l.dir
	}
	d, err := os.MkdirTemp(base, l.name+"-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("tmpfs dir: %w", err)
	}
	l.addCloser(func() error { return removeAllWritable(d) })
	return d, nil
}

// removeAllWritable removes dir even when the go command made parts of it read-only.
func removeAllWritable(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// GoEnv returns the environment for the real go command in a lab host: the test process's
// PATH, GOPROXY set to goproxy (lab origins only), no checksum database (GOSUMDB=off), no
// toolchain switch, no version control fallback, GOFLAGS=-mod=mod, and a fresh GOPATH,
// GOMODCACHE and GOCACHE on a tmpfs (see TmpfsDir); SSL_CERT_FILE names the lab CA. extra
// entries ("KEY=value") are appended and win.
func (l *Lab) GoEnv(goproxy string, extra ...string) ([]string, error) {
	dir, err := l.TmpfsDir("go")
	if err != nil {
		return nil, err
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"GOPATH=" + filepath.Join(dir, "gopath"),
		"GOMODCACHE=" + filepath.Join(dir, "modcache"),
		"GOCACHE=" + filepath.Join(dir, "gocache"),
		"GOENV=off",
		"GOPROXY=" + goproxy,
		"GOSUMDB=off",
		"GONOSUMDB=*",
		"GOPRIVATE=",
		"GONOPROXY=",
		"GOINSECURE=",
		"GOVCS=*:off",
		"GOFLAGS=-mod=mod",
		"GOTOOLCHAIN=local",
		"GOTELEMETRY=off",
		"CGO_ENABLED=0",
		"SSL_CERT_FILE=" + l.ca.CertFile(),
	}
	if root := os.Getenv("GOROOT"); root != "" {
		env = append(env, "GOROOT="+root)
	}
	return append(env, extra...), nil
}
