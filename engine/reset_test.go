package engine

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/crashfs"
)

// TestResetTo empties a log spanning several segments and restarts it beyond its end: offsets,
// reads, producer state and epochs start over there, appends continue from it, and the reset
// survives a clean restart and a restart without a checkpoint (the WAL replays it).
func TestResetTo(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{DataDir: dir, SegmentBytes: 400, IndexIntervalBytes: 128, RetentionCheckInterval: -1}
			cfs := crashfs.New(vfs.OSFS{})
			crashCfg := cfg
			crashCfg.FS, crashCfg.Logger = cfs, quietLogger()
			e, err := testOpen(crashCfg, []PartitionSpec{specFor(tpA)})
			if err != nil {
				t.Fatal(err)
			}
			p := e.Partition(tpA)
			p.SetLeaderEpoch(3)
			for i := range 20 {
				mustAppend(t, p, mkBatch(batchOpts{n: 2, pid: 7, epoch: 0, seq: int32(2 * i), value: "old"}))
			}
			if len(p.segments) < 3 {
				t.Fatalf("%d segments; the test needs several", len(p.segments))
			}
			if err := p.ResetTo(p.LogEndOffset()); !errors.Is(err, ErrOffsetOutOfRange) {
				t.Fatalf("reset to the log end: %v, want ErrOffsetOutOfRange", err)
			}
			if err := p.ResetTo(1000); err != nil {
				t.Fatal(err)
			}
			check := func(p *Partition, appended int) {
				t.Helper()
				if p.LogStartOffset() != 1000 || p.LogEndOffset() != 1000+int64(2*appended) || p.HighWatermark() != p.LogEndOffset() {
					t.Fatalf("log start %d, end %d, high watermark %d; want 1000, %d, the end", p.LogStartOffset(), p.LogEndOffset(), p.HighWatermark(), 1000+2*appended)
				}
				hs := readAll(t, p, 1000)
				checkContiguous(t, hs, 1000)
				if len(hs) != appended {
					t.Fatalf("%d batches after the reset, want %d", len(hs), appended)
				}
				if ep := p.LastLogEpoch(); appended == 0 && ep != -1 || appended > 0 && ep != 4 {
					t.Fatalf("last epoch %d with %d batches after the reset", ep, appended)
				}
				if _, err := p.ReplicaSpan(998, 1<<20, nil); !errors.Is(err, ErrOffsetOutOfRange) {
					t.Fatalf("a span below the reset: %v", err)
				}
			}
			check(p, 0)
			// The producer state went with the log: sequence 0 of the producer is new again.
			p.SetLeaderEpoch(4)
			if res := mustAppend(t, p, mkBatch(batchOpts{n: 2, pid: 7, epoch: 0, seq: 0, value: "new"})); res.Duplicate || res.BaseOffset != 1000 {
				t.Fatalf("first append after the reset: %+v", res)
			}
			mustAppend(t, p, mkBatch(batchOpts{n: 2, value: "new"}))
			check(p, 2)
			if clean {
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
			} else if err := cfs.Crash(); err != nil { // what was not synced is gone: the WAL replays the reset
				t.Fatal(err)
			}
			e2 := openEngine(t, cfg, tpA)
			check(e2.Partition(tpA), 2)
			if old, _ := filepath.Glob(filepath.Join(dir, "logs", dirName(tpA), "0000000000000000000*.log")); len(old) != 0 {
				t.Fatalf("segments of the old log left: %v", old)
			}
		})
	}
}

// TestCrashAtEveryResetOperation cuts the power at every storage operation of a workload of
// appends and resets: the recovered log is the acknowledged one, or the one the reset or
// append in flight at the cut would have made, and it takes appends.
func TestCrashAtEveryResetOperation(t *testing.T) { resetStoppedAtEveryOperation(t, DurabilityFsync) }

// With Durability "none" a reset writes no WAL record: killed at any operation, recovery finds
// every acknowledged append and the log after the reset, before it, or (killed while the old
// segments went) a suffix of the old log, never old and new records together.
func TestKillAtEveryResetOperationNone(t *testing.T) { resetStoppedAtEveryOperation(t, DurabilityNone) }

