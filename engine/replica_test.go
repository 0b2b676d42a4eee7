package engine

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ringtail/ringtail/engine/batch"
)

// TestReplicaSpan walks a log with ReplicaSpan the way a leader streams it to a follower: above
// the high watermark, across a segment roll, in spans of whole batches bounded by maxBytes, and
// the bytes are the log's own.
func TestReplicaSpan(t *testing.T) {
	// An OnDurable that leaves the high watermark at 0: spans go above it.
	e := openEngine(t, Config{DataDir: t.TempDir(), SegmentBytes: 4096, OnDurable: func(*Partition, int64) {}}, tpA)
	p := e.Partition(tpA)
	var want [][]byte
	for i := range 120 {
		b := mkBatch(batchOpts{n: 1 + i%3, value: "v"})
		mustAppend(t, p, b)
		want = append(want, b)
	}
	if p.HighWatermark() != 0 {
		t.Fatalf("high watermark %d, want 0", p.HighWatermark())
	}
	if len(p.segments) < 2 {
		t.Fatalf("%d segments; the test needs a roll", len(p.segments))
	}

	var got bytes.Buffer
	var prev *Span
	off := int64(0)
	for off < p.LogEndOffset() {
		sp, err := p.ReplicaSpan(off, 300, prev)
		if err != nil {
			t.Fatal(err)
		}
		if sp.Offset != off || sp.Len <= 0 || sp.EndOffset <= off {
			t.Fatalf("span %+v at %d", sp, off)
		}
		buf := make([]byte, sp.Len)
		if _, err := sp.File.ReadAt(buf, sp.Pos); err != nil {
			t.Fatal(err)
		}
		hs, err := batch.Split(buf)
		if err != nil {
			t.Fatal(err)
		}
		first, _ := batch.ParseHeader(hs[0])
		last, _ := batch.ParseHeader(hs[len(hs)-1])
		if first.BaseOffset != off || last.LastOffset()+1 != sp.EndOffset {
			t.Fatalf("span at %d holds %d..%d, says it ends at %d", off, first.BaseOffset, last.LastOffset(), sp.EndOffset)
		}
		if len(hs) > 1 && sp.Len > 300 {
			t.Fatalf("span of %d bytes and %d batches exceeds maxBytes 300", sp.Len, len(hs))
		}
		got.Write(buf)
		off = sp.EndOffset
		prev = &sp
	}
	// The stored batches differ from the appended ones only in offsets and epochs: compare
	// their records.
	gotBatches, err := batch.Split(got.Bytes())
	if err != nil || len(gotBatches) != len(want) {
		t.Fatalf("%d batches streamed (err %v), want %d", len(gotBatches), err, len(want))
	}
	for i := range want {
		a, _ := batch.Records(gotBatches[i])
		b, _ := batch.Records(want[i])
		if len(a) != len(b) || !bytes.Equal(a[0].Value, b[0].Value) {
			t.Fatalf("batch %d differs", i)
		}
	}

	end, err := p.ReplicaSpan(p.LogEndOffset(), 300, prev)
	if err != nil || end.Len != 0 || end.EndOffset != p.LogEndOffset() {
		t.Fatalf("at the log end: %+v, %v", end, err)
	}
	if _, err := p.ReplicaSpan(p.LogEndOffset()+1, 300, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("past the log end: %v, want ErrOffsetOutOfRange", err)
	}
	// Inside a batch (offsets 1..2 hold the second one).
	if _, err := p.ReplicaSpan(2, 300, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("inside a batch: %v, want ErrOffsetOutOfRange", err)
	}
	if ep := p.LastLogEpoch(); ep != 0 {
		t.Fatalf("last log epoch %d, want 0", ep)
	}
}
