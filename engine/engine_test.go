package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/crashfs"
	"github.com/ringtail/ringtail/vfs/errorfs"
)

var tpA = TopicPartition{Topic: "orders", Partition: 0}

func specFor(tp TopicPartition) PartitionSpec {
	var id [16]byte
	copy(id[:], tp.Topic)
	id[15] = byte(tp.Partition)
	return PartitionSpec{TopicPartition: tp, TopicID: id}
}

// singleNode is the broker's OnDurable on one node: the high watermark
// follows the durable end.
func singleNode(p *Partition, durableEnd int64) { p.SetHighWatermark(durableEnd) }

// testOpen is Open with the single-node high watermark, unless cfg brings
// its own OnDurable.
func testOpen(cfg Config, specs []PartitionSpec) (*Engine, error) {
	if cfg.OnDurable == nil {
		cfg.OnDurable = singleNode
	}
	return Open(cfg, specs)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openEngine(t *testing.T, cfg Config, tps ...TopicPartition) *Engine {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	var specs []PartitionSpec
	for _, tp := range tps {
		specs = append(specs, specFor(tp))
	}
	e, err := testOpen(cfg, specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

type batchOpts struct {
	pid   int64
	epoch int16
	seq   int32
	n     int
	ts    int64
	value string
	attrs int16
}

func mkBatch(o batchOpts) []byte {
	if o.n == 0 {
		o.n = 1
	}
	if o.pid == 0 {
		o.pid, o.epoch, o.seq = -1, -1, -1
	}
	recs := make([]batch.Record, o.n)
	for i := range recs {
		recs[i] = batch.Record{OffsetDelta: int32(i), TimestampDelta: int64(i), Value: []byte(fmt.Sprintf("%s/%d", o.value, i))}
	}
	h := batch.Header{FirstTimestamp: o.ts, MaxTimestamp: o.ts + int64(o.n-1), ProducerID: o.pid,
		ProducerEpoch: o.epoch, BaseSequence: o.seq, Attributes: o.attrs}
	return batch.Build(h, recs, batch.CodecNone)
}

// appendWait appends and waits for done.
func appendWait(t testing.TB, p *Partition, b []byte) (AppendResult, error) {
	t.Helper()
	ch := make(chan error, 1)
	res, err := p.Append(b, func(err error) { ch <- err })
	if err != nil {
		return res, err
	}
	select {
	case err := <-ch:
		return res, err
	case <-time.After(10 * time.Second):
		t.Fatal("done not called")
	}
	return res, nil
}

func mustAppend(t *testing.T, p *Partition, b []byte) AppendResult {
	t.Helper()
	res, err := appendWait(t, p, b)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// readAll reads every batch from offset to the high watermark.
func readAll(t *testing.T, p *Partition, from int64) []batch.Header {
	t.Helper()
	var hs []batch.Header
	for off := from; off < p.HighWatermark(); {
		res, err := p.Read(off, 1000, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) == 0 {
			t.Fatalf("empty read at %d below hw %d", off, res.HighWatermark)
		}
		bs, err := batch.Split(res.Records)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if err := batch.Validate(b, 0); err != nil {
				t.Fatalf("stored batch invalid: %v", err)
			}
			h, _ := batch.ParseHeader(b)
			hs = append(hs, h)
			off = h.LastOffset() + 1
		}
	}
	return hs
}

func checkContiguous(t *testing.T, hs []batch.Header, from int64) {
	t.Helper()
	next := from
	for _, h := range hs {
		if h.BaseOffset != next {
			t.Fatalf("batch at %d, expected %d", h.BaseOffset, next)
		}
		next = h.LastOffset() + 1
	}
}

func TestAppendReadRoundTrip(t *testing.T) {
	e := openEngine(t, Config{DataDir: t.TempDir()}, tpA)
	p := e.Partition(tpA)
	for i := 0; i < 10; i++ {
		res := mustAppend(t, p, mkBatch(batchOpts{n: 3, ts: 1000, value: fmt.Sprint("v", i)}))
		if res.BaseOffset != int64(3*i) || res.Duplicate || res.LogAppendTime != -1 {
			t.Fatalf("append %d: %+v", i, res)
		}
	}
	if hw := p.HighWatermark(); hw != 30 {
		t.Fatalf("hw %d", hw)
	}
	res, err := p.Read(0, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	bs, _ := batch.Split(res.Records)
	if len(bs) != 10 || res.HighWatermark != 30 {
		t.Fatalf("got %d batches, hw %d", len(bs), res.HighWatermark)
	}
	recs, err := batch.Records(bs[4])
	if err != nil || string(recs[2].Value) != "v4/2" {
		t.Fatalf("records %v %v", recs, err)
	}
	// From the middle of a batch: the whole batch containing it.
	res, _ = p.Read(13, 1<<20, false)
	if h, _ := batch.ParseHeader(res.Records); h.BaseOffset != 12 {
		t.Fatalf("read 13 starts at %d", h.BaseOffset)
	}
	// maxBytes smaller than a batch.
	if res, _ = p.Read(0, 10, false); len(res.Records) != 0 {
		t.Fatal("got records with maxBytes 10 and no minOneBatch")
	}
	if res, _ = p.Read(0, 10, true); len(res.Records) != len(bs[0]) {
		t.Fatalf("minOneBatch gave %d bytes, want %d", len(res.Records), len(bs[0]))
	}
	// maxBytes of 2.5 batches gives 2 whole ones.
	if res, _ = p.Read(0, len(bs[0])*5/2, false); len(res.Records) != 2*len(bs[0]) {
		t.Fatalf("partial read gave %d bytes", len(res.Records))
	}
	if res, err = p.Read(30, 100, true); err != nil || len(res.Records) != 0 {
		t.Fatalf("read at hw: %d bytes, %v", len(res.Records), err)
	}
	if _, err = p.Read(31, 100, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past hw: %v", err)
	}
	if _, err = p.Read(-1, 100, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read before start: %v", err)
	}
}

func TestAppendRejects(t *testing.T) {
	e := openEngine(t, Config{DataDir: t.TempDir()}, tpA)
	p := e.Partition(tpA)
	good := mkBatch(batchOpts{n: 2})
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-1] ^= 0xff
	if _, err := p.Append(corrupt, nil); !errors.Is(err, ErrCorruptMessage) {
		t.Fatalf("crc: %v", err)
	}
	if _, err := p.Append(good[:len(good)-3], nil); !errors.Is(err, ErrCorruptMessage) {
		t.Fatalf("short: %v", err)
	}
	magic := append([]byte(nil), good...)
	magic[16] = 1
	if _, err := p.Append(magic, nil); !errors.Is(err, ErrUnsupportedMagic) {
		t.Fatalf("magic: %v", err)
	}
	p.SetConfig(PartitionConfig{MaxMessageBytes: 50})
	if _, err := p.Append(good, nil); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	p.SetConfig(PartitionConfig{})
	if _, err := p.Append(mkBatch(batchOpts{attrs: 0x10}), nil); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("transactional without a producer id: %v", err)
	}
	if _, err := p.Append(mkBatch(batchOpts{attrs: 0x20}), nil); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("control: %v", err)
	}
	if hw := p.HighWatermark(); hw != 0 || p.LogEndOffset() != 0 {
		t.Fatalf("rejected appends moved the log: hw %d", hw)
	}
}

func TestSegmentRollAndIndex(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, SegmentBytes: 2000, IndexIntervalBytes: 300}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	const n = 120
	for i := 0; i < n; i++ {
		mustAppend(t, p, mkBatch(batchOpts{n: 1 + i%3, ts: int64(1000 + 10*i), value: strings.Repeat("x", 40)}))
	}
	hw := p.HighWatermark()
	all := readAll(t, p, 0)
	if len(all) != n {
		t.Fatalf("read %d batches, want %d", len(all), n)
	}
	checkContiguous(t, all, 0)
	// Every offset finds the batch containing it.
	for _, h := range all {
		for off := h.BaseOffset; off <= h.LastOffset(); off++ {
			res, err := p.Read(off, 1, true)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := batch.ParseHeader(res.Records)
			if got.BaseOffset != h.BaseOffset {
				t.Fatalf("offset %d: batch %d, want %d", off, got.BaseOffset, h.BaseOffset)
			}
		}
	}
	p.mu.Lock()
	nseg := len(p.segments)
	for _, s := range p.segments {
		if s.size > cfg.SegmentBytes {
			t.Errorf("segment %d has %d bytes", s.base, s.size)
		}
		if len(s.index) < 2 && s.size > 600 {
			t.Errorf("segment %d: only %d index entries", s.base, len(s.index))
		}
	}
	p.mu.Unlock()
	if nseg < 4 {
		t.Fatalf("only %d segments", nseg)
	}
	e.Close()

	pdir := filepath.Join(dir, "orders-0")
	logs, _ := filepath.Glob(filepath.Join(pdir, "*.log"))
	idx, _ := filepath.Glob(filepath.Join(pdir, "*.index"))
	// A clean Close indexes the active segment too (cleanshutdown.go).
	if len(logs) != nseg || len(idx) != nseg {
		t.Fatalf("%d logs, %d indexes, %d segments", len(logs), len(idx), nseg)
	}
	if b := segBase(t, logs[1]); b <= 0 || b >= hw {
		t.Fatalf("second segment base %d", b)
	}
	// The .index file matches the in-memory index format.
	b, _ := os.ReadFile(idx[0])
	if len(b)%8 != 0 || len(b) < 16 || binary.BigEndian.Uint64(b[:8]) != 0 {
		t.Fatalf("index file %x", b)
	}

	e2 := openEngine(t, cfg, tpA)
	p2 := e2.Partition(tpA)
	if p2.HighWatermark() != hw {
		t.Fatalf("hw after reopen %d, want %d", p2.HighWatermark(), hw)
	}
	again := readAll(t, p2, 0)
	if len(again) != n {
		t.Fatalf("after reopen: %d batches", len(again))
	}
	res := mustAppend(t, p2, mkBatch(batchOpts{n: 1, ts: 5000}))
	if res.BaseOffset != hw {
		t.Fatalf("append after reopen at %d, want %d", res.BaseOffset, hw)
	}
}

