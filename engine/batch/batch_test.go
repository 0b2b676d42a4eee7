package batch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var allCodecs = []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}

func testHeader() Header {
	return Header{
		BaseOffset:           0,
		PartitionLeaderEpoch: -1,
		FirstTimestamp:       1_700_000_000_000,
		MaxTimestamp:         1_700_000_000_042,
		ProducerID:           4242,
		ProducerEpoch:        3,
		BaseSequence:         17,
	}
}

// testRecords covers null and empty keys and values, headers with null and
// empty values, negative and large deltas, and values big enough to span
// several compression blocks.
func testRecords() []Record {
	big := bytes.Repeat([]byte("ringtail-record-"), 9000) // 144 KB: several xerial/lz4 blocks
	return []Record{
		{OffsetDelta: 0, TimestampDelta: 0, Key: nil, Value: []byte("v0")},
		{OffsetDelta: 1, TimestampDelta: -5, Key: []byte{}, Value: nil},
		{OffsetDelta: 2, TimestampDelta: 42, Key: []byte("k2"), Value: []byte{},
			Headers: []RecordHeader{{Key: "h", Value: []byte("x")}, {Key: "", Value: nil}, {Key: "e", Value: []byte{}}}},
		{OffsetDelta: 3, TimestampDelta: math.MaxInt64, Key: []byte("k3"), Value: big},
		{OffsetDelta: 4, TimestampDelta: math.MinInt64, Key: bytes.Repeat([]byte{0xff}, 300), Value: []byte("v4")},
	}
}

func TestParseCodec(t *testing.T) {
	for _, c := range allCodecs {
		got, ok := ParseCodec(c.String())
		if !ok || got != c {
			t.Errorf("ParseCodec(%q) = %v, %v", c.String(), got, ok)
		}
	}
	for _, bad := range []string{"", "producer", "GZIP", "brotli"} {
		if _, ok := ParseCodec(bad); ok {
			t.Errorf("ParseCodec(%q) accepted", bad)
		}
	}
}

func TestBuildRoundTrip(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			h := testHeader()
			h.Attributes = attrTransactional
			recs := testRecords()
			b := Build(h, recs, c)
			if err := Validate(b, 0); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got, err := ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Codec() != c || !got.IsTransactional() || got.IsControl() || got.LogAppendTime() {
				t.Errorf("attributes %#x", got.Attributes)
			}
			if got.Size() != len(b) || got.NumRecords != 5 || got.LastOffsetDelta != 4 || got.LastOffset() != 4 || got.Magic != 2 {
				t.Errorf("header %+v, len %d", got, len(b))
			}
			if got.ProducerID != h.ProducerID || got.ProducerEpoch != h.ProducerEpoch || got.BaseSequence != h.BaseSequence ||
				got.FirstTimestamp != h.FirstTimestamp || got.MaxTimestamp != h.MaxTimestamp || got.PartitionLeaderEpoch != -1 {
				t.Errorf("header fields not kept: %+v", got)
			}
			dec, err := Records(b)
			if err != nil {
				t.Fatalf("Records: %v", err)
			}
			if !reflect.DeepEqual(dec, recs) {
				t.Errorf("records differ after round trip")
			}
			if c != CodecNone && len(b) > 20000 {
				t.Errorf("%v batch of %d bytes: not compressed?", c, len(b))
			}
		})
	}
}

func TestBuildEmpty(t *testing.T) {
	h := testHeader()
	h.LastOffsetDelta = 7 // as compaction leaves it
	for _, c := range allCodecs {
		b := Build(h, nil, c)
		if len(b) != HeaderSize {
			t.Errorf("%v: empty batch of %d bytes", c, len(b))
		}
		if err := Validate(b, 0); err != nil {
			t.Errorf("%v: %v", c, err)
		}
		if hh, _ := ParseHeader(b); hh.LastOffsetDelta != 7 || hh.NumRecords != 0 {
			t.Errorf("%v: %+v", c, hh)
		}
	}
}

