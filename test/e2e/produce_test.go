package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sameRecord fails unless got carries exactly want's key, value, headers and timestamp.
func sameRecord(t testing.TB, want, got *kgo.Record) {
	t.Helper()
	where := fmt.Sprintf("%s/%d@%d", got.Topic, got.Partition, got.Offset)
	if !bytes.Equal(want.Key, got.Key) || (want.Key == nil) != (got.Key == nil) {
		t.Fatalf("%s: key %q (nil=%v), want %q (nil=%v)", where, got.Key, got.Key == nil, want.Key, want.Key == nil)
	}
	if !bytes.Equal(want.Value, got.Value) || (want.Value == nil) != (got.Value == nil) {
		t.Fatalf("%s: value differs (len %d nil=%v, want len %d nil=%v)", where, len(got.Value), got.Value == nil, len(want.Value), want.Value == nil)
	}
	if len(want.Headers) != len(got.Headers) {
		t.Fatalf("%s: %d headers, want %d", where, len(got.Headers), len(want.Headers))
	}
	for i := range want.Headers {
		w, g := want.Headers[i], got.Headers[i]
		if w.Key != g.Key || !bytes.Equal(w.Value, g.Value) {
			t.Fatalf("%s: header %d = %q:%q, want %q:%q", where, i, g.Key, g.Value, w.Key, w.Value)
		}
	}
	if !want.Timestamp.IsZero() && want.Timestamp.UnixMilli() != got.Timestamp.UnixMilli() {
		t.Fatalf("%s: timestamp %d, want %d", where, got.Timestamp.UnixMilli(), want.Timestamp.UnixMilli())
	}
}

// codecRecords makes n records with varied keys, values and headers, including nil and empty
// keys and values, compressible text and random bytes.
func codecRecords(topic string, n int) []*kgo.Record {
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		r := &kgo.Record{Topic: topic, Partition: 0, Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
		switch i % 5 {
		case 0:
			r.Key = nil
			r.Value = bytes.Repeat([]byte("ringtail compressible value "), 20+i%7)
		case 1:
			r.Key = []byte{}
			r.Value = []byte{}
		case 2:
			r.Key = []byte("key-" + strconv.Itoa(i))
			r.Value = nil // tombstone
			r.Headers = []kgo.RecordHeader{{Key: "h", Value: nil}}
		case 3:
			r.Key = []byte{0, 1, 2, 0xff}
			v := make([]byte, 100+i%50)
			rand.Read(v)
			r.Value = v
			r.Headers = []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "", Value: []byte{}}, {Key: "ü-ñ", Value: []byte{0}}}
		case 4:
			r.Key = []byte("k")
			r.Value = []byte(fmt.Sprintf("value %d %s", i, bytes.Repeat([]byte("x"), i%300)))
		}
		recs[i] = r
	}
	return recs
}