func segBase(t *testing.T, path string) int64 {
	base, ok := parseSegmentName(filepath.Base(path))
	if !ok {
		t.Fatalf("bad segment name %s", path)
	}
	return base
}

func TestOffsetForTime(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), SegmentBytes: 1500, IndexIntervalBytes: 200}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	if _, _, ok := p.OffsetForTime(0); ok {
		t.Fatal("empty log found a time")
	}
	if off, ts := p.MaxTimestamp(); off != -1 || ts != -1 {
		t.Fatalf("empty max %d %d", off, ts)
	}
	// Batch i: 2 records, timestamps 1000+100i and 1000+100i+1; batch 20 goes back in time.
	var bases []int64
	for i := 0; i < 40; i++ {
		ts := int64(1000 + 100*i)
		if i == 20 {
			ts = 500
		}
		bases = append(bases, mustAppend(t, p, mkBatch(batchOpts{n: 2, ts: ts, value: "abcdefghijklmnop"})).BaseOffset)
	}
	// The answer is the first record (not batch) at or after the time.
	cases := []struct {
		ts        int64
		wantBatch int
		wantRec   int64 // record index inside the batch
		wantTs    int64
	}{
		{0, 0, 0, 1000},
		{1000, 0, 0, 1000},
		{1001, 0, 1, 1001},
		{1002, 1, 0, 1100},
		{1550, 6, 0, 1600},
		{2901, 19, 1, 2901},
		{2950, 21, 0, 3100}, // batch 20 (max 501) is skipped
		{3001, 21, 0, 3100},
		{4901, 39, 1, 4901},
	}
	for _, c := range cases {
		off, ts, ok := p.OffsetForTime(c.ts)
		if want := bases[c.wantBatch] + c.wantRec; !ok || off != want || ts != c.wantTs {
			t.Errorf("OffsetForTime(%d) = %d %d %v, want %d %d", c.ts, off, ts, ok, want, c.wantTs)
		}
	}
	if _, _, ok := p.OffsetForTime(4902); ok {
		t.Error("found a batch after the max timestamp")
	}
	if off, ts := p.MaxTimestamp(); ts != 4901 || off != bases[39]+1 {
		t.Errorf("MaxTimestamp %d %d", off, ts)
	}
}

