package engine

import (
	"fmt"
	"math"
	"time"

	"github.com/ringtail/ringtail/engine/batch"
)

// DefaultProducerIDExpiration is Kafka's producer.id.expiration.ms default (KIP-854).
const DefaultProducerIDExpiration = 24 * time.Hour

// producerWindow is how many recent batches per producer are remembered for
// duplicate detection (Kafka's max.in.flight.requests.per.connection limit
// for idempotent producers).
const producerWindow = 5

// seqRange is one batch an idempotent producer appended.
type seqRange struct {
	firstSeq, lastSeq int32
	baseOffset        int64
}

// producerState is what the log remembers about one producer id.
type producerState struct {
	epoch   int16
	batches []seqRange // oldest first, at most producerWindow
	// txnFirst is the first offset of the producer's ongoing transaction
	// (its first transactional batch since its last marker), -1 when none:
	// the last stable offset cannot pass it (txn.go).
	txnFirst int64
	// coordEpoch is the coordinator epoch of the producer's last marker, -1
	// when none: a leader refuses a marker of an older coordinator
	// (checkCoordinator), one whose __transaction_state partition moved on.
	coordEpoch int32
	// lastTs is the max timestamp of the producer's last batch, -1 when none
	// (DescribeProducers).
	lastTs int64
	// lastMarker is the base offset of the producer's last marker, -1 when none or not known
	// (snapshots do not hold it: after a restart from one it is known again from the
	// producer's next marker). The log cleaner keeps that marker while nothing else tells
	// the producer's epoch (cleanRules.producerMarker).
	lastMarker int64
}

// prodBatch is a stored batch as apply takes it: its header and, for a
// marker, the coordinator epoch its value carries (else noMarker).
type prodBatch struct {
	h          batch.Header
	coordEpoch int32
}

// markerEpoch is the coordinator epoch of batch b (header h) for apply.
func markerEpoch(h batch.Header, b []byte) int32 {
	if !h.IsControl() {
		return noMarker
	}
	_, ce, _ := markerOf(b) // an unreadable marker fences nothing
	return ce
}

// noMarker is the coordinator epoch apply takes for a batch that is not a
// transaction marker.
const noMarker = -1

// producers maps producer id to state. Values are never mutated in place
// once shared: clone copies the map and each apply replaces the entry.
type producers map[int64]producerState

func (ps producers) clone() producers {
	c := make(producers, len(ps))
	for k, v := range ps {
		c[k] = v
	}
	return c
}

func lastSeq(h batch.Header) int32 {
	// Sequence numbers wrap from MaxInt32 to 0.
	return int32((int64(h.BaseSequence) + int64(h.LastOffsetDelta)) % (math.MaxInt32 + 1))
}

func nextSeq(s int32) int32 {
	if s == math.MaxInt32 {
		return 0
	}
	return s + 1
}

// check decides what to do with an idempotent batch: it returns the original
// base offset and true for a duplicate, or an error.
func (ps producers) check(h batch.Header) (int64, bool, error) {
	st, ok := ps[h.ProducerID]
	if unsequenced(h) {
		// A transaction marker (AppendMarker), or a group coordinator's
		// transactional offsets (TxnOffsetCommit): no sequence; an older
		// epoch is a fenced coordinator's or producer's.
		if ok && h.ProducerEpoch < st.epoch {
			return 0, false, fmt.Errorf("%w: marker for producer %d epoch %d, current %d", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, st.epoch)
		}
		return 0, false, nil
	}
	switch {
	case !ok:
		// A producer this partition does not know, never seen or forgotten (expire), may go
		// on from any sequence, as Kafka's broker lets it since KIP-360: a client idle for
		// longer than the expiration cannot tell, and must not fail its next batch for it.
		return 0, false, nil
	case h.ProducerEpoch > st.epoch || len(st.batches) == 0:
		if h.ProducerEpoch < st.epoch {
			return 0, false, fmt.Errorf("%w: producer %d epoch %d, current %d", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, st.epoch)
		}
		if h.BaseSequence != 0 {
			return 0, false, fmt.Errorf("%w: producer %d epoch %d must start at sequence 0, got %d", ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence)
		}
		return 0, false, nil
	case h.ProducerEpoch < st.epoch:
		return 0, false, fmt.Errorf("%w: producer %d epoch %d, current %d", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, st.epoch)
	}
	last := lastSeq(h)
	for _, b := range st.batches {
		if b.firstSeq == h.BaseSequence && b.lastSeq == last {
			return b.baseOffset, true, nil
		}
	}
	if want := nextSeq(st.batches[len(st.batches)-1].lastSeq); h.BaseSequence != want {
		return 0, false, fmt.Errorf("%w: producer %d expected sequence %d, got %d", ErrOutOfOrderSequence, h.ProducerID, want, h.BaseSequence)
	}
	return 0, false, nil
}

