package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRetentionBytesDeletesOldSegments produces well past a topic's retention.bytes with 1 MiB
// segments and a fast retention timer: the log start offset moves, the partition directory
// stays bounded, a consumer from the earliest offset reads a contiguous tail up to the end,
// and a topic without a limit keeps everything.
func TestRetentionBytesDeletesOldSegments(t *testing.T) {
	b := startBroker(t, withArgs("--segment-bytes", fmt.Sprint(1<<20), "--retention-check-interval", "200ms"))
	adm := b.Admin(t)
	createTopic(t, adm, "bounded", 1, map[string]*string{"retention.bytes": strp(fmt.Sprint(2 << 20))})
	createTopic(t, adm, "unbounded", 1, nil)

	// Uncompressed: the sizes below are what reaches the WAL and the segments.
	cl := b.Client(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Millisecond),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := bytes.Repeat([]byte("v"), 1000)
	const n = 24000 // ~24 MB each: enough WAL for checkpoints, which make sealed segments deletable
	for _, topic := range []string{"bounded", "unbounded"} {
		var recs []*kgo.Record
		for i := 0; i < n; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Value: value})
		}
		if err := cl.ProduceSync(ctxTimeout(t, opTimeout), recs...).FirstErr(); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
	}

	var start int64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		so, err := adm.ListStartOffsets(ctxTimeout(t, opTimeout), "bounded")
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := so.Lookup("bounded", 0); ok && o.Err == nil && o.Offset > 0 {
			start = o.Offset
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if start == 0 {
		t.Fatalf("log start offset of bounded still 0 after 30 s; broker log:\n%s", tail(b.Log(), 4000))
	}
	b.waitLog(t, "retention deleted a segment", "retention")

	// Segments sealed since the last checkpoint go once the checkpoint retention asks for has
	// made them durable: soon the directory holds retention.bytes plus at most the segment that
	// crosses it and the active one.
	segmentBytes := func() int64 {
		var size int64
		entries, err := os.ReadDir(filepath.Join(b.DataDir(), "logs", "bounded-0"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".log") {
				size += fi.Size()
			}
		}
		return size
	}
	const bound = 2<<20 + 2<<20
	size := segmentBytes()
	for deadline := time.Now().Add(10 * time.Second); size > bound && time.Now().Before(deadline); size = segmentBytes() {
		time.Sleep(100 * time.Millisecond)
	}
	if size > bound {
		t.Errorf("bounded-0 still holds %d bytes of segments with retention.bytes 2 MiB and 1 MiB segments", size)
	}

	recs := consumeAll(t, b, "bounded")[0]
	if len(recs) == 0 || recs[0].Offset < start {
		t.Fatalf("consumed %d records, first at %d, log start %d", len(recs), recs[0].Offset, start)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Offset != recs[i-1].Offset+1 {
			t.Fatalf("gap after offset %d", recs[i-1].Offset)
		}
	}
	if last := recs[len(recs)-1].Offset; last != n-1 {
		t.Fatalf("last consumed offset %d, want %d", last, n-1)
	}
	so, err := adm.ListStartOffsets(ctxTimeout(t, opTimeout), "unbounded")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := so.Lookup("unbounded", 0); o.Offset != 0 {
		t.Fatalf("unbounded log start %d", o.Offset)
	}
}

// TestRetentionMsEmptiesIdleTopic produces a few records to a topic with retention.ms of one
// second and then nothing: the broker rolls the expired active segment, a checkpoint seals it
// and it is deleted, so the log start offset reaches the end offset and the data is gone, while
// new records are still taken and served.
func TestRetentionMsEmptiesIdleTopic(t *testing.T) {
	b := startBroker(t, withArgs("--retention-check-interval", "200ms"))
	adm := b.Admin(t)
	createTopic(t, adm, "brief", 1, map[string]*string{"retention.ms": strp("1000")})
	cl := b.Client(t, kgo.DefaultProduceTopic("brief"))
	for i := 0; i < 5; i++ {
		produceSync(t, cl, &kgo.Record{Value: []byte(fmt.Sprintf("r%d", i))})
	}

	deadline := time.Now().Add(20 * time.Second)
	var start int64
	for time.Now().Before(deadline) {
		so, err := adm.ListStartOffsets(ctxTimeout(t, opTimeout), "brief")
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := so.Lookup("brief", 0); ok && o.Err == nil && o.Offset == 5 {
			start = o.Offset
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if start != 5 {
		t.Fatalf("log start offset never reached the end offset 5; broker log:\n%s", tail(b.Log(), 4000))
	}
	produceSync(t, cl, &kgo.Record{Value: []byte("fresh")})
	recs := consumeAll(t, b, "brief")[0]
	if len(recs) != 1 || string(recs[0].Value) != "fresh" || recs[0].Offset != 5 {
		t.Fatalf("after retention: %d records, first %+v", len(recs), recs)
	}
}

// TestIdleProducerForgotten: a partition forgets an idempotent producer whose last batch is
// --producer-id-expiration old (Kafka's producer.id.expiration.ms), on the retention timer;
// the client, idle meanwhile, goes on with its next sequence number and neither fails nor
// needs a new producer id (the broker takes any sequence from a producer it does not know, as
// Kafka's does since KIP-360), and its record is written once.
func TestIdleProducerForgotten(t *testing.T) {
	b := startBroker(t, withArgs("--retention-check-interval", "200ms", "--producer-id-expiration", "2s"))
	adm := b.Admin(t)
	topic := topicName(t, "")
	createTopic(t, adm, topic, 1, nil)
	cl := b.Client(t, kgo.DefaultProduceTopic(topic)) // idempotent: franz-go's default
	produceSync(t, cl, &kgo.Record{Value: []byte("before")})
	first := describeProducer(t, b, topic, -1)
	if first.LastSequence != 0 {
		t.Fatalf("after one record the producer is described as %+v; want last sequence 0", first)
	}

	producers := func() []kadm.DescribedProducer {
		described, err := adm.DescribeProducers(ctxTimeout(t, opTimeout), kadm.TopicsSet{topic: {0: struct{}{}}})
		if err != nil {
			t.Fatal(err)
		}
		return described.SortedProducers()
	}
	waitFor(t, 30*time.Second, "the idle producer to be forgotten", func() bool { return len(producers()) == 0 })

	produceSync(t, cl, &kgo.Record{Value: []byte("after")})
	ps := producers()
	if len(ps) != 1 || ps[0].ProducerID != first.ProducerID || ps[0].ProducerEpoch != first.ProducerEpoch || ps[0].LastSequence != 1 {
		t.Fatalf("after the idle producer wrote again: producers %+v; want only producer %d epoch %d at sequence 1", ps, first.ProducerID, first.ProducerEpoch)
	}
	got := consumeAll(t, b, topic)[0]
	if len(got) != 2 || string(got[0].Value) != "before" || string(got[1].Value) != "after" || got[1].Offset != 1 {
		t.Fatalf("the partition holds %d records; want before at 0 and after at 1", len(got))
	}
}