func TestIdempotentProducer(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, Config{DataDir: dir}, tpA)
	p := e.Partition(tpA)
	const pid = 42
	b0 := mkBatch(batchOpts{pid: pid, epoch: 1, seq: 0, n: 3})
	r0 := mustAppend(t, p, append([]byte(nil), b0...))
	// A retry of the same batch is a duplicate pointing at the original.
	rd := mustAppend(t, p, append([]byte(nil), b0...))
	if !rd.Duplicate || rd.BaseOffset != r0.BaseOffset {
		t.Fatalf("dup: %+v", rd)
	}
	if p.HighWatermark() != 3 {
		t.Fatalf("duplicate written: hw %d", p.HighWatermark())
	}
	if _, err := p.Append(mkBatch(batchOpts{pid: pid, epoch: 1, seq: 4, n: 1}), nil); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap: %v", err)
	}
	if _, err := p.Append(mkBatch(batchOpts{pid: pid, epoch: 0, seq: 3, n: 1}), nil); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("old epoch: %v", err)
	}
	// A producer the partition does not know may start anywhere (KIP-360: it may have been
	// forgotten, see TestProducerExpiration); from then on it must continue its sequence.
	mustAppend(t, p, mkBatch(batchOpts{pid: 43, epoch: 0, seq: 7, n: 1}))
	if _, err := p.Append(mkBatch(batchOpts{pid: 43, epoch: 0, seq: 9, n: 1}), nil); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap after a first batch at 7: %v", err)
	}
	mustAppend(t, p, mkBatch(batchOpts{pid: 43, epoch: 0, seq: 8, n: 1}))
	// Five more batches: the first one falls out of the window.
	seq := int32(3)
	var last []byte
	for i := 0; i < 5; i++ {
		last = mkBatch(batchOpts{pid: pid, epoch: 1, seq: seq, n: 2})
		mustAppend(t, p, append([]byte(nil), last...))
		seq += 2
	}
	if _, err := p.Append(append([]byte(nil), b0...), nil); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("dup outside window: %v", err)
	}
	// New epoch must start at 0.
	if _, err := p.Append(mkBatch(batchOpts{pid: pid, epoch: 2, seq: seq, n: 1}), nil); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("new epoch not at 0: %v", err)
	}
	hwBefore := p.HighWatermark()
	e.Close()

	// Producer state survives a restart.
	e2 := openEngine(t, Config{DataDir: dir}, tpA)
	p2 := e2.Partition(tpA)
	rd = mustAppend(t, p2, append([]byte(nil), last...))
	if !rd.Duplicate || rd.BaseOffset != hwBefore-2 {
		t.Fatalf("dup after reopen: %+v (hw %d)", rd, hwBefore)
	}
	if _, err := p2.Append(mkBatch(batchOpts{pid: pid, epoch: 1, seq: seq + 1, n: 1}), nil); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap after reopen: %v", err)
	}
	mustAppend(t, p2, mkBatch(batchOpts{pid: pid, epoch: 1, seq: seq, n: 1}))
	mustAppend(t, p2, mkBatch(batchOpts{pid: pid, epoch: 2, seq: 0, n: 1}))
	if _, err := p2.Append(mkBatch(batchOpts{pid: pid, epoch: 1, seq: seq + 1, n: 1}), nil); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("fenced epoch: %v", err)
	}
}