// kmsgBatch encodes recs with franz-go's generated encoders, the way a
// client does: records appended with their lengths, the batch header filled
// in, the CRC computed over the bytes from attributes on.
func kmsgBatch(h Header, recs []Record, payload func(raw []byte) []byte, codec Codec) []byte {
	var raw []byte
	for _, r := range recs {
		kr := kmsg.Record{TimestampDelta64: r.TimestampDelta, OffsetDelta: r.OffsetDelta, Key: r.Key, Value: r.Value}
		for _, rh := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: rh.Key, Value: rh.Value})
		}
		body := kr.AppendTo(nil)
		// AppendTo wrote Length 0 (one byte); the real length is what follows it.
		kr.Length = int32(len(body) - 1)
		raw = kr.AppendTo(raw)
	}
	rb := kmsg.RecordBatch{
		FirstOffset:          h.BaseOffset,
		PartitionLeaderEpoch: h.PartitionLeaderEpoch,
		Magic:                2,
		Attributes:           h.Attributes | int16(codec),
		LastOffsetDelta:      int32(len(recs) - 1),
		FirstTimestamp:       h.FirstTimestamp,
		MaxTimestamp:         h.MaxTimestamp,
		ProducerID:           h.ProducerID,
		ProducerEpoch:        h.ProducerEpoch,
		FirstSequence:        h.BaseSequence,
		NumRecords:           int32(len(recs)),
		Records:              payload(raw),
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func kgoCodec(c Codec) kgo.CompressionCodec {
	switch c {
	case CodecGzip:
		return kgo.GzipCompression()
	case CodecSnappy:
		return kgo.SnappyCompression()
	case CodecLZ4:
		return kgo.Lz4Compression()
	case CodecZstd:
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

// TestClientEncoder checks batches encoded with franz-go's kmsg and its
// default compressor: uncompressed ones are byte-identical to Build's, and
// every codec validates and decodes to the same records. It also checks the
// reverse: franz-go's decompressor reads what Build compressed.
func TestClientEncoder(t *testing.T) {
	h := testHeader()
	recs := testRecords()
	same := kmsgBatch(h, recs, func(raw []byte) []byte { return raw }, CodecNone)
	if mine := Build(h, recs, CodecNone); !bytes.Equal(mine, same) {
		t.Fatalf("Build differs from kmsg encoding:\n mine %x...\n kmsg %x...", mine[:80], same[:80])
	}
	dec := kgo.DefaultDecompressor()
	for _, c := range allCodecs[1:] {
		t.Run(c.String(), func(t *testing.T) {
			comp, err := kgo.DefaultCompressor(kgoCodec(c))
			if err != nil {
				t.Fatal(err)
			}
			b := kmsgBatch(h, recs, func(raw []byte) []byte {
				out, used := comp.Compress(new(bytes.Buffer), raw)
				if Codec(used) != c {
					t.Fatalf("franz-go compressed with %v", used)
				}
				return append([]byte(nil), out...)
			}, c)
			if err := Validate(b, 0); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got, err := Records(b)
			if err != nil || !reflect.DeepEqual(got, recs) {
				t.Fatalf("Records: %v (equal %v)", err, reflect.DeepEqual(got, recs))
			}

			mine := Build(h, recs, c)
			raw, err := dec.Decompress(mine[HeaderSize:], kgo.CompressionCodecType(c))
			if err != nil {
				t.Fatalf("franz-go cannot decompress Build's %v: %v", c, err)
			}
			if !bytes.Equal(raw, Build(h, recs, CodecNone)[HeaderSize:]) {
				t.Fatalf("franz-go decompressed Build's %v to other bytes", c)
			}
		})
	}
}

// TestRealProducer captures the batches a real franz-go producer sends to an
// in-process kfake cluster and validates them.
func TestRealProducer(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			batches := produceWithFranz(t, c, 200)
			if len(batches) == 0 {
				t.Fatal("no batches captured")
			}
			total := 0
			for _, b := range batches {
				if err := Validate(b, 1<<20); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				h, _ := ParseHeader(b)
				if h.Codec() != c {
					t.Errorf("batch codec %v", h.Codec())
				}
				if c == CodecSnappy {
					t.Logf("snappy batch of %d records, xerial framing: %v", h.NumRecords, bytes.HasPrefix(b[HeaderSize:], xerialMagic))
				}
				recs, err := Records(b)
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range recs {
					want := fmt.Sprintf("value-%d", total+i)
					if string(r.Value) != want || len(r.Headers) != 1 {
						t.Fatalf("record %d: value %q headers %v", total+i, r.Value, r.Headers)
					}
				}
				total += len(recs)
			}
			if total != 200 {
				t.Errorf("%d records captured, want 200", total)
			}
		})
	}
}

