package e2e

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Process tests of the KIP-848 consumer protocol with franz-go (kgo.ServerSideBalancer): the
// broker assigns partitions, and franz-go falls back to the classic protocol only when the
// broker does not offer ConsumerGroupHeartbeat v1, which these tests check it does.

// cutDialer lets a test cut one client off the network: every connection is closed and no new
// one can be made, as when the client's host dies (a cut network is one of the fakes the house
// rules allow). The broker hears nothing more from it: no heartbeat, no leave.
type cutDialer struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (d *cutDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		return nil, errors.New("cut off the network")
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *cutDialer) cutOff() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = true
	for _, c := range d.conns {
		c.Close()
	}
}

// ledger checks, as records are processed, that none is processed again once its processing
// was committed (acknowledged by the broker), whichever member processed or committed it.
type ledger struct {
	t         *testing.T
	mu        sync.Mutex
	committed map[int32]int64         // partition → highest acknowledged commit
	processed map[int32]map[int64]int // partition → offset → times processed
}

func newLedger(t *testing.T) *ledger {
	return &ledger{t: t, committed: map[int32]int64{}, processed: map[int32]map[int64]int{}}
}

func (l *ledger) process(member string, r *kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Offset < l.committed[r.Partition] {
		l.t.Errorf("%s processed %d/%d, below the committed offset %d: a committed record processed twice",
			member, r.Partition, r.Offset, l.committed[r.Partition])
	}
	if l.processed[r.Partition] == nil {
		l.processed[r.Partition] = map[int64]int{}
	}
	l.processed[r.Partition][r.Offset]++
}

func (l *ledger) commit(recs []*kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range recs {
		if r.Offset+1 > l.committed[r.Partition] {
			l.committed[r.Partition] = r.Offset + 1
		}
	}
}

// allCommitted reports whether commits acknowledged by the broker cover every offset below ends.
func (l *ledger) allCommitted(ends map[int32]int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, end := range ends {
		if l.committed[p] < end {
			return false
		}
	}
	return true
}

// all reports whether every offset below ends was processed.
func (l *ledger) all(ends map[int32]int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, end := range ends {
		for o := int64(0); o < end; o++ {
			if l.processed[p][o] == 0 {
				return false
			}
		}
	}
	return true
}

// member848 is a franz-go consumer of the KIP-848 protocol that commits after processing each
// poll, and commits what it processed when partitions are revoked.
type member848 struct {
	name   string
	cl     *kgo.Client
	dialer *cutDialer
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	owned  map[int32]bool
}

func startMember848(t *testing.T, seeds []string, l *ledger, name, group, topic string, balancer kgo.GroupBalancer) *member848 {
	t.Helper()
	return startLedgerMember(t, seeds, l, name, group, topic, balancer, kgo.ServerSideBalancer())
}

// startLedgerMember is startMember848 with the protocol chosen by protocol:
// kgo.ServerSideBalancer() for the consumer protocol, none for the classic one.
func startLedgerMember(t *testing.T, seeds []string, l *ledger, name, group, topic string, balancer kgo.GroupBalancer, protocol ...kgo.Opt) *member848 {
	t.Helper()
	m := &member848{name: name, dialer: &cutDialer{}, done: make(chan struct{}), owned: map[int32]bool{}}
	cl, err := kgo.NewClient(append(protocol,
		kgo.SeedBrokers(seeds...),
		kgo.Dialer(m.dialer.DialContext),
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(balancer),
		kgo.DisableAutoCommit(),
		kgo.HeartbeatInterval(300*time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range a[topic] {
				m.owned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			for _, p := range r[topic] {
				delete(m.owned, p)
			}
			m.mu.Unlock()
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range lost[topic] {
				delete(m.owned, p)
			}
		}),
	)...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				cl.AllowRebalance()
				return
			}
			fs.EachRecord(func(r *kgo.Record) { l.process(name, r) })
			recs := fs.Records()
			if len(recs) > 0 {
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				if err := cl.CommitRecords(cctx, recs...); err == nil {
					l.commit(recs)
				} else if ctx.Err() == nil {
					t.Logf("%s: commit: %v", name, err)
				}
				ccancel()
			}
			cl.AllowRebalance()
		}
	}()
	return m
}