// TestIdempotentRequestWithARetriedBatch: one request of three batches whose first is a retry
// of a batch already in the log writes only the other two, with their headers (offsets,
// sequences, record counts) intact, and the producer state after it holds across a restart.
func TestIdempotentRequestWithARetriedBatch(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, Config{DataDir: dir}, tpA)
	p := e.Partition(tpA)
	const pid = 7
	first := mkBatch(batchOpts{pid: pid, epoch: 0, seq: 0, n: 2, value: "a"})
	mustAppend(t, p, append([]byte(nil), first...))
	var req []byte
	req = append(req, first...)
	req = append(req, mkBatch(batchOpts{pid: pid, epoch: 0, seq: 2, n: 3, value: "b"})...)
	req = append(req, mkBatch(batchOpts{pid: pid, epoch: 0, seq: 5, n: 1, value: "c"})...)
	res := mustAppend(t, p, req)
	if res.Duplicate || res.EndOffset != 6 {
		t.Fatalf("mixed request: %+v, want end 6 and not a duplicate", res)
	}
	check := func(p *Partition) {
		t.Helper()
		hs := readAll(t, p, 0)
		checkContiguous(t, hs, 0)
		type shape struct {
			base      int64
			seq, recs int32
		}
		want := []shape{{0, 0, 2}, {2, 2, 3}, {5, 5, 1}}
		if len(hs) != len(want) {
			t.Fatalf("%d batches in the log, want %d", len(hs), len(want))
		}
		for i, h := range hs {
			if got := (shape{h.BaseOffset, h.BaseSequence, h.NumRecords}); got != want[i] {
				t.Fatalf("batch %d: %+v, want %+v", i, got, want[i])
			}
		}
	}
	check(p)
	if rd := mustAppend(t, p, mkBatch(batchOpts{pid: pid, epoch: 0, seq: 2, n: 3, value: "b"})); !rd.Duplicate || rd.BaseOffset != 2 {
		t.Fatalf("retry of the second batch: %+v, want a duplicate at 2", rd)
	}
	e.Close()

	e2 := openEngine(t, Config{DataDir: dir}, tpA)
	p2 := e2.Partition(tpA)
	check(p2)
	if rd := mustAppend(t, p2, mkBatch(batchOpts{pid: pid, epoch: 0, seq: 5, n: 1, value: "c"})); !rd.Duplicate || rd.BaseOffset != 5 {
		t.Fatalf("retry of the last batch after a restart: %+v, want a duplicate at 5", rd)
	}
	if r := mustAppend(t, p2, mkBatch(batchOpts{pid: pid, epoch: 0, seq: 6, n: 1})); r.BaseOffset != 6 {
		t.Fatalf("next batch at %d, want 6", r.BaseOffset)
	}
}

