package raftlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/ringtail/ringtail/meta"
)

// These tests run real NodeHosts on 127.0.0.1, in this process, one after another (an
// election takes 1 to 2 s; the machine may have two cores). They wait for conditions, never
// for fixed times; waitTimeout only bounds a wait that would otherwise hang.
const waitTimeout = 30 * time.Second

// testCluster is n nodes (replica i+1 is logs[i]) with fixed addresses and directories, so a
// node can be stopped and started again as itself.
type testCluster struct {
	t       *testing.T
	dirs    []string
	addrs   []string
	members map[uint64]string
	logs    []*Log // nil while stopped
	// snapshotEntries, compactionOverhead: Config fields of every node started (0: default).
	snapshotEntries, compactionOverhead uint64
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, members: make(map[uint64]string), logs: make([]*Log, n)}
	root := t.TempDir()
	c.addrs = freeAddrs(t, n)
	for i := 0; i < n; i++ {
		c.dirs = append(c.dirs, filepath.Join(root, fmt.Sprintf("node%d", i+1), "raft"))
		c.members[uint64(i+1)] = c.addrs[i]
	}
	t.Cleanup(func() {
		for i := range c.logs {
			c.stop(i)
		}
	})
	return c
}

// freeAddrs returns n loopback addresses with distinct ports the kernel handed out: all are
// held until the last is chosen, as a port closed at once may be handed out again.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

func (c *testCluster) config(i int) Config {
	return Config{
		Dir:                c.dirs[i],
		ReplicaID:          uint64(i + 1),
		RaftAddress:        c.addrs[i],
		InitialMembers:     c.members,
		SnapshotEntries:    c.snapshotEntries,
		CompactionOverhead: c.compactionOverhead,
	}
}

func (c *testCluster) start(i int) *Log {
	c.t.Helper()
	return c.startWith(i, c.config(i))
}

func (c *testCluster) startWith(i int, cfg Config) *Log {
	c.t.Helper()
	l, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("node %d: %v", i+1, err)
	}
	c.logs[i] = l
	return l
}

func (c *testCluster) startAll() {
	c.t.Helper()
	for i := range c.logs {
		c.start(i)
	}
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	if c.logs[i] == nil {
		return
	}
	if err := c.logs[i].Close(); err != nil {
		c.t.Errorf("closing node %d: %v", i+1, err)
	}
	c.logs[i] = nil
}

func (c *testCluster) running() []*Log {
	var out []*Log
	for _, l := range c.logs {
		if l != nil {
			out = append(out, l)
		}
	}
	return out
}

// waitLeader waits until every running node names the same running node as leader, and
// returns its index.
func (c *testCluster) waitLeader() int {
	c.t.Helper()
	leader := -1
	waitFor(c.t, "a leader every running node agrees on", func() bool {
		leader = -1
		for _, l := range c.running() {
			id, _, ok := l.LeaderID()
			if !ok || c.logs[id-1] == nil || (leader >= 0 && leader != int(id-1)) {
				return false
			}
			leader = int(id - 1)
		}
		return leader >= 0
	})
	return leader
}

// waitAgree waits until every running node's state encodes to the same bytes, and returns
// that state.
func (c *testCluster) waitAgree() *meta.State {
	c.t.Helper()
	var st *meta.State
	waitFor(c.t, "running nodes agreeing on the state", func() bool {
		logs := c.running()
		st = logs[0].State()
		for _, l := range logs[1:] {
			if !bytes.Equal(l.State().Snapshot(), st.Snapshot()) {
				return false
			}
		}
		return true
	})
	return st
}

// waitFor waits for cond, checking it every few milliseconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func proposeOK(t *testing.T, l *Log, cmd meta.Command) meta.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	res, err := l.Propose(ctx, cmd)
	if err != nil {
		t.Fatalf("node %d: %T: %v", l.ReplicaID(), cmd, err)
	}
	return res
}

