package cluster

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) {
	code := m.Run()
	CleanupBinary()
	os.Exit(code)
}

func produceOne(t *testing.T, cl *kgo.Client, topic, value string) {
	t.Helper()
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func consumeOne(t *testing.T, b *Broker, topic string) string {
	t.Helper()
	cl := b.ClientT(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := cl.PollRecords(ctxT(t), 1)
	if errs := fs.Errors(); len(errs) > 0 {
		t.Fatalf("consume: %v", errs)
	}
	recs := fs.Records()
	if len(recs) == 0 {
		t.Fatal("consume: no record")
	}
	return string(recs[0].Value)
}

// TestBrokerLifecycle: a broker answers once started, stops answering while
// paused and answers again when resumed, keeps its data and address across
// kill -9 and a start, and exits cleanly on Stop.
func TestBrokerLifecycle(t *testing.T) {
	b := StartBrokerT(t, BrokerConfig{Args: []string{"--auto-create-topics=true"}})
	produceOne(t, b.ClientT(t, kgo.AllowAutoTopicCreation()), "kept", "v1")

	if err := b.Pause(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := PingApiVersions(ctx, b.Addr())
	cancel()
	if err == nil {
		t.Fatal("a paused broker answered ApiVersions")
	}
	if err := b.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitReady(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	addr := b.Addr()
	if err := b.Kill(); err != nil || b.Running() {
		t.Fatalf("Kill: %v, running %v", err, b.Running())
	}
	if err := b.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if b.Addr() != addr {
		t.Fatalf("address changed across a restart: %s → %s", addr, b.Addr())
	}
	if got := consumeOne(t, b, "kept"); got != "v1" {
		t.Fatalf("after kill -9 and start: read %q, want v1", got)
	}
	if err := b.WaitLog(ctxT(t), 0, "ringtail started"); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(ctxT(t)); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if err := b.Stop(); err != nil || b.Running() {
		t.Fatalf("Stop: %v (want a clean exit), running %v", err, b.Running())
	}
	if n := strings.Count(b.Log(), MarkerPrefix+"start #"); n != 3 {
		t.Fatalf("%d starts in the log, want 3", n)
	}
}

// TestBrokerPicksAnotherPortWhenTaken: when the picked port is taken before
// the first start, the broker comes up on another one.
func TestBrokerPicksAnotherPortWhenTaken(t *testing.T) {
	b, err := NewBroker(BrokerConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill() })
	taken := b.Addr()
	l, err := net.Listen("tcp", taken)
	if err != nil {
		t.Skipf("cannot take the picked port %s ourselves: %v", taken, err)
	}
	defer l.Close()
	if err := b.Start(ctxT(t)); err != nil {
		t.Fatalf("Start with its port taken: %v\n%s", err, b.LogTail(4096))
	}
	if b.Addr() == taken {
		t.Fatalf("broker claims the taken address %s", taken)
	}
}

// TestClusterPicksOtherPortsWhenOneIsTaken: a Raft cluster whose first start finds one
// broker's port taken starts again on new addresses (and new data directories: a Raft node's
// holds its address).
func TestClusterPicksOtherPortsWhenOneIsTaken(t *testing.T) {
	c, err := NewCluster(ClusterConfig{
		Brokers: 3,
		Dir:     t.TempDir(),
		Ports:   []string{"raft"},
		BrokerArgs: func(b *Broker, all []*Broker) []string {
			return []string{"--node-id", strconv.Itoa(b.ID()), "--raft-addr", b.ExtraAddr("raft"), "--peers", Peers(all, "raft")}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Kill() })
	taken := c.Broker(2).Addr()
	l, err := net.Listen("tcp", taken)
	if err != nil {
		t.Skipf("cannot take the picked port %s ourselves: %v", taken, err)
	}
	defer l.Close()
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatalf("Start with a port taken: %v", err)
	}
	if c.Broker(2).Addr() == taken {
		t.Fatalf("broker 2 claims the taken address %s", taken)
	}
}

// TestBrokerExitDuringStart: a broker that cannot start is reported with
// its log at once, not after the ready timeout.
func TestBrokerExitDuringStart(t *testing.T) {
	b, err := NewBroker(BrokerConfig{DataDir: t.TempDir(), Args: []string{"--no-such-flag"}, ReadyTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(ctxT(t))
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("Start with a bad flag: %v; want ErrExited and the log", err)
	}
}

// TestCluster: three brokers start together, each on its own addresses and
// data directory with its own flags; one is killed and started alone; all
// stop cleanly together and start again (a cold restart).
func TestCluster(t *testing.T) {
	c := StartClusterT(t, ClusterConfig{
		Brokers: 3,
		Ports:   []string{"raft"},
		Args:    []string{"--auto-create-topics=true"},
		BrokerArgs: func(b *Broker, all []*Broker) []string {
			return []string{"--node-id", strconv.Itoa(b.ID())}
		},
		LogDir: t.TempDir(),
	})
	seen := map[string]bool{}
	for i, b := range c.Brokers() {
		if b.ID() != i+1 || c.Broker(i+1) != b {
			t.Fatalf("broker %d has ID %d", i+1, b.ID())
		}
		for _, a := range []string{b.Addr(), b.ExtraAddr("raft"), b.DataDir()} {
			if a == "" || seen[a] {
				t.Fatalf("broker %d: address or directory %q empty or shared", b.ID(), a)
			}
			seen[a] = true
		}
		// --node-id reached the process: the broker names itself by it.
		meta, err := b.AdminT(t).BrokerMetadata(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(meta.Brokers) != 1 || int(meta.Brokers[0].NodeID) != b.ID() {
			t.Fatalf("broker %d reports brokers %+v", b.ID(), meta.Brokers)
		}
	}
	if want := "1@" + c.Broker(1).ExtraAddr("raft") + ",2@" + c.Broker(2).ExtraAddr("raft") + ",3@" + c.Broker(3).ExtraAddr("raft"); Peers(c.Brokers(), "raft") != want {
		t.Fatalf("Peers: %s, want %s", Peers(c.Brokers(), "raft"), want)
	}
	produceOne(t, c.Broker(2).ClientT(t, kgo.AllowAutoTopicCreation()), "c", "on-2")

	if err := c.Broker(2).Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxT(t)); err != nil { // starts only what is not running
		t.Fatal(err)
	}
	if got := consumeOne(t, c.Broker(2), "c"); got != "on-2" {
		t.Fatalf("broker 2 after a restart: %q", got)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Start(ctxT(t)); err != nil {
		t.Fatalf("cold restart: %v", err)
	}
	if got := consumeOne(t, c.Broker(2), "c"); got != "on-2" {
		t.Fatalf("broker 2 after a cold restart: %q", got)
	}
	for _, b := range c.Brokers() {
		log, err := os.ReadFile(filepath.Join(c.cfg.LogDir, "broker-"+strconv.Itoa(b.ID())+".log"))
		if err != nil || !strings.Contains(string(log), "ringtail started") {
			t.Fatalf("broker %d log file: %v", b.ID(), err)
		}
	}
}

// TestClusterDistinctHosts: each broker listens on its own loopback address.
func TestClusterDistinctHosts(t *testing.T) {
	if l, err := net.Listen("tcp", "127.0.0.11:0"); err != nil {
		t.Skipf("127.0.0.11 not usable here: %v", err)
	} else {
		l.Close()
	}
	c := StartClusterT(t, ClusterConfig{Brokers: 2, DistinctHosts: true})
	for _, b := range c.Brokers() {
		host, _, _ := net.SplitHostPort(b.Addr())
		if want := "127.0.0." + strconv.Itoa(10+b.ID()); host != want {
			t.Fatalf("broker %d on %s, want host %s", b.ID(), b.Addr(), want)
		}
	}
	if _, err := c.AdminT(t).BrokerMetadata(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}
