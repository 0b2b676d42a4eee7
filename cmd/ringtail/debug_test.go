package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/ringtail/ringtail/meta"
)

// TestDebugMetadata: the JSON dump carries what Kafka's Metadata leaves out: broker epochs and
// partition epochs, beside replicas, leader, leader epoch and ISR.
func TestDebugMetadata(t *testing.T) {
	st := meta.NewState()
	apply := func(cmd meta.Command) meta.Result {
		t.Helper()
		res, err := meta.Apply(st, cmd)
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		return res
	}
	apply(meta.InitCluster{ClusterID: "c1"})
	for id := int32(1); id <= 2; id++ {
		epoch := apply(meta.RegisterBroker{ID: id, Incarnation: [16]byte{byte(id)}, Listener: fmt.Sprintf("127.0.0.1:%d", 9091+id)}).BrokerEpoch
		apply(meta.UnfenceBroker{ID: id, Epoch: epoch})
	}
	id := [16]byte{0xab}
	apply(meta.CreateTopic{Name: "t", ID: id, Configs: map[string]string{"retention.ms": "1000"},
		Partitions: []meta.NewPartition{{Replicas: []int32{1, 2}, ISR: []int32{1, 2}, Leader: 1}}})
	apply(meta.ChangePartitions{Changes: []meta.PartitionChange{{Topic: "t", TopicID: id, Partition: 0,
		ExpectedPartitionEpoch: 0, Leader: 2, ISR: []int32{2}}}})

	rec := httptest.NewRecorder()
	debugMetadataHandler(2, func() int32 { return 1 }, func() *meta.State { return st }).
		ServeHTTP(rec, httptest.NewRequest("GET", debugMetadataPath, nil))
	var got debugMetadata
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, rec.Body)
	}
	if got.NodeID != 2 || got.Controller != 1 || got.ClusterID != "c1" || len(got.Brokers) != 2 {
		t.Fatalf("header %+v", got)
	}
	if b := got.Brokers[1]; b.ID != 2 || b.Epoch < 1 || b.Fenced {
		t.Errorf("broker 2: %+v", b)
	}
	if len(got.Topics) != 1 || got.Topics[0].Configs["retention.ms"] != "1000" || len(got.Topics[0].Partitions) != 1 {
		t.Fatalf("topics %+v", got.Topics)
	}
	p := got.Topics[0].Partitions[0]
	if p.Leader != 2 || p.LeaderEpoch != 1 || p.PartitionEpoch != 1 || len(p.ISR) != 1 || len(p.Replicas) != 2 {
		t.Errorf("partition after the leader moved to 2: %+v", p)
	}
}
