package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/ringtail/ringtail/engine/batch"
)

// TestBytesToRead: the estimate a parked fetch compares with its MinBytes is never below what
// reads from the offset return, exceeds it by less than an index interval and a batch, and is 0 exactly
// where a read returns nothing — at the high watermark, and for read_committed at the last
// stable offset of an open transaction. Offsets outside the log are out of range.
func TestBytesToRead(t *testing.T) {
	const interval = 300
	cfg := Config{DataDir: t.TempDir(), SegmentBytes: 2000, IndexIntervalBytes: interval}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	maxBatch := 0
	for i := range 60 {
		b := mkBatch(batchOpts{n: 1 + i%3, value: strings.Repeat("x", 40)})
		maxBatch = max(maxBatch, len(b))
		mustAppend(t, p, b)
	}
	check := func(committed bool, upTo int64) {
		t.Helper()
		for off := p.LogStartOffset(); off <= p.LogEndOffset(); off++ {
			est, err := p.BytesToRead(off, committed)
			if err != nil {
				t.Fatalf("offset %d: %v", off, err)
			}
			// What reads from off return one after another (a read stops at its segment's end;
			// the estimate counts on, as Kafka's DelayedFetch answers once the end has moved to a
			// newer segment).
			var got int64
			for from := off; ; {
				res, err := p.ReadIsolated(from, 1<<30, true, committed)
				if err != nil {
					t.Fatalf("offset %d: %v", from, err)
				}
				if len(res.Records) == 0 {
					break
				}
				got += int64(len(res.Records))
				bs, err := batch.Split(res.Records)
				if err != nil {
					t.Fatal(err)
				}
				last, _ := batch.ParseHeader(bs[len(bs)-1])
				from = last.LastOffset() + 1
			}
			if (est == 0) != (got == 0) || est < got || est >= got+interval+int64(maxBatch) {
				t.Fatalf("committed=%v offset %d (read limit %d): estimate %d, a read returns %d", committed, off, upTo, est, got)
			}
		}
	}
	check(false, p.HighWatermark())
	p.mu.Lock()
	segments := len(p.segments)
	p.mu.Unlock()
	if segments < 3 {
		t.Fatalf("%d segments: the test needs the estimate to span several", segments)
	}

	// An open transaction: read_committed stops at its first offset, read_uncommitted does not.
	first := txnProduce(t, p, 7, 0, 0, 2).BaseOffset
	for i := range 10 {
		mustAppend(t, p, mkBatch(batchOpts{n: 2, value: strings.Repeat("y", 40+i)}))
	}
	if lso := p.LastStableOffset(); lso != first {
		t.Fatalf("last stable offset %d, want %d", lso, first)
	}
	check(true, first)
	check(false, p.HighWatermark())

	for _, off := range []int64{-1, p.LogEndOffset() + 1} {
		if _, err := p.BytesToRead(off, false); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("offset %d: %v, want ErrOffsetOutOfRange", off, err)
		}
	}
}
