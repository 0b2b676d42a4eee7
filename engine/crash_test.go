package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/crashfs"
	"github.com/ringtail/ringtail/vfs/errorfs"
	"golang.org/x/sys/unix"
)

// TestPowerCutKeepsAcked runs idempotent producers against two partitions
// on a CrashFS, cuts the power (every write not covered by a sync is undone)
// after some acknowledgements, recovers, and checks every acknowledged batch
// is present exactly once, in order; four rounds, with tiny segments, WAL
// files and checkpoint intervals so rolls, checkpoints and WAL reuse happen.
func TestPowerCutKeepsAcked(t *testing.T) {
	dir := t.TempDir()
	tps := []TopicPartition{tpA, {Topic: "orders", Partition: 1}}
	var specs []PartitionSpec
	for _, tp := range tps {
		specs = append(specs, specFor(tp))
	}
	const writers = 3
	type key struct {
		tp  TopicPartition
		pid int64
	}
	acked := map[key]map[int32]bool{}
	var mu sync.Mutex
	for round := 0; round < 4; round++ {
		cfs := crashfs.New(vfs.OSFS{})
		cfg := Config{DataDir: dir, FS: cfs, Logger: testLogger(t), SegmentBytes: 6 << 10, IndexIntervalBytes: 512,
			WALFileBytes: 64 << 10, CheckpointBytes: 24 << 10}
		e, err := testOpen(cfg, specs)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		next := map[key]int32{}
		for _, tp := range tps {
			p := e.Partition(tp)
			hs := readAll(t, p, 0)
			checkContiguous(t, hs, 0)
			seen := map[key]map[int32]bool{}
			for _, h := range hs {
				k := key{tp, h.ProducerID}
				if seen[k] == nil {
					seen[k] = map[int32]bool{}
				}
				if seen[k][h.BaseSequence] {
					t.Fatalf("round %d: %v producer %d seq %d twice", round, tp, h.ProducerID, h.BaseSequence)
				}
				if h.BaseSequence < next[k] {
					t.Fatalf("round %d: %v producer %d seq %d after %d", round, tp, h.ProducerID, h.BaseSequence, next[k])
				}
				seen[k][h.BaseSequence] = true
				next[k] = h.BaseSequence + h.LastOffsetDelta + 1
			}
			for k, seqs := range acked {
				if k.tp != tp {
					continue
				}
				for s := range seqs {
					if !seen[k][s] {
						t.Fatalf("round %d: acknowledged %v producer %d seq %d lost", round, tp, k.pid, s)
					}
				}
			}
		}
		var total atomic.Int32
		var wg sync.WaitGroup
		var once sync.Once
		target := int32(150 + 70*round)
		for _, tp := range tps {
			for w := 0; w < writers; w++ {
				k := key{tp, int64(w + 1)}
				wg.Add(1)
				go func(p *Partition, k key, seq int32) {
					defer wg.Done()
					for ; ; seq += 2 {
						ch := make(chan error, 1)
						_, err := p.Append(mkBatch(batchOpts{pid: k.pid, seq: seq, n: 2, value: "power"}), func(err error) { ch <- err })
						if err == nil {
							err = <-ch
						}
						if err != nil {
							return
						}
						mu.Lock()
						if acked[k] == nil {
							acked[k] = map[int32]bool{}
						}
						acked[k][seq] = true
						mu.Unlock()
						if total.Add(1) >= target {
							once.Do(func() {
								if err := cfs.Crash(); err != nil {
									t.Error(err)
								}
							})
						}
					}
				}(e.Partition(tp), k, next[k])
			}
		}
		wg.Wait()
		if cycles, _ := e.WALStats(); cycles == 0 {
			t.Fatal("no wal cycles")
		}
	}
}

