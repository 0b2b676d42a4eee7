package engine

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/crashfs"
)

// logBuffer collects an engine's log lines for a test to look at.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// produceIdem appends n batches of 2 records of producer pid from seq on and
// returns the base offset of each.
func produceIdem(t *testing.T, p *Partition, pid int64, seq int32, n int) []int64 {
	t.Helper()
	var offs []int64
	for i := 0; i < n; i++ {
		res := mustAppend(t, p, mkBatch(batchOpts{pid: pid, seq: seq + int32(2*i), n: 2, value: "snap"}))
		offs = append(offs, res.BaseOffset)
	}
	return offs
}

// resendIsDuplicate resends producer pid's batch seq and wants the duplicate
// answer with the original offset.
func resendIsDuplicate(t *testing.T, p *Partition, pid int64, seq int32, offset int64) {
	t.Helper()
	res, err := appendWait(t, p, mkBatch(batchOpts{pid: pid, seq: seq, n: 2, value: "snap"}))
	if err != nil || !res.Duplicate || res.BaseOffset != offset {
		t.Fatalf("resent producer %d seq %d: %+v, %v; want a duplicate at offset %d", pid, seq, res, err, offset)
	}
}

func logBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	logs, _ := filepath.Glob(filepath.Join(dir, "orders-0", "*.log"))
	for _, l := range logs {
		n += fileSize(t, l)
	}
	return n
}

// TestCleanShutdownSkipsScans: after a clean Close the next start takes
// the clean path (the line a systemd test asserts on), validates no
// segment, reads no batch header, takes the producer state from the
// snapshot at the log end, and removes the marker; an idempotent resend is
// still a duplicate.
func TestCleanShutdownSkipsScans(t *testing.T) {
	dir := t.TempDir()
	var logs logBuffer
	cfg := Config{DataDir: dir, Logger: logs.logger(), SegmentBytes: 1 << 10, IndexIntervalBytes: 256}
	e := openEngine(t, cfg, tpA)
	offs := produceIdem(t, e.Partition(tpA), 7, 0, 40)
	e.Close()
	for _, f := range []string{filepath.Join(dir, cleanShutdownFile), snapshotPath(filepath.Join(dir, "orders-0"), offs[39]+2)} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("after a clean Close: %v", err)
		}
	}

	e = openEngine(t, cfg, tpA)
	if !strings.Contains(logs.String(), "recovery: clean shutdown, replay skipped") {
		t.Fatalf("no clean-path line in the log:\n%s", logs.String())
	}
	r := e.recovery
	segs, _ := filepath.Glob(filepath.Join(dir, "orders-0", "*.log"))
	if r.validated != 0 || r.headerBytes != 0 || r.snapshots != 1 || r.fromIndex != len(segs) || len(segs) < 4 || r.rebuilt != 0 {
		t.Fatalf("clean start read: %+v; want every segment from its index files, no header, the snapshot", r)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanShutdownFile)); !os.IsNotExist(err) {
		t.Fatalf("the marker outlived the start: %v", err)
	}
	p := e.Partition(tpA)
	checkContiguous(t, readAll(t, p, 0), 0)
	resendIsDuplicate(t, p, 7, 78, offs[39])
	resendIsDuplicate(t, p, 7, 74, offs[37])
	if res := mustAppend(t, p, mkBatch(batchOpts{pid: 7, seq: 80, n: 2})); res.Duplicate || res.BaseOffset != offs[39]+2 {
		t.Fatalf("next batch: %+v", res)
	}
	e.Close()

	// Without the marker (a crash) the same files take the other path.
	asAfterCrash(t, dir)
	e = openEngine(t, cfg, tpA)
	if !strings.Contains(logs.String(), "recovery: no clean shutdown marker") || e.recovery.validated != 1 {
		t.Fatalf("start without a marker: %+v", e.recovery)
	}
	resendIsDuplicate(t, e.Partition(tpA), 7, 80, offs[39]+2)
}

// TestCrashRecoveryFromSnapshot: after a power cut the producer state comes
// from the snapshot the last checkpoint wrote at a roll, and recovery reads
// only the headers after it; the sealed segments' index files are loaded.
// The producer resends its last acknowledged batch: a duplicate, with the
// original offset.
func TestCrashRecoveryFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	cfg := Config{DataDir: dir, FS: cfs, Logger: quietLogger(), SegmentBytes: 1 << 10, IndexIntervalBytes: 256}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	offs := produceIdem(t, p, 9, 0, 60)
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	offs = append(offs, produceIdem(t, p, 9, 120, 3)...)
	if err := cfs.Crash(); err != nil {
		t.Fatal(err)
	}
	e.Close()

	var logs logBuffer
	cfg.FS, cfg.Logger = vfs.OSFS{}, logs.logger()
	e = openEngine(t, cfg, tpA)
	p = e.Partition(tpA)
	r := e.recovery
	total := logBytes(t, dir)
	segs, _ := filepath.Glob(filepath.Join(dir, "orders-0", "*.log"))
	if r.snapshots != 1 || r.fromIndex != len(segs)-1 || len(segs) < 5 || r.validated != 1 || r.headerBytes > 1<<10 {
		t.Fatalf("crash recovery read %+v of a %d-byte log; want the snapshot, sealed segments from their index files, headers of the active segment only", r, total)
	}
	if !strings.Contains(logs.String(), "recovery: no clean shutdown marker") {
		t.Fatalf("no crash-path line:\n%s", logs.String())
	}
	checkContiguous(t, readAll(t, p, 0), 0)
	resendIsDuplicate(t, p, 9, 124, offs[62])
	resendIsDuplicate(t, p, 9, 118, offs[59])
}

