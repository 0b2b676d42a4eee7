package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// retentionEngine opens tpA with tiny segments, retention r, the retention timer off and a
// clock the test sets (ms).
func retentionEngine(t *testing.T, dir string, r Retention, clock *atomic.Int64) (*Engine, *Partition) {
	t.Helper()
	spec := specFor(tpA)
	spec.Config.Retention = r
	e, err := testOpen(Config{DataDir: dir, SegmentBytes: 1000, Logger: quietLogger(), RetentionCheckInterval: -1,
		Now: func() int64 { return clock.Load() }}, []PartitionSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, e.Partition(tpA)
}

// appendAt appends n batches of ~100 bytes stamped ts and returns the offset after them.
func appendAt(t *testing.T, p *Partition, n int, ts int64) int64 {
	t.Helper()
	for i := 0; i < n; i++ {
		mustAppend(t, p, mkBatch(batchOpts{n: 1, ts: ts, value: strings.Repeat("r", 60)}))
	}
	return p.HighWatermark()
}

func segmentBases(p *Partition) []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b []int64
	for _, s := range p.segments {
		b = append(b, s.base)
	}
	return b
}

func TestRetentionByTime(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000)
	dir := t.TempDir()
	e, p := retentionEngine(t, dir, Retention{Delete: true, Ms: 60_000, Bytes: -1}, &clock)
	oldEnd := appendAt(t, p, 30, 1_000_000) // several segments of old records
	appendAt(t, p, 30, 1_050_000)           // newer ones
	if err := e.Checkpoint(); err != nil {  // seals are durable: deletable
		t.Fatal(err)
	}
	before := segmentBases(p)
	if len(before) < 4 {
		t.Fatalf("only %d segments", len(before))
	}

	clock.Store(1_000_000 + 60_000) // nothing older than a minute yet
	e.EnforceRetention()
	if p.LogStartOffset() != 0 {
		t.Fatalf("deleted too early: log start %d", p.LogStartOffset())
	}
	clock.Store(1_000_000 + 60_001) // the old records are past retention.ms, the newer are not
	e.EnforceRetention()
	start := p.LogStartOffset()
	if start == 0 || start > oldEnd {
		t.Fatalf("log start %d, want in (0, %d]: every segment wholly older than retention.ms deleted, no newer one", start, oldEnd)
	}
	if got := segmentBases(p); got[0] != start {
		t.Fatalf("first segment %d, log start %d", got[0], start)
	}
	if _, err := os.Stat(filepath.Join(dir, dirName(tpA), "00000000000000000000.log")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted segment file: %v", err)
	}
	if _, err := p.Read(0, 1000, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the log start: %v", err)
	}
	hs := readAll(t, p, start)
	checkContiguous(t, hs, start)

	// Far in the future every sealed segment goes and the expired active one is rolled; once a
	// checkpoint has sealed it, the next pass deletes it too: the log is empty at its end.
	clock.Store(10_000_000)
	e.EnforceRetention()
	hw := p.HighWatermark()
	if got := segmentBases(p); len(got) != 2 || got[1] != hw {
		t.Fatalf("segments %v after the expired active one was rolled, want [.., %d]", got, hw)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	e.EnforceRetention()
	if got := segmentBases(p); len(got) != 1 || p.LogStartOffset() != hw {
		t.Fatalf("segments %v, log start %d, want only the empty active one at %d", got, p.LogStartOffset(), hw)
	}
	if rr, err := p.Read(hw, 1000, true); err != nil || len(rr.Records) != 0 {
		t.Fatalf("read at the end of an emptied log: %d bytes, %v", len(rr.Records), err)
	}
	start = p.LogStartOffset()

	// A restart recovers the same log start and keeps appending after the high watermark.
	e.Close()
	e2, p2 := retentionEngine(t, dir, Retention{Delete: true, Ms: 60_000, Bytes: -1}, &clock)
	_ = e2
	if p2.LogStartOffset() != start || p2.HighWatermark() != hw {
		t.Fatalf("after restart: log start %d hw %d, want %d %d", p2.LogStartOffset(), p2.HighWatermark(), start, hw)
	}
	if res := mustAppend(t, p2, mkBatch(batchOpts{ts: 10_000_000, value: "after"})); res.BaseOffset != hw {
		t.Fatalf("append after restart at %d, want %d", res.BaseOffset, hw)
	}
}

