package replication

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/internal/scripttest"
	"github.com/ringtail/ringtail/vfs/memfs"
)

// TestDivergenceScripts runs the scenarios in testdata/divergence/: brokers' logs of one
// partition, built by leader appends in chosen epochs and partial copies, then reconciled
// with a new leader by the rule the drivers run (checkFetch on the leader, truncationTarget and
// a durable TruncateTo on the follower, then the copy). Real engines on an in-memory file
// system hold the logs. Commands:
//
//	append b=ID epoch=E n=N        broker ID appends N one-record batches as leader of epoch E
//	copy from=ID to=ID [upto=O]    the follower copies batches it lacks (its log must be a
//	                               prefix of the other's), up to offset O (default: all)
//	fetch leader=ID follower=ID    one round of the rule: the fetch, the answer, the cut or copy
//	converge leader=ID follower=ID rounds until the follower's log is the leader's (at most 10)
//	log b=ID                       the log's epochs (epoch@start offset) and its end
//
// After every command each broker's epoch cache is checked against its batches.
func TestDivergenceScripts(t *testing.T) {
	scripttest.Walk(t, "testdata/divergence/*.txt", func(t *testing.T, path string) {
		e := &divEnv{t: t, brokers: map[int]*engine.Partition{}}
		scripttest.Run(t, path, e.handle)
	})
}

type divEnv struct {
	t       *testing.T
	brokers map[int]*engine.Partition
}

func (e *divEnv) broker(t *testing.T, d *scripttest.TestData, key string) (int, *engine.Partition) {
	s, ok := d.Arg(key)
	if !ok {
		d.Fatalf(t, "missing %s=", key)
	}
	id, err := strconv.Atoi(s)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	if p := e.brokers[id]; p != nil {
		return id, p
	}
	eng, err := engine.Open(engine.Config{DataDir: "/b" + s, FS: memfs.New(), Logger: quiet(),
		OnDurable: func(p *engine.Partition, end int64) { p.SetHighWatermark(end) }},
		[]engine.PartitionSpec{{TopicPartition: testTP, TopicID: testID.TopicID}})
	if err != nil {
		d.Fatalf(t, "opening broker %d: %v", id, err)
	}
	e.t.Cleanup(func() { eng.Close() })
	p := eng.Partition(testTP)
	e.brokers[id] = p
	return id, p
}

