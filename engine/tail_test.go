package engine

import (
	"bytes"
	"testing"

	"github.com/ringtail/ringtail/engine/batch"
)

// logRange reads the log's own bytes from offset (where a batch starts) on, n of them, across
// segments.
func logRange(t *testing.T, p *Partition, offset int64, n int) []byte {
	t.Helper()
	var out []byte
	for len(out) < n {
		sp, err := p.ReplicaSpan(offset, n-len(out), nil)
		if err != nil {
			t.Fatal(err)
		}
		if sp.Len == 0 {
			break
		}
		buf := make([]byte, sp.Len)
		if _, err := sp.File.ReadAt(buf, sp.Pos); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf...)
		offset = sp.EndOffset
	}
	return out
}

// TestReplicaTail: a leader's kept appends are the log's own bytes, served from where an
// append starts, bounded by maxBytes (at least one append), and nothing is served once a
// truncation or a follower's append changed the log under them.
func TestReplicaTail(t *testing.T) {
	e := openEngine(t, Config{DataDir: t.TempDir(), SegmentBytes: 1024, OnDurable: func(*Partition, int64) {},
		ReplicaTailBytes: 1 << 20}, tpA)
	p := e.Partition(tpA)
	var starts []int64
	for i := range 40 {
		res := mustAppend(t, p, mkBatch(batchOpts{n: 1 + i%3, value: "v"}))
		starts = append(starts, res.BaseOffset)
	}
	// One append of two batches: one entry, served whole or not at all.
	two := append(mkBatch(batchOpts{n: 2, value: "a"}), mkBatch(batchOpts{n: 1, value: "b"})...)
	res := mustAppend(t, p, two)
	starts = append(starts, res.BaseOffset)
	if len(p.segments) < 2 {
		t.Fatalf("%d segments; the test needs a roll (the tail spans segments)", len(p.segments))
	}

	for i, off := range starts {
		bufs, end, n, ok := p.ReplicaTail(off, 300, nil)
		if !ok {
			t.Fatalf("offset %d (append %d): not in the tail", off, i)
		}
		got := bytes.Join(bufs, nil)
		if int64(len(got)) != n || (len(bufs) > 1 && n > 300) {
			t.Fatalf("offset %d: %d buffers of %d bytes, says %d (maxBytes 300)", off, len(bufs), len(got), n)
		}
		if !bytes.Equal(got, logRange(t, p, off, len(got))) {
			t.Fatalf("offset %d: the tail's bytes are not the log's", off)
		}
		if i+len(bufs) < len(starts) && end != starts[i+len(bufs)] || i+len(bufs) == len(starts) && end != p.LogEndOffset() {
			t.Fatalf("offset %d: %d appends end at %d", off, len(bufs), end)
		}
	}
	if _, _, _, ok := p.ReplicaTail(res.BaseOffset+2, 300, nil); ok {
		t.Fatal("served from inside an append (its second batch)")
	}
	if _, _, _, ok := p.ReplicaTail(p.LogEndOffset(), 300, nil); ok {
		t.Fatal("served at the log end")
	}

	// A truncation: nothing until a leader append starts a new tail, then only that.
	if err := p.TruncateTo(starts[20]); err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := p.ReplicaTail(starts[10], 300, nil); ok {
		t.Fatal("served after a truncation")
	}
	again := mustAppend(t, p, mkBatch(batchOpts{n: 1, value: "after the cut"}))
	if _, _, _, ok := p.ReplicaTail(starts[10], 300, nil); ok {
		t.Fatal("served an append from before the truncation")
	}
	bufs, _, _, ok := p.ReplicaTail(again.BaseOffset, 300, nil)
	if got := bytes.Join(bufs, nil); !ok || !bytes.Equal(got, logRange(t, p, again.BaseOffset, len(got))) || again.EndOffset != p.LogEndOffset() {
		t.Fatal("the append after the truncation is not served as the log holds it")
	}

	// A follower's append (this replica stopped leading): the tail goes.
	f := openEngine(t, Config{DataDir: t.TempDir(), OnDurable: func(*Partition, int64) {}, ReplicaTailBytes: 1 << 20}, tpTail)
	fp := f.Partition(tpTail)
	mustAppend(t, fp, mkBatch(batchOpts{value: "led"}))
	copied := logRange(t, p, again.BaseOffset, 1)
	batch.SetBaseOffset(copied, fp.LogEndOffset())
	ch := make(chan error, 1)
	if _, err := fp.AppendReplicated(copied, func(err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := fp.ReplicaTail(0, 300, nil); ok {
		t.Fatal("served a tail after a follower's append")
	}
}

// TestReplicaTailBounds: the engine keeps at most Config.ReplicaTailBytes across partitions
// (the latest appends), none when it is 0, and gives the memory back when a partition closes.
func TestReplicaTailBounds(t *testing.T) {
	e := openEngine(t, Config{DataDir: t.TempDir(), OnDurable: func(*Partition, int64) {}, ReplicaTailBytes: 2048}, tpA, tpTail)
	a, b := e.Partition(tpA), e.Partition(tpTail)
	var lastA int64
	for i := range 60 {
		lastA = mustAppend(t, a, mkBatch(batchOpts{value: "a"})).BaseOffset
		mustAppend(t, b, mkBatch(batchOpts{value: "b"}))
		if kept := e.tailBytes.Load(); kept > 2048 {
			t.Fatalf("after %d appends the tails keep %d bytes, bound 2048", i+1, kept)
		}
	}
	if _, _, _, ok := a.ReplicaTail(0, 1<<20, nil); ok {
		t.Fatal("the oldest append is still kept")
	}
	if _, _, _, ok := a.ReplicaTail(lastA, 1<<20, nil); !ok {
		t.Fatal("the latest append is not kept")
	}
	a.mu.Lock()
	a.closeLocked(ErrClosed)
	a.mu.Unlock()
	b.mu.Lock()
	b.closeLocked(ErrClosed)
	b.mu.Unlock()
	if kept := e.tailBytes.Load(); kept != 0 {
		t.Fatalf("closed partitions still count %d bytes of tail", kept)
	}

	none := openEngine(t, Config{DataDir: t.TempDir(), OnDurable: func(*Partition, int64) {}}, tpA)
	np := none.Partition(tpA)
	mustAppend(t, np, mkBatch(batchOpts{value: "x"}))
	if _, _, _, ok := np.ReplicaTail(0, 1<<20, nil); ok {
		t.Fatal("a tail kept with ReplicaTailBytes 0")
	}
}

var tpTail = TopicPartition{Topic: "tail", Partition: 1}
