package cluster

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unreachable checks that no TCP connection gets from namespace from to namespace to. A cut
// drops packets silently, so each try is bounded: a connection on a local bridge takes well
// under a millisecond, a second is only there for a machine that is very busy.
func unreachable(t *testing.T, nw *Network, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := nw.Reachable(ctx, from, to); err == nil {
		t.Errorf("%s reaches %s across a cut", nw.name(from), nw.name(to))
	}
}

func reachable(t *testing.T, nw *Network, from, to int) {
	t.Helper()
	if err := nw.Reachable(ctxT(t), from, to); err != nil {
		t.Errorf("%s does not reach %s: %v", nw.name(from), nw.name(to), err)
	}
}

// TestNetworkCut: a cut between two namespaces stops connections both ways and nothing else;
// healed, they connect again; Close leaves no namespace behind.
func TestNetworkCut(t *testing.T) {
	nw := NewNetworkT(t, 3)
	if err := nw.Cut(1, 2); err != nil {
		t.Fatal(err)
	}
	unreachable(t, nw, 1, 2)
	unreachable(t, nw, 2, 1)
	reachable(t, nw, 1, 3)
	reachable(t, nw, 3, 2)
	reachable(t, nw, 0, 1)
	reachable(t, nw, 0, 2)
	if err := nw.HealAll(); err != nil {
		t.Fatal(err)
	}
	reachable(t, nw, 1, 2)
	reachable(t, nw, 2, 1)

	if err := nw.Isolate(3); err != nil {
		t.Fatal(err)
	}
	unreachable(t, nw, 1, 3)
	unreachable(t, nw, 3, 2)
	reachable(t, nw, 0, 3)
	reachable(t, nw, 1, 2)

	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := (&Network{ip: nw.ip}).run("", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, netnsPrefix) {
		t.Fatalf("namespaces left after Close:\n%s", out)
	}
}

// TestClusterOnNetwork: a broker started on a Network runs inside its namespace (its pid is
// the broker's, not the wrapper's), listens on its namespace address and answers the test.
func TestClusterOnNetwork(t *testing.T) {
	nw := NewNetworkT(t, 1)
	c := StartClusterT(t, ClusterConfig{Brokers: 1, Network: nw, Ports: []string{"extra"}})
	b := c.Broker(1)
	if want := nw.Host(1) + ":" + strconv.Itoa(nw.Port(0)); b.Addr() != want {
		t.Fatalf("address %s, want %s", b.Addr(), want)
	}
	if want := nw.Host(1) + ":" + strconv.Itoa(nw.Port(1)); b.ExtraAddr("extra") != want {
		t.Fatalf("extra address %s, want %s", b.ExtraAddr("extra"), want)
	}
	pid := b.Process().Pid()
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	theirs, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if exe != b.cfg.Bin || theirs == self {
		t.Fatalf("pid %d runs %s in %s (the test is in %s), want %s in its own namespace", pid, exe, theirs, self, b.cfg.Bin)
	}
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}
