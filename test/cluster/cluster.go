package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ClusterConfig says how to run N brokers together.
type ClusterConfig struct {
	// Brokers is how many (N ≥ 1); they are numbered 1…N.
	Brokers int
	// Dir holds the data directories Dir/broker-<id> (required).
	Dir string
	// Bin is the broker binary; empty: Binary().
	Bin string
	// Args are `serve` flags for every broker.
	Args []string
	// BrokerArgs, when set, gives each broker's own flags, once every
	// address is fixed, for example
	//
	//	func(b *Broker, all []*Broker) []string {
	//		return []string{"--node-id", strconv.Itoa(b.ID()), "--raft-addr", b.ExtraAddr("raft"),
	//			"--peers", Peers(all, "raft")}
	//	}
	//
	// It may be called again, with new addresses, if a picked port was
	// taken by another process before the first start.
	BrokerArgs func(b *Broker, all []*Broker) []string
	// Ports names further addresses each broker gets besides its Kafka
	// listener (ExtraAddr), e.g. "raft", "replication".
	Ports []string
	// DistinctHosts puts broker i on its own loopback address,
	// 127.0.0.<10+i>, instead of all on 127.0.0.1, so that brokers can be
	// told apart by address. A cut by address would still be one-sided (a
	// broker's outgoing connections leave from 127.0.0.1): Network cuts.
	DistinctHosts bool
	// Network, when set, runs broker i in namespace i of that network (NewNetwork), on its
	// address there and fixed ports (Network.Port), so that a test can cut brokers off one
	// another (Network.Cut, Isolate). It needs at least Brokers namespaces; not with
	// DistinctHosts.
	Network *Network
	// Env is added to every broker's environment.
	Env []string
	// LogDir, when set, also receives each broker's output in
	// LogDir/broker-<id>.log.
	LogDir string
	// OnStart, when set, is called with a broker and its process id each
	// time that broker's process has been started (BrokerConfig.OnStart).
	OnStart func(b *Broker, pid int)

	ReadyTimeout time.Duration // per broker; default DefaultReadyTimeout
	StopTimeout  time.Duration // per broker; default DefaultStopTimeout
}

// Cluster is N brokers started and stopped together, each with its own
// addresses and data directory. Until the broker has cluster flags
// (--node-id/--raft-addr/--peers, issue 11) a Cluster of N is N independent
// single-node brokers; with them a test passes the flags in BrokerArgs and
// nothing else changes.
type Cluster struct {
	cfg     ClusterConfig
	brokers []*Broker
	ready   bool // started once: addresses are fixed
}

// NewCluster checks cfg, picks every address and computes every broker's
// flags; it starts nothing.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.Brokers < 1 {
		return nil, fmt.Errorf("cluster: %d brokers", cfg.Brokers)
	}
	if cfg.Dir == "" {
		return nil, errors.New("cluster: ClusterConfig.Dir is required")
	}
	if nw := cfg.Network; nw != nil && (nw.Size() < cfg.Brokers || cfg.DistinctHosts) {
		return nil, fmt.Errorf("cluster: %d brokers on a network of %d namespaces (DistinctHosts %v)", cfg.Brokers, nw.Size(), cfg.DistinctHosts)
	}
	c := &Cluster{cfg: cfg}
	for id := 1; id <= cfg.Brokers; id++ {
		bc := BrokerConfig{
			ID:           id,
			Bin:          cfg.Bin,
			Host:         "127.0.0.1",
			DataDir:      filepath.Join(cfg.Dir, fmt.Sprintf("broker-%d", id)),
			Env:          cfg.Env,
			ReadyTimeout: cfg.ReadyTimeout,
			StopTimeout:  cfg.StopTimeout,
		}
		if cfg.DistinctHosts {
			bc.Host = fmt.Sprintf("127.0.0.%d", 10+id)
		}
		if cfg.Network != nil {
			bc.Host, bc.Wrap = cfg.Network.Host(id), cfg.Network.Exec(id)
		}
		if cfg.LogDir != "" {
			bc.LogFile = filepath.Join(cfg.LogDir, fmt.Sprintf("broker-%d.log", id))
		}
		b, err := newBroker(bc) // no address yet: assign picks them, all at once
		if err != nil {
			return nil, err
		}
		if cfg.OnStart != nil {
			b.cfg.OnStart = func(pid int) { cfg.OnStart(b, pid) }
		}
		c.brokers = append(c.brokers, b)
	}
	if err := c.assign(); err != nil {
		return nil, err
	}
	return c, nil
}

