package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// groupMember is a franz-go group consumer that commits after processing each poll, the way
// an at-least-once application does. processed records every value it handled.
type groupMember struct {
	name   string
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	processed []string
	assigned  map[int32]bool
}

func startMember(t *testing.T, b *Broker, name, group, topic string, balancer kgo.GroupBalancer) *groupMember {
	t.Helper()
	m := &groupMember{name: name, done: make(chan struct{}), assigned: make(map[int32]bool)}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr()),
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(balancer),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range a[topic] {
				m.assigned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, r map[string][]int32) {
			// Commit what was processed before giving partitions away (the poll loop commits after
			// each batch; this covers a revocation that lands in between).
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				t.Logf("%s: commit on revoke: %v", name, err)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range r[topic] {
				delete(m.assigned, p)
			}
		}),
	)
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
			fs.EachError(func(topic string, p int32, err error) { t.Logf("%s: fetch %s/%d: %v", name, topic, p, err) })
			var vals []string
			fs.EachRecord(func(r *kgo.Record) { vals = append(vals, string(r.Value)) })
			m.mu.Lock()
			m.processed = append(m.processed, vals...)
			m.mu.Unlock()
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			if err := cl.CommitRecords(cctx, fs.Records()...); err != nil && ctx.Err() == nil {
				t.Logf("%s: commit: %v", name, err)
			}
			ccancel()
			cl.AllowRebalance()
		}
	}()
	return m
}

// stop ends polling and leaves the group cleanly (commits are already done per poll).
func (m *groupMember) stop() {
	m.cancel()
	<-m.done
	m.cl.Close()
}

func (m *groupMember) snapshot() (processed []string, assigned int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.processed...), len(m.assigned)
}

func produceNumbered(t *testing.T, cl *kgo.Client, topic string, from, to int) {
	t.Helper()
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
	}
	produceSync(t, cl, recs...)
}

// TestConsumerGroups: members join and leave mid-stream, committing after processing; every
// record is processed at least once, partitions are shared, and after a kill -9 of the broker
// a new member resumes from the committed offsets, processing none of the committed records
// again. Runs with the eager (range) and the cooperative-sticky protocols.
func TestConsumerGroups(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer func() kgo.GroupBalancer
	}{
		{"eager-range", kgo.RangeBalancer},
		{"cooperative-sticky", kgo.CooperativeStickyBalancer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t)
			topic := topicName(t, "grp")
			group := "g-" + tc.name
			adm := b.Admin(t)
			createTopic(t, adm, topic, 6, nil)
			prod := b.Client(t, kgo.DefaultProduceTopic(topic))
			const first = 3000
			produceNumbered(t, prod, topic, 0, first/2)

			a := startMember(t, b, "member-a", group, topic, tc.balancer())
			waitFor(t, 30*time.Second, "member a to process records", func() bool { p, _ := a.snapshot(); return len(p) > 0 })
			bm := startMember(t, b, "member-b", group, topic, tc.balancer())
			waitFor(t, 30*time.Second, "both members to own partitions", func() bool {
				_, na := a.snapshot()
				_, nb := bm.snapshot()
				return na > 0 && nb > 0 && na+nb == 6
			})
			produceNumbered(t, prod, topic, first/2, first)
			seenAll := func() bool {
				seen := make(map[string]bool)
				for _, m := range []*groupMember{a, bm} {
					p, _ := m.snapshot()
					for _, v := range p {
						seen[v] = true
					}
				}
				return len(seen) == first
			}
			// a leaves mid-stream; b must take over its partitions and finish.
			waitFor(t, 30*time.Second, "some of the second half to be processed", func() bool { p, _ := bm.snapshot(); return len(p) > 0 })
			a.stop()
			waitFor(t, 30*time.Second, "member b to own all partitions", func() bool { _, nb := bm.snapshot(); return nb == 6 })
			waitFor(t, 60*time.Second, fmt.Sprintf("all %d records processed", first), seenAll)
			bm.stop()

			described, err := adm.DescribeGroups(ctxTimeout(t, opTimeout), group)
			if err != nil {
				t.Fatal(err)
			}
			if g := described[group]; g.State != "Empty" {
				t.Fatalf("group state after every member left: %q, want Empty", g.State)
			}
			lag, err := adm.Lag(ctxTimeout(t, opTimeout), group)
			if err != nil {
				t.Fatal(err)
			}
			if total := lag[group].Lag.Total(); total != 0 {
				t.Fatalf("lag after processing everything: %d, want 0 (%+v)", total, lag[group].Lag)
			}

			before, err := adm.FetchOffsets(ctxTimeout(t, opTimeout), group)
			if err != nil || before.Error() != nil {
				t.Fatalf("fetch offsets: %v %v", err, before.Error())
			}
			ends := endOffsets(t, adm, topic)
			for p, end := range ends {
				if o, ok := before.Lookup(topic, p); !ok || o.At != end {
					t.Fatalf("partition %d: committed %+v, want the end offset %d", p, o, end)
				}
			}

			// A crash of the broker must not lose the commits.
			b.Kill()
			b.Restart()
			after, err := b.Admin(t).FetchOffsets(ctxTimeout(t, opTimeout), group)
			if err != nil || after.Error() != nil {
				t.Fatalf("fetch offsets after restart: %v %v", err, after.Error())
			}
			for p, end := range ends {
				if o, _ := after.Lookup(topic, p); o.At != end {
					t.Fatalf("partition %d after kill -9: committed %d, want %d", p, o.At, end)
				}
			}
			prod2 := b.Client(t, kgo.DefaultProduceTopic(topic))
			const second = 500
			produceNumbered(t, prod2, topic, first, first+second)
			c := startMember(t, b, "member-c", group, topic, tc.balancer())
			waitFor(t, 60*time.Second, "the new records after restart", func() bool { p, _ := c.snapshot(); return len(p) >= second })
			c.stop()
			processed, _ := c.snapshot()
			seen := make(map[int]bool)
			for _, v := range processed {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("bad value %q", v)
				}
				if n < first {
					t.Fatalf("record %d was committed before the restart and processed again", n)
				}
				seen[n] = true
			}
			if len(seen) != second {
				t.Fatalf("after restart processed %d distinct new records, want %d", len(seen), second)
			}
		})
	}
}