func TestSequenceWrap(t *testing.T) {
	ps := producers{}
	ps.apply(batch.Header{ProducerID: 1, ProducerEpoch: 0, BaseSequence: math.MaxInt32 - 1, LastOffsetDelta: 1}, noMarker)
	if _, _, err := ps.check(batch.Header{ProducerID: 1, BaseSequence: 0, LastOffsetDelta: 4}); err != nil {
		t.Fatalf("wrap to 0: %v", err)
	}
	if _, _, err := ps.check(batch.Header{ProducerID: 1, BaseSequence: math.MaxInt32, LastOffsetDelta: 0}); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("after wrap: %v", err)
	}
	// A batch that itself wraps.
	ps.apply(batch.Header{ProducerID: 2, BaseSequence: math.MaxInt32, LastOffsetDelta: 2}, noMarker)
	if _, _, err := ps.check(batch.Header{ProducerID: 2, BaseSequence: 2}); err != nil {
		t.Fatalf("after wrapping batch: %v", err)
	}
	if _, dup, _ := ps.check(batch.Header{ProducerID: 2, BaseSequence: math.MaxInt32, LastOffsetDelta: 2}); !dup {
		t.Fatal("wrapping batch not a duplicate")
	}
}

func TestLogAppendTimeAndRecompress(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), Now: func() int64 { return 123456 }}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	p.SetConfig(PartitionConfig{LogAppendTime: true, Recompress: true, Compression: batch.CodecGzip})
	res := mustAppend(t, p, mkBatch(batchOpts{n: 5, ts: 7, value: strings.Repeat("z", 100)}))
	if res.LogAppendTime != 123456 {
		t.Fatalf("log append time %d", res.LogAppendTime)
	}
	rr, _ := p.Read(0, 1<<20, true)
	h, _ := batch.ParseHeader(rr.Records)
	if !h.LogAppendTime() || h.MaxTimestamp != 123456 || h.Codec() != batch.CodecGzip {
		t.Fatalf("stored header %+v", h)
	}
	if err := batch.Validate(rr.Records, 0); err != nil {
		t.Fatal(err)
	}
	if off, ts := p.MaxTimestamp(); ts != 123456 || off != 4 {
		t.Fatalf("max timestamp %d %d", off, ts)
	}
}