// TestCodecsRoundTrip produces with every compression codec and checks records come back exactly,
// with contiguous offsets, and that the broker stored the batches with the producer's codec.
func TestCodecsRoundTrip(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
		attr  int16
	}{
		{"none", kgo.NoCompression(), 0},
		{"gzip", kgo.GzipCompression(), 1},
		{"snappy", kgo.SnappyCompression(), 2},
		{"lz4", kgo.Lz4Compression(), 3},
		{"zstd", kgo.ZstdCompression(), 4},
	}
	versions := apiVersions(t, b.Addr())
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := "codec-" + c.name
			createTopic(t, adm, topic, 1, nil)
			cl := b.Client(t, kgo.ProducerBatchCompression(c.codec), kgo.ProducerLinger(20*time.Millisecond))
			want := codecRecords(topic, 500)
			produceSync(t, cl, want...)
			got := consumeAll(t, b, topic)[0]
			if len(got) != len(want) {
				t.Fatalf("consumed %d records, want %d", len(got), len(want))
			}
			checkContiguous(t, map[int32][]*kgo.Record{0: got})
			for i := range want {
				sameRecord(t, want[i], got[i])
			}

			// The first stored batch keeps the producer's codec (batches are stored as produced).
			rc := dialRaw(t, b.Addr())
			fr := kmsg.NewPtrFetchRequest()
			fr.Version = pickVersion(t, versions, 1, 12)
			fr.ReplicaID = -1
			fr.MaxWaitMillis = 100
			fr.MaxBytes = 1 << 20
			ft := kmsg.NewFetchRequestTopic()
			ft.Topic = topic
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.Partition = 0
			fp.PartitionMaxBytes = 1 << 20
			fp.LogStartOffset = -1
			fp.CurrentLeaderEpoch = -1
			ft.Partitions = append(ft.Partitions, fp)
			fr.Topics = append(fr.Topics, ft)
			resp := rc.mustRoundTrip(t, fr).(*kmsg.FetchResponse)
			if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("raw fetch: error %d, topics %d", resp.ErrorCode, len(resp.Topics))
			}
			p := resp.Topics[0].Partitions[0]
			if p.ErrorCode != 0 {
				t.Fatalf("raw fetch: partition error %d", p.ErrorCode)
			}
			attr, err := batchAttributes(p.RecordBatches)
			if err != nil {
				t.Fatalf("raw fetch: %v", err)
			}
			if attr&7 != c.attr {
				t.Fatalf("stored batch has codec %d, want %d (%s): batches must be stored as produced", attr&7, c.attr, c.name)
			}
		})
	}
}

// TestOrderingPerPartition produces 20k key-hashed records over 6 partitions and checks that each
// partition returns exactly what was acknowledged to it, in the order it was produced.
func TestOrderingPerPartition(t *testing.T) {
	b := startBroker(t)
	topic := "ordering"
	createTopic(t, b.Admin(t), topic, 6, nil)
	cl := b.Client(t, kgo.ProducerLinger(5*time.Millisecond))

	const n = 20000
	var (
		mu    sync.Mutex
		acked = make(map[int32][]int) // partition -> indexes in ack order
		wg    sync.WaitGroup
		first error
	)
	ctx := ctxTimeout(t, 2*opTimeout)
	for i := 0; i < n; i++ {
		wg.Add(1)
		r := &kgo.Record{Topic: topic, Key: []byte("key-" + strconv.Itoa(i%97)), Value: []byte(strconv.Itoa(i))}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			idx, _ := strconv.Atoi(string(r.Value))
			acked[r.Partition] = append(acked[r.Partition], idx)
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatalf("produce: %v", first)
	}
	if len(acked) < 2 {
		t.Fatalf("records landed in %d partitions; want several", len(acked))
	}
	got := consumeAll(t, b, topic)
	checkContiguous(t, got)
	total := 0
	for _, p := range sortedPartitions(acked) {
		want := acked[p]
		rs := got[p]
		total += len(rs)
		if len(rs) != len(want) {
			t.Fatalf("partition %d: consumed %d records, %d were acknowledged", p, len(rs), len(want))
		}
		prev := -1
		for i, r := range rs {
			idx, _ := strconv.Atoi(string(r.Value))
			if idx != want[i] {
				t.Fatalf("partition %d offset %d: record %d, want %d", p, r.Offset, idx, want[i])
			}
			if idx <= prev {
				t.Fatalf("partition %d offset %d: record %d after %d: produce order not kept", p, r.Offset, idx, prev)
			}
			prev = idx
		}
	}
	if total != n {
		t.Fatalf("consumed %d records in total, want %d", total, n)
	}
}