func produceWithFranz(t *testing.T, c Codec, n int) [][]byte {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var mu sync.Mutex
	var batches [][]byte
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				bs, err := Split(p.Records)
				if err != nil {
					t.Errorf("Split: %v", err)
				}
				for _, b := range bs {
					batches = append(batches, append([]byte(nil), b...))
				}
			}
		}
		return nil, nil, false
	})
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.DefaultProduceTopic("t"),
		kgo.ProducerBatchCompression(kgoCodec(c)),
		kgo.ProducerLinger(50*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, &kgo.Record{
			Key:     []byte(fmt.Sprint("key-", i%7)),
			Value:   []byte(fmt.Sprint("value-", i)),
			Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}},
		})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return batches
}

// fixCRC recomputes the CRC after a test corrupted covered bytes.
func fixCRC(b []byte) []byte { setCRC(b); return b }

func TestValidateRejects(t *testing.T) {
	h := testHeader()
	recs := testRecords()[:3]
	good := func() []byte { return Build(h, recs, CodecNone) }
	goodZstd := func() []byte { return Build(h, recs, CodecZstd) }
	put32 := func(b []byte, off int, v int32) []byte { binary.BigEndian.PutUint32(b[off:], uint32(v)); return b }
	wrongDeltas := append([]Record(nil), recs...)
	wrongDeltas[1].OffsetDelta = 2
	wrongDeltas[2].OffsetDelta = 1
	gapDeltas := []Record{{OffsetDelta: 0}, {OffsetDelta: 2}}

	cases := []struct {
		name string
		b    []byte
		max  int
		want error
	}{
		{"empty", nil, 0, ErrCorrupt},
		{"short header", good()[:HeaderSize-1], 0, ErrCorrupt},
		{"bad crc", func() []byte { b := good(); b[len(b)-1] ^= 1; return b }(), 0, ErrCorrupt},
		{"bad crc field", func() []byte { b := good(); b[offCRC] ^= 0x80; return b }(), 0, ErrCorrupt},
		{"bad crc compressed", func() []byte { b := goodZstd(); b[HeaderSize+3] ^= 1; return b }(), 0, ErrCorrupt},
		{"magic 0", func() []byte { b := good(); b[offMagic] = 0; return b }(), 0, ErrUnsupportedMagic},
		{"magic 1", func() []byte { b := good(); b[offMagic] = 1; return b }(), 0, ErrUnsupportedMagic},
		{"magic 3", func() []byte { b := good(); b[offMagic] = 3; return b }(), 0, ErrUnsupportedMagic},
		{"legacy short message", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 14, 1, 2, 3, 4, 1, 0}, 0, ErrUnsupportedMagic},
		{"count too high", fixCRC(put32(good(), offNumRecords, 4)), 0, ErrCorrupt},
		{"count too high, delta matching", fixCRC(put32(put32(good(), offNumRecords, 4), offLastOffsetDelta, 3)), 0, ErrCorrupt},
		{"count too low, delta matching", fixCRC(put32(put32(good(), offNumRecords, 2), offLastOffsetDelta, 1)), 0, ErrCorrupt},
		{"count mismatch compressed", fixCRC(put32(put32(goodZstd(), offNumRecords, 2), offLastOffsetDelta, 1)), 0, ErrCorrupt},
		{"negative count", fixCRC(put32(good(), offNumRecords, -1)), 0, ErrCorrupt},
		{"last offset delta", fixCRC(put32(good(), offLastOffsetDelta, 5)), 0, ErrCorrupt}, // a compacted batch: stored ok
		{"truncated", good()[:len(good())-1], 0, ErrCorrupt},
		{"truncated compressed", goodZstd()[:len(goodZstd())-3], 0, ErrCorrupt},
		{"trailing byte after batch", append(good(), 0), 0, ErrCorrupt},
		{"trailing bytes in records", func() []byte {
			b := append(good(), 0, 0)
			return fixCRC(put32(b, offLength, int32(len(b)-12)))
		}(), 0, ErrCorrupt},
		{"trailing bytes in compressed records", func() []byte {
			raw := append(Build(h, recs, CodecNone)[HeaderSize:], 1, 2, 3)
			b := append(Build(h, recs, CodecNone)[:HeaderSize], compress(nil, raw, CodecGzip)...)
			binary.BigEndian.PutUint16(b[offAttributes:], uint16(CodecGzip))
			return fixCRC(put32(b, offLength, int32(len(b)-12)))
		}(), 0, ErrCorrupt},
		{"length too big", put32(good(), offLength, int32(len(good())-11)), 0, ErrCorrupt},
		{"length too small", put32(good(), offLength, int32(len(good())-13)), 0, ErrCorrupt},
		{"length below header", put32(good(), offLength, 10), 0, ErrCorrupt},
		{"length negative", put32(good(), offLength, -1), 0, ErrCorrupt},
		{"swapped offset deltas", Build(h, wrongDeltas, CodecNone), 0, ErrCorrupt},
		{"gap in offset deltas", Build(h, gapDeltas, CodecNone), 0, ErrCorrupt},
		{"swapped offset deltas lz4", Build(h, wrongDeltas, CodecLZ4), 0, ErrCorrupt},
		{"unknown codec", func() []byte { b := good(); b[offAttributes+1] |= 5; return fixCRC(b) }(), 0, ErrCorrupt},
		{"codec 7", func() []byte { b := good(); b[offAttributes+1] |= 7; return fixCRC(b) }(), 0, ErrCorrupt},
		{"not gzip", func() []byte { b := good(); b[offAttributes+1] |= byte(CodecGzip); return fixCRC(b) }(), 0, ErrCorrupt},
		{"not snappy", func() []byte { b := good(); b[offAttributes+1] |= byte(CodecSnappy); return fixCRC(b) }(), 0, ErrCorrupt},
		{"not lz4", func() []byte { b := good(); b[offAttributes+1] |= byte(CodecLZ4); return fixCRC(b) }(), 0, ErrCorrupt},
		{"not zstd", func() []byte { b := good(); b[offAttributes+1] |= byte(CodecZstd); return fixCRC(b) }(), 0, ErrCorrupt},
		{"too large", good(), len(good()) - 1, ErrTooLarge},
		{"record length past end", func() []byte { b := good(); b[HeaderSize] = 0x7e; return fixCRC(b) }(), 0, ErrCorrupt},
		{"record length negative", func() []byte { b := good(); b[HeaderSize] = 0x03; return fixCRC(b) }(), 0, ErrCorrupt},
		{"varint too long", func() []byte {
			b := good()
			copy(b[HeaderSize:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
			return fixCRC(b)
		}(), 0, ErrCorrupt},
		{"null header key", rawBatch(h, 1, []byte{
			8,     // length 4
			0,     // attributes
			0,     // timestamp delta
			0,     // offset delta
			1,     // key null
			1,     // value null
			2,     // 1 header
			1,     // header key null
			1 + 0, // header value null (never reached)
		}), 0, ErrCorrupt},
		{"record bytes left over", rawBatch(h, 1, []byte{16, 0, 0, 0, 1, 1, 0, 0, 0}), 0, ErrCorrupt},
		{"header count too big", rawBatch(h, 1, []byte{12, 0, 0, 0, 1, 1, 0x7e}), 0, ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate(c.b, c.max)
			if !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), c.want.Error()+":") {
				t.Errorf("error %q gives no reason", err)
			}
			if c.max == 0 {
				// What log compaction leaves is a valid stored batch, not a valid produced one.
				compacted := c.name == "last offset delta" || c.name == "gap in offset deltas"
				if _, err := Records(c.b); compacted != (err == nil) || !compacted && !errors.Is(err, c.want) {
					t.Errorf("Records = %v, want %v (compacted: %v)", err, c.want, compacted)
				}
				if err := ValidateStored(c.b); compacted != (err == nil) || !compacted && !errors.Is(err, c.want) {
					t.Errorf("ValidateStored = %v, want %v (compacted: %v)", err, c.want, compacted)
				}
			}
		})
	}
}

