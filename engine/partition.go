package engine

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ringtail/ringtail/internal/invariants"
)

// pendingAppend is an append written to the segment but not yet locally
// durable.
type pendingAppend struct {
	id      uint64 // its WAL record's number in this partition (walDone), 0 for a duplicate waiting
	end     int64  // offset after its last batch
	done    func(error)
	headers []prodBatch // its idempotent batches, for the producer state at the durable end
}

// completion is a callback queued under p.mu and run outside it, in order:
// done(err), or, when done is nil, Config.OnDurable with durable.
type completion struct {
	done    func(error)
	err     error
	durable int64
}

// segMark is the state of a segment at one instant; restoring it undoes
// every append made after it (indexes are append-only).
type segMark struct {
	seg                *segment
	size, end          int64
	nIndex, nTimes     int
	sinceIndex         int
	maxTs, maxTsOffset int64
	deleteHorizon      int64
	horizonKnown       bool
	lastPos            int64
	lastCRC            uint32
}

func (s *segment) mark() segMark {
	return segMark{seg: s, size: s.size, end: s.end, nIndex: len(s.index), nTimes: len(s.times),
		sinceIndex: s.sinceIndex, maxTs: s.maxTs, maxTsOffset: s.maxTsOffset, deleteHorizon: s.deleteHorizon,
		horizonKnown: s.horizonKnown, lastPos: s.lastPos, lastCRC: s.lastCRC}
}

func (s *segment) restore(m segMark) {
	if m.size == 0 {
		s.firstTs = -1
	}
	w := s.written()
	s.size, s.end = m.size, m.end
	s.keepUnwritten(w)
	s.index, s.times = s.index[:m.nIndex], s.times[:m.nTimes]
	s.sinceIndex, s.maxTs, s.maxTsOffset = m.sinceIndex, m.maxTs, m.maxTsOffset
	s.deleteHorizon, s.horizonKnown = m.deleteHorizon, m.horizonKnown
	s.lastPos, s.lastCRC = m.lastPos, m.lastCRC
}