func TestDurabilityNone(t *testing.T) {
	var durable []int64
	e := openEngine(t, Config{DataDir: t.TempDir(), Durability: DurabilityNone,
		OnDurable: func(p *Partition, end int64) { durable = append(durable, end); p.SetHighWatermark(end) }}, tpA)
	p := e.Partition(tpA)
	called := false
	if _, err := p.Append(mkBatch(batchOpts{n: 2}), func(err error) { called = err == nil }); err != nil {
		t.Fatal(err)
	}
	// In "none" the ack, the durable end and the high watermark come with the write.
	if !called || p.DurableEnd() != 2 || p.HighWatermark() != 2 {
		t.Fatalf("called %v durable end %d hw %d", called, p.DurableEnd(), p.HighWatermark())
	}
	if len(durable) == 0 || durable[len(durable)-1] != 2 {
		t.Fatalf("OnDurable saw %v, want it to end with 2", durable)
	}
	if _, records := e.WALStats(); records != 0 {
		t.Fatalf("%d WAL records: with durability none the WAL gets nothing", records)
	}
}

// With Durability "none" only checkpoints sync the segments; one is due each time another
// CheckpointBytes have been appended, so a power cut keeps what it covered.
func TestDurabilityNoneCheckpoints(t *testing.T) {
	dir := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	b := mkBatch(batchOpts{n: 2, value: strings.Repeat("v", 1000)})
	e, err := testOpen(Config{DataDir: dir, FS: cfs, Durability: DurabilityNone, CheckpointBytes: 4 * int64(len(b)),
		Logger: quietLogger(), RetentionCheckInterval: -1}, []PartitionSpec{specFor(tpA)})
	if err != nil {
		t.Fatal(err)
	}
	p := e.Partition(tpA)
	var end int64
	for range 8 { // the 4th and the 8th make a checkpoint due
		end = mustAppend(t, p, b).EndOffset
	}
	waitFor(t, "a checkpoint after the 8th append", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return !p.ckptDirty
	})
	// The flag clears as that checkpoint starts; it holds run1 until its syncs and its record
	// are done.
	e.ckpt.run1.Lock()
	e.ckpt.run1.Unlock()
	if err := cfs.Crash(); err != nil {
		t.Fatal(err)
	}
	e2 := openEngine(t, Config{DataDir: dir, Durability: DurabilityNone}, tpA)
	p2 := e2.Partition(tpA)
	if p2.LogEndOffset() != end {
		t.Fatalf("log ends at %d after the power cut, want %d: the checkpoint did not sync what it covered", p2.LogEndOffset(), end)
	}
	checkContiguous(t, readAll(t, p2, 0), 0)
}

// An append without a done callback still moves the durable end, and OnDurable hears of it.
func TestOnDurableWithoutDone(t *testing.T) {
	ends := make(chan int64, 16)
	e := openEngine(t, Config{DataDir: t.TempDir(),
		OnDurable: func(p *Partition, end int64) { p.SetHighWatermark(end); ends <- end }}, tpA)
	p := e.Partition(tpA)
	if _, err := p.Append(mkBatch(batchOpts{n: 2}), nil); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case end := <-ends:
			if end != 2 {
				continue // the recovered durable end, reported at open
			}
		case <-time.After(10 * time.Second):
			t.Fatal("OnDurable not called after a nil-done append")
		}
		break
	}
	if p.HighWatermark() != 2 {
		t.Fatalf("hw %d", p.HighWatermark())
	}
}

