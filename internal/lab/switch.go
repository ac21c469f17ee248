package lab

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The link emulator. The kernels this lab runs on have no netem qdisc, so delay, jitter and
// loss are applied by a userspace switch: one AF_PACKET socket per port, bound to the router
// end of a host's veth pair. Every frame a host sends arrives on its port, is dropped with the
// host's loss probability, waits in the port's delay line until its delivery time and is then
// written to the port of its destination MAC (broadcast and unknown destinations go to every
// other port). Frames keep their order per sender: jitter never reorders them.
//
// The sockets use PACKET_VNET_HDR, so the veth's segmentation offload (64 KiB TCP
// super-frames) and partial checksums pass through intact: without it every frame would have
// to be MTU-sized and checksummed in software. Loss therefore drops whole super-frames, as
// netem does on an interface with offloads.

// vnetHdrLen is the size of struct virtio_net_hdr that precedes every frame.
const vnetHdrLen = 10

// maxFrame is the largest frame read, vnet header included (a 64 KiB GSO frame plus headers).
const maxFrame = 65536 + 256

// delayLineLen is how many frames one port may hold in its delay line; more are dropped,
// like netem's default limit of 1000 packets (ours are often 64 KiB super-frames).
const delayLineLen = 4096

// ethSwitch is the userspace link emulator of one lab.
type ethSwitch struct {
	mu    sync.RWMutex
	ports []*swPort
	byMAC map[[6]byte]*swPort

	wg     sync.WaitGroup
	closed atomic.Bool
	done   chan struct{}
}

// swPort is one host's attachment to the switch.
type swPort struct {
	sw   *ethSwitch
	name string
	f    *os.File
	mac  [6]byte
	link atomic.Pointer[Link]

	q       chan frame
	pending atomic.Int64 // frames in the delay line, or taken from it and not yet sent
	last    time.Time    // delivery time of the newest delayed frame; reader goroutine only
	rng     *rand.Rand   // reader goroutine only

	fwd, dropped atomic.Int64
	delayed      atomic.Int64 // frames that went through the delay line
	lateSum      atomic.Int64 // ns the delay line sent them later than their time, summed
	lateMax      atomic.Int64 // ns, the most
}

type frame struct {
	at   time.Time
	data []byte
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, maxFrame); return &b }}

func newSwitch() *ethSwitch {
	return &ethSwitch{byMAC: map[[6]byte]*swPort{}, done: make(chan struct{})}
}

// openPacketSocket opens a non-blocking AF_PACKET socket with vnet headers on ifname. It must
// run inside the namespace that holds ifname.
func openPacketSocket(ifname string) (*os.File, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	opts := []struct{ level, opt, val int }{
		{unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1},
		{unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1},
		{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8 << 20},
		{unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8 << 20},
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("packet socket option %d/%d: %w", o.level, o.opt, err)
		}
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind packet socket to %s: %w", ifname, err)
	}
	return os.NewFile(uintptr(fd), "packet:"+ifname), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// addPort attaches f (a packet socket) as the port of the host with MAC mac and starts
// moving its frames.
func (s *ethSwitch) addPort(name string, f *os.File, mac net.HardwareAddr, seed uint64) *swPort {
	p := &swPort{sw: s, name: name, f: f, q: make(chan frame, delayLineLen), rng: rand.New(rand.NewPCG(seed, 0x1ab))}
	copy(p.mac[:], mac)
	p.link.Store(&Link{})
	s.mu.Lock()
	s.ports = append(s.ports, p)
	s.byMAC[p.mac] = p
	s.mu.Unlock()
	s.wg.Add(2)
	go p.readLoop()
	go p.delayLoop()
	return p
}

// close stops every port and waits for their goroutines.
func (s *ethSwitch) close() {
	if s.closed.Swap(true) {
		return
	}
	s.mu.RLock()
	ports := append([]*swPort(nil), s.ports...)
	s.mu.RUnlock()
	close(s.done)
	for _, p := range ports {
		p.f.Close()
	}
	s.wg.Wait()
}

func (p *swPort) readLoop() {
	defer p.sw.wg.Done()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := p.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || p.sw.closed.Load() ||
				errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV) {
				return
			}
			continue
		}
		if n < vnetHdrLen+14 {
			continue
		}
		l := p.link.Load()
		if l.Loss > 0 && (l.Loss >= 1 || p.rng.Float64() < l.Loss) {
			p.dropped.Add(1)
			continue
		}
		if l.Delay <= 0 && l.Jitter <= 0 && p.pending.Load() == 0 {
			p.forward(buf[:n])
			continue
		}
		d := l.Delay
		if l.Jitter > 0 {
			d += time.Duration(p.rng.Int64N(int64(2*l.Jitter)+1)) - l.Jitter
		}
		at := time.Now().Add(d)
		if at.Before(p.last) {
			at = p.last
		}
		p.last = at
		fr := frame{at: at, data: bytes.Clone(buf[:n])}
		p.pending.Add(1)
		select {
		case p.q <- fr:
		default:
			p.pending.Add(-1)
			p.dropped.Add(1)
		}
	}
}

func (p *swPort) delayLoop() {
	defer p.sw.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var fr frame
		select {
		case fr = <-p.q:
		case <-p.sw.done:
			return
		}
		if d := time.Until(fr.at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-p.sw.done:
				return
			}
		}
		late := int64(time.Since(fr.at))
		p.forward(fr.data)
		p.pending.Add(-1)
		p.delayed.Add(1)
		p.lateSum.Add(late)
		if late > p.lateMax.Load() {
			p.lateMax.Store(late) // the only writer is this goroutine
		}
	}
}

// forward writes a frame received on p to the port(s) of its destination.
func (p *swPort) forward(fr []byte) {
	var dst [6]byte
	copy(dst[:], fr[vnetHdrLen:vnetHdrLen+6])
	s := p.sw
	s.mu.RLock()
	out, ok := s.byMAC[dst]
	if ok && dst[0]&1 == 0 {
		s.mu.RUnlock()
		if out != p {
			out.write(fr)
		}
		p.fwd.Add(1)
		return
	}
	ports := s.ports
	s.mu.RUnlock()
	for _, o := range ports {
		if o != p {
			o.write(fr)
		}
	}
	p.fwd.Add(1)
}

func (p *swPort) write(fr []byte) {
	// A full socket buffer or a port being closed loses the frame, as a real switch would.
	_, _ = p.f.Write(fr)
}