func (m *member848) ownedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.owned)
}

// stop leaves the group cleanly.
func (m *member848) stop() {
	m.cancel()
	<-m.done
	m.cl.Close()
}

// crash cuts the member off: it neither heartbeats nor leaves, and its session must expire.
func (m *member848) crash() {
	m.dialer.cutOff()
	m.cancel()
	<-m.done
	m.cl.Close()
}

// TestConsumerGroups848: members of a KIP-848 group join, leave and crash mid-stream, and the
// broker is killed and restarts (the group's state is replayed from __consumer_offsets: the
// surviving member keeps committing at its epoch); every record is processed, and none whose processing was committed is
// processed again. Runs with both server-side assignors.
func TestConsumerGroups848(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer func() kgo.GroupBalancer
		crash    bool // the session timeout is the broker's 45 s: one case waits for it
	}{
		{"range", kgo.RangeBalancer, true},
		{"uniform", func() kgo.GroupBalancer { return kgo.StickyBalancer() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t)
			adm := b.Admin(t)
			topic := topicName(t, "848")
			group := "g848-" + tc.name
			const partitions = 6
			createTopic(t, adm, topic, partitions, nil)
			prod := b.Client(t, kgo.DefaultProduceTopic(topic))
			l := newLedger(t)
			total := 0
			produce := func(n int) {
				produceNumbered(t, prod, topic, total, total+n)
				total += n
			}
			allDone := func(what string) {
				ends := endOffsets(t, adm, topic)
				waitFor(t, 90*time.Second, what, func() bool { return l.all(ends) })
			}

			produce(1000)
			a := startMember848(t, []string{b.Addr()}, l, "a", group, topic, tc.balancer())
			waitFor(t, 30*time.Second, "a to own every partition", func() bool { return a.ownedCount() == partitions })
			if _, epoch := a.cl.GroupMetadata(); epoch <= 0 {
				t.Fatalf("a's member epoch %d after its assignment", epoch)
			}
			bm := startMember848(t, []string{b.Addr()}, l, "b", group, topic, tc.balancer())
			c := startMember848(t, []string{b.Addr()}, l, "c", group, topic, tc.balancer())
			waitFor(t, 30*time.Second, "a, b and c to share the partitions", func() bool {
				return a.ownedCount() > 0 && bm.ownedCount() > 0 && c.ownedCount() > 0 &&
					a.ownedCount()+bm.ownedCount()+c.ownedCount() == partitions
			})
			produce(1000)
			allDone("the first 2000 records processed")

			// c crashes mid-stream (its partitions come back after its session, 45 s, ends), or
			// leaves cleanly.
			produce(500)
			if tc.crash {
				c.crash()
			} else {
				c.stop()
			}
			produce(500)
			waitFor(t, 90*time.Second, "a and b to own every partition after c is gone", func() bool {
				return a.ownedCount()+bm.ownedCount() == partitions
			})
			allDone("every record after c is gone")

			// a leaves cleanly mid-stream; b takes everything.
			produce(500)
			a.stop()
			waitFor(t, 30*time.Second, "b to own every partition", func() bool { return bm.ownedCount() == partitions })
			allDone("every record after a left")

			// The broker is killed mid-stream and restarts: b carries on, from the commits.
			produce(500)
			b.Kill()
			b.Restart()
			prod = b.Client(t, kgo.DefaultProduceTopic(topic))
			produce(500)
			allDone("every record after the broker restarted")
			// Processed is not committed: the last poll's commit may still be on its way, and
			// stopping the member would cancel it.
			ends := endOffsets(t, adm, topic)
			waitFor(t, 90*time.Second, "every record's processing committed", func() bool { return l.allCommitted(ends) })
			bm.stop()
			if t.Failed() {
				return
			}
			lag, err := b.Admin(t).Lag(ctxTimeout(t, opTimeout), group)
			if err != nil {
				t.Fatal(err)
			}
			if sum := lag[group].Lag.Total(); sum != 0 {
				t.Fatalf("lag after processing everything: %d", sum)
			}
		})
	}
}