// TestWALNoSpace fails WAL writes with ENOSPC: appends fail with a storage
// error, nothing unacknowledged is visible, and once space is back appends
// and a restart work.
func TestWALNoSpace(t *testing.T) {
	dir := t.TempDir()
	ffs := errorfs.New(vfs.OSFS{})
	ffs.SetFilter(".wal")
	e := openEngine(t, Config{DataDir: dir, FS: ffs}, tpA)
	p := e.Partition(tpA)
	fill(t, p, 3)
	ffs.FailFrom(errorfs.OpWrite, 1, unix.ENOSPC)
	for i := 0; i < 3; i++ {
		if _, err := appendWait(t, p, mkBatch(batchOpts{pid: 9, seq: 0, n: 2, value: "lost"})); !errors.Is(err, ErrStorage) {
			t.Fatalf("append on a full wal: %v", err)
		}
	}
	if p.HighWatermark() != 6 || p.LogEndOffset() != 6 {
		t.Fatalf("hw %d leo %d", p.HighWatermark(), p.LogEndOffset())
	}
	if rr, err := p.Read(6, 1000, true); err != nil || len(rr.Records) != 0 {
		t.Fatalf("unacknowledged data readable: %d bytes, %v", len(rr.Records), err)
	}
	ffs.Clear()
	if res := mustAppend(t, p, mkBatch(batchOpts{pid: 9, seq: 0, n: 2, value: "kept"})); res.BaseOffset != 6 || res.Duplicate {
		t.Fatalf("after space is back: %+v", res)
	}
	e.Close()
	reopenAndCheckRetry(t, dir, 8)
}

// TestReplayAfterKill stops an engine without Close (its segments written
// but never checkpointed) and checks the WAL replay restores everything.
func TestReplayAfterKill(t *testing.T) {
	dir := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	e, err := testOpen(Config{DataDir: dir, FS: cfs, Logger: quietLogger()}, []PartitionSpec{specFor(tpA)})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, e.Partition(tpA), 20)
	if err := cfs.Crash(); err != nil { // segments were never synced: only the WAL has the data
		t.Fatal(err)
	}
	e2 := openEngine(t, Config{DataDir: dir}, tpA)
	p := e2.Partition(tpA)
	if p.HighWatermark() != 40 {
		t.Fatalf("hw %d after replay, want 40", p.HighWatermark())
	}
	checkContiguous(t, readAll(t, p, 0), 0)
}