// TestHundredPartitions creates a 100-partition topic, produces to every partition and reads
// every partition back.
func TestHundredPartitions(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	topic := "hundred"
	createTopic(t, adm, topic, 100, nil)

	md, err := adm.Metadata(ctxTimeout(t, opTimeout), topic)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if n := len(md.Topics[topic].Partitions); n != 100 {
		t.Fatalf("metadata shows %d partitions, want 100", n)
	}

	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const per = 10
	var recs []*kgo.Record
	for p := int32(0); p < 100; p++ {
		for i := 0; i < per; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%d-%d", p, i))})
		}
	}
	produceSync(t, cl, recs...)

	got := consumeAll(t, b, topic)
	if len(got) != 100 {
		t.Fatalf("consumed from %d partitions, want 100", len(got))
	}
	checkContiguous(t, got)
	for p := int32(0); p < 100; p++ {
		rs := got[p]
		if len(rs) != per {
			t.Fatalf("partition %d: %d records, want %d", p, len(rs), per)
		}
		for i, r := range rs {
			if want := fmt.Sprintf("%d-%d", p, i); string(r.Value) != want {
				t.Fatalf("partition %d offset %d: value %q, want %q", p, r.Offset, r.Value, want)
			}
		}
	}
}

// TestLargeRecords produces 1 MiB records to a topic allowing 3 MiB and consumes them with fetch
// limits smaller than one record: the broker must still return at least one batch.
func TestLargeRecords(t *testing.T) {
	b := startBroker(t)
	topic := "large"
	createTopic(t, b.Admin(t), topic, 1, map[string]*string{"max.message.bytes": strp("3145728")})

	cl := b.Client(t, kgo.ProducerBatchMaxBytes(3<<20))
	const n = 5
	want := make([]*kgo.Record, n)
	for i := range want {
		v := make([]byte, 1<<20)
		rand.Read(v)
		want[i] = &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: v}
	}
	produceSync(t, cl, want...)

	got := consumeAll(t, b, topic, kgo.FetchMaxBytes(64<<10), kgo.FetchMaxPartitionBytes(64<<10))[0]
	if len(got) != n {
		t.Fatalf("consumed %d records, want %d", len(got), n)
	}
	checkContiguous(t, map[int32][]*kgo.Record{0: got})
	for i := range want {
		sameRecord(t, want[i], got[i])
	}

	// Raw fetches with limits of one byte still return one whole batch, from the right offset.
	v := pickVersion(t, apiVersions(t, b.Addr()), 1, 12)
	rc := dialRaw(t, b.Addr())
	for _, off := range []int64{0, 3} {
		fr := fetchReq(v, topic, 0, off, 100)
		fr.MaxBytes = 1
		fr.Topics[0].Partitions[0].PartitionMaxBytes = 1
		p, recs := fetchedRecords(t, rc.mustRoundTrip(t, fr).(*kmsg.FetchResponse))
		if p.ErrorCode != 0 || len(recs) == 0 {
			t.Fatalf("fetch at %d with 1-byte limits: error %d, %d records; want at least one batch", off, p.ErrorCode, len(recs))
		}
		// The answer is the batch holding the offset (it may start earlier).
		found := false
		for _, r := range recs {
			if r.Offset == off {
				found = bytes.Equal(r.Value, want[off].Value)
			}
		}
		if !found {
			t.Fatalf("fetch at %d with 1-byte limits: the returned batch (offsets %d..%d) lacks the record at %d", off, recs[0].Offset, recs[len(recs)-1].Offset, off)
		}
	}
}

