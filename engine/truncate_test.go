package engine

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/crashfs"
	"github.com/ringtail/ringtail/vfs/errorfs"
	"golang.org/x/sys/unix"
)

// epochsOf lists the leader epoch of every batch from offset 0 to the high watermark.
func epochsOf(t *testing.T, p *Partition) []int32 {
	t.Helper()
	var out []int32
	for _, h := range readAll(t, p, 0) {
		out = append(out, h.PartitionLeaderEpoch)
	}
	return out
}

// TestTruncateTo cuts a log that spans sealed, indexed segments in the
// middle of one of them, then appends different batches at the same
// offsets: offsets, producer state, epochs and index files follow the cut,
// and after a restart no cut batch is back.
func TestTruncateTo(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, SegmentBytes: 600, IndexIntervalBytes: 100}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	for i := 0; i < 20; i++ {
		mustAppend(t, p, mkBatch(batchOpts{pid: 7, seq: int32(2 * i), n: 2, ts: int64(i), value: "old"}))
	}
	if err := e.Checkpoint(); err != nil { // sealed segments get index files
		t.Fatal(err)
	}
	bases := segmentBases(p)
	if len(bases) < 3 {
		t.Fatalf("only %d segments", len(bases))
	}
	// A cut inside the second segment, in the middle of a batch: the batch goes.
	cut := bases[1] + 3 // batches hold 2 records from even offsets
	if err := p.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	want := cut - 1
	if p.LogEndOffset() != want || p.DurableEnd() != want || p.HighWatermark() != want {
		t.Fatalf("after TruncateTo(%d): log end %d, durable end %d, hw %d; want %d", cut, p.LogEndOffset(), p.DurableEnd(), p.HighWatermark(), want)
	}
	if got := segmentBases(p); len(got) != 2 {
		t.Fatalf("segments after the cut: %v", got)
	}
	if _, err := os.Stat(segmentName(filepath.Join(dir, dirName(tpA)), bases[1], indexSuffix)); !os.IsNotExist(err) {
		t.Fatalf("the cut segment kept its index file: %v", err)
	}
	checkContiguous(t, readAll(t, p, 0), 0)
	// Producer state: the batch at the cut is gone, so its retry is new; the
	// one before it is still a duplicate.
	seqAt := int32(want)
	if dup := mustAppend(t, p, mkBatch(batchOpts{pid: 7, seq: seqAt - 2, n: 2, ts: want/2 - 1, value: "old"})); !dup.Duplicate {
		t.Fatalf("retry of a kept batch: %+v", dup)
	}
	p.SetLeaderEpoch(1)
	for i := 0; i < 5; i++ {
		res := mustAppend(t, p, mkBatch(batchOpts{pid: 7, seq: seqAt + int32(2*i), n: 2, ts: want/2 + int64(i), value: "new"}))
		if res.Duplicate || res.BaseOffset != want+int64(2*i) {
			t.Fatalf("append after the cut: %+v", res)
		}
	}
	if ep, end := p.EndOffsetForEpoch(0); ep != 0 || end != want {
		t.Fatalf("epoch 0 ends at %d (%d), want %d", end, ep, want)
	}
	if err := p.TruncateTo(p.LogStartOffset() - 1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("truncation below the log start: %v", err)
	}
	if err := p.TruncateTo(1 << 40); err != nil || p.LogEndOffset() != want+10 {
		t.Fatalf("truncation beyond the log end: %v, log end %d", err, p.LogEndOffset())
	}
	e.Close()

	e2 := openEngine(t, cfg, tpA)
	p2 := e2.Partition(tpA)
	hs := readAll(t, p2, 0)
	checkContiguous(t, hs, 0)
	if p2.LogEndOffset() != want+10 || len(hs) != int(want/2)+5 {
		t.Fatalf("after a restart: log end %d, %d batches", p2.LogEndOffset(), len(hs))
	}
	for i, h := range hs {
		if h.FirstTimestamp != int64(i) || (h.PartitionLeaderEpoch == 1) != (h.BaseOffset >= want) {
			t.Fatalf("batch %d at %d: timestamp %d, epoch %d", i, h.BaseOffset, h.FirstTimestamp, h.PartitionLeaderEpoch)
		}
	}
	if ep, end := p2.EndOffsetForEpoch(0); ep != 0 || end != want {
		t.Fatalf("after a restart epoch 0 ends at %d (%d), want %d", end, ep, want)
	}
}

