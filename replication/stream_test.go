package replication

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
)

// These tests run the leader and follower sides over a real loopback connection between two
// real engines (the OS file system: the leader sends with sendfile).

var testTP = engine.TopicPartition{Topic: "orders", Partition: 0}

var testID = PartitionID{TopicID: [16]byte{1, 2, 3}, Partition: 0}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openPartition opens an engine holding testTP whose high watermark moves only by
// SetHighWatermark and which keeps its latest appends for followers, as in a cluster.
func openPartition(t *testing.T) *engine.Partition {
	return openPartitionTail(t, 1<<20)
}

// openPartitionTail is openPartition keeping tailBytes of appends in memory (0: none, every
// span goes from the segment files).
func openPartitionTail(t *testing.T, tailBytes int64) *engine.Partition {
	t.Helper()
	e, err := engine.Open(engine.Config{DataDir: t.TempDir(), Logger: quiet(), SegmentBytes: 16 << 10,
		OnDurable: func(*engine.Partition, int64) {}, ReplicaTailBytes: tailBytes},
		[]engine.PartitionSpec{{TopicPartition: testTP, TopicID: testID.TopicID}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e.Partition(testTP)
}

// testLeader leads testID at one epoch and records the followers' acknowledgements.
type testLeader struct {
	part *engine.Partition

	mu       sync.Mutex
	epoch    int32
	acks     map[int32][2]int64 // follower → log end, durable end
	refusals map[int16]int      // fetches refused, by code
}

func (h *testLeader) Leading(id PartitionID, leaderEpoch, follower int32) (*engine.Partition, int16) {
	h.mu.Lock()
	defer h.mu.Unlock()
	code := int16(0)
	switch {
	case id != testID:
		code = CodeUnknownTopicOrPartition
	case leaderEpoch < h.epoch:
		code = CodeFencedLeaderEpoch
	case leaderEpoch > h.epoch:
		code = CodeUnknownLeaderEpoch
	default:
		return h.part, 0
	}
	h.refusals[code]++
	return nil, code
}

func (h *testLeader) refused(code int16) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refusals[code]
}

func (h *testLeader) FollowerProgress(p *engine.Partition, leaderEpoch, follower int32, brokerEpoch, logEnd, durableEnd int64) {
	h.mu.Lock()
	h.acks[follower] = [2]int64{logEnd, durableEnd}
	h.mu.Unlock()
}

func (h *testLeader) ack(follower int32) (logEnd, durableEnd int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.acks[follower]
	return a[0], a[1], ok
}

func startLeader(t *testing.T, part *engine.Partition, epoch int32) (*testLeader, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &testLeader{part: part, epoch: epoch, acks: map[int32][2]int64{}, refusals: map[int16]int{}}
	s := Serve(ln, h, quiet())
	t.Cleanup(s.Close)
	return h, s
}

func startFollower(t *testing.T, self int32) *Fetchers {
	fs := NewFetchers(self, func() int64 { return 7 }, quiet())
	t.Cleanup(fs.Close)
	return fs
}

// leaderAppend appends n batches as the leader and tells the server.
func leaderAppend(t *testing.T, s *Server, p *engine.Partition, n int, value string) {
	t.Helper()
	for i := range n {
		recs := []batch.Record{{Value: []byte(fmt.Sprintf("%s-%d", value, i))}}
		b := batch.Build(batch.Header{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs, batch.CodecNone)
		done := make(chan error, 1)
		if _, err := p.Append(b, func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if s != nil {
			s.Notify(p)
		}
	}
}

// logBytes returns the partition's batches from the log start to the log end.
func logBytes(t *testing.T, p *engine.Partition) []byte {
	t.Helper()
	return logBytesFrom(t, p, p.LogStartOffset())
}

// waitFor polls cond until it holds (a condition, not a fixed sleep) or fails after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFollowerCopiesAndAcknowledges: a follower copies what the leader had before it
// subscribed and what it appends after, byte for byte; it acknowledges its durable end; it
// takes the leader's high watermark and log start; the leader's bytes went out with sendfile.
func TestFollowerCopiesAndAcknowledges(t *testing.T) {
	// From the leader's segment files (sendfile) when it keeps no appends in memory, else
	// from the buffers it appended (writev), with a fall back to the files for what it no
	// longer keeps.
	for _, mode := range []struct {
		name      string
		tailBytes int64
	}{{"segments", 0}, {"memory", 512}, {"memory and segments", 1 << 20}} {
		t.Run(mode.name, func(t *testing.T) { testFollowerCopiesAndAcknowledges(t, mode.tailBytes) })
	}
}

func testFollowerCopiesAndAcknowledges(t *testing.T, tailBytes int64) {
	lp := openPartitionTail(t, tailBytes)
	lp.SetLeaderEpoch(3)
	h, s := startLeader(t, lp, 3)
	leaderAppend(t, s, lp, 20, "before")

	fp := openPartitionTail(t, tailBytes)
	fs := startFollower(t, 2)
	fs.Follow(fp, testID, 1, s.Addr().String(), 3)
	leaderAppend(t, s, lp, 30, "after")

	waitFor(t, "the follower's durable end to reach the leader's log end", func() bool {
		_, durable, ok := h.ack(2)
		return ok && durable == lp.LogEndOffset()
	})
	if !bytes.Equal(logBytes(t, fp), logBytes(t, lp)) {
		t.Fatal("the follower's log differs from the leader's")
	}
	if ep := fp.LastLogEpoch(); ep != 3 {
		t.Fatalf("the follower's last epoch %d, want 3", ep)
	}
	lp.SetHighWatermark(lp.LogEndOffset())
	s.Notify(lp)
	waitFor(t, "the follower's high watermark", func() bool { return fp.HighWatermark() == lp.LogEndOffset() })
	sent, fromMemory, copied := s.Stats()
	if sent == 0 || copied != 0 {
		t.Fatalf("sent %d bytes, %d copied through user space; want some, none copied", sent, copied)
	}
	switch {
	case tailBytes == 0 && fromMemory != 0:
		t.Fatalf("%d bytes sent from memory by a leader that keeps none", fromMemory)
	case tailBytes > 0 && fromMemory == 0:
		t.Fatal("nothing sent from memory by a leader that keeps its appends")
	case tailBytes > 0 && tailBytes < 1<<20 && fromMemory == sent:
		t.Fatal("everything sent from memory by a leader that keeps only the last few appends")
	}

	// DeleteRecords on the leader moves the follower's log start too.
	if _, err := lp.DeleteRecordsBefore(12); err != nil {
		t.Fatal(err)
	}
	s.Notify(lp)
	waitFor(t, "the follower's log start", func() bool { return fp.LogStartOffset() == 12 })
}

// TestFollowerTruncatesDivergingTail: a follower holding batches of an old epoch that the new
// leader never had cuts them off (the DivergingEpoch rule) and then copies the leader's, so the
// two logs end up equal; what both had in common stays.
func TestFollowerTruncatesDivergingTail(t *testing.T) {
	lp := openPartition(t)
	lp.SetLeaderEpoch(1)
	h, s := startLeader(t, lp, 1)
	leaderAppend(t, s, lp, 5, "common")

	fp := openPartition(t)
	fs := startFollower(t, 2)
	fs.Follow(fp, testID, 1, s.Addr().String(), 1)
	waitFor(t, "the follower to copy the common prefix", func() bool {
		_, durable, ok := h.ack(2)
		return ok && durable == 5
	})
	fs.Unfollow(testID)

	// The follower leads epoch 1 for a moment on its own (an old leader's unreplicated
	// tail), while the real leader moves to epoch 2 and appends something else.
	leaderAppend(t, nil, fp, 3, "lost")
	if fp.LogEndOffset() != 8 {
		t.Fatalf("follower log end %d, want 8", fp.LogEndOffset())
	}
	lp.SetLeaderEpoch(2)
	h.mu.Lock()
	h.epoch = 2
	h.mu.Unlock()
	leaderAppend(t, s, lp, 4, "kept")

	fs.Follow(fp, testID, 1, s.Addr().String(), 2)
	waitFor(t, "the follower to converge", func() bool {
		_, durable, ok := h.ack(2)
		return ok && durable == lp.LogEndOffset() && fp.LogEndOffset() == lp.LogEndOffset()
	})
	if !bytes.Equal(logBytes(t, fp), logBytes(t, lp)) {
		t.Fatal("the follower's log differs from the leader's after truncation")
	}
	if e, end := fp.EndOffsetForEpoch(1); e != 1 || end != 5 {
		t.Fatalf("the follower's epoch 1 ends at %d (epoch %d), want 5", end, e)
	}
}

// TestFollowerRetriesRefusedFetch: a follower one leader epoch behind is refused (FENCED) and
// copies nothing until it follows the current epoch; one ahead (the leader has not taken the
// new epoch yet) is refused and retries until the leader gets there.
func TestFollowerRetriesRefusedFetch(t *testing.T) {
	lp := openPartition(t)
	lp.SetLeaderEpoch(5)
	h, s := startLeader(t, lp, 5)
	leaderAppend(t, s, lp, 3, "x")

	fp := openPartition(t)
	fs := startFollower(t, 2)
	fs.Follow(fp, testID, 1, s.Addr().String(), 4)
	fs.Follow(fp, testID, 1, s.Addr().String(), 6) // ahead: UNKNOWN_LEADER_EPOCH until the leader is at 6
	// Refused, and refused again on the retry, without copying or acknowledging anything.
	waitFor(t, "two refusals of the follower's newer epoch", func() bool { return h.refused(CodeUnknownLeaderEpoch) >= 2 })
	if _, _, ok := h.ack(2); ok || fp.LogEndOffset() != 0 {
		t.Fatalf("a refused follower acknowledged (%v) or copied (log end %d)", ok, fp.LogEndOffset())
	}
	lp.SetLeaderEpoch(6)
	h.mu.Lock()
	h.epoch = 6
	h.mu.Unlock()
	waitFor(t, "the follower to copy after the retry", func() bool {
		_, durable, ok := h.ack(2)
		return ok && durable == 3
	})
}

// TestFollowerBelowLeaderLogStart: a follower whose log ends below its leader's log start
// (DeleteRecords or retention went past it while it was away) empties its log, restarts it at
// the batch holding the leader's log start, and copies from there — at a batch boundary and
// with the log start inside a batch.
func TestFollowerBelowLeaderLogStart(t *testing.T) {
	for _, tc := range []struct {
		name       string
		deleteTo   int64 // the leader's new log start
		restartsAt int64 // the follower's log start after its reset
	}{{"at a batch", 12, 12}, {"inside a batch", 13, 12}} {
		t.Run(tc.name, func(t *testing.T) {
			lp := openPartition(t)
			lp.SetLeaderEpoch(2)
			h, s := startLeader(t, lp, 2)
			leaderAppend(t, s, lp, 12, "gone")
			// Batches of three records from offset 12.
			for i := range 4 {
				recs := []batch.Record{{Value: []byte(fmt.Sprintf("kept-%d-a", i))}, {OffsetDelta: 1, Value: []byte("b")}, {OffsetDelta: 2, Value: []byte("c")}}
				b := batch.Build(batch.Header{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs, batch.CodecNone)
				done := make(chan error, 1)
				if _, err := lp.Append(b, func(err error) { done <- err }); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			lp.SetHighWatermark(lp.LogEndOffset())
			if _, err := lp.DeleteRecordsBefore(tc.deleteTo); err != nil {
				t.Fatal(err)
			}

			// The follower holds the first five batches of the leader's log, in the same epoch.
			fp := openPartition(t)
			for i := range 5 {
				recs := []batch.Record{{Value: []byte(fmt.Sprintf("gone-%d", i))}}
				b := batch.Build(batch.Header{BaseOffset: int64(i), PartitionLeaderEpoch: 2, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs, batch.CodecNone)
				done := make(chan error, 1)
				if _, err := fp.AppendReplicated(b, func(err error) { done <- err }); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			fs := startFollower(t, 2)
			fs.Follow(fp, testID, 1, s.Addr().String(), 2)
			leaderAppend(t, s, lp, 3, "after")
			waitFor(t, "the follower's durable end at the leader's log end", func() bool {
				_, durable, ok := h.ack(2)
				return ok && durable == lp.LogEndOffset()
			})
			lp.SetHighWatermark(lp.LogEndOffset())
			s.Notify(lp)
			waitFor(t, "the follower's log start to follow the leader's", func() bool { return fp.LogStartOffset() == tc.deleteTo })
			want, got := logBytesFrom(t, lp, tc.restartsAt), logBytesFrom(t, fp, tc.restartsAt)
			if !bytes.Equal(got, want) {
				t.Fatalf("the follower's log from %d (%d bytes) is not the leader's (%d bytes)", tc.restartsAt, len(got), len(want))
			}
		})
	}
}

// logBytesFrom returns the partition's batches from offset (a batch start, at most one batch
// below the log start) to the log end.
func logBytesFrom(t *testing.T, p *engine.Partition, offset int64) []byte {
	t.Helper()
	var out bytes.Buffer
	for off := offset; off < p.LogEndOffset(); {
		sp, err := p.ReplicaSpan(off, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, sp.Len)
		if _, err := sp.File.ReadAt(buf, sp.Pos); err != nil {
			t.Fatal(err)
		}
		out.Write(buf)
		off = sp.EndOffset
	}
	return out.Bytes()
}

// TestFollowerCopiesBatchLargerThanSpan: a batch larger than a data frame's span limit (a topic
// whose max.message.bytes was raised past 1 MiB, or __consumer_offsets) replicates whole, from
// the segment files and from the appended buffers alike.
func TestFollowerCopiesBatchLargerThanSpan(t *testing.T) {
	for _, tailBytes := range []int64{0, 64 << 20} {
		t.Run(fmt.Sprintf("tail %d", tailBytes), func(t *testing.T) {
			open := func() *engine.Partition {
				e, err := engine.Open(engine.Config{DataDir: t.TempDir(), Logger: quiet(), SegmentBytes: 16 << 10,
					OnDurable: func(*engine.Partition, int64) {}, ReplicaTailBytes: tailBytes},
					[]engine.PartitionSpec{{TopicPartition: testTP, TopicID: testID.TopicID, Config: engine.PartitionConfig{MaxMessageBytes: 8 << 20}}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { e.Close() })
				return e.Partition(testTP)
			}
			lp := open()
			lp.SetLeaderEpoch(1)
			h, s := startLeader(t, lp, 1)
			leaderAppend(t, s, lp, 2, "small")
			big := make([]byte, 3*maxSpanBytes)
			for i := range big {
				big[i] = byte(i * 7)
			}
			b := batch.Build(batch.Header{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, []batch.Record{{Value: big}}, batch.CodecNone)
			done := make(chan error, 1)
			if _, err := lp.Append(b, func(err error) { done <- err }); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			s.Notify(lp)
			leaderAppend(t, s, lp, 2, "after")

			fp := open()
			fs := startFollower(t, 2)
			fs.Follow(fp, testID, 1, s.Addr().String(), 1)
			waitFor(t, "the follower's durable end to reach the leader's log end", func() bool {
				_, durable, ok := h.ack(2)
				return ok && durable == lp.LogEndOffset()
			})
			if !bytes.Equal(logBytes(t, fp), logBytes(t, lp)) {
				t.Fatal("the follower's log differs from the leader's")
			}
		})
	}
}
