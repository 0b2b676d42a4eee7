package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCreatePartitions grows a live topic with kadm (CreatePartitions): the new partitions show
// in metadata, take records and serve them, survive a restart, and a shrink, an unknown topic or
// the internal topic are refused with their codes and a log line, changing nothing.
func TestCreatePartitions(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	createTopic(t, adm, "growing", 2, nil)

	res, err := adm.CreatePartitions(ctxTimeout(t, opTimeout), 3, "growing")
	if err != nil || res["growing"].Err != nil {
		t.Fatalf("create partitions: %v / %v", err, res["growing"].Err)
	}
	if n := len(endOffsets(t, adm, "growing")); n != 5 {
		t.Fatalf("%d partitions after adding 3 to 2", n)
	}

	// One record to every partition, the new ones included, read back.
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for p := int32(0); p < 5; p++ {
		recs = append(recs, &kgo.Record{Topic: "growing", Partition: p, Value: []byte(fmt.Sprintf("p%d", p))})
	}
	if err := cl.ProduceSync(ctxTimeout(t, opTimeout), recs...).FirstErr(); err != nil {
		t.Fatalf("produce to the new partitions: %v", err)
	}
	got := consumeAll(t, b, "growing")
	for p := int32(0); p < 5; p++ {
		if rs := got[p]; len(rs) != 1 || string(rs[0].Value) != fmt.Sprintf("p%d", p) {
			t.Fatalf("partition %d holds %d records", p, len(rs))
		}
	}

	for _, tc := range []struct {
		topic string
		set   int
		want  *kerr.Error
	}{
		{"growing", 4, kerr.InvalidPartitions}, // fewer than 5
		{"growing", 5, kerr.InvalidPartitions}, // the same count
		{"nowhere", 3, kerr.UnknownTopicOrPartition},
		{"__consumer_offsets", 2, kerr.InvalidRequest},
	} {
		res, err := adm.UpdatePartitions(context.Background(), tc.set, tc.topic)
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(res[tc.topic].Err, tc.want) {
			t.Errorf("set %s to %d: %v, want %v", tc.topic, tc.set, res[tc.topic].Err, tc.want)
		}
	}
	b.waitLog(t, "create partitions: refused", "refused CreatePartitions")

	b.Stop()
	b.Restart()
	adm = b.Admin(t)
	ends := endOffsets(t, adm, "growing")
	if len(ends) != 5 {
		t.Fatalf("%d partitions after restart", len(ends))
	}
	for p, end := range ends {
		if end != 1 {
			t.Fatalf("partition %d ends at %d after restart", p, end)
		}
	}
}
