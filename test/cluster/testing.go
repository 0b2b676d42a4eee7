package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TB is the part of testing.TB the helpers below use; *testing.T and
// *testing.B satisfy it. It is declared here so that this package does not
// import package testing: perf/ (a harness, not a test) imports it too.
type TB interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// logTailOnFailure is how much of each broker's log a failed test prints.
const logTailOnFailure = 64 << 10

// StartBrokerT starts a broker for a test (DataDir defaults to a fresh
// t.TempDir()) and waits until it answers. It fails the test if the broker
// does not come up; when the test ends the broker is killed, and if the
// test failed the end of its log is printed.
func StartBrokerT(t TB, cfg BrokerConfig) *Broker {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	b, err := NewBroker(cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	// Registered before the start, so that a broker that fails to come up
	// is killed and its log shown too.
	t.Cleanup(func() {
		b.Kill()
		if t.Failed() {
			t.Logf("%s log (last %d KiB):\n%s", b.Name(), logTailOnFailure>>10, b.LogTail(logTailOnFailure))
		}
	})
	if err := b.Start(context.Background()); err != nil {
		t.Fatalf("%v", err)
	}
	return b
}

// StartClusterT starts a cluster for a test (Dir defaults to a fresh
// t.TempDir()) and waits until every broker answers. It fails the test if
// one does not come up; when the test ends every broker is killed, and if
// the test failed the end of each log is printed.
func StartClusterT(t TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	c, err := NewCluster(cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			for _, b := range c.brokers {
				t.Logf("%s log (last %d KiB):\n%s", b.Name(), logTailOnFailure>>10, b.LogTail(logTailOnFailure))
			}
		}
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("%v", err)
	}
	return c
}

// ClientT is Client for a test: it fails the test on error and closes the
// client when the test ends.
func (b *Broker) ClientT(t TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return clientT(t, b.Client, opts)
}

// AdminT is Admin for a test: it fails the test on error and closes the
// client when the test ends.
func (b *Broker) AdminT(t TB, opts ...kgo.Opt) *kadm.Client {
	t.Helper()
	return kadm.NewClient(clientT(t, b.Client, opts))
}

// ClientT is Client for a test: it fails the test on error and closes the
// client when the test ends.
func (c *Cluster) ClientT(t TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return clientT(t, c.Client, opts)
}

// AdminT is Admin for a test: it fails the test on error and closes the
// client when the test ends.
func (c *Cluster) AdminT(t TB, opts ...kgo.Opt) *kadm.Client {
	t.Helper()
	return kadm.NewClient(clientT(t, c.Client, opts))
}

func clientT(t TB, newClient func(...kgo.Opt) (*kgo.Client, error), opts []kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := newClient(opts...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// SkipTB is a TB that can also skip and report an error without stopping.
type SkipTB interface {
	TB
	Skipf(format string, args ...any)
	Errorf(format string, args ...any)
}

// NewNetworkT makes a Network of n namespaces for a test, and skips the test, saying why,
// where this machine or user cannot (see ErrNoNetwork). The network is closed when the test
// ends, after the cleanups registered later (a cluster started on it stops first).
func NewNetworkT(t SkipTB, n int) *Network {
	t.Helper()
	// Another test process's network (make test in another checkout) may hold the lock for
	// a while: a minute is plenty for one test to finish with it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := NewNetwork(ctx, n)
	if errors.Is(err, ErrNoNetwork) {
		t.Skipf("network cuts need network namespaces: %v", err)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := nw.Close(); err != nil {
			t.Errorf("closing the test network: %v", err)
		}
	})
	return nw
}
