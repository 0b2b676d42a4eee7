package broker

import (
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
)

// legacyOffsetRecord is a committed offset in the private encoding Ringtail wrote before it
// used Kafka's schemas (group/records_legacy.go): a data directory of an older version.
func legacyOffsetRecord(g string, partition int32, offset int64) batch.Record {
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	key := binary.BigEndian.AppendUint32(str(str([]byte{1}, g), hostTestTopic), uint32(partition))
	val := binary.AppendVarint([]byte{0}, offset)
	val = binary.AppendVarint(val, -1)                     // leader epoch
	val = binary.AppendVarint(val, time.Now().UnixMilli()) // commit time (older ones expire)
	return batch.Record{Key: key, Value: str(val, "")}
}

// openDurableGroupsNode is openGroupsNode with fsync durability, which the cleaner needs
// (with none it cleans only what recovery found).
func openDurableGroupsNode(t *testing.T, dir string) *Broker {
	t.Helper()
	b, err := Open(Config{
		NodeID: 1, AdvertisedHost: "127.0.0.1", AdvertisedPort: 9092,
		DataDir: dir, DefaultPartitions: 1, WALIO: "portable", OffsetsTopicPartitions: 1,
		LogCleanerDisabled: true, // the test runs the passes
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cleanOffsetsUntil seals the offsets partition's segment, checkpoints and runs the cleaner,
// committing a filler offset between rounds (a pass needs dirty segments), until done holds.
func cleanOffsetsUntil(t *testing.T, b *Broker, what string, done func(part *engine.Partition) bool) {
	t.Helper()
	part := b.engine.Partition(TopicPartition{Topic: OffsetsTopic, Partition: 0})
	for round := 0; ; round++ {
		if done(part) {
			return
		}
		if round == 50 {
			t.Fatalf("%s: not so after %d cleaner passes (%+v)", what, round, b.engine.CleanerStats())
		}
		if resp := await[*kmsg.OffsetCommitResponse](t, call(t, b, commitReq("filler", int64(round)))); resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("filler commit: %v", kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode))
		}
		if err := part.Roll(); err != nil {
			t.Fatal(err)
		}
		if err := b.engine.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		b.engine.Clean()
	}
}

// TestLegacyOffsetsDirectory: a data directory whose __consumer_offsets holds the private
// encoding of older versions loads with its commits; the load rewrites them in Kafka's
// schemas, so that once the cleaner has run (tombstones past delete.retention.ms included) no
// legacy record is left, and a group deleted after the load (a tombstone in Kafka's schema,
// itself cleaned away) stays deleted across a restart instead of getting its legacy offset
// back.
func TestLegacyOffsetsDirectory(t *testing.T) {
	dir := t.TempDir()
	b := openDurableGroupsNode(t, dir)
	if _, err := b.CreateTopic(CreateTopicRequest{Name: hostTestTopic, Partitions: 1, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	part := b.groups.Load().shards[0].Load().part
	recs := []batch.Record{legacyOffsetRecord("kept", 0, 5), legacyOffsetRecord("deleted", 0, 9), legacyOffsetRecord("kept", 0, 6)}
	for i := range recs {
		recs[i].OffsetDelta = int32(i)
	}
	written := make(chan error, 1)
	if _, err := part.Append(batch.Build(batch.Header{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs, batch.CodecNone),
		func(err error) { written <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openDurableGroupsNode(t, dir)
	closed := false
	t.Cleanup(func() {
		if !closed {
			b.Close()
		}
	})
	for g, want := range map[string]int64{"kept": 6, "deleted": 9} {
		if off, code := fetchOffset(t, b, g); code != 0 || off != want {
			t.Fatalf("%s after loading the private encoding: %d %v, want %d", g, off, kerr.ErrorForCode(code), want)
		}
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Version, del.Groups = 2, []string{"deleted"}
	if resp := await[*kmsg.DeleteGroupsResponse](t, call(t, b, del)); resp.Groups[0].ErrorCode != 0 {
		t.Fatalf("DeleteGroups: %v", kerr.ErrorForCode(resp.Groups[0].ErrorCode))
	}
	if err := b.AlterTopicConfigs(OffsetsTopic, false, func(o map[string]string) (map[string]string, error) {
		o["delete.retention.ms"] = "0"
		return o, nil
	}); err != nil {
		t.Fatal(err)
	}
	// Only Kafka's keys (an int16 version first, so a 0 byte) and no tombstone are left.
	cleanOffsetsUntil(t, b, "legacy records and tombstones gone", func(part *engine.Partition) bool {
		records, _, err := readOffsetsLog(part, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range records {
			if r.Key[0] != 0 || r.Value == nil {
				return false
			}
		}
		return true
	})
	closed = true
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openDurableGroupsNode(t, dir)
	defer b.Close()
	if off, code := fetchOffset(t, b, "kept"); code != 0 || off != 6 {
		t.Fatalf("kept after the cleaning and a restart: %d %v", off, kerr.ErrorForCode(code))
	}
	if off, code := fetchOffset(t, b, "deleted"); code != 0 || off != -1 {
		t.Fatalf("a deleted group after the cleaning and a restart: offset %d %v", off, kerr.ErrorForCode(code))
	}
}

// TestOlderInternalTopicsRecordCompactPolicy: internal topics created by a version that stored
// no cleanup.policy (it compacted them on its own) get cleanup.policy=compact stored when the
// node starts (__consumer_offsets) and when its transaction coordinators start
// (__transaction_state), so DescribeConfigs says what the cleaner does.
func TestOlderInternalTopicsRecordCompactPolicy(t *testing.T) {
	dir := t.TempDir()
	b := openDurableGroupsNode(t, dir)
	if _, err := b.ensureTxnHost(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{OffsetsTopic, TxnTopic} {
		// What an older version stored: no policy.
		if err := b.AlterTopicConfigs(name, false, func(o map[string]string) (map[string]string, error) {
			next := map[string]string{}
			for k, v := range o {
				if k != "cleanup.policy" {
					next[k] = v
				}
			}
			return next, nil
		}); err != nil {
			t.Fatal(err)
		}
		if top, _ := b.meta.Topic(name); top.Effective("cleanup.policy") != "delete" {
			t.Fatalf("%s: the older layout was not set up: %v", name, top.Configs)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openDurableGroupsNode(t, dir)
	defer b.Close()
	if top, _ := b.meta.Topic(OffsetsTopic); top.Effective("cleanup.policy") != "compact" {
		t.Fatalf("%s after a restart: cleanup.policy %q", OffsetsTopic, top.Effective("cleanup.policy"))
	}
	if _, err := b.ensureTxnHost(); err != nil {
		t.Fatal(err)
	}
	if top, _ := b.meta.Topic(TxnTopic); top.Effective("cleanup.policy") != "compact" {
		t.Fatalf("%s once its coordinators started: cleanup.policy %q", TxnTopic, top.Effective("cleanup.policy"))
	}
}
