package broker

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ringtail/ringtail/engine"
)

// AppendResult is what an accepted append tells the producer at once.
type AppendResult = engine.AppendResult

// ReadResult is what a read of one partition returns.
type ReadResult = engine.ReadResult

// Produce validates one partition's record batches (the records field of a Produce request;
// the node owns the bytes from now on), assigns their offsets and appends them, creating the
// topic when auto-creation allows. A non-nil error means nothing was appended, and done is not
// called. Otherwise, when done is not nil (acks 1 and all), done is called exactly once: with
// nil when the acks level is met — acks=1: the batches are durable on this node; acks=all:
// the high watermark has passed them — or with the error that prevents it (a storage error, the
// partition closing, the timeout). done must not block.
func (b *Broker) Produce(topic string, partition int32, records []byte, acks int16, timeout time.Duration, done func(error)) (AppendResult, error) {
	if IsInternal(topic) {
		return AppendResult{}, fmt.Errorf("%w: %s is written by the broker only", ErrInvalidTopic, topic)
	}
	tp := TopicPartition{Topic: topic, Partition: partition}
	if b.cl != nil {
		if err := b.checkLeader(tp, -1); err != nil {
			if !errors.Is(err, ErrUnknownTopic) {
				return AppendResult{}, err
			}
			if _, err := b.TopicOrCreate(topic, true); err != nil {
				return AppendResult{}, err
			}
			if err := b.checkLeader(tp, -1); err != nil {
				return AppendResult{}, err
			}
		}
	}
	// The hot path: the partition is open. The metadata store (which copies the topic) is
	// consulted only for a partition not open here.
	part := b.engine.Partition(tp)
	if part == nil {
		if _, err := b.TopicOrCreate(topic, true); err != nil {
			return AppendResult{}, err
		}
		if part = b.engine.Partition(tp); part == nil {
			return AppendResult{}, fmt.Errorf("%w: %s has no partition %d", ErrUnknownTopic, topic, partition)
		}
	}
	if done == nil || acks != -1 {
		if err := b.stopped(); err != nil { // appendCommitted checks for acks=all
			return AppendResult{}, err
		}
		return part.Append(records, done)
	}
	return b.appendCommitted(part, records, timeout, done)
}

// appendCommitted appends records to part, which this node leads, and calls done once they
// are committed (below the high watermark) or with the error that prevents it: acks=all, and
// the writes of the group coordinators. On one node that is when they are durable here.
func (b *Broker) appendCommitted(part *engine.Partition, records []byte, timeout time.Duration, done func(error)) (AppendResult, error) {
	// The produce path: no closure around the append (appendCommittedWith's write), one
	// allocation fewer per partition of every acks=all request.
	w, err := b.newProduceWait(part, timeout, done)
	if err != nil {
		return AppendResult{}, err
	}
	return w.track(part.Append(records, w.durable))
}

// appendCommittedWith is appendCommitted of what write appends (a transaction marker, say).
func (b *Broker) appendCommittedWith(part *engine.Partition, timeout time.Duration, write func(durable func(error)) (AppendResult, error), done func(error)) (AppendResult, error) {
	w, err := b.newProduceWait(part, timeout, done)
	if err != nil {
		return AppendResult{}, err
	}
	return w.track(write(w.durable))
}

// newProduceWait prepares the wait of an append to part that is to call done once committed,
// or refuses it up front: the node stops, this node no longer leads part, or too few replicas
// are in sync to commit anything.
func (b *Broker) newProduceWait(part *engine.Partition, timeout time.Duration, done func(error)) (*produceWait, error) {
	tp := part.TopicPartition()
	topic, partition := tp.Topic, tp.Partition
	// Locally durable first, then the high watermark past the batches. The done callback may
	// run before Append returns the end offset, so whichever of the two comes second moves on.
	w := &produceWait{b: b, part: part, timeout: timeout, done: done, end: -1}
	if observe := b.cfg.OnCommittedAppend; observe != nil {
		w.start = time.Now()
		w.done = func(err error) {
			if err == nil {
				w.mu.Lock()
				local := w.localAt
				w.mu.Unlock()
				observe(local.Sub(w.start), time.Since(local))
			}
			done(err)
		}
	}
	if err := b.stopped(); err != nil {
		return nil, err
	}
	if b.repl != nil {
		// In a cluster the high watermark is the in-sync replicas' to move: refuse up front
		// what too few of them would hold, and answer NOT_LEADER_OR_FOLLOWER when the
		// leadership moves on before the batches are committed.
		lp := b.repl.ledBy(part)
		resigned, enough := true, false
		if lp != nil {
			resigned, enough = lp.state()
		}
		switch {
		case resigned:
			rt, _ := b.cl.route(tp)
			return nil, &NotLeaderError{Topic: topic, Partition: partition, Leader: rt.leader, LeaderEpoch: rt.epoch}
		case !enough:
			return nil, fmt.Errorf("%w: %s-%d", ErrNotEnoughReplicas, topic, partition)
		}
		w.led = lp
	}
	return w, nil
}