// Partition is one partition's log: an ordered list of segments, the last
// of which receives appends.
//
// Three offsets, logStart <= hw <= durableEnd <= logEnd (the last three
// are checked after every change in invariant builds):
//
//   - logEnd, the log end offset: the next offset to assign; everything
//     below it is in the segment: in its file (page cache) or, not yet
//     durable, deferred (writeLocked);
//   - durableEnd: the offset after the last locally durable batch (its WAL
//     cycle's fdatasync completed; with Durability "none", its write);
//   - hw, the high watermark, set from outside (SetHighWatermark: on one
//     node the broker's OnDurable hook sets it to the durable end, in a
//     cluster the leader to what the in-sync replicas hold durably).
//     Consumers read below it.
type Partition struct {
	eng     *Engine
	tp      TopicPartition
	name    string // "<topic>-<partition>", also the directory name
	dir     string
	topicID [16]byte
	cfg     atomic.Pointer[PartitionConfig]

	// hw is the high watermark, read without a lock on the produce and
	// fetch paths; written under mu, together with hwMark.
	hw atomic.Int64
	// leaderEpoch is what leader appends stamp; written under mu, never lowered.
	leaderEpoch atomic.Int32

	mu          sync.Mutex // guards everything below, and every segment's fields
	closing     bool       // no new appends (engine closing)
	closed      bool       // files closed
	segments    []*segment // by base offset; the last one is active
	logStart    int64
	logEnd      int64         // next offset to assign
	durableEnd  int64         // offset after the last locally durable batch
	durableMark segMark       // where durableEnd lies on disk: what a rollback restores
	hwMark      segMark       // where hw lies on disk: the read limit (its index counts are not kept)
	gen         uint64        // bumped by every rollback; a WAL completion of an append before one is void
	genSeen     atomic.Uint64 // gen, readable without mu (the WAL writer's validity check)
	pending     []pendingAppend
	lastID      uint64 // id of the last WAL-backed append
	// voidLo..voidHi: ids of appends a TruncateTo cut off whose WAL
	// completions are still to come; their success advances nothing.
	voidLo, voidHi uint64
	// truncating: a truncation record is on its way to the WAL; appends
	// are refused until the cut is made.
	truncating bool
	// cutFailed: a truncation to cutFailedAt is durable in the WAL but the
	// cut failed; appends are refused until a TruncateTo succeeds.
	cutFailed   bool
	cutFailedAt int64
	// storageFailed: a storage failure rolled the partition back; with
	// Config.RefuseAppendsAfterStorageFailure it takes no more appends.
	storageFailed bool
	// followDurable: the high watermark moves with the durable end
	// (SetFollowDurableEnd).
	followDurable bool
	prod          producers       // producer state including written, not yet durable batches
	durableProd   producers       // producer state at the durable end
	epochs        epochCache      // leader epoch → start offset (epochs.go)
	txn           txnLog          // decided transactions not yet stable (txn.go)
	tail          replicaTail     // a leader's latest appends, for its followers (tail.go)
	snapQueue     []*prodSnapshot // taken at segment rolls, for a checkpoint to write (snapshot.go)
	snapFiles     []int64         // offsets of the producer snapshot files, ascending
	unsynced      []*segment      // sealed segments written since the last checkpoint started
	dirDirty      bool            // directory entries changed since the last checkpoint started
	ckptDirty     bool            // the active segment was written since the last checkpoint started

	// replayStopped: recovery found a gap, a bad record or a record that
	// does not fit the log at replayStopAt; WAL replay for this partition
	// stops, unless a later truncation record cuts the log back to at
	// most that offset (the records in between were cut off anyway).
	replayStopped bool
	replayStopAt  int64

	cleaner   cleanerState // the log cleaner's bookkeeping (cleaner.go)
	cleaning  *segment     // the segment the cleaner is swapping: retention leaves it alone
	graves    []grave      // segments deleted by retention or truncation whose descriptors are still open
	trimBelow int64        // TrimBefore: segments wholly below this offset may go, whatever the policy
	// startMu serializes the partition's slow state changes, each of which
	// syncs or waits for the WAL without holding mu: DeleteRecordsBefore,
	// TruncateTo and writes of the leader-epoch checkpoint. Taken before mu.
	startMu sync.Mutex

	cqMu     sync.Mutex // guards cq, cqSpare, draining
	cq       []completion
	cqSpare  []completion // the drainer's other buffer
	draining bool
}

func dirName(tp TopicPartition) string { return fmt.Sprintf("%s-%d", tp.Topic, tp.Partition) }

// TopicID returns the partition's topic id.
func (p *Partition) TopicID() [16]byte { return p.topicID }

// TopicPartition returns the partition's name.
func (p *Partition) TopicPartition() TopicPartition { return p.tp }

// Config returns the partition's current settings.
func (p *Partition) Config() PartitionConfig { return *p.cfg.Load() }

// SetConfig replaces the partition's settings; appends that start later use them.
func (p *Partition) SetConfig(c PartitionConfig) {
	c = withPartitionDefaults(c)
	p.cfg.Store(&c)
}

func withPartitionDefaults(c PartitionConfig) PartitionConfig {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1048588
	}
	return c
}

// HighWatermark returns the high watermark: consumers read below it. It
// takes no lock.
func (p *Partition) HighWatermark() int64 { return p.hw.Load() }

// SetHighWatermark raises the high watermark to hw, clamped to the durable
// end; a lower value changes nothing (only TruncateTo lowers it). It returns
// the high watermark now in force.
func (p *Partition) SetHighWatermark(hw int64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.setHighWatermarkLocked(hw)
}

// SetFollowDurableEnd says whether the high watermark moves with the durable
// end by itself: on, for a partition whose only in-sync replica is this node
// (every partition of a single node), it is raised to the durable end now and
// at every advance, under the lock the advance holds anyway, before
// Config.OnDurable runs; off, only SetHighWatermark raises it. The owner
// decides; the engine does not know about replicas.
func (p *Partition) SetFollowDurableEnd(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.followDurable = on
	if on {
		p.setHighWatermarkLocked(p.durableEnd)
	}
}