func TestPartitionsCreateDelete(t *testing.T) {
	dir := t.TempDir()
	tpB := TopicPartition{Topic: "my-topic-x", Partition: 3}
	e := openEngine(t, Config{DataDir: dir}, tpA, tpB)
	mustAppend(t, e.Partition(tpB), mkBatch(batchOpts{}))
	e.Close()
	if _, err := os.Stat(filepath.Join(dir, "my-topic-x-3", metadataFile)); err != nil {
		t.Fatal(err)
	}
	// tpB not listed: removed at open; an unrelated directory is kept.
	os.Mkdir(filepath.Join(dir, "raft"), 0o755)
	os.Mkdir(filepath.Join(dir, "meta-0"), 0o755)
	os.WriteFile(filepath.Join(dir, "meta-0", "snapshot"), nil, 0o644)
	e = openEngine(t, Config{DataDir: dir}, tpA)
	if _, err := os.Stat(filepath.Join(dir, "my-topic-x-3")); !os.IsNotExist(err) {
		t.Fatalf("unlisted partition kept: %v", err)
	}
	for _, keep := range []string{"raft", "meta-0"} {
		if _, err := os.Stat(filepath.Join(dir, keep)); err != nil {
			t.Fatalf("unrelated dir %s removed", keep)
		}
	}
	p, err := e.CreatePartition(specFor(tpB))
	if err != nil || p.HighWatermark() != 0 || p.TopicID() != specFor(tpB).TopicID {
		t.Fatalf("create: %v", err)
	}
	mustAppend(t, p, mkBatch(batchOpts{}))
	if p2, _ := e.CreatePartition(specFor(tpB)); p2 != p {
		t.Fatal("create of an existing partition made a new one")
	}
	// Same name, new topic id: a fresh log.
	spec := specFor(tpB)
	spec.TopicID[0] ^= 1
	p3, err := e.CreatePartition(spec)
	if err != nil || p3 == p || p3.HighWatermark() != 0 {
		t.Fatalf("recreate: %v", err)
	}
	if _, err := p.Append(mkBatch(batchOpts{}), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("append to replaced partition: %v", err)
	}
	if err := e.DeletePartition(tpB); err != nil {
		t.Fatal(err)
	}
	if e.Partition(tpB) != nil {
		t.Fatal("deleted partition still there")
	}
	if _, err := os.Stat(filepath.Join(dir, "my-topic-x-3")); !os.IsNotExist(err) {
		t.Fatal("deleted partition's files kept")
	}
	e.Close()
	if _, err := e.Partition(tpA).Append(mkBatch(batchOpts{}), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestParseDirName(t *testing.T) {
	for name, want := range map[string]bool{"a-0": true, "my-topic-12": true, "a-": false, "-1": false, "a-01": false, "raft": false} {
		if _, ok := parseDirName(name); ok != want {
			t.Errorf("%q: %v", name, ok)
		}
	}
}

func TestFaultFSIsUsed(t *testing.T) {
	ffs := errorfs.New(vfs.OSFS{})
	e := openEngine(t, Config{DataDir: t.TempDir(), FS: ffs}, tpA)
	mustAppend(t, e.Partition(tpA), mkBatch(batchOpts{}))
	if ffs.Count(errorfs.OpWrite) == 0 || ffs.Count(errorfs.OpSync) == 0 {
		t.Fatal("engine bypasses its FS")
	}
}

func TestCloseCompletesPending(t *testing.T) {
	dir := t.TempDir()
	e, err := testOpen(Config{DataDir: dir, Logger: quietLogger()}, []PartitionSpec{specFor(tpA)})
	if err != nil {
		t.Fatal(err)
	}
	p := e.Partition(tpA)
	const n = 50
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		if _, err := p.Append(mkBatch(batchOpts{n: 1}), func(err error) { results <- err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	for i := 0; i < n; i++ {
		select {
		case err := <-results:
			if err == nil {
				acked++
			} else if !errors.Is(err, ErrClosed) {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d done calls", i, n)
		}
	}
	e2 := openEngine(t, Config{DataDir: dir}, tpA)
	if hw := e2.Partition(tpA).HighWatermark(); hw < int64(acked) {
		t.Fatalf("%d acknowledged, %d recovered", acked, hw)
	}
}