// TestCompactedBatch checks that BuildCompacted keeps the offset range and the
// stored-batch checks accept it, while the produce checks and bad deltas do not.
func TestCompactedBatch(t *testing.T) {
	h := testHeader()
	h.LastOffsetDelta = 9
	kept := []Record{{OffsetDelta: 2, Key: []byte("a")}, {OffsetDelta: 7, Key: []byte("b"), Value: []byte("v")}}
	for _, codec := range []Codec{CodecNone, CodecZstd} {
		b := BuildCompacted(h, kept, codec)
		got, err := ParseHeader(b)
		if err != nil || got.LastOffsetDelta != 9 || got.NumRecords != 2 || got.BaseOffset != h.BaseOffset {
			t.Fatalf("%v: header %+v, %v", codec, got, err)
		}
		if err := ValidateStored(b); err != nil {
			t.Fatalf("%v: ValidateStored: %v", codec, err)
		}
		if _, err := CheckCRC(b); err != nil {
			t.Fatalf("%v: CheckCRC: %v", codec, err)
		}
		if err := Validate(b, 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%v: Validate = %v, want a produced batch's deltas refused", codec, err)
		}
		recs, err := Records(b)
		if err != nil || len(recs) != 2 || recs[1].OffsetDelta != 7 || string(recs[1].Value) != "v" {
			t.Fatalf("%v: Records = %+v, %v", codec, recs, err)
		}
		empty := BuildCompacted(h, nil, codec)
		if eh, _ := ParseHeader(empty); eh.NumRecords != 0 || eh.LastOffsetDelta != 9 || ValidateStored(empty) != nil {
			t.Fatalf("%v: empty compacted batch %+v: %v", codec, eh, ValidateStored(empty))
		} else if eh.Codec() != CodecNone || len(empty) != HeaderSize {
			// A client decompresses a compressed batch's payload, and an empty one has none.
			t.Fatalf("%v: empty compacted batch says codec %v, %d bytes", codec, eh.Codec(), len(empty))
		}
	}
	for name, recs := range map[string][]Record{
		"past the last delta": {{OffsetDelta: 2}, {OffsetDelta: 10}},
		"not rising":          {{OffsetDelta: 4}, {OffsetDelta: 4}},
	} {
		b := Build(h, recs, CodecNone)
		binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 9)
		if err := ValidateStored(fixCRC(b)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: ValidateStored = %v, want ErrCorrupt", name, err)
		}
	}
	var dh Header
	dh.SetDeleteHorizon(1234)
	if !dh.HasDeleteHorizon() || dh.FirstTimestamp != 1234 || testHeader().HasDeleteHorizon() {
		t.Fatalf("delete horizon: %+v", dh)
	}
	dh.ClearDeleteHorizon(99)
	if dh.HasDeleteHorizon() || dh.FirstTimestamp != 99 {
		t.Fatalf("delete horizon cleared: %+v", dh)
	}
}

