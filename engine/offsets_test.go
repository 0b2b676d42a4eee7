package engine

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringtail/ringtail/engine/batch"
)

// waitFor polls cond until it holds (10 s at most).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached", what)
		}
	}
}

// eventLog records OnDurable calls and done callbacks in the order they run.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(format string, args ...any) {
	l.mu.Lock()
	l.events = append(l.events, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *eventLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// TestHighWatermarkSetFromOutside: without a hook that raises it, the high
// watermark stays put while appends become durable (and are acknowledged);
// reads serve below it only; SetHighWatermark clamps to the durable end,
// never goes back, and may stop between two appends.
func TestHighWatermarkSetFromOutside(t *testing.T) {
	var ends []int64
	var mu sync.Mutex
	cfg := Config{DataDir: t.TempDir(), OnDurable: func(p *Partition, end int64) {
		mu.Lock()
		ends = append(ends, end)
		mu.Unlock()
	}}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	for i := 0; i < 5; i++ {
		res := mustAppend(t, p, mkBatch(batchOpts{n: 2, ts: int64(10 * i), value: fmt.Sprint("h", i)}))
		if res.EndOffset != int64(2*i+2) {
			t.Fatalf("append %d: end offset %d", i, res.EndOffset)
		}
	}
	if p.DurableEnd() != 10 || p.LogEndOffset() != 10 || p.HighWatermark() != 0 {
		t.Fatalf("durable end %d, log end %d, hw %d", p.DurableEnd(), p.LogEndOffset(), p.HighWatermark())
	}
	mu.Lock()
	if len(ends) == 0 || ends[0] != 0 || ends[len(ends)-1] != 10 {
		t.Fatalf("OnDurable calls %v: want the recovered 0 first, 10 last", ends)
	}
	for i := 1; i < len(ends); i++ {
		if ends[i] <= ends[i-1] {
			t.Fatalf("OnDurable calls %v not increasing", ends)
		}
	}
	mu.Unlock()
	if rr, err := p.Read(0, 1<<20, true); err != nil || len(rr.Records) != 0 || rr.HighWatermark != 0 {
		t.Fatalf("read above the high watermark: %d bytes, hw %d, %v", len(rr.Records), rr.HighWatermark, err)
	}
	if off, ts := p.MaxTimestamp(); off != -1 || ts != -1 {
		t.Fatalf("max timestamp above the high watermark: %d %d", off, ts)
	}

	if got := p.SetHighWatermark(6); got != 6 || p.HighWatermark() != 6 {
		t.Fatalf("SetHighWatermark(6) = %d, hw %d", got, p.HighWatermark())
	}
	rr, err := p.Read(0, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	bs, _ := batch.Split(rr.Records)
	if len(bs) != 3 || rr.HighWatermark != 6 {
		t.Fatalf("%d batches below hw 6 (%d)", len(bs), rr.HighWatermark)
	}
	// Above the high watermark but within the log: nothing yet, no error (a consumer waits).
	if rr, err := p.Read(7, 100, true); err != nil || len(rr.Records) != 0 {
		t.Fatalf("read above the high watermark: %d bytes, %v", len(rr.Records), err)
	}
	if _, err := p.Read(11, 100, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past the log end: %v", err)
	}
	if off, ts := p.MaxTimestamp(); off != 5 || ts != 21 {
		t.Fatalf("max timestamp below hw 6: offset %d ts %d", off, ts)
	}
	if off, ts, ok := p.OffsetForTime(25); ok {
		t.Fatalf("offset for time 25 below hw 6: %d %d", off, ts)
	}
	if got := p.SetHighWatermark(4); got != 6 {
		t.Fatalf("SetHighWatermark(4) = %d: the high watermark went back", got)
	}
	if got := p.SetHighWatermark(1 << 40); got != 10 {
		t.Fatalf("SetHighWatermark beyond the durable end = %d, want 10", got)
	}
	if len(readAll(t, p, 0)) != 5 {
		t.Fatal("not every batch readable at hw 10")
	}
}

// TestOnDurableBeforeDone: every done(nil) runs after the OnDurable call
// whose durable end covers its append, so with the one-node hook the high
// watermark has passed the append when its producer hears of it.
func TestOnDurableBeforeDone(t *testing.T) {
	var log eventLog
	cfg := Config{DataDir: t.TempDir(), OnDurable: func(p *Partition, end int64) {
		p.SetHighWatermark(end)
		log.add("durable %d", end)
	}}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				ch := make(chan error, 1)
				res, err := p.Append(mkBatch(batchOpts{n: 1}), func(err error) { ch <- err })
				if err == nil {
					err = <-ch
				}
				if err != nil {
					t.Error(err)
					return
				}
				if hw := p.HighWatermark(); hw < res.EndOffset {
					t.Errorf("done for an append ending at %d with the high watermark at %d", res.EndOffset, hw)
				}
				log.add("done %d", res.EndOffset)
			}
		}()
	}
	wg.Wait()
	// The log holds OnDurable calls in increasing order.
	last := int64(-1)
	for _, ev := range log.snapshot() {
		var n int64
		if _, err := fmt.Sscanf(ev, "durable %d", &n); err == nil {
			if n <= last {
				t.Fatalf("OnDurable %d after %d", n, last)
			}
			last = n
		}
	}
	if last != 100 {
		t.Fatalf("last OnDurable %d, want 100", last)
	}
}