// TestGroupAdminAPIs: ListGroups, DescribeGroups, committed offsets via OffsetFetch,
// OffsetDelete and DeleteGroups, through kadm.
func TestGroupAdminAPIs(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	topic := topicName(t, "adm")
	createTopic(t, adm, topic, 2, nil)
	group := "g-admin"

	offsets := make(kadm.Offsets)
	offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 5, LeaderEpoch: -1})
	offsets.Add(kadm.Offset{Topic: topic, Partition: 1, At: 7, LeaderEpoch: -1})
	committed, err := adm.CommitOffsets(ctxTimeout(t, opTimeout), group, offsets)
	if err != nil || committed.Error() != nil {
		t.Fatalf("commit offsets: %v %v", err, committed.Error())
	}
	fetched, err := adm.FetchOffsets(ctxTimeout(t, opTimeout), group)
	if err != nil || fetched.Error() != nil {
		t.Fatalf("fetch offsets: %v %v", err, fetched.Error())
	}
	if o, _ := fetched.Lookup(topic, 1); o.At != 7 {
		t.Fatalf("fetched offset of partition 1: %d, want 7", o.At)
	}
	listed, err := adm.ListGroups(ctxTimeout(t, opTimeout))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed[group]; !ok {
		t.Fatalf("ListGroups does not show %s: %v", group, listed.Groups())
	}

	// The commits survive a restart.
	b.Stop()
	b.Restart()
	adm = b.Admin(t)
	fetched, err = adm.FetchOffsets(ctxTimeout(t, opTimeout), group)
	if err != nil || fetched.Error() != nil {
		t.Fatalf("fetch offsets after restart: %v %v", err, fetched.Error())
	}
	if o, _ := fetched.Lookup(topic, 0); o.At != 5 {
		t.Fatalf("offset of partition 0 after restart: %d, want 5", o.At)
	}

	ts := make(kadm.TopicsSet)
	ts.Add(topic, 0)
	deleted, err := adm.DeleteOffsets(ctxTimeout(t, opTimeout), group, ts)
	if err != nil || deleted.Error() != nil {
		t.Fatalf("delete offsets: %v %v", err, deleted.Error())
	}
	fetched, err = adm.FetchOffsets(ctxTimeout(t, opTimeout), group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fetched.Lookup(topic, 0); ok && o.At >= 0 {
		t.Fatalf("partition 0 still has offset %d after OffsetDelete", o.At)
	}
	gone, err := adm.DeleteGroups(ctxTimeout(t, opTimeout), group)
	if err != nil || gone.Error() != nil {
		t.Fatalf("delete group: %v %v", err, gone.Error())
	}
	listed, err = adm.ListGroups(ctxTimeout(t, opTimeout))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed[group]; ok {
		t.Fatalf("group %s still listed after DeleteGroups", group)
	}
}