// TestTruncationSurvivesPowerCut: the segments held the cut batches durably
// (a checkpoint synced them) and the cut itself was never synced to them;
// the truncation record keeps them from coming back.
func TestTruncationSurvivesPowerCut(t *testing.T) {
	dir := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	e, err := testOpen(Config{DataDir: dir, FS: cfs, Logger: quietLogger()}, []PartitionSpec{specFor(tpA)})
	if err != nil {
		t.Fatal(err)
	}
	p := e.Partition(tpA)
	fill(t, p, 10)
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := p.TruncateTo(8); err != nil {
		t.Fatal(err)
	}
	if err := cfs.Crash(); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e2 := openEngine(t, Config{DataDir: dir}, tpA)
	if p2 := e2.Partition(tpA); p2.LogEndOffset() != 8 || p2.HighWatermark() != 8 {
		t.Fatalf("after the power cut: log end %d, hw %d; want 8", p2.LogEndOffset(), p2.HighWatermark())
	}
}

// TestTruncateWithPendingAppends: appends written but not yet durable
// survive a cut above them and are acknowledged; those beyond it fail with
// ErrClosed, appends made before the truncation record is durable are
// refused, and the cut and the durable end follow the record.
func TestTruncateWithPendingAppends(t *testing.T) {
	h := newGatedPartition(t, 1)
	p := h.p
	results := make([]chan error, 5)
	for i := range results {
		results[i] = make(chan error, 1)
		ch := results[i]
		if _, err := p.Append(mkBatch(batchOpts{n: 1}), func(err error) { ch <- err }); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			h.waitSyncs(1) // the first append's cycle is in fdatasync; the others queue behind it
		}
	}
	truncated := make(chan error, 1)
	go func() { truncated <- p.TruncateTo(3) }()
	waitFor(t, "appends refused while the truncation record is on its way", func() bool {
		_, err := p.Append(mkBatch(batchOpts{n: 1}), nil)
		return errors.Is(err, ErrClosed)
	})
	if p.DurableEnd() != 0 {
		t.Fatalf("durable end %d before any sync returned", p.DurableEnd())
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case h.g.gate <- struct{}{}:
			case <-stop:
				return
			}
		}
	}()
	err := <-truncated
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 5; i++ {
		if err := <-results[i]; !errors.Is(err, ErrClosed) {
			t.Fatalf("append %d beyond the cut: %v", i, err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := <-results[i]; err != nil {
			t.Fatalf("append %d below the cut: %v", i, err)
		}
	}
	if p.LogEndOffset() != 3 || p.DurableEnd() != 3 || p.HighWatermark() != 3 {
		t.Fatalf("log end %d, durable end %d, hw %d; want 3", p.LogEndOffset(), p.DurableEnd(), p.HighWatermark())
	}
}

// TestTruncationRecordFails: when the truncation record cannot be written,
// nothing is cut, TruncateTo fails with a storage error and the partition
// works on; a later TruncateTo cuts.
func TestTruncationRecordFails(t *testing.T) {
	ffs := errorfs.New(vfs.OSFS{})
	ffs.SetFilter(".wal")
	e := openEngine(t, Config{DataDir: t.TempDir(), FS: ffs}, tpA)
	p := e.Partition(tpA)
	fill(t, p, 3)
	ffs.FailFrom(errorfs.OpWrite, 1, unix.EIO)
	if err := p.TruncateTo(2); !errors.Is(err, ErrStorage) {
		t.Fatalf("truncation on a failing wal: %v", err)
	}
	ffs.Clear()
	if p.LogEndOffset() != 6 || p.HighWatermark() != 6 {
		t.Fatalf("a failed truncation cut: log end %d, hw %d", p.LogEndOffset(), p.HighWatermark())
	}
	if res := mustAppend(t, p, mkBatch(batchOpts{n: 1})); res.BaseOffset != 6 {
		t.Fatalf("append after a failed truncation: %+v", res)
	}
	if err := p.TruncateTo(2); err != nil {
		t.Fatal(err)
	}
	if res := mustAppend(t, p, mkBatch(batchOpts{n: 1})); res.BaseOffset != 2 {
		t.Fatalf("append after the truncation: %+v", res)
	}
}

func TestEpochCache(t *testing.T) {
	var c epochCache
	for _, o := range []struct {
		epoch int32
		off   int64
	}{{-1, 0}, {0, 0}, {0, 5}, {2, 10}, {1, 12}, {4, 20}} {
		c.observe(o.epoch, o.off)
	}
	if got := fmt.Sprint(c.entries); got != "[{0 0} {2 10} {4 20}]" {
		t.Fatalf("entries %s", got)
	}
	for _, q := range []struct {
		ask, current int32
		epoch        int32
		end          int64
	}{
		{-1, 4, -1, -1}, {0, 4, 0, 10}, {1, 4, 0, 10}, {2, 4, 2, 20}, {3, 4, 2, 20}, {4, 4, 4, 30}, {5, 4, -1, -1},
		{5, 6, 4, 30}, {6, 6, 6, 30}, // the leader's current epoch counts from the log end
	} {
		if ep, end := c.endOffsetFor(q.ask, q.current, 30); ep != q.epoch || end != q.end {
			t.Errorf("endOffsetFor(%d, current %d) = %d, %d; want %d, %d", q.ask, q.current, ep, end, q.epoch, q.end)
		}
	}
	back, err := parseEpochCheckpoint(c.encode())
	if err != nil || fmt.Sprint(back) != fmt.Sprint(c.entries) || string(c.encode()) != "0\n3\n0 0\n2 10\n4 20\n" {
		t.Fatalf("checkpoint %q round trip: %v %v", c.encode(), back, err)
	}
	c.truncateFromStart(12)
	if got := fmt.Sprint(c.entries); got != "[{2 12} {4 20}]" {
		t.Fatalf("after truncateFromStart(12): %s", got)
	}
	if ep, end := c.endOffsetFor(0, 4, 30); ep != 0 || end != 12 {
		t.Fatalf("an epoch older than the log: %d, %d", ep, end)
	}
	c.truncateFromEnd(20)
	if got := fmt.Sprint(c.entries); got != "[{2 12}]" {
		t.Fatalf("after truncateFromEnd(20): %s", got)
	}
	for _, bad := range []string{"", "1\n0\n", "0\n2\n1 1\n", "0\n1\nx 1\n"} {
		if _, err := parseEpochCheckpoint([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

// TestEpochCheckpointFile: the leader-epoch-checkpoint file follows the
// cache: written by a checkpoint after a new epoch, by DeleteRecords' log
// start move (at the next checkpoint) and by TruncateTo.
func TestEpochCheckpointFile(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, Config{DataDir: dir}, tpA)
	p := e.Partition(tpA)
	path := filepath.Join(dir, dirName(tpA), epochCheckpointFile)
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	fill(t, p, 2)
	p.SetLeaderEpoch(3)
	fill(t, p, 2)
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "0\n2\n0 0\n3 4\n" {
		t.Fatalf("after epochs 0 and 3: %q", got)
	}
	if _, err := p.DeleteRecordsBefore(2); err != nil {
		t.Fatal(err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "0\n2\n0 2\n3 4\n" {
		t.Fatalf("after DeleteRecordsBefore(2): %q", got)
	}
	if err := p.TruncateTo(4); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "0\n1\n0 2\n" {
		t.Fatalf("after TruncateTo(4): %q", got)
	}
	e.Close()
	os.WriteFile(path, []byte("garbage"), 0o644)
	e2 := openEngine(t, Config{DataDir: dir}, tpA)
	if got := read(); got != "0\n1\n0 2\n" {
		t.Fatalf("after a restart over a damaged file: %q", got)
	}
	if ep, end := e2.Partition(tpA).EndOffsetForEpoch(0); ep != 0 || end != 4 {
		t.Fatalf("after a restart: epoch %d ends at %d", ep, end)
	}
}

func TestWALPayloadCodec(t *testing.T) {
	id := [16]byte{1, 2, 3}
	b := mkBatch(batchOpts{n: 2})
	// A data payload is what the engine wrote before truncation records
	// existed: topic id, partition and base offset big endian, the batches.
	old := append(append(append([]byte(nil), id[:]...), 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0x12, 0x34), b...)
	if got := append(walDataHeader(id, 7, 0x1234), b...); string(got) != string(old) {
		t.Fatalf("data payload layout changed: %x", got)
	}
	r, err := decodeWALPayload(old)
	if err != nil || r.truncate || r.key != (walKey{id, 7}) || r.offset != 0x1234 || string(r.batches) != string(b) {
		t.Fatalf("data payload: %+v, %v", r, err)
	}
	r, err = decodeWALPayload(walTruncation(id, 7, 99))
	if err != nil || !r.truncate || r.key != (walKey{id, 7}) || r.offset != 99 || r.batches != nil {
		t.Fatalf("truncation payload: %+v, %v", r, err)
	}
	r, err = decodeWALPayload(walReset(id, 7, 500))
	if err != nil || !r.reset || r.truncate || r.key != (walKey{id, 7}) || r.offset != 500 || r.batches != nil {
		t.Fatalf("reset payload: %+v, %v", r, err)
	}
	for _, bad := range [][]byte{old[:10], old[:payloadHeaderSize+5], append(walDataHeader(id, 7, 0), 3)} {
		if _, err := decodeWALPayload(bad); err == nil {
			t.Errorf("decoded %d bytes", len(bad))
		}
	}
}

// TestCrashAtEveryTruncateOperation cuts the power at every storage
// operation of a workload that appends, truncates (into sealed and indexed
// segments, and below batches appended after an earlier truncation) and
// appends different batches at the same offsets, once cleanly and once
// tearing the interrupted write. Each generation of batches carries its own
// leader epoch, and batch i of the log holds offsets 2i and 2i+1 and the
// timestamp i. After each cut, recovery must give exactly the acknowledged
// log (every acknowledged batch once, at its offset, of its generation; no
// batch an acknowledged truncation cut), plus at most the effect of the one
// operation the cut interrupted; and a working partition.
func TestCrashAtEveryTruncateOperation(t *testing.T) {
	truncateStoppedAtEveryOperation(t, DurabilityFsync)
}

// With Durability "none" a truncation writes no WAL record (and appends none either): killed at
// any operation, recovery finds every acknowledged append and each truncation done or not done.
func TestKillAtEveryTruncateOperationNone(t *testing.T) {
	truncateStoppedAtEveryOperation(t, DurabilityNone)
}

// truncateStoppedAtEveryOperation runs the workload stopped at every storage operation: by a power cut with
// Durability "fsync", by a kill with "none" (which promises nothing across power cuts).
func truncateStoppedAtEveryOperation(t *testing.T, durability string) {
	type op struct {
		appends  int   // append this many batches of the next generation
		truncate int64 // else truncate to this many batches
	}
	work := []op{{appends: 12}, {truncate: 8}, {appends: 6}, {truncate: 5}, {appends: 8}, {truncate: 12}, {appends: 3}}
	cfgFor := func(dir string, fs vfs.FS) Config {
		return Config{DataDir: dir, FS: fs, Durability: durability, SegmentBytes: 500, IndexIntervalBytes: 128,
			WALFileBytes: 32 << 10, CheckpointBytes: 4 << 10, RetentionCheckInterval: -1}
	}
	// result: the acknowledged log (epoch per batch) and the operation in
	// flight at the cut: an append of epoch pendingEpoch, or a truncation to
	// pendingCut batches.
	type result struct {
		log          []int32
		pendingEpoch int32
		pendingCut   int64
	}
	// Each run's and each recovery's log is kept and shown when the check fails.
	runLogs := map[string]string{}
	run := func(dir string, cfs *crashfs.FS) (r result) {
		r.pendingEpoch, r.pendingCut = -1, -1
		c := cfgFor(dir, cfs)
		var buf bytes.Buffer
		c.Logger = bufLogger(&buf)
		defer func() { runLogs[dir] = buf.String() }()
		e, err := testOpen(c, []PartitionSpec{specFor(tpA)})
		if err != nil {
			return r
		}
		defer e.Close()
		p := e.Partition(tpA)
		epoch := int32(0)
		for _, o := range work {
			if o.appends == 0 {
				r.pendingCut = o.truncate
				if err := p.TruncateTo(2 * o.truncate); err != nil {
					return r
				}
				r.pendingCut = -1
				r.log = r.log[:o.truncate]
				continue
			}
			p.SetLeaderEpoch(epoch)
			for i := 0; i < o.appends; i++ {
				r.pendingEpoch = epoch
				idx := int64(len(r.log))
				if _, err := appendWaitQuiet(p, mkBatch(batchOpts{n: 2, ts: idx, value: fmt.Sprintf("g%d", epoch)})); err != nil {
					return r
				}
				r.pendingEpoch = -1
				r.log = append(r.log, epoch)
			}
			epoch++
		}
		return r
	}
	check := func(t *testing.T, dir string, r result) {
		c := cfgFor(dir, vfs.OSFS{})
		var buf bytes.Buffer
		c.Logger = bufLogger(&buf)
		defer func() {
			if t.Failed() {
				t.Logf("the run's log:\n%s\nthe recovery's log:\n%s", runLogs[dir], buf.String())
			}
			delete(runLogs, dir)
		}()
		e, err := testOpen(c, []PartitionSpec{specFor(tpA)})
		if err != nil {
			t.Fatalf("recovery: %v", err)
		}
		defer e.Close()
		p := e.Partition(tpA)
		hs := readAll(t, p, 0)
		checkContiguous(t, hs, 0)
		var got []int32
		for i, h := range hs {
			if h.FirstTimestamp != int64(i) || h.LastOffset() != h.BaseOffset+1 {
				t.Fatalf("batch %d at offset %d: timestamp %d, last offset %d", i, h.BaseOffset, h.FirstTimestamp, h.LastOffset())
			}
			got = append(got, h.PartitionLeaderEpoch)
		}
		want := fmt.Sprint(r.log)
		ok := fmt.Sprint(got) == want
		switch {
		case r.pendingEpoch >= 0: // the interrupted append may have landed
			ok = ok || fmt.Sprint(got) == fmt.Sprint(append(r.log[:len(r.log):len(r.log)], r.pendingEpoch))
		case r.pendingCut >= 0: // the interrupted truncation may have happened
			ok = ok || fmt.Sprint(got) == fmt.Sprint(r.log[:r.pendingCut])
		}
		if !ok {
			t.Fatalf("recovered epochs per batch %v; acknowledged %s, in flight: append of epoch %d, truncation to %d", got, want, r.pendingEpoch, r.pendingCut)
		}
		if p.HighWatermark() != p.LogEndOffset() || p.LogEndOffset() != int64(2*len(got)) {
			t.Fatalf("hw %d, log end %d, %d batches", p.HighWatermark(), p.LogEndOffset(), len(got))
		}
		for i := 0; i < len(got); i++ {
			if i+1 == len(got) || got[i+1] != got[i] {
				if ep, end := p.EndOffsetForEpoch(got[i]); ep != got[i] || end != int64(2*(i+1)) {
					t.Fatalf("epoch %d ends at %d (%d), want %d", got[i], end, ep, 2*(i+1))
				}
			}
		}
		if _, err := appendWait(t, p, mkBatch(batchOpts{n: 2, ts: int64(len(got))})); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		checkContiguous(t, readAll(t, p, 0), 0)
	}

	base := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	whole := filepath.Join(base, "whole")
	if r := run(whole, cfs); fmt.Sprint(r.log) != "[0 0 0 0 0 2 2 2 2 2 2 2 3 3 3]" {
		t.Fatalf("uncut run: %v", r.log)
	}
	if idx, _ := filepath.Glob(filepath.Join(whole, dirName(tpA), "*"+indexSuffix)); len(idx) == 0 {
		t.Fatal("the uncut run indexed no segment: the truncations never cut a sealed one")
	}
	if durability == DurabilityNone {
		crashfs.KillAtEveryOperation(t, base, cfs.Ops(), nil, run, check)
		return
	}
	crashfs.CutAtEveryOperation(t, base, cfs.Ops(), nil, run, check)
}

// appendWaitQuiet appends and waits for done, without a testing.T (the
// crash workloads run on a watchdog's goroutine).
func appendWaitQuiet(p *Partition, b []byte) (AppendResult, error) {
	ch := make(chan error, 1)
	res, err := p.Append(b, func(err error) { ch <- err })
	if err == nil {
		err = <-ch
	}
	return res, err
}

// bufLogger logs everything to buf: a crash workload's run and recovery logs, shown when a
// check fails.
func bufLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
