package cluster

// Network cuts between broker processes on one machine.
//
// Why network namespaces, and why the cut is a pair of routing rules:
//
//   - Loopback with an address per broker (DistinctHosts) cannot be cut cleanly: a broker's
//     outgoing connections (dragonboat's transport, the heartbeat client) do not bind their
//     source address, so they leave from 127.0.0.1 and a rule on the cut broker's address
//     catches one direction only. In its own namespace a broker has one address, and every
//     packet it sends or receives carries it.
//   - The namespaces hang off a bridge in a namespace of its own (the hub), and the test
//     process reaches it through one more veth pair: packets between brokers are switched in
//     the hub, never forwarded through the test's namespace, so that namespace's firewall
//     (a FORWARD policy of DROP, br_netfilter) cannot get in the way, and nothing but this
//     namespace's veth end and its address is added to it.
//   - The cut is two `ip rule` entries per peer inside the cut broker's namespace, "from peer
//     blackhole" and "to peer blackhole": what the peer sends is dropped on arrival (before any
//     socket sees it) and nothing reaches the peer, so connections in either direction and
//     segments on established ones die both ways. The test process's own address is not
//     named, so it still talks to the cut broker over the address the broker advertises,
//     and can watch the minority refuse. It needs only iproute2: no iptables (not installed
//     everywhere, this machine included) and no `tc netem` (not available). The rules live in
//     the broker's namespace and die with it.
//   - The cut broker's own sends fail at once (a blackhole route answers EINVAL) while its
//     peers' sends vanish: the majority, whose view decides fencing, sees the silence of a
//     real partition. When the cut heals, connections the peers held open resume at their
//     next TCP retransmission (seconds after a cut of seconds), as after a real partition.
//
// Cleanup: Close deletes every namespace (which takes the bridge, the veths and the rules
// with it). A test binary killed before its cleanup leaves them behind, so NewNetwork first
// deletes anything left under its names; a lock file keeps two test processes on one machine
// from sharing (or sweeping) one another's network.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoNetwork is wrapped by NewNetwork when this machine or user cannot make network
// namespaces (not root, no `ip`, namespaces refused): tests skip then.
var ErrNoNetwork = errors.New("cluster: network namespaces unavailable")

// Names and addresses of a Network. The subnet is one that is rarely routed anywhere; broker
// id has address <subnet>.<id>, the test process <subnet>.254.
const (
	netnsPrefix    = "rtnc-" // namespaces rtnc-hub, rtnc-1…rtnc-N
	netnsHub       = netnsPrefix + "hub"
	netnsHostLink  = "rtnc-host" // the test process's end of its veth to the hub
	netnsSubnet    = "10.251.77" // /24
	netnsHostIP    = netnsSubnet + ".254"
	netnsMaxNodes  = 250
	netnsRulePrio  = "100" // before the main table (32766)
	netnsFirstPort = 9092  // a broker's Kafka port; further ports follow it
	// netnsLockFile is one path for the whole machine, not under os.TempDir: the namespaces and
	// addresses are machine-wide, and test processes run with their own TMPDIR each (two
	// `make test` runs with different TMPDIRs took each their own lock, shared rtnc-1…3 and
	// 10.251.77.x, and one's clients talked to the other's brokers).
	netnsLockFile = "/tmp/ringtail-netns.lock"
)

// Network is a private IPv4 network of n network namespaces, one per broker, joined by a
// bridge, that the test process reaches too; it cuts brokers off one another. Only root can
// make one. Close it (NewNetworkT does).
type Network struct {
	ip   string   // the `ip` binary
	n    int      // namespaces 1…n
	lock *os.File // held from NewNetwork to Close
	cuts map[[2]int]bool
}