// produceWait is one partition of an acks=all produce between its append and its answer.
type produceWait struct {
	b       *Broker
	part    *engine.Partition
	timeout time.Duration
	done    func(error)

	// led is the leadership the batches were appended under (nil on one node): once it
	// resigns, or its ISR falls below min.insync.replicas, the wait ends with an error.
	led *ledPartition

	mu            sync.Mutex
	end           int64 // offset after the batches; -1 until Append returned
	locallyStored bool  // the batches are durable on this node

	// start and localAt (when they became durable here) time the wait, for
	// Config.OnCommittedAppend; zero without it.
	start, localAt time.Time
}

// track passes an append's result through, and starts waiting for the high watermark past
// it when the append succeeded.
func (w *produceWait) track(res AppendResult, err error) (AppendResult, error) {
	if err == nil {
		w.appended(res.EndOffset)
	}
	return res, err
}

func (w *produceWait) appended(end int64) {
	w.mu.Lock()
	w.end = end
	ready := w.locallyStored
	w.mu.Unlock()
	if ready {
		w.awaitHighWatermark()
	}
}

func (w *produceWait) durable(err error) {
	if err != nil {
		w.done(err)
		return
	}
	w.mu.Lock()
	w.locallyStored = true
	if !w.start.IsZero() {
		w.localAt = time.Now()
	}
	ready := w.end >= 0
	w.mu.Unlock()
	if ready {
		w.awaitHighWatermark()
	}
}

// awaitHighWatermark answers once the high watermark passes the batches: at once when it
// already has (always, on one node: the high watermark follows the durable end, and the
// engine reports that before the appends it covers), else from the purgatory (a delayed
// produce), or with a timeout.
func (w *produceWait) awaitHighWatermark() {
	part, end := w.part, w.end
	if part.HighWatermark() >= end {
		w.done(nil)
		return
	}
	w.b.purg.Park(NewDelayed([]TopicPartition{part.TopicPartition()}, w.timeout, true,
		func() bool { return part.HighWatermark() >= end || w.stuck() != nil },
		func(timedOut bool) {
			if part.HighWatermark() >= end {
				w.done(nil)
				return
			}
			if err := w.stuck(); err != nil {
				w.done(err)
				return
			}
			tp := part.TopicPartition()
			w.done(fmt.Errorf("%w: the high watermark of %s-%d did not reach %d within %v", ErrRequestTimedOut,
				tp.Topic, tp.Partition, end, w.timeout))
		}))
}

// stuck says why the high watermark will not reach the batches under the leadership they
// were appended in, or nil while it may: the leadership moved on (another leader may keep
// them or cut them; the producer retries), or the ISR fell below min.insync.replicas.
func (w *produceWait) stuck() error {
	if err := w.b.stopped(); err != nil {
		return err
	}
	if w.led == nil {
		return nil
	}
	resigned, enough := w.led.state()
	tp := w.part.TopicPartition()
	switch {
	case resigned:
		return fmt.Errorf("%w: %s-%d changed leaders before the batches were committed", ErrNotLeaderOrFollower, tp.Topic, tp.Partition)
	case !enough:
		return fmt.Errorf("%w: %s-%d", ErrNotEnoughReplicasAfterAppend, tp.Topic, tp.Partition)
	}
	return nil
}

// onDurable runs each time a partition's durable end advances (outside its locks, before the
// callbacks of the appends it covers). On one node the engine has already moved the high
// watermark with it (PartitionSpec.FollowDurableEnd): the requests waiting for it can go.
func (b *Broker) onDurable(p *engine.Partition, durableEnd int64) {
	if b.repl != nil {
		b.leaderDurable(p, durableEnd) // in a cluster the tracker moves the high watermark
		return
	}
	b.purg.Notify(p.TopicPartition())
}

// Partition is what the Kafka APIs may do with one open partition besides appending: read
// below the high watermark, look offsets up, and move the log start.
type Partition struct {
	p   *engine.Partition
	led *ledPartition // in a cluster, this node's leadership of it
}