func (p *Partition) setHighWatermarkLocked(hw int64) int64 {
	cur := p.hw.Load()
	hw = min(hw, p.durableEnd)
	if p.closed || hw <= cur {
		return cur
	}
	m := p.durableMark
	if hw != p.durableEnd {
		var err error
		if m, err = p.readLimitLocked(hw); err != nil {
			p.eng.log.Error("engine: reading batch headers to place the high watermark; it stays", "partition", p.name, "offset", hw, "err", err)
			return cur
		}
	}
	p.hw.Store(hw)
	p.hwMark = m
	p.checkOffsetsLocked("set high watermark")
	return hw
}

// readLimitLocked returns the position after every batch whose base offset
// is below off, for a high watermark that is not the durable end (a
// cluster's leader ahead of its followers): the batch headers between the
// current read limit (or the segment's start) and off are read. The mark
// serves reads only; its index counts are not filled. p.mu held.
func (p *Partition) readLimitLocked(off int64) (segMark, error) {
	seg := p.segments[p.segmentIndex(off)]
	m := segMark{seg: seg, end: seg.base, maxTs: -1, maxTsOffset: -1}
	if p.hwMark.seg == seg && p.hwMark.end <= off {
		m = p.hwMark
	}
	// Every batch below off (at most the durable end) is in the file.
	hr := newHeaderReader(seg.file)
	for m.size < seg.written() {
		h, err := hr.header(m.size, seg.written())
		if err != nil {
			return segMark{}, err
		}
		if h.BaseOffset >= off {
			break
		}
		if h.MaxTimestamp > m.maxTs {
			m.maxTs, m.maxTsOffset = h.MaxTimestamp, h.LastOffset()
		}
		m.size += int64(h.Size())
		m.end = h.LastOffset() + 1
	}
	return m, nil
}

// DurableEnd returns the offset after the last locally durable batch.
func (p *Partition) DurableEnd() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.durableEnd
}

// LogStartOffset returns the first offset still in the log.
func (p *Partition) LogStartOffset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logStart
}

// LogEndOffset returns the offset the next appended record will get
// (written, not necessarily durable).
func (p *Partition) LogEndOffset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logEnd
}

// checkOffsetsLocked panics, in invariant builds, unless
// hw <= durableEnd <= logEnd. p.mu held.
func (p *Partition) checkOffsetsLocked(after string) {
	if !invariants.Enabled {
		return
	}
	if hw := p.hw.Load(); hw > p.durableEnd || p.durableEnd > p.logEnd {
		panic(fmt.Sprintf("engine: %s: after %s: high watermark %d, durable end %d, log end %d: want hw <= durable end <= log end",
			p.name, after, hw, p.durableEnd, p.logEnd))
	}
	p.checkOngoingLocked(after)
}

func (p *Partition) active() *segment { return p.segments[len(p.segments)-1] }

// rollbackLocked undoes everything above the durable end after a storage
// error: pending appends fail, files are cut back, producer state and the
// epoch cache rewind. Nothing unacknowledged stays visible. p.mu held.
func (p *Partition) rollbackLocked(cause error) {
	if invariants.Enabled && p.hw.Load() > p.durableEnd {
		panic(fmt.Sprintf("engine: %s: rollback to the durable end %d below the high watermark %d", p.name, p.durableEnd, p.hw.Load()))
	}
	p.gen++
	p.genSeen.Store(p.gen)
	p.dropTailLocked()
	err := fmt.Errorf("%w: %s: %v", ErrStorage, p.name, cause)
	p.storageFailedLocked(err)
	for _, pa := range p.pending {
		if pa.done != nil {
			p.complete(pa.done, err)
		}
	}
	p.pending = nil

	// Find the segment that becomes active again: the one holding the
	// durable end, or its (emptied) successor when the durable end is at
	// its very end, so a sealed segment is never reopened.
	keep := len(p.segments) - 1
	for i, s := range p.segments {
		if s == p.durableMark.seg {
			keep = i
			break
		}
	}
	target := p.segments[keep]
	grew := target.size > p.durableMark.size
	target.restore(p.durableMark)
	if !grew && keep+1 < len(p.segments) {
		keep++
		target = p.segments[keep]
		target.reset()
	}
	for _, s := range p.segments[keep+1:] {
		p.removeSegmentFiles(s)
	}
	p.segments = p.segments[:keep+1]
	if err := target.file.Truncate(target.size); err != nil {
		p.eng.log.Error("engine: truncate after storage error failed", "partition", p.name, "segment", target.path, "err", err)
	}
	p.unsynced = nil
	for _, s := range p.segments[:keep] {
		if !s.indexed {
			p.unsynced = append(p.unsynced, s)
		}
	}
	p.ckptDirty = true
	p.logEnd = p.durableEnd
	p.prod = p.durableProd.clone()
	p.txnCutLocked(p.logEnd)
	p.epochs.truncateFromEnd(p.logEnd)
	p.dropSnapshotsAboveLocked(p.logEnd)
	p.checkOffsetsLocked("rollback")
}

