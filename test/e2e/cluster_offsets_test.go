package e2e

import (
	"fmt"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterOffsetsOfPartitionsElsewhere: a group coordinator takes commits (OffsetCommit and,
// in a transaction, TxnOffsetCommit) for partitions it holds no replica of, and answers
// OffsetFetch for them, as Kafka's does: whether a partition exists is the cluster's metadata,
// not this broker's log. With replication factor 1 on three brokers most partitions live on
// another broker than the group's coordinator. (Found by make compat's transaction checks run
// against a cluster: librdkafka's send_offsets_to_transaction and kafkajs' sendOffsets got
// UNKNOWN_TOPIC_OR_PARTITION for every partition the coordinator did not host.)
func TestClusterOffsetsOfPartitionsElsewhere(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	const partitions = 6
	adm := c.AdminT(t)
	resp, err := adm.CreateTopic(ctxTimeout(t, opTimeout), partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	waitTopicEverywhere(t, c, topic, partitions)
	ps, _, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}

	// A group whose coordinator holds no replica of at least one partition: the case at stake.
	var group string
	var elsewhere []int32
	for i := 0; i < 20 && len(elsewhere) == 0; i++ {
		group = fmt.Sprintf("%s-g%d", topic, i)
		coord := groupCoordinator(t, adm, group)
		for p := int32(0); p < partitions; p++ {
			if !slices.Contains(ps[p].replicas, coord) {
				elsewhere = append(elsewhere, p)
			}
		}
	}
	if len(elsewhere) == 0 {
		t.Fatalf("no group among 20 has a coordinator missing a replica of %s: %v", topic, ps)
	}
	t.Logf("group %s: its coordinator holds no replica of partitions %v", group, elsewhere)

	// OffsetCommit, then OffsetFetch.
	want := kadm.Offsets{}
	for p := int32(0); p < partitions; p++ {
		want.Add(kadm.Offset{Topic: topic, Partition: p, At: int64(10 + p), LeaderEpoch: -1})
	}
	committed, err := adm.CommitOffsets(ctxTimeout(t, opTimeout), group, want)
	if err != nil {
		t.Fatalf("OffsetCommit: %v", err)
	}
	if err := committed.Error(); err != nil {
		t.Fatalf("OffsetCommit of group %s: %v", group, err)
	}
	checkGroupOffsets(t, adm, group, topic, partitions, 10)

	// The same through a transaction: AddOffsetsToTxn, TxnOffsetCommit, EndTxn commit.
	txnID := topic + "-txn"
	cl := c.ClientT(t, kgo.TransactionalID(txnID), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceSync(t, cl, &kgo.Record{Topic: topic, Partition: elsewhere[0], Value: []byte("in the transaction")})
	pid, epoch, err := cl.ProducerID(ctxTimeout(t, opTimeout))
	if err != nil {
		t.Fatalf("producer id: %v", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, pid, epoch, group
	addResp, err := add.RequestWith(ctxTimeout(t, opTimeout), cl)
	if err == nil {
		err = kerr.ErrorForCode(addResp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("AddOffsetsToTxn: %v", err)
	}
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.TransactionalID, commit.Group, commit.ProducerID, commit.ProducerEpoch = txnID, group, pid, epoch
	commit.Generation = -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < partitions; p++ {
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = p, int64(20+p), -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	commit.Topics = append(commit.Topics, rt)
	commitResp, err := commit.RequestWith(ctxTimeout(t, opTimeout), cl)
	if err != nil {
		t.Fatalf("TxnOffsetCommit: %v", err)
	}
	for _, rt := range commitResp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Errorf("TxnOffsetCommit %s[%d]: %v", rt.Topic, rp.Partition, err)
			}
		}
	}
	if err := cl.EndTransaction(ctxTimeout(t, opTimeout), kgo.TryCommit); err != nil {
		t.Fatalf("EndTxn: %v", err)
	}
	checkGroupOffsets(t, adm, group, topic, partitions, 20)
}

// groupCoordinator is the broker coordinating group (FindCoordinator key type 0).
func groupCoordinator(t *testing.T, adm *kadm.Client, group string) int32 {
	t.Helper()
	var node int32
	waitCluster(t, "the coordinator of "+group, func() error {
		resp := adm.FindGroupCoordinators(ctxTimeout(t, opTimeout), group)
		r, ok := resp[group]
		if !ok {
			return fmt.Errorf("no answer for %s", group)
		}
		if r.Err != nil {
			return r.Err
		}
		node = r.NodeID
		return nil
	})
	return node
}

// checkGroupOffsets waits until OffsetFetch (require_stable: a transaction's offsets count once
// its marker is written) answers base+p for every partition p of topic.
func checkGroupOffsets(t *testing.T, adm *kadm.Client, group, topic string, partitions int32, base int64) {
	t.Helper()
	waitCluster(t, fmt.Sprintf("OffsetFetch of %s: %d+p", group, base), func() error {
		got, err := adm.FetchOffsets(ctxTimeout(t, opTimeout), group)
		if err != nil {
			return err
		}
		for p := int32(0); p < partitions; p++ {
			o, ok := got.Lookup(topic, p)
			switch {
			case !ok:
				return fmt.Errorf("partition %d missing", p)
			case o.Err != nil:
				return fmt.Errorf("partition %d: %v", p, o.Err)
			case o.At != base+int64(p):
				return fmt.Errorf("partition %d at %d, want %d", p, o.At, base+int64(p))
			}
		}
		return nil
	})
}