func TestRetentionBySize(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000)
	e, p := retentionEngine(t, t.TempDir(), Retention{Delete: true, Ms: -1, Bytes: 2500}, &clock)
	appendAt(t, p, 100, 1_000_000)
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	e.EnforceRetention()
	p.mu.Lock()
	var total int64
	for _, s := range p.segments {
		total += s.size
	}
	first := p.segments[0].size
	n := len(p.segments)
	p.mu.Unlock()
	// Kafka's rule: delete the oldest while what remains still holds retention.bytes.
	if total < 2500 || total-first >= 2500 {
		t.Fatalf("%d segments, %d bytes kept (first %d): want the fewest segments holding >= 2500", n, total, first)
	}
	if p.LogStartOffset() == 0 {
		t.Fatal("nothing deleted")
	}
	checkContiguous(t, readAll(t, p, p.LogStartOffset()), p.LogStartOffset())
}

// TestRetentionKeeps: no policy, a compacted (non-delete) policy, segments not yet made
// durable by a checkpoint, and the active segment are never deleted.
func TestRetentionKeeps(t *testing.T) {
	for name, r := range map[string]Retention{
		"zero value":       {},
		"no delete":        {Delete: false, Ms: 0, Bytes: 0},
		"unlimited":        {Delete: true, Ms: -1, Bytes: -1},
		"not checkpointed": {Delete: true, Ms: 0, Bytes: 0},
	} {
		t.Run(name, func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(1_000_000)
			e, p := retentionEngine(t, t.TempDir(), r, &clock)
			appendAt(t, p, 40, 1)
			if name != "not checkpointed" {
				if err := e.Checkpoint(); err != nil {
					t.Fatal(err)
				}
			}
			e.EnforceRetention()
			if p.LogStartOffset() != 0 {
				t.Fatalf("log start %d: deleted", p.LogStartOffset())
			}
		})
	}
	// With the strictest size policy after a checkpoint, the active segment stays.
	var clock atomic.Int64
	clock.Store(1_000_000)
	e, p := retentionEngine(t, t.TempDir(), Retention{Delete: true, Ms: -1, Bytes: 0}, &clock)
	hw := appendAt(t, p, 40, 1)
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	e.EnforceRetention()
	if got := segmentBases(p); len(got) != 1 || p.HighWatermark() != hw {
		t.Fatalf("segments %v, hw %d (want %d)", got, p.HighWatermark(), hw)
	}
}

// TestRetentionReadInFlight: a read that found a segment before retention deleted it still
// reads it, since the descriptor outlives the name for graveDelay.
func TestRetentionReadInFlight(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000)
	e, p := retentionEngine(t, t.TempDir(), Retention{Delete: true, Ms: 0, Bytes: -1}, &clock)
	appendAt(t, p, 40, 1)
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	seg, _ := p.viewLocked(0)
	p.mu.Unlock()
	p.enforceRetention(clock.Load(), time.Now())
	if p.LogStartOffset() == 0 {
		t.Fatal("nothing deleted")
	}
	buf := make([]byte, 61)
	if _, err := seg.file.ReadAt(buf, 0); err != nil {
		t.Fatalf("reading a just-deleted segment: %v", err)
	}
	p.enforceRetention(clock.Load(), time.Now().Add(graveDelay))
	p.mu.Lock()
	graves := len(p.graves)
	p.mu.Unlock()
	if graves != 0 {
		t.Fatalf("%d descriptors still open after the delay", graves)
	}
}

// TestSegmentMs rolls the active segment once its first batch is segment.ms old, on the next
// append, and not before.
func TestSegmentMs(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000)
	spec := specFor(tpA)
	spec.Config.SegmentMs = 60_000
	e, err := testOpen(Config{DataDir: t.TempDir(), Logger: quietLogger(), RetentionCheckInterval: -1,
		Now: func() int64 { return clock.Load() }}, []PartitionSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := e.Partition(tpA)
	mustAppend(t, p, mkBatch(batchOpts{ts: 1_000_000, value: "first"}))
	clock.Store(1_059_999)
	mustAppend(t, p, mkBatch(batchOpts{ts: 1_059_999, value: "same segment"}))
	if got := segmentBases(p); len(got) != 1 {
		t.Fatalf("rolled before segment.ms: %v", got)
	}
	clock.Store(1_060_000)
	res := mustAppend(t, p, mkBatch(batchOpts{ts: 1_060_000, value: "new segment"}))
	if got := segmentBases(p); len(got) != 2 || got[1] != res.BaseOffset {
		t.Fatalf("segments %v after segment.ms, want a new one at %d", got, res.BaseOffset)
	}
	checkContiguous(t, readAll(t, p, 0), 0)
}