func divInt(t *testing.T, d *scripttest.TestData, key string, def int64) int64 {
	s, ok := d.Arg(key)
	if !ok {
		if def < 0 {
			d.Fatalf(t, "missing %s=", key)
		}
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return v
}

func (e *divEnv) handle(t *testing.T, d *scripttest.TestData) string {
	var out string
	switch d.Cmd {
	case "append":
		id, p := e.broker(t, d, "b")
		epoch := int32(divInt(t, d, "epoch", -1))
		n := divInt(t, d, "n", -1)
		p.SetLeaderEpoch(epoch)
		leaderAppend(t, nil, p, int(n), fmt.Sprintf("b%d-e%d", id, epoch))
		out = e.describe(t, p)
	case "copy":
		_, from := e.broker(t, d, "from")
		_, to := e.broker(t, d, "to")
		upto := divInt(t, d, "upto", from.LogEndOffset())
		n := copyLog(t, from, to, upto)
		out = fmt.Sprintf("copied %d batches\n%s", n, e.describe(t, to))
	case "fetch":
		_, leader := e.broker(t, d, "leader")
		_, follower := e.broker(t, d, "follower")
		line, _ := round(t, leader, follower)
		out = line + "\n" + e.describe(t, follower)
	case "converge":
		_, leader := e.broker(t, d, "leader")
		_, follower := e.broker(t, d, "follower")
		var lines []string
		done := false
		for range 10 {
			line, ok := round(t, leader, follower)
			lines = append(lines, line)
			if ok {
				done = true
				break
			}
		}
		if !done {
			lines = append(lines, "did not converge in 10 rounds")
		} else if !bytes.Equal(logBytes(t, leader), logBytes(t, follower)) {
			lines = append(lines, "LOGS DIFFER")
		}
		out = strings.Join(lines, "\n") + "\n" + e.describe(t, follower)
	case "log":
		_, p := e.broker(t, d, "b")
		out = e.describe(t, p)
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
	}
	for id, p := range e.brokers {
		checkEpochCache(t, id, p)
	}
	return out
}

// round is one fetch of follower from leader: the leader's verdict, then the follower's cut or
// the copy. It reports whether the follower's log is now the leader's (it copied).
func round(t *testing.T, leader, follower *engine.Partition) (string, bool) {
	offset, last := follower.LogEndOffset(), follower.LastLogEpoch()
	line := fmt.Sprintf("fetch offset=%d last-epoch=%d: ", offset, last)
	d, code := checkFetch(leader, offset, last)
	switch {
	case code != 0:
		return line + fmt.Sprintf("refused (error %d)", code), false
	case d != nil:
		target := truncationTarget(follower, d.Epoch, d.EndOffset)
		line += fmt.Sprintf("diverging epoch=%d end=%d; truncate to %d", d.Epoch, d.EndOffset, target)
		if target < follower.LogEndOffset() {
			if err := follower.TruncateTo(target); err != nil {
				t.Fatalf("truncate: %v", err)
			}
		}
		return line, false
	}
	n := copyLog(t, leader, follower, leader.LogEndOffset())
	return line + fmt.Sprintf("ok; copied %d batches", n), true
}

// copyLog appends to `to` what `from` has from to's log end up to upto, as the follower side
// does (ReplicaSpan, AppendReplicated), and waits for it to be durable.
func copyLog(t *testing.T, from, to *engine.Partition, upto int64) int {
	n := 0
	var prev *engine.Span
	for off := to.LogEndOffset(); off < upto; {
		sp, err := from.ReplicaSpan(off, 1<<20, prev)
		if err != nil {
			t.Fatalf("span at %d: %v", off, err)
		}
		buf := make([]byte, sp.Len)
		if _, err := sp.File.ReadAt(buf, sp.Pos); err != nil {
			t.Fatal(err)
		}
		raw, err := batch.Split(buf)
		if err != nil {
			t.Fatal(err)
		}
		var keep []byte
		for _, b := range raw {
			h, _ := batch.ParseHeader(b)
			if h.BaseOffset >= upto {
				break
			}
			keep = append(keep, b...)
			n++
			off = h.LastOffset() + 1
		}
		if len(keep) == 0 {
			break
		}
		done := make(chan error, 1)
		if _, err := to.AppendReplicated(keep, func(err error) { done <- err }); err != nil {
			t.Fatalf("append replicated at %d: %v", to.LogEndOffset(), err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		prev = &sp
		if off < sp.EndOffset {
			break
		}
	}
	return n
}

// describe prints a log as its epochs with their start offsets, its end and high watermark,
// read from the batches themselves.
func (e *divEnv) describe(t *testing.T, p *engine.Partition) string {
	var runs []string
	last := int32(-2)
	raw, err := batch.Split(logBytes(t, p))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range raw {
		h, _ := batch.ParseHeader(b)
		if h.PartitionLeaderEpoch != last {
			runs = append(runs, fmt.Sprintf("%d@%d", h.PartitionLeaderEpoch, h.BaseOffset))
			last = h.PartitionLeaderEpoch
		}
	}
	return fmt.Sprintf("epochs [%s] end %d", strings.Join(runs, " "), p.LogEndOffset())
}

// checkEpochCache fails unless every epoch the batches hold ends, by EndOffsetForEpoch, where
// the batches say it does: the cache a follower truncates by must match its log.
func checkEpochCache(t *testing.T, id int, p *engine.Partition) {
	raw, err := batch.Split(logBytes(t, p))
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int32]int64{}
	var order []int32
	for _, b := range raw {
		h, _ := batch.ParseHeader(b)
		if _, ok := ends[h.PartitionLeaderEpoch]; !ok {
			order = append(order, h.PartitionLeaderEpoch)
		}
		ends[h.PartitionLeaderEpoch] = h.LastOffset() + 1
	}
	for i, ep := range order {
		want := ends[ep]
		if i+1 < len(order) {
			// An epoch ends where the next one starts.
			want = ends[order[i]]
		}
		if got, end := p.EndOffsetForEpoch(ep); got != ep || (i+1 < len(order) && end != want) {
			t.Fatalf("broker %d: epoch %d ends at %d (found %d), the batches say %d (epochs %v)", id, ep, end, got, want, slices.Clone(order))
		}
	}
}