// assign picks every broker's addresses (all listeners open at once, so no
// two brokers get one port) and computes their flags.
func (c *Cluster) assign() error {
	names := append([]string{""}, c.cfg.Ports...)
	for _, b := range c.brokers {
		addrs, err := c.addrs(b.cfg.Host, len(names))
		if err != nil {
			return err
		}
		b.cfg.Addr = addrs[0]
		b.cfg.ExtraAddrs = map[string]string{}
		for i, name := range names[1:] {
			b.cfg.ExtraAddrs[name] = addrs[i+1]
		}
	}
	for _, b := range c.brokers {
		b.args = append([]string(nil), c.cfg.Args...)
		if c.cfg.BrokerArgs != nil {
			b.args = append(b.args, c.cfg.BrokerArgs(b, c.brokers)...)
		}
	}
	return nil
}

// addrs picks n addresses on host: free ports, or on a Network its fixed ports (the host is
// not an address of this process's namespace, and each namespace is one broker's own).
func (c *Cluster) addrs(host string, n int) ([]string, error) {
	if c.cfg.Network == nil {
		return FreeAddrs(host, n)
	}
	out := make([]string, n)
	for k := range out {
		out[k] = net.JoinHostPort(host, strconv.Itoa(c.cfg.Network.Port(k)))
	}
	return out, nil
}

// StartCluster is NewCluster and Start.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	c, err := NewCluster(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

// Start starts every broker that is not running, all at once (a Raft
// member cannot become ready alone), and waits until each answers
// ApiVersions. It is also the cold restart after Stop or Kill. On the first
// start, if a broker found one of its ports taken by another process, every
// broker is killed, given new addresses and started again, on new data
// directories where this start made them.
func (c *Cluster) Start(ctx context.Context) error {
	// Data directories this first start creates: a start again with new addresses begins them
	// anew (a Raft node's directory holds its address, which may not change).
	fresh := map[*Broker]bool{}
	if !c.ready {
		for _, b := range c.brokers {
			if _, err := os.Stat(b.cfg.DataDir); errors.Is(err, os.ErrNotExist) {
				fresh[b] = true
			}
		}
	}
	for attempt := 1; ; attempt++ {
		var starting []*Broker
		from := map[*Broker]int{}
		for _, b := range c.brokers {
			if b.Running() {
				continue
			}
			from[b] = b.LogLen()
			if err := b.launch(); err != nil {
				return err
			}
			starting = append(starting, b)
		}
		errs := make([]error, len(starting))
		var wg sync.WaitGroup
		for i, b := range starting {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = b.WaitReady(ctx)
			}()
		}
		wg.Wait()
		err := errors.Join(errs...)
		if err == nil {
			c.ready = true
			return nil
		}
		lost := false
		for _, b := range starting {
			lost = lost || b.lostAddrRace(from[b])
		}
		if c.ready || attempt == 3 || !lost {
			return err
		}
		if kerr := c.Kill(); kerr != nil {
			return errors.Join(err, kerr)
		}
		for b := range fresh {
			if rerr := os.RemoveAll(b.cfg.DataDir); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		if aerr := c.assign(); aerr != nil {
			return errors.Join(err, aerr)
		}
	}
}

// Network is the network the brokers run in (ClusterConfig.Network), or nil.
func (c *Cluster) Network() *Network { return c.cfg.Network }

// Brokers are the brokers, in ID order (index i holds broker i+1).
func (c *Cluster) Brokers() []*Broker { return append([]*Broker(nil), c.brokers...) }

// Broker is broker id (1…N).
func (c *Cluster) Broker(id int) *Broker { return c.brokers[id-1] }

// Addrs are the brokers' Kafka addresses, in ID order.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.brokers))
	for i, b := range c.brokers {
		out[i] = b.Addr()
	}
	return out
}

// each runs fn on every broker at once and joins the errors.
func (c *Cluster) each(fn func(*Broker) error) error {
	errs := make([]error, len(c.brokers))
	var wg sync.WaitGroup
	for i, b := range c.brokers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(b); err != nil {
				errs[i] = fmt.Errorf("%s: %w", b.Name(), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stop stops every running broker (SIGTERM), all at once.
func (c *Cluster) Stop() error { return c.each((*Broker).Stop) }

// Kill kills every running broker (SIGKILL), all at once: a power cut of
// the whole cluster as far as processes go (the page cache survives).
func (c *Cluster) Kill() error { return c.each((*Broker).Kill) }

// Client returns a franz-go client seeded with every broker. Close it.
func (c *Cluster) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Addrs()...)}, opts...)...)
}

// Admin returns a kadm client over a new client seeded with every broker.
// Close it.
func (c *Cluster) Admin(opts ...kgo.Opt) (*kadm.Client, error) {
	cl, err := c.Client(opts...)
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// Peers formats brokers as id@address,… for a --peers flag, with each
// broker's ExtraAddr(port), or its Kafka address when port is "".
func Peers(brokers []*Broker, port string) string {
	parts := make([]string, len(brokers))
	for i, b := range brokers {
		addr := b.Addr()
		if port != "" {
			addr = b.ExtraAddr(port)
		}
		parts[i] = fmt.Sprintf("%d@%s", b.ID(), addr)
	}
	return strings.Join(parts, ",")
}