// TestTrimBefore: a partition without any retention policy drops the sealed segments wholly
// below the floor its owner sets (after Roll, all of them), once a checkpoint made them durable.
func TestTrimBefore(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000)
	e, p := retentionEngine(t, t.TempDir(), Retention{}, &clock)
	end := appendAt(t, p, 40, 1)
	if err := p.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := p.Roll(); err != nil { // nothing to seal: no empty segment piles up
		t.Fatal(err)
	}
	p.TrimBefore(end)
	e.EnforceRetention()
	if p.LogStartOffset() != 0 {
		t.Fatal("deleted before a checkpoint made the segments durable")
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	e.EnforceRetention()
	if got := segmentBases(p); len(got) != 1 || got[0] != end || p.LogStartOffset() != end {
		t.Fatalf("segments %v, log start %d, want only the empty active one at %d", got, p.LogStartOffset(), end)
	}
	res := mustAppend(t, p, mkBatch(batchOpts{ts: 1, value: "after"}))
	if res.BaseOffset != end {
		t.Fatalf("append after the trim at %d, want %d", res.BaseOffset, end)
	}
}

// TestDeleteRecordsBefore moves the log start inside a segment: reads below it are out of
// range, reads at it work, time lookups skip what is below, an offset past the high watermark
// is refused, and the start survives a restart while its segment is still on disk.
func TestDeleteRecordsBefore(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000)
	dir := t.TempDir()
	e, p := retentionEngine(t, dir, Retention{}, &clock)
	for i := 0; i < 10; i++ {
		mustAppend(t, p, mkBatch(batchOpts{ts: int64(100 + i), value: "d"}))
	}
	if _, err := p.DeleteRecordsBefore(11); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("past the high watermark: %v", err)
	}
	if start, err := p.DeleteRecordsBefore(4); err != nil || start != 4 {
		t.Fatalf("delete before 4: start %d, %v", start, err)
	}
	if start, err := p.DeleteRecordsBefore(2); err != nil || start != 4 {
		t.Fatalf("an offset below the start changes nothing: start %d, %v", start, err)
	}
	if _, err := p.Read(3, 1000, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the start: %v", err)
	}
	if rr, err := p.Read(4, 1000, true); err != nil || len(rr.Records) == 0 || rr.LogStartOffset != 4 {
		t.Fatalf("read at the start: %d bytes, log start %d, %v", len(rr.Records), rr.LogStartOffset, err)
	}
	if off, _, ok := p.OffsetForTime(0); !ok || off != 4 {
		t.Fatalf("time lookup from the beginning gives %d (%v), want the start 4", off, ok)
	}
	e.Close()
	_, p2 := retentionEngine(t, dir, Retention{}, &clock)
	if p2.LogStartOffset() != 4 || p2.HighWatermark() != 10 {
		t.Fatalf("after restart: start %d hw %d, want 4 and 10", p2.LogStartOffset(), p2.HighWatermark())
	}
	if start, err := p2.DeleteRecordsBefore(-1); err != nil || start != 10 {
		t.Fatalf("delete up to the high watermark: start %d, %v", start, err)
	}
}

// TestRetentionAfterLaggingHighWatermark: segments a checkpoint made durable while the high
// watermark had not passed them yet (a cluster's followers behind, or appends not yet durable)
// get their index files from a later checkpoint, once it has, so retention can delete them;
// they used to stay unindexed, and undeletable, until a restart.
func TestRetentionAfterLaggingHighWatermark(t *testing.T) {
	spec := specFor(tpA)
	spec.Config.Retention = Retention{Delete: true, Ms: -1, Bytes: 2500}
	e, err := testOpen(Config{DataDir: t.TempDir(), SegmentBytes: 1000, Logger: quietLogger(), RetentionCheckInterval: -1,
		OnDurable: func(*Partition, int64) {}}, []PartitionSpec{spec}) // the high watermark moves only by SetHighWatermark
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	p := e.Partition(tpA)
	for range 100 {
		mustAppend(t, p, mkBatch(batchOpts{n: 1, value: strings.Repeat("r", 60)}))
	}
	if err := e.Checkpoint(); err != nil { // durable, but above the high watermark (0)
		t.Fatal(err)
	}
	e.EnforceRetention()
	if p.LogStartOffset() != 0 {
		t.Fatalf("retention deleted up to %d above the high watermark", p.LogStartOffset())
	}
	p.SetHighWatermark(p.LogEndOffset())
	e.EnforceRetention() // asks for the checkpoint that indexes them
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	e.EnforceRetention()
	if p.LogStartOffset() == 0 {
		t.Fatalf("nothing deleted once the high watermark passed the durable segments (segments %v)", segmentBases(p))
	}
	checkContiguous(t, readAll(t, p, p.LogStartOffset()), p.LogStartOffset())
}