// rawBatch wraps hand-encoded record bytes in a valid header.
func rawBatch(h Header, n int32, records []byte) []byte {
	b := Build(h, nil, CodecNone)
	b = append(b, records...)
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[offNumRecords:], uint32(n))
	binary.BigEndian.PutUint32(b[offLastOffsetDelta:], uint32(n-1))
	return fixCRC(b)
}

// TestZipBomb checks that records decompressing far beyond their size are
// refused with ErrDecompressedTooLarge for every codec, without decoding them fully.
// Snappy cannot compress much more than 20:1, so its bomb is a block that
// claims a huge decoded length.
func TestZipBomb(t *testing.T) {
	zeros := make([]byte, 80<<20)
	// One record whose value is 80 MiB of zeros: over the 16 MiB floor of the
	// guard, and 64 times the compressed size, for every codec.
	var raw []byte
	raw = binary.AppendVarint(raw, int64(recordBodySize(&Record{Value: zeros})))
	raw = append(raw, 0, 0, 0, 1)
	raw = binary.AppendVarint(raw, int64(len(zeros)))
	raw = append(raw, zeros...)
	raw = append(raw, 0)
	snappyBomb := binary.AppendUvarint(nil, 200<<20)
	snappyBomb = append(snappyBomb, 0, 0, 0, 0, 0)
	xerialBomb := append([]byte(nil), xerialMagic...)
	xerialBomb = append(xerialBomb, 0, 0, 0, 1, 0, 0, 0, 1)
	xerialBomb = binary.BigEndian.AppendUint32(xerialBomb, uint32(len(snappyBomb)))
	xerialBomb = append(xerialBomb, snappyBomb...)

	withPayload := func(c Codec, p []byte) []byte {
		b := append(Build(testHeader(), nil, CodecNone), p...)
		binary.BigEndian.PutUint16(b[offAttributes:], uint16(c))
		binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-12))
		binary.BigEndian.PutUint32(b[offNumRecords:], 1)
		return fixCRC(b)
	}
	cases := map[string][]byte{
		"snappy": withPayload(CodecSnappy, snappyBomb),
		"xerial": withPayload(CodecSnappy, xerialBomb),
	}
	for _, c := range []Codec{CodecGzip, CodecLZ4, CodecZstd} {
		p := compress(nil, raw, c)
		t.Logf("%v: %d compressed bytes for %d", c, len(p), len(raw))
		cases[c.String()] = withPayload(c, p)
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if err := Validate(b, 0); !errors.Is(err, ErrDecompressedTooLarge) || errors.Is(err, ErrTooLarge) {
				t.Fatalf("Validate = %v, want ErrDecompressedTooLarge", err)
			}
			if _, err := Records(b); !errors.Is(err, ErrDecompressedTooLarge) {
				t.Fatalf("Records = %v, want ErrDecompressedTooLarge", err)
			}
			if _, err := Recompress(b, CodecNone); !errors.Is(err, ErrDecompressedTooLarge) {
				t.Fatalf("Recompress = %v, want ErrDecompressedTooLarge", err)
			}
		})
	}
}