// TestThreeNodesAgree: three nodes form one shard; proposals from every node (the followers'
// are forwarded to the leader) commit once, each proposer gets what Apply said, and every node
// ends with the same state, which its watchers saw arrive.
func TestThreeNodesAgree(t *testing.T) {
	c := newTestCluster(t, 3)
	start := time.Now()
	c.startAll()
	// Proposed before any leader exists: Propose waits through ErrShardNotReady.
	proposeOK(t, c.logs[2], meta.InitCluster{ClusterID: "c1"})
	leader := c.waitLeader()
	t.Logf("first leader: node %d, %v after the start", leader+1, time.Since(start).Round(time.Millisecond))

	follower := (leader + 1) % 3
	st, changed := c.logs[follower].Watch()
	res := proposeOK(t, c.logs[follower], topic("from-follower", 1))
	if res.Topic.Name != "from-follower" || res.Topic.Partitions != 1 {
		t.Fatalf("a follower's proposal returned %+v", res.Topic)
	}
	select {
	case <-changed:
	default:
		t.Fatal("the proposer's watcher was not woken by the time Propose returned")
	}
	if _, ok := st.Topic("from-follower"); ok {
		t.Fatal("a published state changed")
	}
	proposeOK(t, c.logs[leader], topic("from-leader", 2))
	ids := map[int64]bool{}
	for _, l := range c.logs {
		res := proposeOK(t, l, meta.AllocateProducerIDs{Count: 10})
		if ids[res.ProducerID] {
			t.Fatalf("producer id block %d handed out twice", res.ProducerID)
		}
		ids[res.ProducerID] = true
	}
	// A rejection comes back as Apply's error, from a follower too.
	_, err := c.logs[follower].Propose(context.Background(), topic("from-leader", 3))
	if !errors.Is(err, meta.ErrTopicExists) || errors.Is(err, meta.ErrStaleCommand) {
		t.Fatalf("duplicate topic from a follower: %v", err)
	}

	final := c.waitAgree()
	if final.ClusterID() != "c1" || len(final.Topics()) != 2 || final.NextProducerID() != 30 {
		t.Fatalf("agreed state: cluster %q, %d topics, next producer id %d", final.ClusterID(), len(final.Topics()), final.NextProducerID())
	}
	// A linearizable read on a follower holds everything committed before it.
	got, err := c.logs[follower].SyncState(context.Background())
	if err != nil || !bytes.Equal(got.Snapshot(), final.Snapshot()) {
		t.Fatalf("SyncState: %v", err)
	}
}

// TestLeaderStopElectsAnother: stopping the leader elects another within seconds; a proposal
// made on a follower meanwhile commits once it leads; proposals continue through the
// survivors; the old leader comes back as a follower and catches up.
func TestLeaderStopElectsAnother(t *testing.T) {
	c := newTestCluster(t, 3)
	c.startAll()
	proposeOK(t, c.logs[0], meta.InitCluster{ClusterID: "c"})
	old := c.waitLeader()
	survivor := (old + 1) % 3
	_, news := c.logs[survivor].WatchLeader()

	stopped := time.Now()
	c.stop(old)
	// Proposed while the survivors still follow the stopped leader: forwarded to it and
	// lost, then proposed again once the leader changes.
	proposeOK(t, c.logs[survivor], topic("during", 2))
	t.Logf("a follower's proposal made as the leader stopped committed %v later", time.Since(stopped).Round(time.Millisecond))
	next := c.waitLeader()
	t.Logf("leader node %d stopped; node %d leads", old+1, next+1)
	if next == old {
		t.Fatal("the stopped node is still the leader")
	}
	select {
	case <-news:
	default:
		t.Fatal("no leader news on a survivor")
	}
	waitFor(t, "the survivor's leader news to name the new leader", func() bool {
		ld, _ := c.logs[survivor].WatchLeader()
		return ld.ID == uint64(next+1)
	})
	if !c.logs[next].IsLeader() || c.logs[survivor].IsLeader() && survivor != next {
		t.Fatal("IsLeader disagrees with LeaderID")
	}
	proposeOK(t, c.logs[survivor], topic("after", 1))

	c.start(old)
	st, err := c.logs[old].SyncState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Topic("after"); !ok || len(st.Topics()) != 2 {
		t.Fatal("the restarted node did not catch up")
	}
	c.waitAgree()
}