// resetStoppedAtEveryOperation runs the workload stopped at every storage operation: by a power cut with
// Durability "fsync", by a kill with "none" (which promises nothing across power cuts).
func resetStoppedAtEveryOperation(t *testing.T, durability string) {
	type op struct {
		appends int   // append this many batches of the next generation
		reset   int64 // else reset to this offset
	}
	work := []op{{appends: 10}, {reset: 100}, {appends: 6}, {reset: 300}, {appends: 4}}
	cfgFor := func(dir string, fs vfs.FS) Config {
		return Config{DataDir: dir, FS: fs, Durability: durability, SegmentBytes: 500, IndexIntervalBytes: 128,
			WALFileBytes: 32 << 10, CheckpointBytes: 4 << 10, RetentionCheckInterval: -1}
	}
	// The acknowledged log: where it starts and the generation of each batch; the operation in
	// flight at the cut.
	type result struct {
		start        int64
		log          []int32
		pendingGen   int32
		pendingReset int64
	}
	runLogs := map[string]string{}
	run := func(dir string, cfs *crashfs.FS) (r result) {
		r.pendingGen, r.pendingReset = -1, -1
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
		gen := int32(0)
		for _, o := range work {
			if o.appends == 0 {
				r.pendingReset = o.reset
				if err := p.ResetTo(o.reset); err != nil {
					return r
				}
				r.pendingReset = -1
				r.start, r.log = o.reset, nil
				continue
			}
			for range o.appends {
				r.pendingGen = gen
				if _, err := appendWaitQuiet(p, mkBatch(batchOpts{n: 2, ts: int64(gen), value: "g"})); err != nil {
					return r
				}
				r.pendingGen = -1
				r.log = append(r.log, gen)
			}
			gen++
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
		start := p.LogStartOffset()
		hs := readAll(t, p, start)
		checkContiguous(t, hs, start)
		var got []int32
		for _, h := range hs {
			got = append(got, int32(h.FirstTimestamp)) // the generation
		}
		matches := func(s int64, log []int32) bool { return start == s && fmt.Sprint(got) == fmt.Sprint(log) }
		ok := matches(r.start, r.log)
		switch {
		case r.pendingGen >= 0: // the interrupted append may have landed
			ok = ok || matches(r.start, append(r.log[:len(r.log):len(r.log)], r.pendingGen))
		case r.pendingReset >= 0: // the interrupted reset may have happened
			ok = ok || matches(r.pendingReset, nil)
			if durability == DurabilityNone && !ok && start > r.start && (start-r.start)/2 <= int64(len(r.log)) {
				// Killed while the old segments went, oldest first: a suffix of the old log
				// is left, as retention would leave it.
				ok = matches(start, r.log[(start-r.start)/2:])
			}
		}
		if !ok {
			t.Fatalf("recovered log from %d: %v; acknowledged from %d: %v; in flight: append of generation %d, reset to %d",
				start, got, r.start, r.log, r.pendingGen, r.pendingReset)
		}
		if p.LogEndOffset() != start+int64(2*len(got)) || p.HighWatermark() != p.LogEndOffset() {
			t.Fatalf("log start %d, end %d, high watermark %d, %d batches", start, p.LogEndOffset(), p.HighWatermark(), len(got))
		}
		if _, err := appendWait(t, p, mkBatch(batchOpts{n: 2, value: "after"})); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		checkContiguous(t, readAll(t, p, start), start)
	}

	base := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	whole := filepath.Join(base, "whole")
	if r := run(whole, cfs); r.start != 300 || fmt.Sprint(r.log) != "[2 2 2 2]" {
		t.Fatalf("uncut run: from %d: %v", r.start, r.log)
	}
	if durability == DurabilityNone {
		crashfs.KillAtEveryOperation(t, base, cfs.Ops(), nil, run, check)
		return
	}
	crashfs.CutAtEveryOperation(t, base, cfs.Ops(), nil, run, check)
}
