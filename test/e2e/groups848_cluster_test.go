package e2e

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// TestCluster848CoordinatorKill: a KIP-848 group of three franz-go consumers processes and
// commits records of an RF=3 topic on three brokers while the leader of the group's
// __consumer_offsets partition (its coordinator) is killed with kill -9. The coordinator moves
// to the partition's new leader, which replays the group: every commit acknowledged before the
// kill is there, the members carry on at their member epochs (same member ids, same group
// epoch: no rebalance), and no record whose processing was committed is processed again
// (the ledger checks each record as it is processed). The
// killed broker restarts and rejoins; every record is processed and committed in the end.
func TestCluster848CoordinatorKill(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "848")
	const partitions = 6
	createRF3(t, c, topic, partitions)
	waitCluster(t, OffsetsTopicName+" created", func() error {
		_, _, err := partitionsOf(t, c.Broker(1), OffsetsTopicName)
		return err
	})
	prod := c.ClientT(t, kgo.DefaultProduceTopic(topic))
	l := newLedger(t)
	total := 0
	produce := func(n int) {
		produceNumbered(t, prod, topic, total, total+n)
		total += n
	}
	allDone := func(what string) {
		ends := clusterEndOffsets(t, c, topic)
		waitFor(t, 2*clusterWait, what, func() bool { return l.all(ends) })
	}
	const group = "g848-cluster"
	produce(600)
	var members []*member848
	for _, name := range []string{"a", "b", "c"} {
		members = append(members, startMember848(t, c.Addrs(), l, name, group, topic, kgo.RangeBalancer()))
	}
	defer func() {
		for _, m := range members {
			m.stop()
		}
	}()
	owned := func() (sum int, each bool) {
		each = true
		for _, m := range members {
			sum += m.ownedCount()
			each = each && m.ownedCount() > 0
		}
		return sum, each
	}
	waitFor(t, clusterWait, "a, b and c to share the partitions", func() bool {
		sum, each := owned()
		return sum == partitions && each
	})
	produce(600)
	allDone("the first 1200 records processed")
	// Quiet: every processed record's commit acknowledged, so the group is where a replay must
	// bring it back.
	ends := clusterEndOffsets(t, c, topic)
	waitFor(t, clusterWait, "the commits of the first 1200 records", func() bool { return l.allCommitted(ends) })
	before := describe848(t, c, group)

	coord := coordinatorOf(t, c, group)
	killed := c.Broker(int(coord))
	// The kill comes while the members process and commit these.
	produce(600)
	l.mu.Lock()
	acked := maps.Clone(l.committed)
	l.mu.Unlock()
	t.Logf("killing broker %d, the coordinator of %s (group epoch %d)", coord, group, before.Epoch)
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	produce(600)
	waitCluster(t, "another broker to coordinate "+group, func() error {
		if id := coordinatorOf(t, c, group); id == coord {
			return kerr.CoordinatorNotAvailable
		}
		return nil
	})
	var offs kadm.OffsetResponses
	waitCluster(t, "the committed offsets from the new coordinator", func() error {
		adm, err := c.Admin() // a fresh client: the killed broker's connections are dead
		if err != nil {
			return err
		}
		defer adm.Close()
		offs, err = adm.FetchOffsets(ctxTimeout(t, opTimeout), group)
		return err
	})
	for p, at := range acked {
		if o, ok := offs.Lookup(topic, p); !ok || o.At < at {
			t.Errorf("partition %d: the new coordinator has committed offset %d, below the %d acknowledged before the kill", p, o.At, at)
		}
	}
	allDone("every record after the coordinator was killed")
	after := describe848(t, c, group)
	if after.Epoch != before.Epoch || !slices.Equal(memberIDs(after), memberIDs(before)) {
		t.Errorf("the group after the failover: epoch %d members %v; before: epoch %d members %v (a replayed group has not rebalanced)",
			after.Epoch, memberIDs(after), before.Epoch, memberIDs(before))
	}

	// The killed broker comes back and rejoins; the group carries on.
	if err := killed.Start(ctxTimeout(t, opTimeout)); err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, c, c.Broker(int(coord%3)+1), []int32{1, 2, 3})
	produce(600)
	allDone("every record after the killed broker restarted")
	ends = clusterEndOffsets(t, c, topic)
	waitFor(t, clusterWait, "every record's processing committed", func() bool { return l.allCommitted(ends) })
	if sum, _ := owned(); sum != partitions {
		t.Errorf("the members own %d partitions at the end, want %d", sum, partitions)
	}
}

// clusterEndOffsets lists the end offsets of topic's partitions with a fresh client, retried
// while a killed broker's leaderships move.
func clusterEndOffsets(t *testing.T, c *cluster.Cluster, topic string) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	waitCluster(t, "the end offsets of "+topic, func() error {
		adm, err := c.Admin()
		if err != nil {
			return err
		}
		defer adm.Close()
		lo, err := adm.ListEndOffsets(ctxTimeout(t, opTimeout), topic)
		if err != nil {
			return err
		}
		for p, o := range lo[topic] {
			if o.Err != nil {
				return o.Err
			}
			out[p] = o.Offset
		}
		if len(out) == 0 {
			return fmt.Errorf("no partitions")
		}
		return nil
	})
	return out
}

// coordinatorOf asks the cluster which broker coordinates group, with a fresh client each
// time: a client caches coordinators, and the question is where the coordinator is now.
func coordinatorOf(t *testing.T, c *cluster.Cluster, group string) int32 {
	t.Helper()
	var id int32 = -1
	waitCluster(t, "the coordinator of "+group, func() error {
		adm, err := c.Admin()
		if err != nil {
			return err
		}
		defer adm.Close()
		r := adm.FindGroupCoordinators(ctxTimeout(t, opTimeout), group)[group]
		if r.Err != nil {
			return r.Err
		}
		id = r.NodeID
		return nil
	})
	return id
}

// describe848 is ConsumerGroupDescribe of one group, from its coordinator (a fresh client, as
// in coordinatorOf).
func describe848(t *testing.T, c *cluster.Cluster, group string) kmsg.ConsumerGroupDescribeResponseGroup {
	t.Helper()
	var out kmsg.ConsumerGroupDescribeResponseGroup
	waitCluster(t, "ConsumerGroupDescribe of "+group, func() error {
		cl, err := c.Client()
		if err != nil {
			return err
		}
		defer cl.Close()
		req := kmsg.NewPtrConsumerGroupDescribeRequest()
		req.Groups = []string{group}
		resp, err := req.RequestWith(ctxTimeout(t, opTimeout), cl)
		if err != nil {
			return err
		}
		g := resp.Groups[0]
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			return err
		}
		out = g
		return nil
	})
	return out
}

func memberIDs(g kmsg.ConsumerGroupDescribeResponseGroup) []string {
	var ids []string
	for _, m := range g.Members {
		ids = append(ids, m.MemberID)
	}
	slices.Sort(ids)
	return ids
}