// TestMinorityCannotCommit: a leader whose followers are gone cannot commit: Propose fails once
// its context ends, saying the outcome is unknown (the entry is in the leader's log). When a
// follower returns, the entry commits after all: a proposal that timed out may still apply.
func TestMinorityCannotCommit(t *testing.T) {
	c := newTestCluster(t, 3)
	c.startAll()
	proposeOK(t, c.logs[0], meta.InitCluster{ClusterID: "c"})
	leader := c.waitLeader()
	c.waitAgree()
	for i := range c.logs {
		if i != leader {
			c.stop(i)
		}
	}
	lone := c.logs[leader]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	began := time.Now()
	_, err := lone.Propose(ctx, topic("late", 9))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("alone: got %v, want the deadline joined with ErrOutcomeUnknown", err)
	}
	t.Logf("alone: %v after %v", err, time.Since(began).Round(time.Millisecond))
	if _, ok := lone.State().Topic("late"); ok {
		t.Fatal("a minority applied a command")
	}
	waitFor(t, "the lone leader to step down (CheckQuorum)", func() bool { return !lone.IsLeader() })

	back := (leader + 1) % 3
	c.start(back)
	waitFor(t, "the timed-out proposal to commit once a quorum is back", func() bool {
		_, a := lone.State().Topic("late")
		_, b := c.logs[back].State().Topic("late")
		return a && b
	})
	// Proposing it again is safe: the repeat is rejected as stale.
	_, err = c.logs[back].Propose(context.Background(), topic("late", 9))
	if !errors.Is(err, meta.ErrStaleCommand) {
		t.Fatalf("repeat of a command that committed late: %v", err)
	}
}

// TestLostAnswerReturnsFirstResult: when an attempt commits but its answer is lost (a
// timeout), the retry is rejected as stale, and Propose still returns the first attempt's
// result, not the rejection.
func TestLostAnswerReturnsFirstResult(t *testing.T) {
	c := newTestCluster(t, 1)
	l := c.start(0)
	proposeOK(t, l, meta.InitCluster{ClusterID: "c"})
	real := l.proposeEntry
	attempts := 0
	l.proposeEntry = func(ctx context.Context, entry []byte) error {
		attempts++
		err := real(ctx, entry)
		if attempts == 1 && err == nil {
			return dragonboat.ErrTimeout // committed, but the proposer never heard
		}
		return err
	}
	res, err := l.Propose(context.Background(), topic("once", 4))
	if err != nil || res.Topic.Name != "once" || res.Topic.ID != [16]byte{4} {
		t.Fatalf("got %+v, %v; want the created topic", res.Topic, err)
	}
	if attempts != 1 {
		// The applied first attempt was found before a retry was sent.
		t.Logf("%d attempts", attempts)
	}
	// The first attempt's answer is lost before it even reaches the log; it commits late,
	// just before the retry, which Apply rejects as its stale repeat.
	attempts = 0
	l.proposeEntry = func(ctx context.Context, entry []byte) error {
		attempts++
		if attempts == 1 {
			return dragonboat.ErrTimeout
		}
		if attempts == 2 {
			if err := real(ctx, entry); err != nil { // the first attempt, late
				return err
			}
		}
		return real(ctx, entry)
	}
	res, err = l.Propose(context.Background(), meta.SetTopicConfigs{Name: "once", ID: [16]byte{4}, ConfigEpoch: 0, Configs: map[string]string{"retention.ms": "1000"}})
	if err != nil || res.Topic.ConfigEpoch != 1 {
		t.Fatalf("got %+v, %v; want config epoch 1 from the first attempt", res.Topic, err)
	}
	if tp, _ := l.State().Topic("once"); tp.ConfigEpoch != 1 || attempts != 2 {
		t.Fatalf("config epoch %d after %d attempts", tp.ConfigEpoch, attempts)
	}
}