func TestDecompressLimit(t *testing.T) {
	for _, c := range []struct{ in, want int }{
		{0, MinDecompressLimit},
		{100, MinDecompressLimit},
		{1 << 20, 64 << 20},
		{4 << 20, 256 << 20},
		{100 << 20, 256 << 20},
		{math.MaxInt / 2, 256 << 20},
	} {
		if got := decompressLimit(c.in); got != c.want {
			t.Errorf("decompressLimit(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}

// TestXerial decodes xerial-framed snappy as the Java client writes it
// (several 32 KiB blocks), concatenated streams, and raw blocks, and refuses
// broken framing.
func TestXerial(t *testing.T) {
	h := testHeader()
	recs := testRecords()
	raw := Build(h, recs, CodecNone)[HeaderSize:]

	// Hand-framed like org.xerial.snappy.SnappyOutputStream.
	var java []byte
	java = append(java, 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1)
	for rest := raw; len(rest) > 0; {
		n := min(len(rest), 32<<10)
		blk := snappy.Encode(nil, rest[:n])
		java = binary.BigEndian.AppendUint32(java, uint32(len(blk)))
		java = append(java, blk...)
		rest = rest[n:]
	}
	// Two streams back to back, split in the middle of the records.
	half := len(raw) / 2
	concat := append(appendXerial(nil, raw[:half]), appendXerial(nil, raw[half:])...)

	withPayload := func(p []byte) []byte {
		b := append(Build(h, nil, CodecNone), p...)
		binary.BigEndian.PutUint16(b[offAttributes:], uint16(CodecSnappy))
		binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-12))
		binary.BigEndian.PutUint32(b[offNumRecords:], uint32(len(recs)))
		binary.BigEndian.PutUint32(b[offLastOffsetDelta:], uint32(len(recs)-1))
		return fixCRC(b)
	}
	for name, p := range map[string][]byte{
		"java":    java,
		"ours":    appendXerial(nil, raw),
		"concat":  concat,
		"raw":     snappy.Encode(nil, raw),
		"trailer": append(appendXerial(nil, raw), xerialMagic...), // a bare 8-byte magic is not a header
	} {
		t.Run(name, func(t *testing.T) {
			b := withPayload(p)
			err := Validate(b, 0)
			if name == "trailer" {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Validate = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got, err := Records(b)
			if err != nil || !reflect.DeepEqual(got, recs) {
				t.Fatalf("Records: %v", err)
			}
		})
	}
	if !bytes.Equal(appendXerial(nil, raw), java) {
		t.Errorf("appendXerial differs from the Java framing")
	}
	for name, p := range map[string][]byte{
		"block length past end": func() []byte {
			p := appendXerial(nil, raw)
			binary.BigEndian.PutUint32(p[16:], uint32(len(p)))
			return p
		}(),
		"negative block length": func() []byte {
			p := appendXerial(nil, raw)
			binary.BigEndian.PutUint32(p[16:], 0x80000000)
			return p
		}(),
		"partial length": append(appendXerial(nil, raw), 0, 0),
		"bad block":      append(appendXerial(nil, raw), 0, 0, 0, 2, 0xff, 0xff),
	} {
		if err := Validate(withPayload(p), 0); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Validate = %v, want ErrCorrupt", name, err)
		}
	}
}

// TestSnappyStrict: an s2-only encoding (repeat offset 0) is not snappy and
// consumers would choke on it, so it is refused.
func TestSnappyStrict(t *testing.T) {
	// Literal "ab" then a copy with offset 0 (s2 "repeat"): 2-byte-offset copy tag.
	block := []byte{6, 0x04, 'a', 'b', byte(3<<2 | 2), 0, 0}
	if _, err := decompress(nil, block, CodecSnappy, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("decompress = %v, want ErrCorrupt", err)
	}
}

func TestSplit(t *testing.T) {
	h := testHeader()
	a := Build(h, testRecords()[:2], CodecNone)
	b := Build(h, testRecords()[:3], CodecZstd)
	c := Build(h, nil, CodecNone)
	all := append(append(append([]byte(nil), a...), b...), c...)
	got, err := Split(all)
	if err != nil || len(got) != 3 || !bytes.Equal(got[0], a) || !bytes.Equal(got[1], b) || !bytes.Equal(got[2], c) {
		t.Fatalf("Split = %d batches, %v", len(got), err)
	}
	if &got[1][0] != &all[len(a)] {
		t.Error("Split copied")
	}
	if got, err := Split(nil); err != nil || len(got) != 0 {
		t.Errorf("Split(nil) = %v, %v", got, err)
	}
	magic1 := append([]byte(nil), all...)
	magic1[len(a)+offMagic] = 1
	short := append([]byte(nil), all...)
	binary.BigEndian.PutUint32(short[len(a)+offLength:], 48)
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"partial":       {all[:len(all)-1], ErrCorrupt},
		"partial small": {append(append([]byte(nil), a...), 0, 0, 0), ErrCorrupt},
		"partial head":  {all[:len(a)+30], ErrCorrupt},
		"magic 1":       {magic1, ErrUnsupportedMagic},
		"short length":  {short, ErrCorrupt},
		"huge length":   {func() []byte { x := append([]byte(nil), a...); x[offLength] = 0x7f; return x }(), ErrCorrupt},
	} {
		if _, err := Split(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: Split = %v, want %v", name, err, tc.want)
		}
	}
}

func TestPatches(t *testing.T) {
	for _, c := range allCodecs {
		b := Build(testHeader(), testRecords(), c)
		SetBaseOffset(b, 1<<40)
		SetPartitionLeaderEpoch(b, 7)
		if err := Validate(b, 0); err != nil {
			t.Fatalf("%v: after offset/epoch: %v", c, err)
		}
		SetLogAppendTime(b, 1_800_000_000_000)
		if err := Validate(b, 0); err != nil {
			t.Fatalf("%v: after log append time: %v", c, err)
		}
		h, _ := ParseHeader(b)
		if h.BaseOffset != 1<<40 || h.PartitionLeaderEpoch != 7 || !h.LogAppendTime() || h.MaxTimestamp != 1_800_000_000_000 ||
			h.FirstTimestamp != testHeader().FirstTimestamp || h.Codec() != c || h.LastOffset() != 1<<40+4 {
			t.Errorf("%v: header %+v", c, h)
		}
	}
}

func TestRecompress(t *testing.T) {
	h := testHeader()
	h.Attributes = attrTransactional
	recs := testRecords()
	for _, from := range allCodecs {
		src := Build(h, recs, from)
		SetBaseOffset(src, 99)
		SetLogAppendTime(src, 5)
		want, _ := ParseHeader(src)
		for _, to := range allCodecs {
			out, err := Recompress(src, to)
			if err != nil {
				t.Fatalf("%v->%v: %v", from, to, err)
			}
			if err := Validate(out, 0); err != nil {
				t.Fatalf("%v->%v: Validate: %v", from, to, err)
			}
			got, _ := ParseHeader(out)
			if got.Codec() != to {
				t.Errorf("%v->%v: codec %v", from, to, got.Codec())
			}
			exp := want
			exp.Attributes = want.Attributes&^7 | int16(to)
			got.Length, got.CRC = exp.Length, exp.CRC
			if got != exp {
				t.Errorf("%v->%v: header %+v, want %+v", from, to, got, exp)
			}
			if r, err := Records(out); err != nil || !reflect.DeepEqual(r, recs) {
				t.Errorf("%v->%v: records differ (%v)", from, to, err)
			}
		}
	}
	empty := Build(h, nil, CodecNone)
	if out, err := Recompress(empty, CodecZstd); err != nil || Validate(out, 0) != nil || len(out) != HeaderSize {
		t.Errorf("empty: %v", err)
	}
	if _, err := Recompress(empty, 6); err == nil {
		t.Error("Recompress to codec 6 accepted")
	}
	bad := Build(h, recs, CodecNone)
	bad[offMagic] = 1
	if _, err := Recompress(bad, CodecGzip); !errors.Is(err, ErrUnsupportedMagic) {
		t.Errorf("magic 1: %v", err)
	}
}

func TestVarints(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, -64, 64, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64} {
		enc := binary.AppendVarint(nil, v)
		if len(enc) != varlongSize(v) {
			t.Errorf("varlongSize(%d) = %d, want %d", v, varlongSize(v), len(enc))
		}
		got, n, ok := varlong(enc, 0)
		if !ok || got != v || n != len(enc) {
			t.Errorf("varlong(%d) = %d, %d, %v", v, got, n, ok)
		}
		if v >= math.MinInt32 && v <= math.MaxInt32 {
			got, n, ok := varint(enc, 0)
			if !ok || int64(got) != v || n != len(enc) {
				t.Errorf("varint(%d) = %d, %d, %v", v, got, n, ok)
			}
		} else if _, _, ok := varint(enc, 0); ok {
			t.Errorf("varint accepted %d", v)
		}
	}
	for _, bad := range [][]byte{{}, {0x80}, {0xff, 0xff, 0xff, 0xff, 0x10}, {0xff, 0xff, 0xff, 0xff, 0xff, 0x00}} {
		if _, _, ok := varint(bad, 0); ok {
			t.Errorf("varint(%x) accepted", bad)
		}
	}
	if _, _, ok := varlong(bytes.Repeat([]byte{0xff}, 10), 0); ok {
		t.Error("11-byte varlong accepted")
	}
}