// TestSnapshotOfTruncatedLogNotUsed: a truncation removes the snapshots
// beyond its cut; one brought back (a crash undid the removal) names a
// batch the log no longer holds, so it is not used, and the producer state
// is that of the log as it is.
func TestSnapshotOfTruncatedLogNotUsed(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "orders-0")
	var logs logBuffer
	cfg := Config{DataDir: dir, Logger: logs.logger(), SegmentBytes: 1 << 10, IndexIntervalBytes: 256}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	offs := produceIdem(t, p, 1, 0, 40)
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	snaps := append([]int64(nil), p.snapFiles...)
	p.mu.Unlock()
	if len(snaps) == 0 {
		t.Fatal("no snapshot written at the rolls")
	}
	stale := snaps[len(snaps)-1]
	staleBytes, err := os.ReadFile(snapshotPath(pdir, stale))
	if err != nil {
		t.Fatal(err)
	}
	cut := offs[5]
	if err := p.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(snapshotPath(pdir, stale)); !os.IsNotExist(err) {
		t.Fatalf("snapshot at %d survived a truncation to %d", stale, cut)
	}
	// Another producer writes past the old snapshot's offset.
	other := produceIdem(t, p, 2, 0, 40)
	e.Close()
	asAfterCrash(t, dir)
	for _, f := range []string{"*.snapshot"} {
		ms, _ := filepath.Glob(filepath.Join(pdir, f))
		for _, m := range ms {
			os.Remove(m)
		}
	}
	if err := os.WriteFile(snapshotPath(pdir, stale), staleBytes, 0o644); err != nil {
		t.Fatal(err)
	}

	e = openEngine(t, cfg, tpA)
	p = e.Partition(tpA)
	if e.recovery.snapshots != 0 || !strings.Contains(logs.String(), "producer snapshot not used") {
		t.Fatalf("the stale snapshot at %d was used: %+v", stale, e.recovery)
	}
	resendIsDuplicate(t, p, 2, 78, other[39])
	resendIsDuplicate(t, p, 1, 8, offs[4])
	// Producer 1's batches after the cut are gone: its next batch follows seq 8.
	if res := mustAppend(t, p, mkBatch(batchOpts{pid: 1, seq: 10, n: 2})); res.Duplicate {
		t.Fatalf("producer 1 seq 10 after the cut: %+v", res)
	}
}

// TestIndexFilesVerify: a sealed segment whose .index file does not match
// it (torn, or pointing at no batch) is validated and its files
// rewritten; reads find every batch.
func TestIndexFilesVerify(t *testing.T) {
	for name, damage := range map[string]func([]byte) []byte{
		"torn":         func(b []byte) []byte { return b[:len(b)-3] },
		"empty":        func([]byte) []byte { return nil },
		"wrong target": func(b []byte) []byte { b[len(b)-1]++; return b },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{DataDir: dir, SegmentBytes: 1 << 10, IndexIntervalBytes: 256}
			e := openEngine(t, cfg, tpA)
			offs := produceIdem(t, e.Partition(tpA), 3, 0, 30)
			e.Close()
			asAfterCrash(t, dir)
			idx, _ := filepath.Glob(filepath.Join(dir, "orders-0", "*.index"))
			if len(idx) < 3 {
				t.Fatalf("%d index files", len(idx))
			}
			good, _ := os.ReadFile(idx[1])
			if err := os.WriteFile(idx[1], damage(append([]byte(nil), good...)), 0o644); err != nil {
				t.Fatal(err)
			}
			e = openEngine(t, cfg, tpA)
			if e.recovery.rebuilt != 1 {
				t.Fatalf("recovery: %+v, want one segment's index rebuilt", e.recovery)
			}
			p := e.Partition(tpA)
			hs := readAll(t, p, 0)
			checkContiguous(t, hs, 0)
			if len(hs) != 30 {
				t.Fatalf("%d batches, want 30", len(hs))
			}
			for i, off := range offs {
				res, err := p.Read(off+1, 1, true)
				if err != nil || len(res.Records) == 0 {
					t.Fatalf("read at %d: %v", off+1, err)
				}
				if h := readAll(t, p, off)[0]; h.BaseOffset != offs[i] {
					t.Fatalf("read at %d found batch %d", off, h.BaseOffset)
				}
			}
			if now, _ := os.ReadFile(idx[1]); !bytes.Equal(now, good) {
				t.Fatalf("index file not rewritten: %x, want %x", now, good)
			}
		})
	}
}
