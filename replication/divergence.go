package replication

// The divergence rule (KIP-101, KIP-279, KIP-320's DivergingEpoch): a follower fetches with its
// log end and the epoch of its last batch; the leader looks that epoch up in its own history
// and, where the two parted, tells the follower where the epoch ends on the leader; the follower
// cuts its log there (or earlier) and asks again, until its log is a prefix of the leader's.
// These two functions are the whole decision; the drivers only carry the messages.

// epochLog is what the rule reads of a partition's log (an *engine.Partition).
type epochLog interface {
	// EndOffsetForEpoch: the largest epoch <= epoch the log holds and the offset where it ends
	// (the log end for the latest); (-1, -1) when none.
	EndOffsetForEpoch(epoch int32) (foundEpoch int32, endOffset int64)
	LogStartOffset() int64
	LogEndOffset() int64
	HighWatermark() int64
}

// divergence is the leader's answer to a follower whose log parts from its own: the largest
// epoch the leader has at or below the follower's last, and where it ends on the leader.
type divergence struct {
	Epoch     int32
	EndOffset int64
}

// checkFetch is the leader side: nil and 0 when a follower at fetchOffset whose last batch has
// lastFetchedEpoch (-1: none) holds a prefix of leader's log; a divergence when it must cut
// first; CodeOffsetOutOfRange when it wants what the leader no longer has.
func checkFetch(leader epochLog, fetchOffset int64, lastFetchedEpoch int32) (*divergence, int16) {
	if lastFetchedEpoch >= 0 {
		epoch, end := leader.EndOffsetForEpoch(lastFetchedEpoch)
		if epoch != lastFetchedEpoch || end < fetchOffset {
			return &divergence{Epoch: epoch, EndOffset: end}, 0
		}
	} else if end := leader.LogEndOffset(); fetchOffset > end {
		// A log without epochs longer than the leader's: cut it to the leader's end.
		return &divergence{Epoch: -1, EndOffset: end}, 0
	}
	if fetchOffset < leader.LogStartOffset() {
		return nil, CodeOffsetOutOfRange
	}
	return nil, 0
}

// truncationTarget is the follower side (Kafka's AbstractFetcherThread.getOffsetTruncationState):
// where to cut follower's log after the leader answered that its epoch `epoch` ends at
// endOffset. When the follower has that epoch too: at the lower of the two ends. When it does
// not: at the end of its own largest epoch below it (the next fetch checks again from there).
// When nothing is known (the leader has no such epoch): at the high watermark, which every
// in-sync replica holds. Never below the log start, never above the log end.
func truncationTarget(follower epochLog, epoch int32, endOffset int64) int64 {
	target := follower.HighWatermark()
	switch {
	case endOffset >= 0 && epoch >= 0:
		fe, fend := follower.EndOffsetForEpoch(epoch)
		switch {
		case fe < 0:
		case fe == epoch:
			target = min(fend, endOffset)
		default:
			target = fend
		}
	case endOffset >= 0:
		target = endOffset
	}
	return min(max(target, follower.LogStartOffset()), follower.LogEndOffset())
}
