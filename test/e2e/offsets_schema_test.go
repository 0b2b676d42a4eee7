package e2e

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestConsumerOffsetsKafkaSchemas reads __consumer_offsets the way a lag monitor (Burrow,
// kminion) does: consume it from the start and decode each record with Kafka's schemas,
// dispatching on the key version. A committed offset must be there as an OffsetCommitKey v1 /
// OffsetCommitValue v3.
func TestConsumerOffsetsKafkaSchemas(t *testing.T) {
	b := startBroker(t, withArgs("--offsets-topic-partitions", "1"))
	adm := b.Admin(t)
	topic := topicName(t, "lag")
	createTopic(t, adm, topic, 2, nil)
	const group = "lag-monitored"
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 1, At: 1234, LeaderEpoch: -1, Metadata: "m"})
	resp, err := adm.CommitOffsets(ctxTimeout(t, opTimeout), group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit: %v", err)
	}

	cl := b.Client(t, kgo.ConsumeTopics("__consumer_offsets"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	found := false
	ctx := ctxTimeout(t, time.Minute)
	for !found {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("no offset record for %s in __consumer_offsets: %v", group, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			if len(r.Key) < 2 {
				t.Fatalf("key %x: no version", r.Key)
			}
			switch v := binary.BigEndian.Uint16(r.Key); v {
			case 0, 1:
				var k kmsg.OffsetCommitKey
				var val kmsg.OffsetCommitValue
				if err := k.ReadFrom(r.Key); err != nil {
					t.Fatalf("offset key %x: %v", r.Key, err)
				}
				if err := val.ReadFrom(r.Value); err != nil {
					t.Fatalf("offset value %x: %v", r.Value, err)
				}
				if k.Group == group && k.Topic == topic && k.Partition == 1 {
					if val.Offset != 1234 || val.Metadata != "m" || val.CommitTimestamp <= 0 {
						t.Fatalf("committed offset read back as %+v", val)
					}
					found = true
				}
			case 2:
				var k kmsg.GroupMetadataKey
				if err := k.ReadFrom(r.Key); err != nil {
					t.Fatalf("group key %x: %v", r.Key, err)
				}
				if r.Value != nil {
					var val kmsg.GroupMetadataValue
					if err := val.ReadFrom(r.Value); err != nil {
						t.Fatalf("group value %x: %v", r.Value, err)
					}
				}
			default:
				t.Fatalf("key %x: version %d is not a classic group record", r.Key, v)
			}
		})
	}
}