// TestConsumerProtocolAdvertised: the broker offers ConsumerGroupHeartbeat v1, which is what
// makes franz-go use the consumer protocol rather than fall back to the classic one; a classic
// member cannot join a consumer group that has members; ConsumerGroupDescribe and ListGroups
// show the group.
func TestConsumerProtocolAdvertised(t *testing.T) {
	b := startBroker(t)
	cl := b.Client(t)
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctxTimeout(t, opTimeout), cl)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range resp.ApiKeys {
		if k.ApiKey == int16(kmsg.ConsumerGroupHeartbeat) {
			found = k.MaxVersion >= 1
		}
	}
	if !found {
		t.Fatalf("ConsumerGroupHeartbeat v1 not advertised")
	}
	adm := b.Admin(t)
	topic := topicName(t, "")
	createTopic(t, adm, topic, 2, nil)
	l := newLedger(t)
	m := startMember848(t, []string{b.Addr()}, l, "m", "mixed", topic, kgo.RangeBalancer())
	defer m.stop()
	waitFor(t, 30*time.Second, "the consumer member to own the partitions", func() bool { return m.ownedCount() == 2 })
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.ProtocolType, join.MemberID = "mixed", "consumer", "classic-1"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 10_000, 10_000
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 1, 0, 0, 0, 0}}}
	jr, err := join.RequestWith(ctxTimeout(t, opTimeout), cl)
	if err != nil {
		t.Fatal(err)
	}
	if jr.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("classic JoinGroup on a consumer group: %v, want INCONSISTENT_GROUP_PROTOCOL", kerr.ErrorForCode(jr.ErrorCode))
	}

	// ConsumerGroupDescribe shows the member with its assignment; a classic group's id is not
	// a consumer group.
	desc := kmsg.NewPtrConsumerGroupDescribeRequest()
	desc.Groups = []string{"mixed", "no-such-group"}
	dr, err := desc.RequestWith(ctxTimeout(t, opTimeout), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(dr.Groups) != 2 || dr.Groups[0].ErrorCode != 0 || dr.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("ConsumerGroupDescribe: %+v", dr.Groups)
	}
	g := dr.Groups[0]
	if g.State != "Stable" || g.AssignorName != "range" || len(g.Members) != 1 || g.Members[0].MemberEpoch != g.Epoch ||
		len(g.Members[0].Assignment.TopicPartitions) != 1 || len(g.Members[0].Assignment.TopicPartitions[0].Partitions) != 2 ||
		g.Members[0].Assignment.TopicPartitions[0].Topic != topic {
		t.Fatalf("ConsumerGroupDescribe of the group: %+v", g)
	}
	lg := kmsg.NewPtrListGroupsRequest()
	lg.TypesFilter = []string{"consumer"}
	lr, err := lg.RequestWith(ctxTimeout(t, opTimeout), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.Groups) != 1 || lr.Groups[0].Group != "mixed" || lr.Groups[0].GroupType != "consumer" || lr.Groups[0].GroupState != "Stable" {
		t.Fatalf("ListGroups of consumer groups: %+v", lr.Groups)
	}
}