// Partition returns the partition topic/partition where this node leads it. currentLeaderEpoch
// (-1: not given) is the leader epoch the request was built for: an older one is
// ErrFencedLeaderEpoch, a newer one ErrUnknownLeaderEpoch. A partition led elsewhere is a
// *NotLeaderError; one that does not exist wraps ErrUnknownTopic.
func (b *Broker) Partition(topic string, partition int32, currentLeaderEpoch int32) (Partition, error) {
	tp := TopicPartition{Topic: topic, Partition: partition}
	if err := b.checkLeader(tp, currentLeaderEpoch); err != nil {
		return Partition{}, err
	}
	p := b.engine.Partition(tp)
	if p == nil {
		return Partition{}, fmt.Errorf("%w: %s-%d", ErrUnknownTopic, topic, partition)
	}
	v := Partition{p: p}
	if b.repl != nil {
		if v.led = b.repl.ledBy(p); v.led == nil {
			rt, _ := b.cl.route(tp)
			return Partition{}, &NotLeaderError{Topic: topic, Partition: partition, Leader: rt.leader, LeaderEpoch: rt.epoch}
		}
	}
	return v, nil
}

// HighWatermarkCurrent says whether the high watermark has reached the start of this
// leader's epoch: a new leader's high watermark may lag what its predecessor had committed
// until its followers have told it where they stand, and until then it answers offset
// lookups with OFFSET_NOT_AVAILABLE (Kafka's rule) rather than an offset that goes back.
func (v Partition) HighWatermarkCurrent() bool {
	return v.led == nil || v.p.HighWatermark() >= v.led.epochStart
}

// Read returns whole record batches below the high watermark from the batch holding offset, up
// to maxBytes (at least one batch when minOneBatch).
func (v Partition) Read(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error) {
	return v.p.Read(offset, maxBytes, minOneBatch)
}

// ReadIsolated is Read with Kafka's isolation level: readCommitted reads stop at the last
// stable offset and list the aborted transactions they overlap.
func (v Partition) ReadIsolated(offset int64, maxBytes int, minOneBatch, readCommitted bool) (ReadResult, error) {
	return v.p.ReadIsolated(offset, maxBytes, minOneBatch, readCommitted)
}

// BytesToRead estimates, without reading, how many bytes ReadIsolated from offset would find
// (engine.Partition.BytesToRead): what a parked fetch compares with its MinBytes.
func (v Partition) BytesToRead(offset int64, readCommitted bool) (int64, error) {
	return v.p.BytesToRead(offset, readCommitted)
}

// HighWatermark is the offset consumers read up to.
func (v Partition) HighWatermark() int64 { return v.p.HighWatermark() }

// LastStableOffset is the offset read_committed consumers read up to.
func (v Partition) LastStableOffset() int64 { return v.p.LastStableOffset() }

// LogStartOffset is the first offset still in the log.
func (v Partition) LogStartOffset() int64 { return v.p.LogStartOffset() }

// OffsetForTime returns the first record whose timestamp is at least ts (ListOffsets).
func (v Partition) OffsetForTime(ts int64) (offset, timestamp int64, ok bool) {
	return v.p.OffsetForTime(ts)
}

// MaxTimestamp returns the largest batch max timestamp below the high watermark and that
// batch's last offset; -1, -1 when there is none.
func (v Partition) MaxTimestamp() (offset, ts int64) { return v.p.MaxTimestamp() }

// LeaderEpoch is the partition's current leader epoch.
func (v Partition) LeaderEpoch() int32 { return v.p.LeaderEpoch() }

// EndOffsetForEpoch answers OffsetForLeaderEpoch: the largest epoch at most epoch that the log
// holds and the offset where the next epoch starts (the log end for the latest), or -1, -1.
func (v Partition) EndOffsetForEpoch(epoch int32) (int32, int64) { return v.p.EndOffsetForEpoch(epoch) }

// DeleteRecords moves a partition's log start offset up to offset (-1: the high watermark),
// durably, and returns the log start offset now in force (DeleteRecords). The broker's
// internal topics manage their own start.
func (b *Broker) DeleteRecords(topic string, partition int32, offset int64) (int64, error) {
	if IsInternal(topic) {
		return -1, fmt.Errorf("%w: %s is internal; the broker keeps its start", ErrInvalidRequest, topic)
	}
	v, err := b.Partition(topic, partition, -1)
	if err != nil {
		return -1, err
	}
	p := v.p
	start, err := p.DeleteRecordsBefore(offset)
	if err == nil {
		b.purg.Notify(p.TopicPartition()) // a parked fetch below the new start answers now
	}
	return start, err
}

// DelayFetch parks a fetch of the partitions tps until ready() reports that enough bytes are
// there, or maxWait passes; complete runs exactly once, with timedOut telling which. ready runs
// on the purgatory's worker after each high-watermark move of one of tps (and once right
// after parking), never on two goroutines at once; complete must not block.
func (b *Broker) DelayFetch(tps []TopicPartition, maxWait time.Duration, ready func() bool, complete func(timedOut bool)) {
	b.purg.Park(NewDelayed(tps, maxWait, false, ready, complete))
}
