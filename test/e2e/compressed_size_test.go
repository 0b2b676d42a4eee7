package e2e

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestMaxMessageBytesCompressed: max.message.bytes is checked against the batch as sent
// (compressed), as Kafka does (issue 15): a few KiB of zstd that inflate to 3 MiB go into a
// topic with the default limit (1 MiB) and come back whole. The decompression-bomb guard is a
// separate, bounded check with its own answer: a tiny batch claiming far more than the guard
// allows gets INVALID_RECORD (not MESSAGE_TOO_LARGE) and a log line.
func TestMaxMessageBytesCompressed(t *testing.T) {
	b := startBroker(t)
	const topic = "compressed-size"
	createTopic(t, b.Admin(t), topic, 1, nil)

	value := bytes.Repeat([]byte(`{"event":"click","page":"/home","user":42},`), (3<<20)/44)
	cl := b.Client(t, kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(4<<20))
	want := &kgo.Record{Topic: topic, Key: []byte("k"), Value: value}
	produceSync(t, cl, want)
	got := consumeAll(t, b, topic)[0]
	if len(got) != 1 {
		t.Fatalf("consumed %d records, want 1", len(got))
	}
	sameRecord(t, want, got[0])

	// The bomb: 64 MiB of zeros in one record, a few KiB of zstd.
	rec := kmsg.Record{Value: make([]byte, 64<<20)}
	body := rec.AppendTo(nil)
	rec.Length = int32(len(body) - 1)
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	compressed := enc.EncodeAll(rec.AppendTo(nil), nil)
	bomb := encodeBatch(batchSpec{values: [][]byte{nil}})
	// Swap in the compressed records and the zstd codec (attributes 4).
	bomb = append(bomb[:61], compressed...)
	bomb[22] = 4
	putLength(bomb)
	setCRC(bomb)
	t.Logf("bomb: %d bytes", len(bomb))
	rc := dialRaw(t, b.Addr())
	ec, _ := rawProduce(t, rc, pickVersion(t, apiVersions(t, b.Addr()), 0, 11), topic, 0, bomb)
	if ec != kerr.InvalidRecord.Code {
		t.Fatalf("bomb: error code %d (%v), want INVALID_RECORD", ec, kerr.ErrorForCode(ec))
	}
	b.waitLog(t, rc.LocalAddr(), "bad input from "+rc.LocalAddr())
}

// putLength sets a batch's batchLength field from its size.
func putLength(batch []byte) {
	n := uint32(len(batch) - 12)
	batch[8], batch[9], batch[10], batch[11] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}