// testLogger logs to the test output with -v, and nowhere otherwise.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return quietLogger()
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// TestCrashAtEveryOperation cuts the power at every mutating storage
// operation of a workload in turn (every write, sync, truncate, rename and
// removal the engine, its WAL writer, preparer and checkpointer make), once
// cleanly and once tearing the interrupted write in half, and after each cut
// recovers and checks: every acknowledged batch is there exactly once, in
// order, offsets contiguous, every stored batch valid; then the producer
// resends its last acknowledged batch, which is a duplicate, and retries its
// first unacknowledged batch, which is stored exactly once. Halfway the
// engine is closed and opened again, so the cuts also fall in a clean
// shutdown (index files, producer snapshots, the marker) and the clean start
// after it. Producer snapshots are written at every checkpoint after a roll.
// Tiny segments, WAL files and checkpoint intervals make segment rolls,
// checkpoints, WAL file switches and reuse part of the workload.
func TestCrashAtEveryOperation(t *testing.T) {
	const appends = 36 // per run, alternating two partitions
	tps := []TopicPartition{tpA, {Topic: "orders", Partition: 1}}
	specs := []PartitionSpec{specFor(tps[0]), specFor(tps[1])}
	cfgFor := func(dir string, fs vfs.FS) Config {
		return Config{DataDir: dir, FS: fs, Logger: quietLogger(), SegmentBytes: 2 << 10, IndexIntervalBytes: 256,
			WALFileBytes: 32 << 10, CheckpointBytes: 12 << 10}
	}
	pid := func(i int) int64 { return int64(i + 1) }

	// run appends until the power is cut (or the workload ends) and returns
	// the sequence numbers acknowledged per partition.
	run := func(t *testing.T, dir string, cfs *crashfs.FS) [][]int32 {
		acked := make([][]int32, len(tps))
		e, err := testOpen(cfgFor(dir, cfs), specs)
		if err != nil {
			if cfs.Ops() < cfs.CrashPoint() {
				t.Errorf("open before the cut: %v", err) // not Fatal: run may be on a watchdog's goroutine
			}
			return acked // cut while creating the partitions or the WAL
		}
		for i := 0; i < appends; i++ {
			if i == appends/2 {
				// A clean stop and start halfway: the cut also falls in Close's
				// index files, snapshots and clean-shutdown marker, and in the
				// clean start that trusts them and removes the marker.
				e.Close()
				if e, err = testOpen(cfgFor(dir, cfs), specs); err != nil {
					if cfs.Ops() < cfs.CrashPoint() {
						t.Errorf("reopen before the cut: %v", err)
					}
					return acked
				}
			}
			k := i % len(tps)
			seq := int32(i / len(tps) * 2)
			ch := make(chan error, 1)
			_, err := e.Partition(tps[k]).Append(mkBatch(batchOpts{pid: pid(k), seq: seq, n: 2, value: "cut"}), func(err error) { ch <- err })
			if err == nil {
				err = <-ch
			}
			if err != nil {
				break
			}
			acked[k] = append(acked[k], seq)
		}
		e.Close() // after a cut its errors are the crash's
		return acked
	}
	// check recovers dir and verifies the acknowledged batches and a retry.
	check := func(t *testing.T, dir string, acked [][]int32) {
		e, err := testOpen(cfgFor(dir, vfs.OSFS{}), specs)
		if err != nil {
			t.Fatalf("recovery: %v", err)
		}
		defer e.Close()
		for k, tp := range tps {
			p := e.Partition(tp)
			hs := readAll(t, p, 0)
			checkContiguous(t, hs, 0)
			next := int32(0)
			for _, h := range hs {
				if h.ProducerID != pid(k) || h.BaseSequence != next {
					t.Fatalf("%v: batch producer %d seq %d, want producer %d seq %d", tp, h.ProducerID, h.BaseSequence, pid(k), next)
				}
				next += 2
			}
			if want := int32(len(acked[k]) * 2); next < want {
				t.Fatalf("%v: %d acknowledged batches, %d recovered", tp, len(acked[k]), next/2)
			}
			// The producer resends its last acknowledged batch (its ack was lost, say): a
			// duplicate, answered with the original offset, from the recovered producer state.
			if n := len(acked[k]); n > 0 {
				last := acked[k][n-1]
				res, err := appendWait(t, p, mkBatch(batchOpts{pid: pid(k), seq: last, n: 2, value: "cut"}))
				if err != nil || !res.Duplicate || res.BaseOffset != int64(last) {
					t.Fatalf("%v: resent acknowledged seq %d after recovery: %+v, %v; want a duplicate at offset %d", tp, last, res, err, last)
				}
			}
			// The producer resends its first unacknowledged batch: stored once, whether the cut
			// kept it or not.
			retry := int32(len(acked[k]) * 2)
			if _, err := appendWait(t, p, mkBatch(batchOpts{pid: pid(k), seq: retry, n: 2, value: "cut"})); err != nil {
				t.Fatalf("%v: retry of seq %d after recovery: %v", tp, retry, err)
			}
			count := 0
			for _, h := range readAll(t, p, 0) {
				if h.BaseSequence == retry {
					count++
				}
			}
			if count != 1 {
				t.Fatalf("%v: retried seq %d stored %d times", tp, retry, count)
			}
		}
	}

	// A run without a cut says how many operations there are to cut at.
	base := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	if acked := run(t, filepath.Join(base, "whole"), cfs); len(acked[0])+len(acked[1]) != appends {
		t.Fatalf("uncut run acknowledged %d of %d", len(acked[0])+len(acked[1]), appends)
	}
	total := cfs.Ops()
	if total < appends*3 {
		t.Fatalf("only %d storage operations for %d appends", total, appends)
	}
	crashfs.CutAtEveryOperation(t, base, total, nil, func(dir string, cfs *crashfs.FS) [][]int32 { return run(t, dir, cfs) }, check)
}

