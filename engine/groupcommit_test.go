package engine

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/errorfs"
)

// gateFS holds every fdatasync of a .wal file (the WAL writer's cycle sync) until the test lets it go,
// and counts them.
type gateFS struct {
	vfs.FS
	gate  chan struct{}
	on    atomic.Bool
	syncs atomic.Int32
}

func (g *gateFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, ".wal") {
		return f, err
	}
	return &gateFile{File: f, g: g}, nil
}

type gateFile struct {
	vfs.File
	g *gateFS
}

func (f *gateFile) Datasync() error {
	if !f.g.on.Load() {
		return f.File.Datasync()
	}
	f.g.syncs.Add(1)
	<-f.g.gate
	return f.File.Datasync()
}

// gatedPartition is one partition whose WAL syncs the test releases one at a time.
type gatedPartition struct {
	t     *testing.T
	g     *gateFS
	p     *Partition
	acked atomic.Int32
	wg    sync.WaitGroup // one per append, done when it is acknowledged
}

func newGatedPartition(t *testing.T, walInFlight int) *gatedPartition {
	return newGatedPartitionOn(t, vfs.OSFS{}, walInFlight)
}

// newGatedPartitionOn is newGatedPartition over fs (a counting file system, say).
func newGatedPartitionOn(t *testing.T, fs vfs.FS, walInFlight int) *gatedPartition {
	g := &gateFS{FS: fs, gate: make(chan struct{})}
	e, err := testOpen(Config{DataDir: t.TempDir(), FS: g, Logger: quietLogger(), WALInFlight: walInFlight}, []PartitionSpec{specFor(tpA)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(g.gate)
		e.Close()
	})
	g.on.Store(true)
	return &gatedPartition{t: t, g: g, p: e.Partition(tpA)}
}

// add appends one record; its acknowledgement is counted in acked.
func (h *gatedPartition) add() {
	h.wg.Add(1)
	if _, err := h.p.Append(mkBatch(batchOpts{n: 1}), func(err error) {
		if err != nil {
			h.t.Error(err)
		}
		h.acked.Add(1)
		h.wg.Done()
	}); err != nil {
		h.t.Fatal(err)
	}
}