// TestDuplicateEndOffset: a pure duplicate reports its original's offsets.
func TestDuplicateEndOffset(t *testing.T) {
	e := openEngine(t, Config{DataDir: t.TempDir()}, tpA)
	p := e.Partition(tpA)
	mustAppend(t, p, mkBatch(batchOpts{n: 2}))
	b := mkBatch(batchOpts{pid: 4, seq: 0, n: 3})
	first := mustAppend(t, p, append([]byte(nil), b...))
	mustAppend(t, p, mkBatch(batchOpts{n: 1}))
	dup := mustAppend(t, p, b)
	if !dup.Duplicate || dup.BaseOffset != 2 || dup.EndOffset != 5 || first.EndOffset != 5 {
		t.Fatalf("first %+v, duplicate %+v", first, dup)
	}
}

// TestLeaderAppendStampsEpoch: a leader append overwrites what the producer
// put in partitionLeaderEpoch with the partition's leader epoch.
func TestLeaderAppendStampsEpoch(t *testing.T) {
	spec := specFor(tpA)
	spec.LeaderEpoch = 2
	e, err := testOpen(Config{DataDir: t.TempDir(), Logger: quietLogger()}, []PartitionSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := e.Partition(tpA)
	b := mkBatch(batchOpts{n: 2})
	batch.SetPartitionLeaderEpoch(b, -1)
	mustAppend(t, p, b)
	p.SetLeaderEpoch(1) // older: ignored
	mustAppend(t, p, mkBatch(batchOpts{n: 2}))
	p.SetLeaderEpoch(5)
	mustAppend(t, p, mkBatch(batchOpts{n: 2}))
	var epochs []int32
	for _, h := range readAll(t, p, 0) {
		epochs = append(epochs, h.PartitionLeaderEpoch)
	}
	if fmt.Sprint(epochs) != "[2 2 5]" || p.LeaderEpoch() != 5 {
		t.Fatalf("stored epochs %v, leader epoch %d", epochs, p.LeaderEpoch())
	}
	for _, c := range []struct {
		ask       int32
		epoch     int32
		endOffset int64
	}{{-1, -1, -1}, {0, 0, 0}, {2, 2, 4}, {3, 2, 4}, {5, 5, 6}, {6, -1, -1}} {
		if ep, end := p.EndOffsetForEpoch(c.ask); ep != c.epoch || end != c.endOffset {
			t.Errorf("EndOffsetForEpoch(%d) = %d, %d; want %d, %d", c.ask, ep, end, c.epoch, c.endOffset)
		}
	}
}

// TestAppendReplicated: a follower stores its leader's batches as they are
// (offsets, epochs, producer ids), durably; a wrong start offset, a gap or
// a bad CRC writes nothing.
func TestAppendReplicated(t *testing.T) {
	leader := openEngine(t, Config{DataDir: t.TempDir()}, tpA).Partition(tpA)
	leader.SetLeaderEpoch(3)
	for i := 0; i < 4; i++ {
		mustAppend(t, leader, mkBatch(batchOpts{pid: 9, seq: int32(2 * i), n: 2, ts: int64(i)}))
	}
	rr, err := leader.Read(0, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	bs, _ := batch.Split(rr.Records)

	dir := t.TempDir()
	e := openEngine(t, Config{DataDir: dir}, tpA)
	f := e.Partition(tpA)
	replicate := func(records []byte) (AppendResult, error) {
		ch := make(chan error, 1)
		res, err := f.AppendReplicated(append([]byte(nil), records...), func(err error) { ch <- err })
		if err == nil {
			err = <-ch
		}
		return res, err
	}
	if _, err := replicate(bs[1]); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("batch at 2 on an empty log: %v", err)
	}
	gap := append(append([]byte(nil), bs[0]...), bs[2]...)
	if _, err := replicate(gap); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("batches with a gap: %v", err)
	}
	bad := append([]byte(nil), bs[0]...)
	bad[len(bad)-1] ^= 1
	if _, err := replicate(bad); !errors.Is(err, ErrCorruptMessage) {
		t.Fatalf("bad crc: %v", err)
	}
	if f.LogEndOffset() != 0 {
		t.Fatalf("refused batches moved the log end to %d", f.LogEndOffset())
	}
	res, err := replicate(append(append([]byte(nil), bs[0]...), bs[1]...))
	if err != nil || res.BaseOffset != 0 || res.EndOffset != 4 {
		t.Fatalf("replicated %+v, %v", res, err)
	}
	if res, err = replicate(append(append([]byte(nil), bs[2]...), bs[3]...)); err != nil || res.EndOffset != 8 {
		t.Fatalf("replicated %+v, %v", res, err)
	}
	if f.DurableEnd() != 8 || f.HighWatermark() != 8 {
		t.Fatalf("durable end %d, hw %d", f.DurableEnd(), f.HighWatermark())
	}
	got, err := f.Read(0, 1<<20, true)
	if err != nil || string(got.Records) != string(rr.Records) {
		t.Fatalf("follower's log differs from the leader's (%v)", err)
	}
	if ep, end := f.EndOffsetForEpoch(3); ep != 3 || end != 8 {
		t.Fatalf("follower's epoch 3 ends at %d (epoch %d)", end, ep)
	}
	// The producer state came along: the leader's batch is a duplicate
	// should the follower become leader.
	if dup := mustAppend(t, f, mkBatch(batchOpts{pid: 9, seq: 6, n: 2, ts: 3})); !dup.Duplicate || dup.BaseOffset != 6 {
		t.Fatalf("retry on the follower: %+v", dup)
	}
	e.Close()
	e2 := openEngine(t, Config{DataDir: dir}, tpA)
	if again, err := e2.Partition(tpA).Read(0, 1<<20, true); err != nil || string(again.Records) != string(rr.Records) {
		t.Fatalf("after a restart the follower's log differs (%v)", err)
	}
}