// TestCrashAtEveryTrimOperation cuts the power at every storage operation of
// a workload that moves the log start: DeleteRecords, and retention by size
// deleting whole segments once checkpoints have made them durable. CrashFS
// takes back unsynced directory changes too, so a cut can bring deleted
// segment files back. After each cut, recovery must give: a log start at
// least the last acknowledged DeleteRecords offset, every acknowledged record
// at or above it, contiguous batches from the log start to the high
// watermark, each holding what was appended there; and a working partition.
func TestCrashAtEveryTrimOperation(t *testing.T) {
	const appends = 30
	spec := specFor(tpA)
	spec.Config.Retention = Retention{Delete: true, Ms: -1, Bytes: 1500}
	cfgFor := func(dir string, fs vfs.FS) Config {
		return Config{DataDir: dir, FS: fs, Logger: quietLogger(), SegmentBytes: 600, IndexIntervalBytes: 256,
			WALFileBytes: 32 << 10, CheckpointBytes: 2 << 10, RetentionCheckInterval: -1}
	}
	// Batch i holds offsets 2i and 2i+1 and the timestamp i, so a recovered
	// batch can be checked against its offset.
	type result struct{ ackedEnd, deletedTo int64 }
	run := func(dir string, cfs *crashfs.FS) (r result) {
		e, err := testOpen(cfgFor(dir, cfs), []PartitionSpec{spec})
		if err != nil {
			return r
		}
		defer e.Close()
		p := e.Partition(tpA)
		for i := 0; i < appends; i++ {
			ch := make(chan error, 1)
			if _, err := p.Append(mkBatch(batchOpts{n: 2, ts: int64(i), value: "trim"}), func(err error) { ch <- err }); err != nil {
				return r
			}
			if err := <-ch; err != nil {
				return r
			}
			r.ackedEnd = int64(i+1) * 2
			switch i % 6 {
			case 2:
				if _, err := p.DeleteRecordsBefore(r.ackedEnd - 4); err != nil {
					return r
				}
				r.deletedTo = r.ackedEnd - 4
			case 4:
				// Retention deletes only segments a checkpoint made durable; the
				// background checkpointer's timing must not decide whether this
				// run exercises deletion at all.
				if err := e.Checkpoint(); err != nil {
					return r
				}
				e.EnforceRetention()
			}
		}
		return r
	}
	check := func(t *testing.T, dir string, r result) {
		e, err := testOpen(cfgFor(dir, vfs.OSFS{}), []PartitionSpec{spec})
		if err != nil {
			t.Fatalf("recovery: %v", err)
		}
		defer e.Close()
		p := e.Partition(tpA)
		start, hw := p.LogStartOffset(), p.HighWatermark()
		if start < r.deletedTo {
			t.Fatalf("log start %d after recovery, below the acknowledged DeleteRecords offset %d", start, r.deletedTo)
		}
		if hw < r.ackedEnd {
			t.Fatalf("high watermark %d after recovery, %d acknowledged", hw, r.ackedEnd)
		}
		if start > hw || start%2 != 0 {
			t.Fatalf("log start %d, high watermark %d", start, hw)
		}
		hs := readAll(t, p, start)
		checkContiguous(t, hs, start)
		for _, h := range hs {
			if h.FirstTimestamp != h.BaseOffset/2 || h.LastOffset() != h.BaseOffset+1 {
				t.Fatalf("batch at %d holds timestamp %d, last offset %d", h.BaseOffset, h.FirstTimestamp, h.LastOffset())
			}
		}
		if len(hs) > 0 && hs[len(hs)-1].LastOffset()+1 != hw {
			t.Fatalf("batches end at %d, high watermark %d", hs[len(hs)-1].LastOffset()+1, hw)
		}
		if _, err := appendWait(t, p, mkBatch(batchOpts{n: 2, ts: hw / 2, value: "trim"})); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
	}

	base := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	whole := filepath.Join(base, "whole")
	if r := run(whole, cfs); r.ackedEnd != appends*2 {
		t.Fatalf("uncut run acknowledged %d records", r.ackedEnd)
	}
	if logs, _ := filepath.Glob(filepath.Join(whole, dirName(tpA), "*.log")); len(logs) == 0 || filepath.Base(logs[0]) == segmentName("", 0, logSuffix) {
		t.Fatalf("the uncut run deleted no segment: %v", logs)
	}
	crashfs.CutAtEveryOperation(t, base, cfs.Ops(), nil, run, check)
}