// waitSyncs waits until the n-th WAL sync has started.
func (h *gatedPartition) waitSyncs(n int32) {
	for deadline := time.Now().Add(10 * time.Second); h.g.syncs.Load() < n; {
		if time.Now().After(deadline) {
			h.t.Fatalf("sync %d never started", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommit checks that nothing is acknowledged or readable before
// its sync returned, and that appends arriving during a sync share the next
// one (no timer, no per-append sync).
func TestGroupCommit(t *testing.T) {
	h := newGatedPartition(t, 1)
	g, p, acked, wg, add, waitSyncs := h.g, h.p, &h.acked, &h.wg, h.add, h.waitSyncs
	add()
	waitSyncs(1) // the first cycle is in fdatasync
	for i := 0; i < 20; i++ {
		add()
	}
	time.Sleep(20 * time.Millisecond)
	if acked.Load() != 0 || p.HighWatermark() != 0 {
		t.Fatalf("acked %d, hw %d before any sync returned", acked.Load(), p.HighWatermark())
	}
	if rr, err := p.Read(0, 1<<20, true); err != nil || len(rr.Records) != 0 {
		t.Fatalf("unsynced data readable: %d bytes, %v", len(rr.Records), err)
	}
	g.gate <- struct{}{} // first sync returns: only the first append is durable
	waitSyncs(2)
	for deadline := time.Now().Add(10 * time.Second); acked.Load() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("first append never acknowledged")
		}
	}
	if acked.Load() != 1 || p.HighWatermark() != 1 {
		t.Fatalf("after one sync: acked %d, hw %d", acked.Load(), p.HighWatermark())
	}
	g.gate <- struct{}{} // the second sync covers all 20 others
	wg.Wait()
	if p.HighWatermark() != 21 || g.syncs.Load() != 2 {
		t.Fatalf("hw %d after %d syncs", p.HighWatermark(), g.syncs.Load())
	}
}

// TestGroupCommitTwoInFlight: with two cycles in flight, an append made
// while the first cycle syncs goes out at once in a second one; appends
// made while both sync wait and share the third. Nothing is acknowledged
// before its own sync and every earlier one returned.
func TestGroupCommitTwoInFlight(t *testing.T) {
	h := newGatedPartition(t, 2)
	g, p, acked, wg, add, waitSyncs := h.g, h.p, &h.acked, &h.wg, h.add, h.waitSyncs
	add()
	waitSyncs(1)
	add()
	waitSyncs(2) // the second cycle did not wait for the first
	for i := 0; i < 19; i++ {
		add()
	}
	time.Sleep(20 * time.Millisecond)
	if acked.Load() != 0 || p.HighWatermark() != 0 || g.syncs.Load() != 2 {
		t.Fatalf("acked %d, hw %d, %d syncs before any sync returned", acked.Load(), p.HighWatermark(), g.syncs.Load())
	}
	g.gate <- struct{}{} // one of the two syncs returns
	waitSyncs(3)         // a lane is free: the 19 others go out together
	time.Sleep(10 * time.Millisecond)
	if hw := p.HighWatermark(); hw > 2 || int32(hw) != acked.Load() {
		t.Fatalf("after one sync: acked %d, hw %d", acked.Load(), hw)
	}
	g.gate <- struct{}{}
	g.gate <- struct{}{}
	wg.Wait()
	if p.HighWatermark() != 21 || g.syncs.Load() != 3 {
		t.Fatalf("hw %d after %d syncs", p.HighWatermark(), g.syncs.Load())
	}
}

// TestWriteBehind: an active segment that gained writeBehindBytes is handed
// to the kernel's writeback by the checkpointer, before any checkpoint.
func TestWriteBehind(t *testing.T) {
	e := openEngine(t, Config{DataDir: t.TempDir(), CheckpointBytes: 1 << 40}, tpA)
	defer e.Close()
	p := e.Partition(tpA)
	big := strings.Repeat("w", 8<<10)
	for i := 0; i < (writeBehindBytes/len(big))+8; i++ {
		mustAppend(t, p, mkBatch(batchOpts{n: 1, value: big}))
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		from := p.active().wbFrom
		p.mu.Unlock()
		if from >= writeBehindBytes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write-behind reached %d bytes", from)
		}
	}
}

// TestSegmentWritesShareWALCycle: the appends of one WAL cycle reach the segment file in one
// write, made when the cycle is durable (writeLocked defers them), and read back whole.
func TestSegmentWritesShareWALCycle(t *testing.T) {
	counted := errorfs.New(vfs.OSFS{})
	counted.SetFilter(".log")
	h := newGatedPartitionOn(t, counted, 1)
	g := h.g
	before := counted.Count(errorfs.OpWrite)
	h.add()
	h.waitSyncs(1)
	for i := 0; i < 20; i++ {
		h.add()
	}
	g.gate <- struct{}{}
	h.waitSyncs(2)
	g.gate <- struct{}{}
	h.wg.Wait()
	if n := counted.Count(errorfs.OpWrite) - before; n != 1 {
		t.Fatalf("%d segment writes for 21 appends made during one WAL cycle, want 1", n)
	}
	hs := readAll(t, h.p, 0)
	checkContiguous(t, hs, 0)
	if len(hs) != 21 {
		t.Fatalf("read back %d batches, want 21", len(hs))
	}
}

// TestReplicaSpanLeavesDeferredWrites: a follower catching up below the appends a WAL cycle
// still defers is served what is written, without writing them early; one that reached them
// has them written, and gets them whole.
func TestReplicaSpanLeavesDeferredWrites(t *testing.T) {
	counted := errorfs.New(vfs.OSFS{})
	counted.SetFilter(".log")
	h := newGatedPartitionOn(t, counted, 1)
	g := h.g
	h.add()
	h.waitSyncs(1)
	g.gate <- struct{}{} // the first append is durable, then written
	for deadline := time.Now().Add(10 * time.Second); h.acked.Load() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("first append never acknowledged")
		}
	}
	for i := 0; i < 3; i++ {
		h.add() // deferred: their cycle syncs behind the gate
	}
	h.waitSyncs(2)
	before := counted.Count(errorfs.OpWrite)
	sp, err := h.p.ReplicaSpan(0, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Offset != 0 || sp.EndOffset != 1 {
		t.Fatalf("span below the deferred appends: [%d, %d), want [0, 1)", sp.Offset, sp.EndOffset)
	}
	if n := counted.Count(errorfs.OpWrite) - before; n != 0 {
		t.Fatalf("%d segment writes serving what was written, want 0", n)
	}
	next, err := h.p.ReplicaSpan(sp.EndOffset, 1<<20, &sp)
	if err != nil {
		t.Fatal(err)
	}
	if next.Offset != 1 || next.EndOffset != 4 || next.Pos != sp.Pos+sp.Len {
		t.Fatalf("span at the deferred appends: [%d, %d) at %d, want [1, 4) at %d", next.Offset, next.EndOffset, next.Pos, sp.Pos+sp.Len)
	}
	if n := counted.Count(errorfs.OpWrite) - before; n != 1 {
		t.Fatalf("%d segment writes for a follower reaching the deferred appends, want 1", n)
	}
	// The three deferred appends may share the gated cycle or not (the writer may have taken
	// the first alone): stop gating, then let the gated sync go.
	g.on.Store(false)
	g.gate <- struct{}{}
	h.wg.Wait()
	hs := readAll(t, h.p, 0)
	checkContiguous(t, hs, 0)
	if len(hs) != 4 {
		t.Fatalf("read back %d batches, want 4", len(hs))
	}
}
