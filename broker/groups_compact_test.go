package broker

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/group"
)

func TestLastValues(t *testing.T) {
	rec := func(k, v string) group.Record {
		r := group.Record{Key: []byte(k)}
		if v != "" {
			r.Value = []byte(v)
		}
		return r
	}
	in := []group.Record{
		rec("a", "1"), rec("b", "1"), rec("a", "2"), rec("c", "1"),
		rec("b", ""),                               // deleted
		rec("d", "1"), rec("d", ""), rec("d", "2"), // deleted, then back
		rec("c", "2"),
	}
	got := lastValues(in)
	want := []string{"a=2", "c=2", "d=2"}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %v", len(got), want)
	}
	for i, r := range got {
		if s := fmt.Sprintf("%s=%s", r.Key, r.Value); s != want[i] {
			t.Fatalf("record %d: %s, want %s", i, s, want[i])
		}
	}
}

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

// TestLegacyOffsetsDirectory: a data directory whose __consumer_offsets holds the private
// encoding of older versions loads with its commits, and the load rewrites it in Kafka's
// schemas; a group deleted afterwards stays deleted across another restart.
func TestLegacyOffsetsDirectory(t *testing.T) {
	dir := t.TempDir()
	b := openGroupsNode(t, 1, dir)
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

	b = openGroupsNode(t, 1, dir)
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
	// The load compacted the partition: once the old segments are trimmed, only Kafka's keys
	// (an int16 version first, so a 0 byte) are left.
	part = b.groups.Load().shards[0].Load().part
	for deadline := time.Now().Add(time.Minute); ; {
		records, _, err := readOffsetsLog(part, nil)
		if err != nil {
			t.Fatal(err)
		}
		legacy := 0
		for _, r := range records {
			if r.Key[0] != 0 {
				legacy++
			}
		}
		if legacy == 0 && len(records) == 2 {
			break
		}
		b.engine.EnforceRetention() // the pass that deletes what the compaction superseded
		if time.Now().After(deadline) {
			t.Fatalf("%d records, %d of them in the private encoding, a minute after the load", len(records), legacy)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition: the trim follows the rewrite's sync
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Version, del.Groups = 2, []string{"deleted"}
	if resp := await[*kmsg.DeleteGroupsResponse](t, call(t, b, del)); resp.Groups[0].ErrorCode != 0 {
		t.Fatalf("DeleteGroups: %v", kerr.ErrorForCode(resp.Groups[0].ErrorCode))
	}
	closed = true
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openGroupsNode(t, 1, dir)
	defer b.Close()
	if off, code := fetchOffset(t, b, "kept"); code != 0 || off != 6 {
		t.Fatalf("kept after another restart: %d %v", off, kerr.ErrorForCode(code))
	}
	if off, code := fetchOffset(t, b, "deleted"); code != 0 || off != -1 {
		t.Fatalf("a deleted group after another restart: offset %d %v", off, kerr.ErrorForCode(code))
	}
}