// TestColdRestart: all three nodes closed and opened again from their directories (with the
// same flags: the initial members are ignored) come back with the same state, from a snapshot
// and the log after it.
func TestColdRestart(t *testing.T) {
	c := newTestCluster(t, 3)
	c.snapshotEntries, c.compactionOverhead = 5, 2
	c.startAll()
	proposeOK(t, c.logs[0], meta.InitCluster{ClusterID: "cold"})
	for i := 0; i < 12; i++ {
		proposeOK(t, c.logs[i%3], topic(fmt.Sprintf("t%02d", i), byte(i+1)))
	}
	proposeOK(t, c.logs[1], meta.AllocateProducerIDs{Count: 100})
	before := c.waitAgree().Snapshot()
	for i := range c.logs {
		c.stop(i)
	}

	began := time.Now()
	c.startAll()
	opened := time.Since(began)
	for _, l := range c.logs {
		if l.State().ClusterID() != "cold" {
			t.Fatalf("node %d: state after Open has cluster id %q; want it restored from its snapshot", l.ReplicaID(), l.State().ClusterID())
		}
	}
	leader := c.waitLeader()
	st, err := c.logs[leader].SyncState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold restart: opened in %v, leader and a committed read %v after the start", opened.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if !bytes.Equal(st.Snapshot(), before) {
		t.Fatal("state after a cold restart differs")
	}
	if !bytes.Equal(c.waitAgree().Snapshot(), before) {
		t.Fatal("nodes disagree after a cold restart")
	}
	proposeOK(t, c.logs[2], meta.AllocateProducerIDs{Count: 1})
}

// TestSnapshotCatchUp: with snapshots every few entries and the log compacted behind them, a
// node that was down longer than the kept log catches up from a snapshot the leader sends.
func TestSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t, 3)
	c.snapshotEntries, c.compactionOverhead = 5, 2
	c.startAll()
	proposeOK(t, c.logs[0], meta.InitCluster{ClusterID: "snap"})
	leader := c.waitLeader()
	c.waitAgree()
	lagging := (leader + 1) % 3
	reader, err := c.logs[lagging].nh.GetLogReader(shardID)
	if err != nil {
		t.Fatal(err)
	}
	_, lastSeen := reader.GetRange()
	c.stop(lagging)

	for i := 0; i < 30; i++ {
		proposeOK(t, c.logs[leader], topic(fmt.Sprintf("t%02d", i), byte(i+1)))
	}
	leaderLog, err := c.logs[leader].nh.GetLogReader(shardID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the leader's log to be compacted past the stopped node", func() bool {
		first, _ := leaderLog.GetRange()
		return first > lastSeen+1
	})
	snaps, _ := filepath.Glob(filepath.Join(c.dirs[leader], "nodehost", "*", "*", "snapshot-part-*", "snapshot-1-*", "snapshot-*"))
	if len(snaps) == 0 {
		t.Fatal("no snapshot directory on the leader's disk")
	}

	c.start(lagging)
	want := c.logs[leader].State().Snapshot()
	waitFor(t, "the lagging node to catch up", func() bool {
		return bytes.Equal(c.logs[lagging].State().Snapshot(), want)
	})
	reader, _ = c.logs[lagging].nh.GetLogReader(shardID)
	if index := snapshotIndex(reader); index <= lastSeen {
		t.Fatalf("the lagging node has snapshot %d, not past %d: how did it catch up?", index, lastSeen)
	}
}

// TestMembershipChanges: a fourth node joins as a non-voting member and follows the state, is
// promoted to voter, and is removed; a change already in effect succeeds again.
func TestMembershipChanges(t *testing.T) {
	c := newTestCluster(t, 4)
	delete(c.members, 4) // node 4 is not an initial member
	for i := 0; i < 3; i++ {
		c.start(i)
	}
	proposeOK(t, c.logs[0], meta.InitCluster{ClusterID: "m"})
	admin := c.logs[1]
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := admin.AddNonVoting(ctx, 4, c.addrs[3]); err != nil {
		t.Fatal(err)
	}
	cfg := c.config(3)
	cfg.InitialMembers, cfg.Join, cfg.NonVoting = nil, true, true
	c.startWith(3, cfg)
	proposeOK(t, c.logs[0], topic("seen-by-4", 1))
	c.waitAgree()

	if err := admin.AddVoter(ctx, 4, c.addrs[3]); err != nil {
		t.Fatal(err)
	}
	if err := admin.AddVoter(ctx, 4, c.addrs[3]); err != nil {
		t.Fatalf("adding a voter again: %v", err)
	}
	m, err := c.logs[3].Membership(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Voters) != 4 || m.Voters[4] != c.addrs[3] || len(m.NonVoting) != 0 {
		t.Fatalf("after promotion: %+v", m)
	}
	if err := admin.AddVoter(ctx, 4, "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("a voter at another address: %v", err)
	}

	if err := admin.RemoveNode(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := admin.RemoveNode(ctx, 4); err != nil {
		t.Fatalf("removing again: %v", err)
	}
	if m, err = admin.Membership(ctx); err != nil || len(m.Voters) != 3 || len(m.Removed) != 1 || m.Removed[0] != 4 {
		t.Fatalf("after removal: %+v, %v", m, err)
	}
	c.stop(3)
	// A removed node's directory cannot rejoin.
	if l, err := Open(cfg); err == nil {
		t.Log("a removed node's directory opens (it will get no traffic)")
		l.Close()
	} else {
		t.Logf("reopening a removed node: %v", err)
	}
	proposeOK(t, admin, meta.AllocateProducerIDs{Count: 1})
}

// TestOpenErrors: a second NodeHost on a directory in use, and a restart with another raft
// address, fail with an explanation.
func TestOpenErrors(t *testing.T) {
	c := newTestCluster(t, 1)
	c.start(0)
	cfg := c.config(0)
	cfg.RaftAddress = freeAddrs(t, 2)[1]
	cfg.InitialMembers = map[uint64]string{1: cfg.RaftAddress}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("directory in use: %v", err)
	}
	c.stop(0)
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "raft address may not change") {
		t.Fatalf("changed raft address: %v", err)
	}
	if entries, _ := os.ReadDir(c.dirs[0]); len(entries) != 2 {
		t.Fatalf("%s holds %d entries, want nodehost and wal", c.dirs[0], len(entries))
	}
}

