package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestAlterISROwnController: AlterISR on a one-node cluster (a real Raft log), whose node is
// its own controller: the request goes to this node's controller without a socket, and its
// answers come back as the node's errors; a request the controller cannot place yet (a newer
// partition epoch than it has) is retried until the context ends.
func TestAlterISROwnController(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := OpenContext(ctx, Config{
		NodeID: 1, AdvertisedHost: "127.0.0.1", AdvertisedPort: 9092,
		DataDir: t.TempDir(), DefaultPartitions: 1, Durability: "none", WALIO: "portable",
		Cluster: &ClusterConfig{RaftAddr: raftAddr, Peers: map[uint64]string{1: raftAddr},
			HeartbeatInterval: 100 * time.Millisecond, ShutdownTimeout: 5 * time.Second},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for {
		if br, ok := b.meta.State().Broker(1); ok && !br.Fenced {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the node was never unfenced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	top, err := b.CreateTopic(CreateTopicRequest{Name: "t", Partitions: 1, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	tp := TopicPartition{Topic: "t", Partition: 0}
	a := top.Assignments[0]
	if a.Leader != 1 || a.PartitionEpoch != 0 {
		t.Fatalf("partition %+v", a)
	}

	for _, tc := range []struct {
		what                        string
		id                          [16]byte
		leaderEpoch, partitionEpoch int32
		isr                         []int32
		want                        error
	}{
		{"the ISR it has", top.ID, a.LeaderEpoch, 0, []int32{1}, nil},
		{"an old partition epoch", top.ID, a.LeaderEpoch, -2, []int32{1}, ErrInvalidUpdateVersion},
		{"an old leader epoch", top.ID, a.LeaderEpoch - 1, 0, []int32{1}, ErrFencedLeaderEpoch},
		{"an empty ISR", top.ID, a.LeaderEpoch, 0, nil, ErrInvalidRequest},
		{"a broker that is no replica", top.ID, a.LeaderEpoch, 0, []int32{1, 2}, ErrIneligibleReplica},
		{"an unknown topic id", [16]byte{9}, a.LeaderEpoch, 0, []int32{1}, ErrUnknownTopic},
	} {
		err := b.AlterISR(ctx, tp, tc.id, tc.leaderEpoch, tc.partitionEpoch, tc.isr)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
	}
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	err = b.AlterISR(sctx, tp, top.ID, a.LeaderEpoch, 5, []int32{1})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(sctx.Err(), context.DeadlineExceeded) {
		t.Errorf("a partition epoch ahead of the controller: %v, want it retried until the context ends", err)
	}
	if st, _ := b.meta.State().Partition("t", 0); st.PartitionEpoch != 0 {
		t.Errorf("the partition changed: %+v", st)
	}
}
