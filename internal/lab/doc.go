// Package lab brings up a network lab in Linux network namespaces for tests and benchmarks:
// hosts joined by a userspace link emulator with per-host delay, jitter, loss and rate, a DNS
// server for the lab's names, a throwaway CA, and module origins with fault knobs. Everything
// it starts it tears down, also when a test fails; what a killed test binary left behind is
// swept when the next lab starts.
//
// # Using it
//
//	func TestMain(m *testing.M) { lab.Main(m) }
//
//	func TestSlowProxy(t *testing.T) {
//		l := lab.New(t, lab.Options{})                 // skips unless root (fails under CI=true)
//		client, proxy := l.MustAddHost(t, "client"), l.MustAddHost(t, "proxy-a")
//		dns, _ := l.DNS()                              // on host "dns"; every host resolves through it
//		dns.SetDelay("", 50*time.Millisecond)
//		o, _ := proxy.ServeOrigin(lab.OriginConfig{Tree: tree, HTTP2: true})
//		proxy.SetLink(lab.Link{Delay: 40 * time.Millisecond})
//		env, _ := l.GoEnv(o.URL())                     // GOPROXY=https://proxy-a.test, GOSUMDB=off, tmpfs caches
//		cmd := client.Command(t.Context(), "go", "mod", "download", "all")
//		cmd.Dir, cmd.Env = app, env
//		out, err := cmd.CombinedOutput()
//		t.Log(o.Stats(), dns.Queries())
//	}
//
// lab.Main is needed only for helpers (Host.HelperCommand) and to close labs a test left
// open; New alone works with any TestMain. Outside tests (bench/ programs) use Start and
// Close.
//
// # Topology
//
// Each lab has a router namespace (<Prefix><pid>-<n>-r) and one namespace per host
// (<Prefix><pid>-<n>-<host>). A host has eth0, an address of Subnet (10.213.1.<i>/16) and
// permanent neighbour entries for every other host; the other end of its veth pair is a port
// of the switch in the router namespace. IPv6 is off in every lab namespace. Nothing is
// routed outside the lab: the test range exists only inside these namespaces.
//
// # The link emulator
//
// The kernels this runs on have no netem, so the switch is userspace: one AF_PACKET socket
// per port (with virtio-net headers, so 64 KiB offloaded TCP frames pass whole), one reader
// goroutine per port that blocks in the runtime's poller, and a FIFO delay line per port.
// A Link applies to what the host sends: a frame from A to B waits A's delay, so 20 ms on
// both ends of a TCP connect is 40 ms. Rate is a tbf qdisc on the host's eth0. Changing a
// Link takes effect for the next frame; Host.Stats reports the emulator's own lateness.
//
// The switch runs in a process of its own in the router namespace: the running binary
// re-executed with SwitchEnv set, which this package's init dispatches before main or
// TestMain (any binary that imports lab can serve as its switch). A process of its own, at
// nice -10, keeps frame timing independent of the test process: its garbage collection, or
// code under test keeping every P busy, would otherwise delay frames.
//
// # Code in hosts
//
// Processes: Host.Command runs any program through `ip netns exec`, which binds
// /etc/netns/<ns>/resolv.conf (written when the DNS server starts) over /etc/resolv.conf;
// Host.HelperCommand re-executes the test binary to run a function registered with
// RegisterHelper. Commands get SSL_CERT_FILE naming the lab CA, their own process group, and
// SIGKILL when the test process dies; Close kills every process left in a lab namespace.
//
// Go servers and clients in the test process: Host.Listen, Host.ListenPacket and
// Host.DialContext create their socket on an OS thread that has joined the host's namespace
// (setns), then return the thread to its own namespace. A socket stays in the namespace it was
// created in, so the server or client then runs on any goroutine. The lab's DNS server and
// origins work this way: no process to start, to talk to or to leave behind, and their logs
// are plain Go values the test reads. Only the switch, whose timing is the point, and
// programs that are not part of the test binary (the go command, holoproxy itself) run as
// child processes.
//
// # Requirements
//
// Root, and the ip and tc commands of iproute2. Without them New skips the test with the
// reason, except under CI (CI=true), where it fails it.
package lab