// expire forgets the producers whose last batch is expirationMs old at nowMs, by that batch's
// max timestamp (Kafka's producer.id.expiration.ms, which counts the same way), unless a
// transaction of theirs is open: without it every idempotent client that ever wrote would be
// remembered forever (franz-go and the Java client are idempotent by default, each process
// with a new producer id), in memory, in every snapshot, and as a batch a compacted topic
// keeps for it (the cleaner's producerLast). It returns how many it forgot.
func (ps producers) expire(nowMs, expirationMs int64) int {
	n := 0
	for id, st := range ps {
		if st.txnFirst < 0 && nowMs-st.lastTs >= expirationMs {
			delete(ps, id)
			n++
		}
	}
	return n
}

// checkCoordinator refuses a marker for producer pid written for a
// coordinator older than the one that wrote the producer's last marker
// here (Kafka's TransactionCoordinatorFencedException): a coordinator that
// lost its __transaction_state partition may still send markers its
// successor has overtaken.
func (ps producers) checkCoordinator(pid int64, coordEpoch int32) error {
	if st, ok := ps[pid]; ok && coordEpoch < st.coordEpoch {
		return fmt.Errorf("%w: marker for producer %d from coordinator epoch %d, the last marker's was %d", ErrCoordinatorFenced, pid, coordEpoch, st.coordEpoch)
	}
	return nil
}

// apply records a stored batch (base offset assigned); coordEpoch is the
// coordinator epoch a marker carries (markerOf), noMarker for other batches.
func (ps producers) apply(h batch.Header, coordEpoch int32) {
	if h.ProducerID < 0 {
		return
	}
	st, ok := ps[h.ProducerID]
	if !ok {
		st.txnFirst, st.coordEpoch, st.lastMarker = -1, noMarker, -1
	}
	st.lastTs = h.MaxTimestamp
	if h.IsTransactional() && !h.IsControl() && st.txnFirst < 0 {
		st.txnFirst = h.BaseOffset
	}
	if unsequenced(h) {
		// Without a sequence the window stays (the producer's next batch
		// of the same epoch continues its sequence), unless the epoch
		// moved on. A marker ends the transaction.
		if h.ProducerEpoch != st.epoch {
			st.batches = nil
		}
		st.epoch = h.ProducerEpoch
		if h.IsControl() {
			st.txnFirst = -1
			st.coordEpoch = coordEpoch
			st.lastMarker = h.BaseOffset
		}
		ps[h.ProducerID] = st
		return
	}
	var batches []seqRange
	if h.ProducerEpoch == st.epoch {
		batches = st.batches
	}
	if len(batches) == producerWindow {
		batches = batches[1:]
	}
	nb := make([]seqRange, len(batches), len(batches)+1)
	copy(nb, batches)
	nb = append(nb, seqRange{firstSeq: h.BaseSequence, lastSeq: lastSeq(h), baseOffset: h.BaseOffset})
	st.epoch, st.batches = h.ProducerEpoch, nb
	ps[h.ProducerID] = st
}

// unsequenced reports a batch of a producer that carries no sequence: a transaction marker, or
// transactional records a coordinator writes for the producer (offsets of TxnOffsetCommit,
// base sequence -1; clients cannot produce to the coordinators' internal topics).
func unsequenced(h batch.Header) bool {
	return h.IsControl() || (h.IsTransactional() && h.BaseSequence < 0)
}