// TestTopicConfigsEnforced: compression.type recompresses into the topic's codec, and
// message.timestamp.type=LogAppendTime replaces producer timestamps with the broker's.
func TestTopicConfigsEnforced(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	versions := apiVersions(t, b.Addr())
	fv := pickVersion(t, versions, 1, 12)

	firstBatchAttrs := func(t *testing.T, topic string) int16 {
		t.Helper()
		rc := dialRaw(t, b.Addr())
		resp := rc.mustRoundTrip(t, fetchReq(fv, topic, 0, 0, 100)).(*kmsg.FetchResponse)
		attr, err := batchAttributes(resp.Topics[0].Partitions[0].RecordBatches)
		if err != nil {
			t.Fatalf("fetch %s: %v", topic, err)
		}
		return attr
	}

	t.Run("compression.type", func(t *testing.T) {
		topic := "cfg-compression"
		createTopic(t, adm, topic, 1, map[string]*string{"compression.type": strp("zstd")})
		cl := b.Client(t, kgo.ProducerBatchCompression(kgo.GzipCompression()))
		want := codecRecords(topic, 200)
		produceSync(t, cl, want...)
		got := consumeAll(t, b, topic)[0]
		if len(got) != len(want) {
			t.Fatalf("consumed %d records, want %d", len(got), len(want))
		}
		checkContiguous(t, map[int32][]*kgo.Record{0: got})
		for i := range want {
			sameRecord(t, want[i], got[i])
		}
		if codec := firstBatchAttrs(t, topic) & 7; codec != 4 {
			t.Fatalf("topic with compression.type=zstd stores a batch with codec %d, want 4 (zstd)", codec)
		}
	})

	t.Run("LogAppendTime", func(t *testing.T) {
		topic := "cfg-logappendtime"
		createTopic(t, adm, topic, 1, map[string]*string{"message.timestamp.type": strp("LogAppendTime")})
		cl := b.Client(t)
		old := time.Now().Add(-72 * time.Hour).Truncate(time.Millisecond)
		before := time.Now().Add(-time.Second) // generous: clocks are the same machine's
		var recs []*kgo.Record
		for i := 0; i < 10; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i)), Timestamp: old})
		}
		produceSync(t, cl, recs...)
		after := time.Now().Add(time.Second)
		for _, r := range consumeAll(t, b, topic)[0] {
			if r.Timestamp.Before(before) || r.Timestamp.After(after) {
				t.Fatalf("offset %d: timestamp %v, want the broker's append time (between %v and %v), not the producer's %v", r.Offset, r.Timestamp, before, after, old)
			}
			if r.Attrs.TimestampType() != 1 {
				t.Fatalf("offset %d: timestamp type is CreateTime, want LogAppendTime", r.Offset)
			}
		}
		if attr := firstBatchAttrs(t, topic); attr&0x08 == 0 {
			t.Fatalf("stored batch attributes %#x lack the LogAppendTime bit", attr)
		}
	})
}

// TestAcksZero produces with acks=0 and checks the records appear.
func TestAcksZero(t *testing.T) {
	b := startBroker(t)
	topic := "acks0"
	createTopic(t, b.Admin(t), topic, 1, nil)
	cl := b.Client(t, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	const n = 200
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))})
	}
	produceSync(t, cl, recs...)

	// acks=0 gives no confirmation: poll the end offset until all records are there.
	adm := b.Admin(t)
	deadline := time.Now().Add(opTimeout)
	for endOffsets(t, adm, topic)[0] < n {
		if time.Now().After(deadline) {
			t.Fatalf("end offset %d after %v, want %d", endOffsets(t, adm, topic)[0], opTimeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := consumeAll(t, b, topic)[0]
	if len(got) != n {
		t.Fatalf("consumed %d records, want %d", len(got), n)
	}
	checkContiguous(t, map[int32][]*kgo.Record{0: got})
	for i, r := range got {
		if string(r.Value) != strconv.Itoa(i) {
			t.Fatalf("offset %d: value %q, want %d", r.Offset, r.Value, i)
		}
	}
	// The connection still works for an acks=all produce after acks=0 ones.
	produceSync1(t, b.Client(t), topic)
}

// produceSync1 is a tiny helper used after other operations to prove the broker still accepts
// writes.
func produceSync1(t testing.TB, cl *kgo.Client, topic string) {
	t.Helper()
	produceSync(t, cl, &kgo.Record{Topic: topic, Value: []byte("still-alive")})
}