// NewNetwork makes a network of n namespaces. It waits (until ctx ends) for another test
// process's network to be closed first. An error wrapping ErrNoNetwork means this machine
// or user cannot make one at all.
func NewNetwork(ctx context.Context, n int) (_ *Network, err error) {
	if n < 1 || n > netnsMaxNodes {
		return nil, fmt.Errorf("cluster: a network of %d namespaces (1…%d)", n, netnsMaxNodes)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: needs root", ErrNoNetwork)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("%w: no `ip` command (Debian: apt-get install iproute2): %v", ErrNoNetwork, err)
	}
	lock, err := lockNetwork(ctx)
	if err != nil {
		return nil, err
	}
	nw := &Network{ip: ip, n: n, lock: lock, cuts: map[[2]int]bool{}}
	defer func() {
		if err != nil {
			nw.Close()
		}
	}()
	// Under the lock, anything under our names was left by a test process that died.
	if err := nw.sweep(); err != nil {
		return nil, err
	}
	if out, err := nw.run("", "-4", "-o", "addr", "show"); err != nil {
		return nil, err
	} else if strings.Contains(out, " "+netnsSubnet+".") {
		return nil, fmt.Errorf("%w: %s.0/24 is in use here:\n%s", ErrNoNetwork, netnsSubnet, out)
	}
	if _, err := nw.run("", "netns", "add", netnsHub); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoNetwork, err)
	}
	steps := [][]string{
		{netnsHub, "link", "set", "lo", "up"},
		{netnsHub, "link", "add", "br0", "type", "bridge"},
		{netnsHub, "link", "set", "br0", "up"},
		{"", "link", "add", netnsHostLink, "type", "veth", "peer", "name", "host", "netns", netnsHub},
		{netnsHub, "link", "set", "host", "master", "br0", "up"},
		{"", "addr", "add", netnsHostIP + "/24", "dev", netnsHostLink},
		{"", "link", "set", netnsHostLink, "up"},
	}
	for id := 1; id <= n; id++ {
		ns, port := nw.Namespace(id), "b"+strconv.Itoa(id)
		steps = append(steps,
			[]string{"", "netns", "add", ns},
			[]string{ns, "link", "set", "lo", "up"},
			[]string{netnsHub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{netnsHub, "link", "set", port, "master", "br0", "up"},
			[]string{ns, "addr", "add", nw.Host(id) + "/24", "dev", "eth0"},
			[]string{ns, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if _, err := nw.run(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	// A bridge port may take a moment to forward; wait until the test process reaches every
	// namespace and the namespaces reach one another, or the brokers would not form a cluster
	// and the test would fail far from the cause.
	for id := 1; id <= n; id++ {
		for _, from := range []int{0, id%n + 1} {
			err := Poll(ctx, func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, 2*time.Second) // a lost SYN is retried after 1 s
				defer cancel()
				return nw.Reachable(ctx, from, id)
			})
			if err != nil {
				return nil, fmt.Errorf("cluster: network namespaces made but %s does not reach %s: %w", nw.name(from), nw.name(id), err)
			}
		}
	}
	return nw, nil
}

// lockNetwork takes the machine-wide lock of the network's names and addresses.
func lockNetwork(ctx context.Context) (*os.File, error) {
	path := netnsLockFile
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: network lock: %w", err)
	}
	err = Poll(ctx, func(context.Context) error {
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			return fmt.Errorf("%s is held by another test process: %w", path, err)
		}
		return nil
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: network lock: %w", err)
	}
	return f, nil
}

// sweep deletes every namespace under our prefix and the test process's veth end.
func (nw *Network) sweep() error {
	out, err := nw.run("", "netns", "list")
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(name, netnsPrefix) {
			if _, err := nw.run("", "netns", "del", name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Normally gone with its peer in the hub; a half-made network may have left it alone.
	if _, err := nw.run("", "link", "show", netnsHostLink); err == nil {
		if _, err := nw.run("", "link", "del", netnsHostLink); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close deletes the namespaces (taking the bridge, veths and cut rules with them) and
// releases the lock. The brokers in them should be stopped first: a namespace with a process
// in it lives on, unnamed, until that process exits. Closing again does nothing.
func (nw *Network) Close() error {
	if nw.lock == nil {
		return nil
	}
	err := nw.sweep()
	nw.lock.Close() // releases the flock
	nw.lock = nil
	return err
}

// Size is the number of broker namespaces.
func (nw *Network) Size() int { return nw.n }

// Host is the address of broker id (1…Size) in its namespace.
func (nw *Network) Host(id int) string { return netnsSubnet + "." + strconv.Itoa(id) }

// Namespace is the name of broker id's namespace.
func (nw *Network) Namespace(id int) string { return netnsPrefix + strconv.Itoa(id) }

// Exec is the command prefix that runs a program in broker id's namespace (`ip netns exec`,
// which execs the program in place: its pid is the program's, so signals reach it).
func (nw *Network) Exec(id int) []string { return []string{nw.ip, "netns", "exec", nw.Namespace(id)} }

// Port is broker id's k-th port: 0 its Kafka listener, then one per ClusterConfig.Ports
// name. Every namespace is the broker's own, so fixed ports are free.
func (nw *Network) Port(k int) int { return netnsFirstPort + k }

// Cut cuts brokers a and b off each other, both ways: rules in a's namespace drop what b
// sends to a and what a sends to b, so neither a connection nor a segment of one gets
// through in either direction. Both keep reaching the test process and the other brokers.
func (nw *Network) Cut(a, b int) error {
	if err := nw.check(a, b); err != nil {
		return err
	}
	if nw.cuts[[2]int{a, b}] {
		return nil
	}
	for _, dir := range []string{"from", "to"} {
		if _, err := nw.run(nw.Namespace(a), "rule", "add", "priority", netnsRulePrio, dir, nw.Host(b), "blackhole"); err != nil {
			return err
		}
	}
	nw.cuts[[2]int{a, b}] = true
	return nil
}

// Heal undoes Cut(a, b).
func (nw *Network) Heal(a, b int) error {
	if err := nw.check(a, b); err != nil {
		return err
	}
	if !nw.cuts[[2]int{a, b}] {
		return nil
	}
	for _, dir := range []string{"from", "to"} {
		if _, err := nw.run(nw.Namespace(a), "rule", "del", "priority", netnsRulePrio, dir, nw.Host(b), "blackhole"); err != nil {
			return err
		}
	}
	delete(nw.cuts, [2]int{a, b})
	return nil
}

// Isolate cuts broker id off every other broker (it still reaches the test process).
func (nw *Network) Isolate(id int) error {
	for other := 1; other <= nw.n; other++ {
		if other != id {
			if err := nw.Cut(id, other); err != nil {
				return err
			}
		}
	}
	return nil
}

// HealAll undoes every cut.
func (nw *Network) HealAll() error {
	var errs []error
	for c := range nw.cuts {
		errs = append(errs, nw.Heal(c[0], c[1]))
	}
	return errors.Join(errs...)
}

func (nw *Network) check(a, b int) error {
	if a < 1 || a > nw.n || b < 1 || b > nw.n || a == b {
		return fmt.Errorf("cluster: no cut between brokers %d and %d in a network of %d", a, b, nw.n)
	}
	return nil
}

// Reachable checks once that a TCP connection from broker from's namespace (0: the test
// process) to an address of broker to is accepted, within ctx (a cut one is silently dropped,
// so ctx bounds the try).
func (nw *Network) Reachable(ctx context.Context, from, to int) error {
	var l net.Listener
	err := nw.inNamespace(to, func() (err error) {
		l, err = net.Listen("tcp", net.JoinHostPort(nw.Host(to), "0"))
		return err
	})
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := nw.Dial(ctx, from, l.Addr().String())
	if err != nil {
		return err
	}
	return c.Close()
}

// Dial connects to addr from broker from's namespace (0: the test process's).
func (nw *Network) Dial(ctx context.Context, from int, addr string) (net.Conn, error) {
	var c net.Conn
	err := nw.inNamespace(from, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// inNamespace runs fn on an OS thread moved into broker id's namespace (0: fn runs where it
// is). A socket belongs to the namespace it was made in, so one made by fn stays there after
// the thread moves back.
func (nw *Network) inNamespace(id int, fn func() error) error {
	if id == 0 {
		return fn()
	}
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", nw.Namespace(id)))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("cluster: entering %s: %w", nw.Namespace(id), err)
	}
	defer func() {
		// A thread that cannot move back stays locked: it then ends with this goroutine
		// instead of running other goroutines in the wrong namespace.
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// name says where a namespace number is, for messages.
func (nw *Network) name(id int) string {
	if id == 0 {
		return "the test process"
	}
	return "namespace " + nw.Namespace(id)
}

// run runs `ip [-n ns] args…` and returns its output; the error names the command and its
// output.
func (nw *Network) run(ns string, args ...string) (string, error) {
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, nw.ip, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cluster: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