// TestStoreOnRaftLog: meta.Store runs on the Raft log: it initializes the cluster once and a
// topic it creates on one node is on every node.
func TestStoreOnRaftLog(t *testing.T) {
	c := newTestCluster(t, 3)
	c.startAll()
	s, err := meta.Open(meta.Config{Log: c.logs[0], NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	created, err := s.CreateTopic("orders", 3, map[string]string{"retention.ms": "60000"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTopic("orders", 1, nil, false); !errors.Is(err, meta.ErrTopicExists) {
		t.Fatalf("duplicate: %v", err)
	}
	// A store on another node sees the cluster and the topic once it has caught up.
	if _, err := c.logs[2].SyncState(context.Background()); err != nil {
		t.Fatal(err)
	}
	s3, err := meta.Open(meta.Config{Log: c.logs[2], NodeID: 3})
	if err != nil {
		t.Fatal(err)
	}
	if s3.ClusterID() != s.ClusterID() {
		t.Fatalf("cluster ids %q and %q", s3.ClusterID(), s.ClusterID())
	}
	got, ok := s3.Topic("orders")
	if !ok || got.ID != created.ID || got.Partitions != 3 || got.Configs["retention.ms"] != "60000" {
		t.Fatalf("on node 3: %+v %v", got, ok)
	}
	pid, err := s3.NextProducerID()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.NextProducerID(); err != nil {
		t.Fatal(err)
	}
	t.Logf("producer id from node 3: %d", pid)
	s.Close() // closes c.logs[0]
	c.logs[0] = nil
	if _, err := s.CreateTopic("after-close", 1, nil, false); !errors.Is(err, meta.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// TestRestartAloneServesLastState: a node restarted without the others (no quorum, nothing new
// commits) comes back with the state it had, replayed from its own log before Open returns,
// even with no snapshot taken yet.
func TestRestartAloneServesLastState(t *testing.T) {
	c := newTestCluster(t, 3)
	c.startAll()
	proposeOK(t, c.logs[0], meta.InitCluster{ClusterID: "alone"})
	for i := 0; i < 5; i++ {
		proposeOK(t, c.logs[i%3], topic(fmt.Sprintf("t%d", i), byte(i+1)))
	}
	want := c.waitAgree().Snapshot()
	for i := range c.logs {
		c.stop(i)
	}
	l := c.start(1)
	if !bytes.Equal(l.State().Snapshot(), want) {
		t.Fatalf("after Open alone: cluster %q, %d topics; want the state before the stop", l.State().ClusterID(), len(l.State().Topics()))
	}
	s, err := meta.Open(meta.Config{Log: l, NodeID: 2})
	if err != nil {
		t.Fatalf("a store on a lone restarted node: %v", err)
	}
	if s.ClusterID() != "alone" {
		t.Fatalf("cluster id %q", s.ClusterID())
	}
}
