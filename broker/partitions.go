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
		return part.Append(records, done)
	}
	// acks=all: locally durable first, then the high watermark past the batches. The done
	// callback may run before Append returns the end offset, so whichever of the two comes
	// second moves on.
	w := &produceWait{b: b, part: part, timeout: timeout, done: done, end: -1}
	res, err := part.Append(records, w.durable)
	if err == nil {
		w.appended(res.EndOffset)
	}
	return res, err
}

// produceWait is one partition of an acks=all produce between its append and its answer.
type produceWait struct {
	b       *Broker
	part    *engine.Partition
	timeout time.Duration
	done    func(error)

	mu            sync.Mutex
	end           int64 // offset after the batches; -1 until Append returned
	locallyStored bool  // the batches are durable on this node
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
		func() bool { return part.HighWatermark() >= end },
		func(timedOut bool) {
			if timedOut && part.HighWatermark() < end {
				tp := part.TopicPartition()
				w.done(fmt.Errorf("%w: the high watermark of %s-%d did not reach %d within %v", ErrRequestTimedOut,
					tp.Topic, tp.Partition, end, w.timeout))
				return
			}
			w.done(nil)
		}))
}

// onDurable runs each time a partition's durable end advances (outside its locks, before the
// callbacks of the appends it covers). On one node the engine has already moved the high
// watermark with it (PartitionSpec.FollowDurableEnd): the requests waiting for it can go.
func (b *Broker) onDurable(p *engine.Partition, durableEnd int64) {
	b.purg.Notify(p.TopicPartition())
}

// Partition is what the Kafka APIs may do with one open partition besides appending: read
// below the high watermark, look offsets up, and move the log start.
type Partition struct{ p *engine.Partition }

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
	return Partition{p}, nil
}

// Read returns whole record batches below the high watermark from the batch holding offset, up
// to maxBytes (at least one batch when minOneBatch).
func (v Partition) Read(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error) {
	return v.p.Read(offset, maxBytes, minOneBatch)
}

// HighWatermark is the offset consumers read up to.
func (v Partition) HighWatermark() int64 { return v.p.HighWatermark() }

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
