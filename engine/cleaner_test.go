package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/crashfs"
)

// keyedBatch is one record key=value (value "" is a tombstone) at timestamp ts.
func keyedBatch(key, value string, ts int64) []byte {
	rec := batch.Record{Key: []byte(key)}
	if value != "" {
		rec.Value = []byte(value)
	}
	h := batch.Header{FirstTimestamp: ts, MaxTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
	return batch.Build(h, []batch.Record{rec}, batch.CodecNone)
}

// keyedWorkload is what cleaner tests append: record i has key k<i%keys>, value v<i>, timestamp
// i, except every seventh, a tombstone.
func keyedWorkload(i, keys int) (key, value string) {
	key = fmt.Sprintf("k%d", i%keys)
	if i%7 == 6 {
		return key, ""
	}
	return key, fmt.Sprintf("v%d", i)
}

// readRecords reads every record from from to the high watermark, checking the batches are
// valid stored batches, contiguous, and their records' offsets rise.
func readRecords(t *testing.T, p *Partition, from int64) map[int64]batch.Record {
	t.Helper()
	out := map[int64]batch.Record{}
	next, prev := from, int64(-1)
	for next < p.HighWatermark() {
		res, err := p.Read(next, 4096, true)
		if err != nil {
			t.Fatalf("read at %d: %v", next, err)
		}
		bs, err := batch.Split(res.Records)
		if err != nil || len(bs) == 0 {
			t.Fatalf("read at %d: %d batches, %v", next, len(bs), err)
		}
		for _, b := range bs {
			if err := batch.ValidateStored(b); err != nil {
				t.Fatalf("stored batch invalid: %v", err)
			}
			h, _ := batch.ParseHeader(b)
			if h.BaseOffset != next {
				t.Fatalf("batch at %d, want %d: not contiguous", h.BaseOffset, next)
			}
			recs, _ := batch.Records(b)
			for _, r := range recs {
				off := h.BaseOffset + int64(r.OffsetDelta)
				if off <= prev {
					t.Fatalf("offset %d after %d", off, prev)
				}
				prev = off
				r.TimestampDelta += h.FirstTimestamp // the record's timestamp
				out[off] = r
			}
			next = h.LastOffset() + 1
		}
	}
	return out
}

// checkCompacted checks recs against the workload of n records: each record is the one
// appended at its offset, and each key's latest record is there unless it is a tombstone
// (which may be gone). It returns how many records there are.
func checkCompacted(t *testing.T, recs map[int64]batch.Record, n, keys int, tombstonesGone bool) {
	t.Helper()
	latest := map[string]int64{}
	for i := 0; i < n; i++ {
		k, _ := keyedWorkload(i, keys)
		latest[k] = int64(i)
	}
	for off, r := range recs {
		k, v := keyedWorkload(int(off), keys)
		if string(r.Key) != k || string(r.Value) != v || (v == "") != (r.Value == nil) || r.TimestampDelta != off {
			t.Fatalf("offset %d holds %q=%q at %d, appended %q=%q at %d", off, r.Key, r.Value, r.TimestampDelta, k, v, off)
		}
		if latest[k] > off && off < int64(n) {
			// Superseded records may stay only where the cleaner has not been (above the limit).
			continue
		}
	}
	for k, off := range latest {
		_, v := keyedWorkload(int(off), keys)
		r, ok := recs[off]
		switch {
		case v == "" && tombstonesGone && ok:
			t.Fatalf("key %s: tombstone at %d outlived its delete horizon", k, off)
		case v != "" && !ok:
			t.Fatalf("key %s: latest value at %d gone", k, off)
		case ok && !bytes.Equal(r.Key, []byte(k)):
			t.Fatalf("key %s at %d: %q", k, off, r.Key)
		}
	}
}

// appendSealed appends records 0..n-1 of keyedWorkload, then rolls and checkpoints, so that all
// of them lie in sealed segments a pass may clean.
func appendSealed(t *testing.T, e *Engine, p *Partition, n, keys int) {
	t.Helper()
	appendSealedRange(t, e, p, 0, n, keys)
}

// appendSealedRange is appendSealed of records from..to-1.
func appendSealedRange(t *testing.T, e *Engine, p *Partition, from, to, keys int) {
	t.Helper()
	for i := from; i < to; i++ {
		k, v := keyedWorkload(i, keys)
		mustAppend(t, p, keyedBatch(k, v, int64(i)))
	}
	if err := p.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
}

func compactSpec(tp TopicPartition, deleteRetentionMs int64) PartitionSpec {
	spec := specFor(tp)
	spec.Config.Compaction = Compaction{Enabled: true, MinDirtyRatio: 0, DeleteRetentionMs: deleteRetentionMs}
	return spec
}

// openCompacted opens an engine of *cfg (read at each call) holding tpA compacted with
// deleteRetentionMs, and returns it with the partition.
func openCompacted(t *testing.T, cfg *Config, deleteRetentionMs int64) (*Engine, *Partition) {
	t.Helper()
	e, err := testOpen(*cfg, []PartitionSpec{compactSpec(tpA, deleteRetentionMs)})
	if err != nil {
		t.Fatal(err)
	}
	return e, e.Partition(tpA)
}

// removeSnapshots deletes p's producer snapshots (p's engine closed), so that the next open
// rebuilds the producer state from the batch headers.
func removeSnapshots(t *testing.T, p *Partition) {
	t.Helper()
	snaps, err := filepath.Glob(filepath.Join(p.dir, "*"+snapshotSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range snaps {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCleanerCompacts appends many values for few keys over small segments, cleans, and reads
// back the latest value per key at its original offset, contiguous batches, fewer bytes; a read
// at a removed offset returns the next batch; a restart reads the same; a pass past the delete
// horizon removes the tombstones; appends go on. With Durability "none" too: the WAL holds none
// of its records, so what a checkpoint synced is safe to clean.
func TestCleanerCompacts(t *testing.T) {
	for _, d := range []string{DurabilityFsync, DurabilityNone} {
		t.Run(d, func(t *testing.T) { cleanerCompacts(t, d) })
	}
}

func cleanerCompacts(t *testing.T, durability string) {
	const n, keys = 301, 5 // the last record, of k0, is a tombstone
	var clock atomic.Int64
	clock.Store(1000)
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: testLogger(t), Durability: durability, SegmentBytes: 1024, IndexIntervalBytes: 256,
		RetentionCheckInterval: -1, CleanerInterval: -1, Now: clock.Load}
	spec := compactSpec(tpA, 5000)
	e, err := testOpen(cfg, []PartitionSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	p := e.Partition(tpA)
	appendSealed(t, e, p, n, keys)
	before := readRecords(t, p, 0)
	if len(before) != n {
		t.Fatalf("%d records before cleaning, want %d", len(before), n)
	}
	e.Clean()
	st := e.CleanerStats()
	if st.Passes != 1 || st.BytesRead == 0 || st.BytesWritten == 0 || st.MaxDirtyRatio != 1 {
		t.Fatalf("stats %+v", st)
	}
	after := readRecords(t, p, 0)
	checkCompacted(t, after, n, keys, false)
	active := p.segments[len(p.segments)-1].base
	for off := range after {
		k, _ := keyedWorkload(int(off), keys)
		for later := off + 1; later < active; later++ {
			if lk, _ := keyedWorkload(int(later), keys); lk == k {
				t.Fatalf("offset %d (key %s) kept though %d below the active segment %d supersedes it", off, k, later, active)
			}
		}
	}
	if len(after) >= n/2 {
		t.Fatalf("%d of %d records left", len(after), n)
	}
	// A fetch at a removed offset gets the batch that covers it (an empty one) or the next.
	for off := int64(0); off < active; off++ {
		if _, ok := after[off]; ok {
			continue
		}
		res, err := p.Read(off, 1, true)
		if err != nil || len(res.Records) == 0 {
			t.Fatalf("read at removed offset %d: %d bytes, %v", off, len(res.Records), err)
		}
		if h, _ := batch.ParseHeader(res.Records); h.BaseOffset > off || h.LastOffset() < off {
			t.Fatalf("read at %d gave batch [%d, %d]", off, h.BaseOffset, h.LastOffset())
		}
		break
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: recovery loads and checks the cleaned segments.
	e, err = testOpen(cfg, []PartitionSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p = e.Partition(tpA)
	if again := readRecords(t, p, 0); len(again) != len(after) {
		t.Fatalf("%d records after a restart, %d before", len(again), len(after))
	}
	// The cleaner checkpoint came back: nothing is dirty, so a pass reads nothing.
	e.Clean()
	if st := e.CleanerStats(); st.Passes != 0 || st.BytesRead != 0 {
		t.Fatalf("a pass right after the restart: %+v, want nothing read", st)
	}
	// Past the delete horizon (stamped at 1000+5000) the tombstones go at the next pass, which
	// a new segment's record makes due.
	clock.Store(7000)
	appendSealedRange(t, e, p, n, n+1, keys)
	e.Clean()
	checkCompacted(t, readRecords(t, p, 0), n+1, keys, true)
	k, v := keyedWorkload(n+1, keys)
	mustAppend(t, p, keyedBatch(k, v, n+1))
}

// TestCompactedRefusesUnkeyed: a record without a key on a compacted partition is refused with
// ErrInvalidRecord (Kafka's INVALID_RECORD); with a key it is taken.
func TestCompactedRefusesUnkeyed(t *testing.T) {
	dir := t.TempDir()
	e, err := testOpen(Config{DataDir: dir, Logger: quietLogger(), CleanerInterval: -1}, []PartitionSpec{compactSpec(tpA, 1000)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := e.Partition(tpA)
	if _, err := p.Append(mkBatch(batchOpts{n: 2, value: "unkeyed"}), func(error) {}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("unkeyed append: %v, want ErrInvalidRecord", err)
	}
	mustAppend(t, p, keyedBatch("k", "v", 1))
	if p.LogEndOffset() != 1 {
		t.Fatalf("log end %d", p.LogEndOffset())
	}
}

// TestCleanerKeepsOldSegmentForReaders: a reader that took a segment file before a swap (a
// follower's sendfile span) reads the old bytes, whole, after it; a new read gets the cleaned
// segment.
func TestCleanerKeepsOldSegmentForReaders(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: quietLogger(), SegmentBytes: 1024, RetentionCheckInterval: -1, CleanerInterval: -1}
	e, err := testOpen(cfg, []PartitionSpec{compactSpec(tpA, 1000)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := e.Partition(tpA)
	appendSealed(t, e, p, 60, 2)
	sp, err := p.ReplicaSpan(0, 1<<20, nil)
	if err != nil || sp.Len == 0 {
		t.Fatalf("span: %+v, %v", sp, err)
	}
	old := make([]byte, sp.Len)
	if _, err := sp.File.ReadAt(old, sp.Pos); err != nil {
		t.Fatal(err)
	}
	e.Clean()
	if e.CleanerStats().Passes != 1 {
		t.Fatalf("no pass: %+v", e.CleanerStats())
	}
	again := make([]byte, sp.Len)
	if _, err := sp.File.ReadAt(again, sp.Pos); err != nil || !bytes.Equal(again, old) {
		t.Fatalf("the old segment changed under its reader: %v", err)
	}
	now, err := p.ReplicaSpan(0, 1<<20, nil)
	if err != nil || now.File == sp.File || now.Len >= sp.Len {
		t.Fatalf("after the swap: span %+v (%d bytes before), %v", now, sp.Len, err)
	}
}

// TestCleanerKeyMapBudget: with a key map budget smaller than one segment's keys, each pass
// takes one dirty segment and cleans up to it; passes in turn leave the same log as one whole
// pass would: every key's latest record, nothing superseded below the active segment.
func TestCleanerKeyMapBudget(t *testing.T) {
	const n, keys = 200, 7
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: testLogger(t), SegmentBytes: 1024, RetentionCheckInterval: -1, CleanerInterval: -1,
		CleanerKeyMapBytes: 1}
	e, err := testOpen(cfg, []PartitionSpec{compactSpec(tpA, 1<<40)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := e.Partition(tpA)
	appendSealed(t, e, p, n, keys)
	sealed := len(p.segments) - 1
	for i := 0; i < sealed; i++ {
		e.Clean()
	}
	if got := e.CleanerStats().Passes; got != uint64(sealed) {
		t.Fatalf("%d passes over %d sealed segments, want one each", got, sealed)
	}
	e.Clean() // nothing dirty is left
	if got := e.CleanerStats().Passes; got != uint64(sealed) {
		t.Fatalf("a pass with nothing dirty: %d passes", got)
	}
	recs := readRecords(t, p, 0)
	checkCompacted(t, recs, n, keys, false)
	if len(recs) != keys {
		t.Fatalf("%d records left, want one per key (%d)", len(recs), keys)
	}
}

// TestCleanerOff: a partition without compaction is never rewritten.
func TestCleanerOff(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: quietLogger(), SegmentBytes: 1024, RetentionCheckInterval: -1, CleanerInterval: -1}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	for i := 0; i < 100; i++ {
		k, v := keyedWorkload(i, 2)
		mustAppend(t, p, keyedBatch(k, v, int64(i)))
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	e.Clean()
	if got := readRecords(t, p, 0); len(got) != 100 || e.CleanerStats().Passes != 0 {
		t.Fatalf("%d records, stats %+v", len(got), e.CleanerStats())
	}
}

// TestCrashAtEveryCleanerOperation cuts the power at every storage operation of a cleaner pass
// (its writes, syncs, index removals, the rename, the new index files) over a log written
// before. After each cut, recovery must give a readable log, contiguous, every record the one
// appended at its offset and every key's latest value there; a pass then completes and
// appends go on.
func TestCrashAtEveryCleanerOperation(t *testing.T) {
	const n, keys = 63, 3 // the last record, of k2, is a tombstone
	spec := compactSpec(tpA, 1<<40)
	cfgFor := func(dir string, fs vfs.FS) Config {
		return Config{DataDir: dir, FS: fs, Logger: quietLogger(), SegmentBytes: 500, IndexIntervalBytes: 128,
			WALFileBytes: 32 << 10, CheckpointBytes: 4 << 10, RetentionCheckInterval: -1, CleanerInterval: -1}
	}
	prepare := func(dir string) {
		e, err := testOpen(cfgFor(dir, vfs.OSFS{}), []PartitionSpec{spec})
		if err != nil {
			t.Fatal(err)
		}
		p := e.Partition(tpA)
		for i := 0; i < n; i++ {
			k, v := keyedWorkload(i, keys)
			mustAppend(t, p, keyedBatch(k, v, int64(i)))
		}
		if err := p.Roll(); err != nil { // the last record, a tombstone, in a sealed segment
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	run := func(dir string, cfs *crashfs.FS) bool {
		e, err := testOpen(cfgFor(dir, cfs), []PartitionSpec{spec})
		if err != nil {
			return false
		}
		defer e.Close()
		e.Clean()
		return e.CleanerStats().Passes == 1
	}
	check := func(t *testing.T, dir string, cleaned bool) {
		t.Helper()
		e, err := testOpen(cfgFor(dir, vfs.OSFS{}), []PartitionSpec{spec})
		if err != nil {
			t.Fatalf("recovery: %v", err)
		}
		defer e.Close()
		p := e.Partition(tpA)
		if hw := p.HighWatermark(); hw != n {
			t.Fatalf("high watermark %d after recovery, want %d", hw, n)
		}
		// The cleaner checkpoint: none (a cut before it was durable) or the pass's (the
		// start of the active segment), never anything else; the uncut run's is there.
		p.mu.Lock()
		firstDirty, active := p.cleaner.firstDirty, p.active().base
		p.mu.Unlock()
		if firstDirty != 0 && firstDirty != active || filepath.Base(dir) == "whole" && firstDirty != active {
			t.Fatalf("cleaner checkpoint %d after recovery (the pass ended at %d)", firstDirty, active)
		}
		checkCompacted(t, readRecords(t, p, 0), n, keys, false)
		e.Clean()
		recs := readRecords(t, p, 0)
		checkCompacted(t, recs, n, keys, false)
		if len(recs) >= n/2 {
			t.Fatalf("%d of %d records after a pass following recovery", len(recs), n)
		}
		k, v := keyedWorkload(n, keys)
		mustAppend(t, p, keyedBatch(k, v, n))
	}
	base := t.TempDir()
	whole := filepath.Join(base, "whole")
	prepare(whole)
	cfs := crashfs.New(vfs.OSFS{})
	if !run(whole, cfs) {
		t.Fatal("the uncut run did not clean")
	}
	check(t, whole, true)
	crashfs.CutAtEveryOperation(t, base, cfs.Ops(), prepare, run, check)
}

// BenchmarkCleanerPass measures one cleaner pass over a fresh 32 MiB partition: 16-record
// batches of 512-byte values over 1,000 keys in 8 MiB segments, all sealed and checkpointed.
// Reports the log bytes read per second (SetBytes) and the bytes left.
func BenchmarkCleanerPass(b *testing.B) {
	const batches, perBatch, keys = 4000, 16, 1000
	value := bytes.Repeat([]byte("v"), 512)
	var logBytes, left int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cfg := Config{DataDir: b.TempDir(), Logger: quietLogger(), SegmentBytes: 8 << 20, RetentionCheckInterval: -1,
			CleanerInterval: -1, WALFileBytes: 64 << 20}
		e, err := testOpen(cfg, []PartitionSpec{compactSpec(tpA, 1000)})
		if err != nil {
			b.Fatal(err)
		}
		p := e.Partition(tpA)
		n := 0
		for j := 0; j < batches; j++ {
			recs := make([]batch.Record, perBatch)
			for r := range recs {
				recs[r] = batch.Record{OffsetDelta: int32(r), Key: []byte(fmt.Sprintf("key-%d", n%keys)), Value: value}
				n++
			}
			h := batch.Header{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
			if _, err := appendWait(b, p, batch.Build(h, recs, batch.CodecNone)); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Roll(); err != nil {
			b.Fatal(err)
		}
		if err := e.Checkpoint(); err != nil {
			b.Fatal(err)
		}
		logBytes = 0
		p.mu.Lock()
		for _, s := range p.segments {
			logBytes += s.size
		}
		p.mu.Unlock()
		st0 := e.CleanerStats()
		b.StartTimer()
		e.Clean()
		b.StopTimer()
		st := e.CleanerStats()
		if st.Passes != st0.Passes+1 {
			b.Fatalf("no pass: %+v", st)
		}
		p.mu.Lock()
		left = 0
		for _, s := range p.segments {
			left += s.size
		}
		p.mu.Unlock()
		e.Close()
	}
	b.SetBytes(logBytes)
	b.ReportMetric(float64(left)/(1<<20), "MiB-left")
}

// openSmallCompacted opens an engine on dir with one compacted partition, tpA, in 1 KiB
// segments, with neither the cleaner's nor retention's timer running.
func openSmallCompacted(t *testing.T, dir string) (*Engine, *Partition) {
	t.Helper()
	cfg := Config{DataDir: dir, Logger: testLogger(t), SegmentBytes: 1024, IndexIntervalBytes: 256,
		RetentionCheckInterval: -1, CleanerInterval: -1}
	e, err := testOpen(cfg, []PartitionSpec{compactSpec(tpA, 1<<40)})
	if err != nil {
		t.Fatal(err)
	}
	return e, e.Partition(tpA)
}

// txnBatch is a transactional batch of producer pid (epoch 0) holding one record.
func txnBatch(pid int64, seq int32, key, value string) []byte {
	h := batch.Header{ProducerID: pid, ProducerEpoch: 0, BaseSequence: seq, Attributes: 0x10}
	return batch.Build(h, []batch.Record{{Key: []byte(key), Value: []byte(value)}}, batch.CodecNone)
}

// TestCleanerKeepsAbortedTransactions: cleaning a segment that holds an aborted transaction
// keeps it aborted for read_committed readers, in memory and in the .txnindex recovery loads;
// a transaction still open is beyond what a pass cleans (the last stable offset).
func TestCleanerKeepsAbortedTransactions(t *testing.T) {
	dir := t.TempDir()
	e, p := openSmallCompacted(t, dir)
	mustAppend(t, p, keyedBatch("k", "committed-before", 0))
	aborted := mustAppend(t, p, txnBatch(7, 0, "k", "aborted")).BaseOffset
	marker(t, p, 7, 0, false)
	for i := range 40 { // fill sealed segments
		mustAppend(t, p, keyedBatch(fmt.Sprintf("f%d", i%4), fmt.Sprint(i), int64(i)))
	}
	open := mustAppend(t, p, txnBatch(8, 0, "o", "open")).BaseOffset
	mustAppend(t, p, keyedBatch("o", "later", 0)) // would supersede it, were it cleanable
	for i := range 20 {
		mustAppend(t, p, keyedBatch(fmt.Sprintf("f%d", i%4), fmt.Sprint(i), int64(i)))
	}
	if err := p.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		_, ab := readIsolated(t, p, 0, true)
		found := false
		for _, a := range ab {
			found = found || (a.ProducerID == 7 && a.FirstOffset == aborted)
		}
		if !found {
			t.Fatalf("%s: read_committed lists aborted transactions %+v, not producer 7's at %d", when, ab, aborted)
		}
	}
	check("before cleaning")
	e.Clean()
	if st := e.CleanerStats(); st.Passes == 0 || st.BytesWritten == 0 {
		t.Fatalf("nothing cleaned: %+v", st)
	}
	check("after cleaning")
	// The open transaction's batch is at the last stable offset: nothing from it on is cleaned.
	if recs := readRecords(t, p, 0); string(recs[open].Value) != "open" {
		t.Fatalf("the open transaction's record at %d: %+v", open, recs[open])
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, p = openSmallCompacted(t, dir)
	defer e.Close()
	check("after a restart")
}

// TestCleanerCompactsTransactions: a compacted partition written only by transactional
// producers, committing and aborting in turn, shrinks: after a cleaning the sealed segments
// hold each key's latest committed record and the markers, no record of an aborted transaction,
// and read_committed reads list the aborted transactions still; so after a restart.
func TestCleanerCompactsTransactions(t *testing.T) {
	dir := t.TempDir()
	e, p := openSmallCompacted(t, dir)
	committed := map[string]int64{} // key → offset of its latest committed record
	abortedAt := map[int64]bool{}
	seq := map[int64]int32{}
	for i := range 90 {
		pid := int64(1 + i%3)
		key, value := fmt.Sprintf("k%d", i%5), fmt.Sprintf("v%d", i)
		off := mustAppend(t, p, txnBatch(pid, seq[pid], key, value)).BaseOffset
		seq[pid]++
		commit := i%4 != 3
		marker(t, p, pid, 0, commit)
		if commit {
			committed[key] = off
		} else {
			abortedAt[off] = true
		}
	}
	if err := p.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	before := readRecords(t, p, 0)
	check := func(when string) {
		t.Helper()
		recs := readRecords(t, p, 0)
		data := 0
		for off, r := range recs {
			if len(r.Key) == 4 && r.Key[0] == 0 && r.Key[1] == 0 { // a marker's key
				continue
			}
			data++
			if abortedAt[off] {
				t.Fatalf("%s: the aborted record at %d is still there", when, off)
			}
			if committed[string(r.Key)] != off {
				t.Fatalf("%s: key %s at %d, its latest committed record is at %d", when, r.Key, off, committed[string(r.Key)])
			}
			if want := before[off]; !bytes.Equal(r.Value, want.Value) {
				t.Fatalf("%s: offset %d reads %q, was %q", when, off, r.Value, want.Value)
			}
		}
		if data != len(committed) {
			t.Fatalf("%s: %d data records left, want one per key (%d)", when, data, len(committed))
		}
		_, ab := readIsolated(t, p, 0, true)
		if len(ab) != len(abortedAt) {
			t.Fatalf("%s: read_committed lists %d aborted transactions, want %d", when, len(ab), len(abortedAt))
		}
	}
	e.Clean()
	if st := e.CleanerStats(); st.Passes == 0 {
		t.Fatalf("nothing cleaned: %+v", st)
	}
	check("after cleaning")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, p = openSmallCompacted(t, dir)
	defer e.Close()
	check("after a restart")
}

// TestCleanerCheckpointFile: a pass writes the cleaner checkpoint and a restart takes it back;
// a file that does not match the log (another epoch before its offset, not a segment boundary,
// garbage) is ignored; a truncation below it removes it before cutting.
func TestCleanerCheckpointFile(t *testing.T) {
	dir := t.TempDir()
	e, p := openSmallCompacted(t, dir)
	appendSealed(t, e, p, 120, 4)
	e.Clean()
	firstDirty := func(p *Partition) int64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cleaner.firstDirty
	}
	fd := firstDirty(p)
	if fd == 0 {
		t.Fatal("no pass")
	}
	path := filepath.Join(dir, p.name, cleanerCheckpointFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		content string
		want    int64
	}{
		{string(good), fd},
		{fmt.Sprintf("0\n%d 7\n", fd), 0},   // another epoch
		{fmt.Sprintf("0\n%d 0\n", fd-1), 0}, // not a segment boundary
		{"garbage", 0},
	} {
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		e, p = openSmallCompacted(t, dir)
		if got := firstDirty(p); got != tc.want {
			t.Fatalf("checkpoint %q: firstDirty %d after opening, want %d", tc.content, got, tc.want)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	e, p = openSmallCompacted(t, dir)
	defer e.Close()
	if err := p.TruncateTo(fd - 3); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the cleaner checkpoint at %d outlived a truncation to %d: %v", fd, fd-3, err)
	}
	if got := firstDirty(p); got > fd-3 {
		t.Fatalf("firstDirty %d after a truncation to %d", got, fd-3)
	}
}

// TestCleanerKeepsProducerSnapshotValid: a cleaning rewrites the segment whose last batch the
// newest producer snapshot names; the snapshot is pointed at that batch in the cleaned copy, so
// recovery after a power cut still starts from it and reads only the headers after it.
func TestCleanerKeepsProducerSnapshotValid(t *testing.T) {
	dir := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	cfg := Config{DataDir: dir, FS: cfs, Logger: quietLogger(), SegmentBytes: 1024, IndexIntervalBytes: 256,
		RetentionCheckInterval: -1, CleanerInterval: -1}
	spec := compactSpec(tpA, 1<<40)
	e, err := testOpen(cfg, []PartitionSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	p := e.Partition(tpA)
	// The pass rewrites the last sealed segment too (a tombstone there gets its delete
	// horizon), its last batch with another CRC: checked below.
	const n, keys = 111, 4
	appendSealed(t, e, p, n, keys)
	p.mu.Lock()
	last := p.segments[len(p.segments)-2]
	oldPos, oldCRC, snapAt := last.lastPos, last.lastCRC, last.end
	p.mu.Unlock()
	e.Clean()
	p.mu.Lock()
	cleaned := p.segments[len(p.segments)-2]
	p.mu.Unlock()
	if cleaned == last || cleaned.lastPos == oldPos && cleaned.lastCRC == oldCRC {
		t.Fatalf("the last sealed segment was not rewritten (%d, %#x)", oldPos, oldCRC)
	}
	k, v := keyedWorkload(n, keys)
	mustAppend(t, p, keyedBatch(k, v, n))
	if err := cfs.Crash(); err != nil {
		t.Fatal(err)
	}
	e.Close()

	cfg.FS = vfs.OSFS{}
	e, err = testOpen(cfg, []PartitionSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if r := e.recovery; r.snapshots != 1 || r.headerBytes > 1024 {
		t.Fatalf("recovery after a cleaning read %+v; want the snapshot at %d and the active segment's headers only", r, snapAt)
	}
	checkCompacted(t, readRecords(t, e.Partition(tpA), 0), n+1, keys, false)
}

// spanBytes reads the span ReplicaSpan gives at off, as a leader sends it to a follower.
func spanBytes(t *testing.T, p *Partition, off int64, maxBytes int) (Span, []byte) {
	t.Helper()
	sp, err := p.ReplicaSpan(off, maxBytes, nil)
	if err != nil {
		t.Fatalf("span at %d: %v", off, err)
	}
	buf := make([]byte, sp.Len)
	if _, err := sp.File.ReadAt(buf, sp.Pos); err != nil {
		t.Fatal(err)
	}
	return sp, buf
}

// TestFollowerCatchesUpInsideMergedBatch: a follower whose log ends inside a run of batches the
// leader's cleaner merged into one empty batch (it lagged behind the high watermark) gets that
// batch from ReplicaSpan and keeps its part from its log end on: it then copies the rest, its
// log contiguous and every record the leader's.
func TestFollowerCatchesUpInsideMergedBatch(t *testing.T) {
	le, lp := openSmallCompacted(t, t.TempDir())
	defer le.Close()
	const n, keys = 200, 3
	appendSealed(t, le, lp, n, keys)
	// The follower's copy of the uncleaned log, batch by batch.
	var original [][]byte
	for off := int64(0); off < lp.LogEndOffset(); {
		sp, buf := spanBytes(t, lp, off, 1<<20)
		bs, err := batch.Split(buf)
		if err != nil {
			t.Fatal(err)
		}
		original = append(original, bs...)
		off = sp.EndOffset
	}
	le.Clean()
	var merged batch.Header
	for _, h := range readAll(t, lp, 0) {
		if h.NumRecords == 0 && h.LastOffset() > h.BaseOffset {
			merged = h
			break
		}
	}
	if merged.LastOffset() == 0 {
		t.Fatal("the pass merged no run of removed batches")
	}

	fe := openEngine(t, Config{DataDir: t.TempDir()}, tpA)
	fp := fe.Partition(tpA)
	replicate := func(records []byte) {
		t.Helper()
		ch := make(chan error, 1)
		if _, err := fp.AppendReplicated(records, func(err error) { ch <- err }); err != nil {
			t.Fatal(err)
		}
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range original { // up to and including the merged run's first batch
		h, _ := batch.ParseHeader(b)
		if h.BaseOffset > merged.BaseOffset {
			break
		}
		replicate(append([]byte(nil), b...))
	}
	if end := fp.LogEndOffset(); end <= merged.BaseOffset || end > merged.LastOffset() {
		t.Fatalf("follower log end %d, not inside the merged batch [%d, %d]", end, merged.BaseOffset, merged.LastOffset())
	}
	for fp.LogEndOffset() < lp.LogEndOffset() {
		_, buf := spanBytes(t, lp, fp.LogEndOffset(), 300)
		replicate(buf)
	}
	got, want := readRecords(t, fp, 0), readRecords(t, lp, 0)
	for off, r := range want {
		if g, ok := got[off]; !ok || !bytes.Equal(g.Key, r.Key) || !bytes.Equal(g.Value, r.Value) {
			t.Fatalf("offset %d: the follower holds %+v, the leader %+v", off, g, r)
		}
	}
}

// TestCleanerRemovesTombstonesWithoutWrites: a compacted partition that receives nothing after
// its first cleaning still loses its tombstones once their delete horizon has passed, with no
// pass before it and none after them; across restarts, where the horizons of the segments
// loaded from their index files are read from their headers once, without a pass.
func TestCleanerRemovesTombstonesWithoutWrites(t *testing.T) {
	const n, keys, retention = 140, 6, 5000
	var clock atomic.Int64
	clock.Store(1000)
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: testLogger(t), SegmentBytes: 1024, IndexIntervalBytes: 256,
		RetentionCheckInterval: -1, CleanerInterval: -1, Now: clock.Load}
	open := func() (*Engine, *Partition) { return openCompacted(t, &cfg, retention) }
	tombstones := func(p *Partition) (n int) {
		for _, r := range readRecords(t, p, 0) {
			if r.Value == nil {
				n++
			}
		}
		return n
	}
	cleanAt := func(e *Engine, now int64, passes uint64) {
		t.Helper()
		clock.Store(now)
		e.Clean()
		if st := e.CleanerStats(); st.Passes != passes {
			t.Fatalf("at %d: %d passes since the engine opened, want %d", now, st.Passes, passes)
		}
	}

	e, p := open()
	appendSealed(t, e, p, n, keys)
	end := p.LogEndOffset()
	cleanAt(e, 1000, 1) // by the dirty ratio: the tombstones kept get the horizon 1000+retention
	if tombstones(p) == 0 {
		t.Fatal("no tombstone left after the first pass: the workload's latest records include some")
	}
	cleanAt(e, 1000+retention-1, 1)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart before the horizon: the segments come from their index files, horizons unknown.
	e, p = open()
	p.mu.Lock()
	unknown := 0
	for _, s := range p.segments[:len(p.segments)-1] {
		if !s.horizonKnown {
			unknown++
		}
	}
	p.mu.Unlock()
	if unknown == 0 {
		t.Fatal("every segment's horizon known after a restart: the test does not cover learning them")
	}
	cleanAt(e, 1000+retention-1, 0)
	if st := e.CleanerStats(); st.BytesRead != 0 || st.BytesWritten != 0 {
		t.Fatalf("learning the horizons counted as a pass: %+v", st)
	}
	before := tombstones(p)
	if before == 0 {
		t.Fatal("the tombstones went before their horizon")
	}

	// The horizon passes, nothing was written: one pass removes them.
	cleanAt(e, 1000+retention, 1)
	checkCompacted(t, readRecords(t, p, 0), n, keys, true)
	if left := tombstones(p); left != 0 || p.LogEndOffset() != end {
		t.Fatalf("after the horizon pass: %d of %d tombstones left, log end %d (was %d)", left, before, p.LogEndOffset(), end)
	}
	// Nothing left to do, however late: no pass, nothing read.
	read := e.CleanerStats().BytesRead
	cleanAt(e, 1000+retention, 1)
	cleanAt(e, 1<<50, 1)
	if st := e.CleanerStats(); st.BytesRead != read {
		t.Fatalf("a plan with nothing to do read %d bytes", st.BytesRead-read)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e, p = open()
	defer e.Close()
	cleanAt(e, 1<<50, 0)
	checkCompacted(t, readRecords(t, p, 0), n, keys, true)
	k, v := keyedWorkload(n, keys)
	mustAppend(t, p, keyedBatch(k, v, n))
}

// TestCleanerRemovesTransactionMarkers: in a compacted partition written by transactional
// producers, once later records supersede every record of a transaction (or it aborted), a pass
// stamps its marker with a delete horizon and the first pass after it removes the marker;
// nothing is left open (the last stable offset is the high watermark) and the aborted
// transactions gone are no longer listed to read_committed readers, after a restart too; also
// when recovery rebuilds the producer state from the headers (no snapshot), and when the only
// snapshot is one taken while a removed transaction was open (recovery must not trust it).
func TestCleanerRemovesTransactionMarkers(t *testing.T) {
	const retention = 5000
	var clock atomic.Int64
	clock.Store(1000)
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: testLogger(t), SegmentBytes: 1024, IndexIntervalBytes: 256,
		RetentionCheckInterval: -1, CleanerInterval: -1, Now: clock.Load}
	open := func() (*Engine, *Partition) { return openCompacted(t, &cfg, retention) }
	e, p := open()
	seq := map[int64]int32{}
	txn := func(pid int64, key string) int64 {
		t.Helper()
		off := mustAppend(t, p, txnBatch(pid, seq[pid], key, fmt.Sprintf("txn-%d-%d", pid, seq[pid]))).BaseOffset
		seq[pid]++
		return off
	}
	aborts := 0
	for i := range 30 {
		pid := int64(1 + i%3)
		txn(pid, fmt.Sprintf("k%d", i%4))
		commit := i%5 != 4
		if !commit {
			aborts++
		}
		marker(t, p, pid, 0, commit)
	}
	// A snapshot taken while producer 9's transaction is open: its first batch, then a segment
	// whose only batch is one that no pass changes (its key is written once), which the snapshot
	// names; the marker comes after the snapshot.
	open9 := txn(9, "k0")
	if err := p.Roll(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, p, keyedBatch("unique", "stays", 0))
	if err := p.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	staleName := snapshotPath(p.dir, p.LogEndOffset())
	stale, err := os.ReadFile(staleName)
	if err != nil {
		t.Fatalf("no snapshot at the roll while producer 9's transaction is open: %v", err)
	}
	marker(t, p, 9, 0, true)
	// Producer 9's last batch is not transactional: no later marker of it would close the
	// transaction a stale snapshot holds open.
	mustAppend(t, p, batch.Build(batch.Header{ProducerID: 9, ProducerEpoch: 0, BaseSequence: seq[9]},
		[]batch.Record{{Key: []byte("p9"), Value: []byte("idempotent")}}, batch.CodecNone))
	// Later records supersede every transactional one.
	for i := range 4 {
		mustAppend(t, p, keyedBatch(fmt.Sprintf("k%d", i), "final", int64(i)))
	}
	if err := p.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}

	markers := func(p *Partition) (n int) {
		for _, r := range readRecords(t, p, 0) {
			if len(r.Key) == 4 && r.Key[0] == 0 && r.Key[1] == 0 {
				n++
			}
		}
		return n
	}
	check := func(when string, e *Engine, p *Partition, wantMarkers, wantAborted int) {
		t.Helper()
		if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != hw {
			t.Fatalf("%s: last stable offset %d, high watermark %d: a transaction is left open", when, lso, hw)
		}
		if n := markers(p); n != wantMarkers {
			t.Fatalf("%s: %d markers, want %d", when, n, wantMarkers)
		}
		if _, ab := readIsolated(t, p, 0, true); len(ab) != wantAborted {
			t.Fatalf("%s: read_committed lists %d aborted transactions, want %d: %+v", when, len(ab), wantAborted, ab)
		}
		recs := readRecords(t, p, 0)
		for i := range 4 {
			found := false
			for _, r := range recs {
				found = found || string(r.Key) == fmt.Sprintf("k%d", i) && string(r.Value) == "final"
			}
			if !found {
				t.Fatalf("%s: key k%d lost its latest value", when, i)
			}
		}
	}
	// What stays: each producer's last batch (empty, so that recovery knows its sequence and
	// epoch) and with it its transaction's marker: producers 1, 2 and 3 (aborted).
	check("before cleaning", e, p, 31, aborts)
	clock.Store(1000)
	e.Clean()
	check("after the pass that empties the transactions", e, p, 31, aborts)
	clock.Store(1000 + retention - 1)
	e.Clean()
	check("before the horizon", e, p, 31, aborts)
	clock.Store(1000 + retention)
	e.Clean()
	check("after the horizon", e, p, 3, 1)
	if open9 >= p.LogEndOffset() {
		t.Fatal("producer 9's transaction is not in the log")
	}
	// The producers carry on where they were.
	txn(1, "k9")
	marker(t, p, 1, 0, true)
	if err := p.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e, p = open()
	check("after a restart", e, p, 4, 1)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	asAfterCrash(t, dir)
	removeSnapshots(t, p)
	e, p = open()
	check("after a restart from the headers", e, p, 4, 1)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	asAfterCrash(t, dir)
	removeSnapshots(t, p)
	if err := os.WriteFile(staleName, stale, 0o644); err != nil {
		t.Fatal(err)
	}
	e, p = open()
	defer e.Close()
	check("after a restart with only a snapshot from inside a removed transaction", e, p, 4, 1)
}

// TestCleanerKeepsEpochMarker: a marker that is all that tells its producer's epoch stays
// through the passes that remove the other markers, as Kafka's cleaner keeps an active
// producer's last control batch: producer 5, whose transaction its coordinator aborted with the
// epoch bumped (as on a timeout), and producer 7, which only wrote a coordinator's offsets (no
// sequence), keep their last marker. A recovery from the headers alone then still knows
// producer 5's new epoch (its old one is fenced) and both coordinator epochs. Once both have
// expired, the passes after the next writes remove those markers too.
func TestCleanerKeepsEpochMarker(t *testing.T) {
	const retention = 5000
	var clock atomic.Int64
	clock.Store(1000)
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: testLogger(t), SegmentBytes: 1024, IndexIntervalBytes: 256,
		RetentionCheckInterval: -1, CleanerInterval: -1, Now: clock.Load, ProducerIDExpiration: time.Minute}
	open := func() (*Engine, *Partition) { return openCompacted(t, &cfg, retention) }
	e, p := open()
	mustAppend(t, p, txnBatch(5, 0, "k0", "p5"))
	marker(t, p, 5, 1, false)
	offsets7 := func(v string) []byte {
		return batch.Build(batch.Header{ProducerID: 7, ProducerEpoch: 0, BaseSequence: -1, Attributes: 0x10},
			[]batch.Record{{Key: []byte("k1"), Value: []byte(v)}}, batch.CodecNone)
	}
	for i := range 3 {
		mustAppend(t, p, offsets7(fmt.Sprint("p7-", i)))
		marker(t, p, 7, 0, true)
	}
	mustAppend(t, p, keyedBatch("k0", "final", 0))
	mustAppend(t, p, keyedBatch("k1", "final", 0))
	settle := func() {
		t.Helper()
		if err := p.Roll(); err != nil {
			t.Fatal(err)
		}
		if err := e.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	}
	settle()
	// markers lists the producers of the partition's control batches, in offset order; it
	// fails the test if one of them has a delete horizon that has passed.
	markers := func() []int64 {
		t.Helper()
		var pids []int64
		for next := int64(0); next < p.HighWatermark(); {
			res, err := p.Read(next, 1<<20, true)
			if err != nil {
				t.Fatal(err)
			}
			bs, err := batch.Split(res.Records)
			if err != nil || len(bs) == 0 {
				t.Fatalf("read at %d: %d batches, %v", next, len(bs), err)
			}
			for _, b := range bs {
				h, err := batch.ParseHeader(b)
				if err != nil {
					t.Fatal(err)
				}
				if h.IsControl() && h.NumRecords > 0 {
					pids = append(pids, h.ProducerID)
					if h.HasDeleteHorizon() && h.FirstTimestamp <= clock.Load() {
						t.Fatalf("producer %d's marker at %d kept with its delete horizon %d passed: every plan would pick it again",
							h.ProducerID, h.BaseOffset, h.FirstTimestamp)
					}
				}
				next = h.LastOffset() + 1
			}
		}
		return pids
	}
	if got := markers(); !slices.Equal(got, []int64{5, 7, 7, 7}) {
		t.Fatalf("before cleaning: markers of producers %v", got)
	}
	e.Clean() // stamps producer 7's first two markers
	// After a restart from a snapshot the last marker's offset is not known: every marker of
	// the producer's epoch stays, its horizon cleared, until the producer's next marker.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, p = open()
	clock.Store(1000 + retention)
	e.Clean()
	if got := markers(); !slices.Equal(got, []int64{5, 7, 7, 7}) {
		t.Fatalf("past the horizon after a restart from a snapshot: markers of producers %v, want [5 7 7 7]", got)
	}
	mustAppend(t, p, offsets7("p7-3"))
	marker(t, p, 7, 0, true)
	mustAppend(t, p, keyedBatch("k1", "final", 0))
	settle()
	e.Clean()
	clock.Add(retention)
	e.Clean()
	if got := markers(); !slices.Equal(got, []int64{5, 7}) {
		t.Fatalf("past the horizon: markers of producers %v, want [5 7]: each producer's last, which alone tells its epoch", got)
	}

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	asAfterCrash(t, dir)
	removeSnapshots(t, p)
	e, p = open()
	defer func() { e.Close() }()
	got := map[int64]ProducerInfo{}
	for _, pi := range p.Producers() {
		got[pi.ProducerID] = pi
	}
	if p5, p7 := got[5], got[7]; len(got) != 2 || p5.ProducerEpoch != 1 || p5.CoordinatorEpoch != 3 || p7.ProducerEpoch != 0 || p7.CoordinatorEpoch != 3 {
		t.Fatalf("recovered from the headers: producers %+v; want 5 at epoch 1 and 7 at epoch 0, both with coordinator epoch 3", got)
	}
	if _, err := p.Append(txnBatch(5, 1, "k2", "zombie"), nil); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("producer 5 at its aborted epoch 0 after the recovery: %v, want an invalid producer epoch", err)
	}

	// Expired, the producers' markers go like the others.
	clock.Add(int64(2 * time.Minute / time.Millisecond))
	e.EnforceRetention()
	if n := len(p.Producers()); n != 0 {
		t.Fatalf("%d producers left after they expired", n)
	}
	mustAppend(t, p, keyedBatch("k0", "again", 0))
	settle()
	e.Clean()
	clock.Add(retention)
	e.Clean()
	if got := markers(); len(got) != 0 {
		t.Fatalf("after the producers expired and two passes: markers of producers %v", got)
	}
}

// TestCleanerLearnsHorizonsWithinItsRate: after a restart, reading the headers of the segments
// whose delete horizons recovery did not learn goes through the cleaner's I/O bound
// (CleanerIOBytesPerSecond) like a pass: it takes at least their size at that rate.
func TestCleanerLearnsHorizonsWithinItsRate(t *testing.T) {
	const n, keys, retention = 140, 6, 5000
	var clock atomic.Int64
	clock.Store(1000)
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Logger: testLogger(t), SegmentBytes: 1024, IndexIntervalBytes: 256,
		RetentionCheckInterval: -1, CleanerInterval: -1, Now: clock.Load}
	e, p := openCompacted(t, &cfg, retention)
	appendSealed(t, e, p, n, keys)
	e.Clean() // keeps tombstones with a horizon ahead: what a restart must learn again
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.CleanerIOBytesPerSecond = 4 << 10 // a quarter of a second or more for what the workload leaves
	e, p = openCompacted(t, &cfg, retention)
	defer e.Close()
	var unknownBytes int64
	p.mu.Lock()
	for _, s := range p.segments[:len(p.segments)-1] {
		if !s.horizonKnown {
			unknownBytes += s.size
		}
	}
	p.mu.Unlock()
	if unknownBytes < 1<<10 {
		t.Fatalf("%d bytes of segments with unknown horizons after the restart: too few to tell a bound from none", unknownBytes)
	}
	start := time.Now()
	e.Clean()
	took := time.Since(start)
	if st := e.CleanerStats(); st.Passes != 0 {
		t.Fatalf("%d passes: the horizons are ahead and nothing is dirty, only the headers are to be read", st.Passes)
	}
	if least := time.Duration(float64(unknownBytes) / float64(cfg.CleanerIOBytesPerSecond) * float64(time.Second)); took < least {
		t.Fatalf("reading the headers of %d bytes of segments took %v, less than %v at %d bytes/s", unknownBytes, took, least, cfg.CleanerIOBytesPerSecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.segments[:len(p.segments)-1] {
		if !s.horizonKnown {
			t.Fatalf("segment %d's horizon still unknown after the plan", s.base)
		}
	}
}