// TestConsumerGroupSettings: the --group-consumer-* flags reach the coordinator: members are
// told the configured heartbeat interval, the first configured assignor is the default, one
// not configured is refused, and a full group refuses a new member.
func TestConsumerGroupSettings(t *testing.T) {
	b := startBroker(t, withArgs("--group-consumer-heartbeat-interval", "2s", "--group-consumer-min-heartbeat-interval", "1s",
		"--group-consumer-max-size", "1", "--group-consumer-assignors", "range"))
	cl := b.Client(t)
	topic := topicName(t, "")
	createTopic(t, b.Admin(t), topic, 2, nil)
	heartbeat := func(member, assignor string) *kmsg.ConsumerGroupHeartbeatResponse {
		t.Helper()
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Group, req.MemberID, req.RebalanceTimeoutMillis = "settings", member, 10_000
		req.SubscribedTopicNames, req.Topics = []string{topic}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		if assignor != "" {
			req.ServerAssignor = &assignor
		}
		resp, err := req.RequestWith(ctxTimeout(t, opTimeout), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := heartbeat("member-a", "uniform"); r.ErrorCode != kerr.UnsupportedAssignor.Code {
		t.Fatalf("an assignor not configured: %v, want UNSUPPORTED_ASSIGNOR", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := heartbeat("member-a", ""); r.ErrorCode != 0 || r.HeartbeatIntervalMillis != 2000 || r.MemberEpoch != 1 {
		t.Fatalf("the first member: %v interval %d ms epoch %d, want interval 2000 ms and epoch 1", kerr.ErrorForCode(r.ErrorCode), r.HeartbeatIntervalMillis, r.MemberEpoch)
	}
	if r := heartbeat("member-b", ""); r.ErrorCode != kerr.GroupMaxSizeReached.Code {
		t.Fatalf("a second member of a group of at most one: %v, want GROUP_MAX_SIZE_REACHED", kerr.ErrorForCode(r.ErrorCode))
	}
	desc := kmsg.NewPtrConsumerGroupDescribeRequest()
	desc.Groups = []string{"settings"}
	dr, err := desc.RequestWith(ctxTimeout(t, opTimeout), cl)
	if err != nil {
		t.Fatal(err)
	}
	if g := dr.Groups[0]; g.ErrorCode != 0 || g.AssignorName != "range" || len(g.Members) != 1 {
		t.Fatalf("the group: %+v, want one member and the range assignor", g)
	}
}

// TestConsumerProtocolMigrationDisabled: Ringtail answers as Kafka with
// group.consumer.migration.policy=disabled. A franz-go consumer of the consumer protocol that
// joins a classic group with members is refused (GROUP_ID_NOT_FOUND; franz-go retries) and gets
// nothing while the classic member consumes; once the classic member has left, it gets every
// partition and resumes from the classic group's commits (offline upgrade). Back the other way
// (offline downgrade): a classic member gets in once the consumer-protocol member has left. No
// record whose processing was committed is processed again on either move.
func TestConsumerProtocolMigrationDisabled(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	topic := topicName(t, "")
	const partitions, group = 3, "migrate"
	createTopic(t, adm, topic, partitions, nil)
	prod := b.Client(t, kgo.DefaultProduceTopic(topic))
	l := newLedger(t)
	total := 0
	produce := func(n int) {
		produceNumbered(t, prod, topic, total, total+n)
		total += n
	}
	allDone := func(what string) {
		ends := endOffsets(t, adm, topic)
		waitFor(t, 60*time.Second, what, func() bool { return l.all(ends) && l.allCommitted(ends) })
	}
	seeds := []string{b.Addr()}

	produce(300)
	old := startLedgerMember(t, seeds, l, "classic", group, topic, kgo.RangeBalancer())
	waitFor(t, 30*time.Second, "the classic member to own every partition", func() bool { return old.ownedCount() == partitions })
	allDone("the first records, by the classic member")

	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Group, req.MemberID, req.RebalanceTimeoutMillis, req.SubscribedTopicNames = group, "raw-member", 10_000, []string{topic}
	resp, err := req.RequestWith(ctxTimeout(t, opTimeout), b.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != kerr.GroupIDNotFound.Code || resp.ErrorMessage == nil {
		t.Fatalf("ConsumerGroupHeartbeat on a classic group with members: %v, want GROUP_ID_NOT_FOUND with a message", kerr.ErrorForCode(resp.ErrorCode))
	}

	next := startMember848(t, seeds, l, "consumer", group, topic, kgo.RangeBalancer())
	defer next.stop()
	produce(300)
	allDone("the records produced while both run")
	if n := next.ownedCount(); n != 0 || old.ownedCount() != partitions {
		t.Fatalf("while the classic member is in the group the consumer-protocol member owns %d partitions, the classic one %d", n, old.ownedCount())
	}
	old.stop()
	waitFor(t, 60*time.Second, "the consumer-protocol member to own every partition", func() bool { return next.ownedCount() == partitions })
	produce(300)
	allDone("the records after the upgrade")

	back := startLedgerMember(t, seeds, l, "classic-again", group, topic, kgo.RangeBalancer())
	defer back.stop()
	produce(300)
	allDone("the records produced while both run again")
	if back.ownedCount() != 0 {
		t.Fatalf("a classic member owns %d partitions of a consumer group with members", back.ownedCount())
	}
	next.stop()
	waitFor(t, 60*time.Second, "the classic member to own every partition", func() bool { return back.ownedCount() == partitions })
	produce(300)
	allDone("the records after the downgrade")
}