// With FollowDurableEnd the high watermark moves with the durable end by itself, before done
// runs, without an OnDurable hook; turned off, only SetHighWatermark moves it, and turned on
// again it catches up at once.
func TestFollowDurableEnd(t *testing.T) {
	spec := specFor(tpA)
	spec.FollowDurableEnd = true
	e, err := Open(Config{DataDir: t.TempDir(), Logger: quietLogger()}, []PartitionSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := e.Partition(tpA)
	appendWait := func() (hwAtDone int64) {
		t.Helper()
		ch := make(chan int64, 1)
		if _, err := p.Append(mkBatch(batchOpts{n: 2}), func(err error) {
			if err != nil {
				t.Errorf("append: %v", err)
			}
			ch <- p.HighWatermark()
		}); err != nil {
			t.Fatal(err)
		}
		return <-ch
	}
	if hw := appendWait(); hw != 2 {
		t.Fatalf("high watermark %d when done ran, want 2", hw)
	}
	p.SetFollowDurableEnd(false)
	if hw := appendWait(); hw != 2 || p.DurableEnd() != 4 {
		t.Fatalf("not following: high watermark %d, durable end %d; want 2 and 4", hw, p.DurableEnd())
	}
	p.SetFollowDurableEnd(true)
	if hw := p.HighWatermark(); hw != 4 {
		t.Fatalf("following again: high watermark %d, want 4", hw)
	}
	e.Close()
	e, err = Open(Config{DataDir: e.cfg.DataDir, Logger: quietLogger()}, []PartitionSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if hw := e.Partition(tpA).HighWatermark(); hw != 4 {
		t.Fatalf("after a restart: high watermark %d, want the recovered durable end 4", hw)
	}
}