// TestFailedSegmentSync: a segment fdatasync fails the way Linux reports a
// writeback error (once; the pages are then clean but not on disk, and later
// syncs succeed without writing them). No checkpoint may follow it, or the
// WAL would release the only durable copy of acknowledged records. Then,
// either the power is cut, or the broker restarts without a reboot (the
// kernel still serving the lost pages) and the power is cut after its
// recovery: every acknowledged record must come back.
func TestFailedSegmentSync(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			dir := t.TempDir()
			cfs := crashfs.New(vfs.OSFS{})
			cfg := Config{DataDir: dir, FS: cfs, Logger: quietLogger(), WALFileBytes: 64 << 10, CheckpointBytes: 4 << 10}
			e, err := testOpen(cfg, []PartitionSpec{specFor(tpA)})
			if err != nil {
				t.Fatal(err)
			}
			p := e.Partition(tpA)
			fill(t, p, 10)
			if err := e.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			cfs.FailNextSync(func(name string) bool { return strings.HasSuffix(name, logSuffix) })
			fill(t, p, 10)
			if err := e.Checkpoint(); !errors.Is(err, ErrStorage) {
				t.Fatalf("checkpoint with a failing segment sync: %v", err)
			}
			fill(t, p, 40) // more than enough WAL for checkpoints of its own
			if err := e.Checkpoint(); !errors.Is(err, errCheckpointsStopped) {
				t.Fatalf("checkpoint after a failed segment sync: %v, want it refused", err)
			}
			if !e.CheckpointsStopped() {
				t.Fatal("CheckpointsStopped is false after a failed segment sync")
			}
			const acked = 60 * 2
			e.Close()
			if restart {
				e, err := testOpen(cfg, []PartitionSpec{specFor(tpA)})
				if err != nil {
					t.Fatal(err)
				}
				if hw := e.Partition(tpA).HighWatermark(); hw != acked {
					t.Fatalf("hw %d after the restart, want %d", hw, acked)
				}
				if e.CheckpointsStopped() {
					t.Fatal("checkpoints stopped in a new process")
				}
				fill(t, e.Partition(tpA), 5) // checkpoints run again in the new process
				if err := e.Checkpoint(); err != nil {
					t.Fatal(err)
				}
				e.Close()
			}
			if err := cfs.Crash(); err != nil {
				t.Fatal(err)
			}
			e2 := openEngine(t, Config{DataDir: dir}, tpA)
			p2 := e2.Partition(tpA)
			want := int64(acked) // fill appends batches of 2 records
			if restart {
				want += 10
			}
			if hw := p2.HighWatermark(); hw != want {
				t.Fatalf("hw %d after the power cut, want %d", hw, want)
			}
			hs := readAll(t, p2, 0)
			checkContiguous(t, hs, 0)
			var wantTS []int64 // fill stamps its batches 0, 1, ...
			for _, n := range []int{10, 10, 40, 5} {
				for i := range n {
					wantTS = append(wantTS, int64(i))
				}
			}
			for i, h := range hs {
				if h.FirstTimestamp != wantTS[i] {
					t.Fatalf("batch %d at offset %d holds timestamp %d, want %d", i, h.BaseOffset, h.FirstTimestamp, wantTS[i])
				}
			}
		})
	}
}

// TestStorageFailureStopsAppends: with RefuseAppendsAfterStorageFailure (a cluster node), once
// a WAL failure rolled a partition back it takes no append, even after the disk recovers, so
// nothing lands at the rolled-back offsets in the same leader epoch; OnStorageFailure is told.
// A reopened engine takes appends again.
func TestStorageFailureStopsAppends(t *testing.T) {
	dir := t.TempDir()
	ffs := errorfs.New(vfs.OSFS{})
	ffs.SetFilter(".wal")
	var failed []string
	cfg := Config{DataDir: dir, FS: ffs, RefuseAppendsAfterStorageFailure: true,
		OnStorageFailure: func(p *Partition, err error) { failed = append(failed, p.name+": "+err.Error()) }}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	fill(t, p, 3)
	ffs.FailFrom(errorfs.OpWrite, 1, unix.EIO)
	if _, err := appendWait(t, p, mkBatch(batchOpts{n: 2, value: "lost"})); !errors.Is(err, ErrStorage) {
		t.Fatalf("append on a failing wal: %v", err)
	}
	if len(failed) == 0 {
		t.Fatal("OnStorageFailure was not called")
	}
	ffs.Clear()
	if _, err := p.Append(mkBatch(batchOpts{n: 2, value: "after"}), nil); !errors.Is(err, ErrStorage) {
		t.Fatalf("append after the failure, the disk back: %v, want ErrStorage", err)
	}
	if p.LogEndOffset() != 6 {
		t.Fatalf("log end %d, want 6 (the acknowledged appends)", p.LogEndOffset())
	}
	e.Close()
	e2 := openEngine(t, Config{DataDir: dir}, tpA)
	if res := mustAppend(t, e2.Partition(tpA), mkBatch(batchOpts{n: 2, value: "reopened"})); res.BaseOffset != 6 {
		t.Fatalf("append after reopening: %+v", res)
	}
}