func (p *Partition) removeSegmentFiles(s *segment) {
	s.file.Close()
	p.unlinkSegment(s)
}

// unlinkSegment removes a segment's files from the directory; its descriptor stays as it is.
func (p *Partition) unlinkSegment(s *segment) {
	for _, suffix := range append([]string{logSuffix}, indexSuffixes...) {
		if err := p.eng.fs.Remove(segmentName(p.dir, s.base, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			p.eng.log.Warn("engine: removing segment file", "partition", p.name, "err", err)
		}
	}
	p.dirDirty = true
}

func (p *Partition) logStorageError(op string, err error) {
	p.eng.log.Error("engine: storage error, failing unacknowledged appends", "partition", p.name, "op", op, "err", err)
}

// storageFailedLocked reports a rollback or an unapplied cut (Config.OnStorageFailure). p.mu
// held.
func (p *Partition) storageFailedLocked(err error) {
	p.storageFailed = true
	if f := p.eng.cfg.OnStorageFailure; f != nil {
		f(p, err)
	}
}

// complete queues a done callback. p.mu held, so the queue order is the
// append order.
func (p *Partition) complete(done func(error), err error) {
	p.cqMu.Lock()
	p.cq = append(p.cq, completion{done: done, err: err})
	p.cqMu.Unlock()
}

// durableLocked queues the OnDurable call for a durable end of end, in
// order with the done callbacks. p.mu held.
func (p *Partition) durableLocked(end int64) {
	if p.eng.cfg.OnDurable == nil {
		return
	}
	p.cqMu.Lock()
	p.cq = append(p.cq, completion{durable: end})
	p.cqMu.Unlock()
}

// runCompletions calls queued callbacks in order, outside p.mu. If another
// goroutine is already draining, it will pick these up.
func (p *Partition) runCompletions() {
	p.cqMu.Lock()
	if p.draining {
		p.cqMu.Unlock()
		return
	}
	p.draining = true
	for len(p.cq) > 0 {
		// Two buffers take turns, so the hot path allocates no queue.
		q := p.cq
		p.cq, p.cqSpare = p.cqSpare[:0], nil
		p.cqMu.Unlock()
		for _, c := range q {
			if c.done != nil {
				c.done(c.err)
			} else {
				p.eng.cfg.OnDurable(p, c.durable)
			}
		}
		clear(q) // drop the callbacks
		p.cqMu.Lock()
		p.cqSpare = q[:0]
	}
	p.draining = false
	p.cqMu.Unlock()
}

// closeLocked fails pending appends with err and closes the files. p.mu held.
func (p *Partition) closeLocked(err error) {
	if p.closed {
		return
	}
	p.closed, p.closing = true, true
	p.dropTailLocked()
	for _, pa := range p.pending {
		if pa.done != nil {
			p.complete(pa.done, err)
		}
	}
	p.pending = nil
	for _, s := range p.segments {
		s.file.Close()
	}
	for _, g := range p.graves {
		g.seg.file.Close()
	}
	p.graves = nil
}