func TestValidateNoAllocs(t *testing.T) {
	b := Build(testHeader(), testRecords(), CodecNone)
	if n := testing.AllocsPerRun(100, func() {
		if err := Validate(b, 0); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Validate of an uncompressed batch: %v allocations", n)
	}
}

func BenchmarkValidate(b *testing.B) {
	var recs []Record
	for i := range 100 {
		recs = append(recs, Record{OffsetDelta: int32(i), Key: []byte(fmt.Sprint("key-", i)), Value: bytes.Repeat([]byte("v"), 200)})
	}
	for _, c := range allCodecs {
		batch := Build(testHeader(), recs, c)
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Validate(batch, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestZstdWindowBound: a zstd frame asking for a window beyond
// maxZstdWindow is refused rather than allocated.
func TestZstdWindowBound(t *testing.T) {
	h := testHeader()
	recs := testRecords()[:3]
	raw := Build(h, recs, CodecNone)[HeaderSize:]
	for _, tc := range []struct {
		windowLog int
		want      error
	}{{20, nil}, {23, nil}, {24, ErrCorrupt}, {30, ErrCorrupt}} {
		// A hand-made frame: no content size, so the window descriptor
		// rules, then one raw (stored) last block.
		frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte(tc.windowLog-10) << 3}
		bh := uint32(len(raw))<<3 | 1
		frame = append(frame, byte(bh), byte(bh>>8), byte(bh>>16))
		frame = append(frame, raw...)
		b := append(Build(h, nil, CodecNone), frame...)
		binary.BigEndian.PutUint16(b[offAttributes:], uint16(CodecZstd))
		binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-12))
		binary.BigEndian.PutUint32(b[offNumRecords:], uint32(len(recs)))
		binary.BigEndian.PutUint32(b[offLastOffsetDelta:], uint32(len(recs)-1))
		fixCRC(b)
		err := Validate(b, 0)
		if (tc.want == nil && err != nil) || !errors.Is(err, tc.want) {
			t.Errorf("window 2^%d: Validate = %v, want %v", tc.windowLog, err, tc.want)
		}
	}
}

// TestMaxMessageBytesIsCompressedSize: max.message.bytes is checked against
// the batch as sent, as Kafka does: a zstd batch of a few KiB whose records
// inflate to 3 MiB passes a 1 MiB limit, and only the decompression-bomb
// guard (its own error) refuses what inflates beyond its bound.
func TestMaxMessageBytesIsCompressedSize(t *testing.T) {
	const maxMessageBytes = 1048588 // Kafka's default
	value := bytes.Repeat([]byte(`{"event":"click","page":"/home"},`), (3<<20)/33)
	b := Build(testHeader(), []Record{{Value: value}}, CodecZstd)
	t.Logf("%d bytes compressed for %d of value", len(b), len(value))
	if len(b) > 8<<10 {
		t.Fatalf("batch of %d bytes: the test wants a small compressed batch", len(b))
	}
	if err := Validate(b, maxMessageBytes); err != nil {
		t.Fatalf("Validate of a %d-byte batch inflating to %d bytes = %v, want nil", len(b), len(value), err)
	}
	if err := Validate(b, len(b)-1); !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrDecompressedTooLarge) {
		t.Fatalf("Validate over max.message.bytes = %v, want ErrTooLarge", err)
	}
	// Past the guard: 64 times the compressed size and over MinDecompressLimit.
	bomb := Build(testHeader(), []Record{{Value: make([]byte, MinDecompressLimit+1)}}, CodecZstd)
	if err := Validate(bomb, maxMessageBytes); !errors.Is(err, ErrDecompressedTooLarge) || errors.Is(err, ErrTooLarge) {
		t.Fatalf("Validate of a bomb = %v, want ErrDecompressedTooLarge", err)
	}
}
