package engine

import (
	"fmt"
	"time"

	"github.com/ringtail/ringtail/engine/batch"
)

// Truncation: TruncateTo cuts the log end back (a follower whose log
// diverged from its new leader's, KIP-101). The decision reaches the disk
// before anything else does: under p.mu the cut is planned (headers read,
// nothing changed), appends are refused, and a truncation record
// (walpayload.go) is queued to the WAL, after every record of the batches it
// removes. Only once that record is durable are the files cut, in memory and
// on disk. Until then no file of the partition changes, so neither a crash
// nor the kernel's own writeback can leave a cut without its record, and no
// checkpoint runs (TruncateTo holds the checkpointer's run lock), so none can
// record a WAL position past the record while the segments are still uncut.
// Replay applies the record in sequence order: the batches it cut cannot
// come back, whatever the segment files held at the crash.
//
// If the record fails, nothing was cut: TruncateTo fails and the partition
// rolls back, as after any WAL error. If the cut fails after the record is
// durable (a file error), the partition refuses appends until a TruncateTo
// succeeds, since its memory holds batches the WAL has cut.

// cutPlan is where a cut falls, worked out before anything changes.
type cutPlan struct {
	idx  int       // index of the segment the cut falls in; later ones go
	at   *segment  // that segment
	pos  int64     // the segment's new size
	end  int64     // the new log end: the base of the first batch cut
	seg  segment   // the segment's in-memory state rebuilt up to pos
	prod producers // producer state rebuilt from the batches kept
}

// planCutLocked reads the batch headers needed to cut the log before the
// batch holding offset: the segment's up to the cut, to rebuild its
// indexes, and the earlier segments' after the newest producer snapshot
// that verifies, to rebuild the producer state (as recovery does). Nothing
// changes. p.mu held.
func (p *Partition) planCutLocked(offset int64) (cutPlan, error) {
	// The headers are read from the file.
	if err := p.flushLocked(); err != nil {
		return cutPlan{}, err
	}
	pl := cutPlan{idx: p.segmentIndex(offset), prod: producers{}}
	s := p.segments[pl.idx]
	from := p.segments[0].base
	if snap := p.newestGoodSnapshot(s.base); snap != nil {
		pl.prod, from = snap.prod, snap.offset
	}
	if _, err := p.applyHeaders(from, s.base, func(h batch.Header, seg *segment, pos int64) error {
		coordEpoch, err := seg.markerEpochAt(h, pos)
		pl.prod.apply(h, coordEpoch)
		return err
	}); err != nil {
		return cutPlan{}, err
	}
	pl.at = s
	pl.seg = segment{base: s.base, path: s.path, file: s.file, end: s.base, lastPos: -1, maxTs: -1, maxTsOffset: -1, firstTs: -1,
		deleteHorizon: noHorizon, horizonKnown: true}
	hr := newHeaderReader(s.file)
	for pl.seg.size < s.size {
		h, err := hr.header(pl.seg.size, s.size)
		if err != nil {
			return cutPlan{}, err
		}
		if h.LastOffset() >= offset {
			break
		}
		coordEpoch, err := s.markerEpochAt(h, pl.seg.size)
		if err != nil {
			return cutPlan{}, err
		}
		pl.seg.observe(h, pl.seg.size, p.eng.cfg.IndexIntervalBytes)
		pl.prod.apply(h, coordEpoch)
	}
	pl.pos, pl.end = pl.seg.size, pl.seg.end
	return pl, nil
}

// cutLocked carries out a plan: the segment file is cut (the only step that
// can fail, and the first), later segments are removed, the indexes,
// producer state and epoch cache rebuilt, and the durable end and high
// watermark lowered to the new log end if they were above it. Pending
// appends are the caller's. p.mu held.
func (p *Partition) cutLocked(pl cutPlan) error {
	s := p.segments[pl.idx]
	if err := p.dropCleanerCheckpointLocked(pl.end); err != nil {
		return err
	}
	if err := s.file.Truncate(pl.pos); err != nil {
		return err
	}
	hw := p.hw.Load()
	for _, later := range p.segments[pl.idx+1:] {
		if later.base < hw {
			// Reads may be under way in it: close it later.
			p.unlinkSegment(later)
			p.graves = append(p.graves, grave{seg: later, deleted: time.Now()})
		} else {
			p.removeSegmentFiles(later)
		}
	}
	p.segments = p.segments[:pl.idx+1]
	if s.indexed {
		// It is the active segment again: index files would go stale.
		if err := p.removeIndexFiles(s.base); err != nil {
			p.eng.log.Warn("engine: removing index file", "partition", p.name, "err", err)
		}
		s.indexed = false
		p.dirDirty = true
	}
	w := s.written()
	s.size, s.end = pl.seg.size, pl.seg.end
	s.keepUnwritten(w)
	s.index, s.times, s.sinceIndex = pl.seg.index, pl.seg.times, pl.seg.sinceIndex
	s.maxTs, s.maxTsOffset, s.firstTs = pl.seg.maxTs, pl.seg.maxTsOffset, pl.seg.firstTs
	s.deleteHorizon, s.horizonKnown = pl.seg.deleteHorizon, pl.seg.horizonKnown
	s.lastPos, s.lastCRC = pl.seg.lastPos, pl.seg.lastCRC
	p.unsynced = nil
	for _, x := range p.segments[:pl.idx] {
		if !x.indexed {
			p.unsynced = append(p.unsynced, x)
		}
	}
	p.ckptDirty = true
	p.logEnd = pl.end
	p.cleaner.cut(pl.end)
	p.prod = pl.prod
	p.txnCutLocked(pl.end)
	p.epochs.truncateFromEnd(pl.end)
	p.dropSnapshotsAboveLocked(pl.end)
	if p.durableEnd > pl.end {
		p.durableEnd, p.durableMark = pl.end, s.mark()
		p.durableProd = p.prod.clone()
	}
	if hw > pl.end {
		p.eng.log.Warn("engine: truncation below the high watermark lowers it", "partition", p.name, "high_watermark", hw, "log_end", pl.end)
		p.hw.Store(pl.end)
		p.hwMark = s.mark()
	}
	p.checkOffsetsLocked("truncation")
	return nil
}

// TruncateTo cuts the log so that it ends before the batch holding offset
// (at offset when offset is a batch boundary, as a leader's epoch end
// offsets are), durably: the cut is recorded in the WAL before the files
// change and before TruncateTo returns (with Durability "none" the files
// change at once, and a power cut may undo it). offset must be at least the log
// start (else ErrOffsetOutOfRange); at or beyond the log end nothing is cut.
// The high watermark and durable end are lowered to the new log end if they
// were above it (a high watermark above it is logged: a replica never cuts
// what its leader committed). Pending appends ending beyond the cut fail
// with an error wrapping ErrClosed, and so do appends made while it runs
// (one WAL cycle). Reads racing a cut below the high watermark may see the
// cut bytes' replacements.
//
// It reads every batch header of the log, under the partition lock, to
// rebuild the producer state: a cost for leader changes, not for appends.
func (p *Partition) TruncateTo(offset int64) error {
	err := p.truncate(offset)
	p.runCompletions() // the failed appends, OnDurable: outside every lock
	return err
}

func (p *Partition) truncate(offset int64) error {
	ckpt := &p.eng.ckpt.run1 // no checkpoint between the record and the cut
	ckpt.Lock()
	defer ckpt.Unlock()
	p.startMu.Lock()
	defer p.startMu.Unlock()

	p.mu.Lock()
	pl, gen, recorded, err := p.recordCutLocked(offset)
	p.mu.Unlock()
	if err != nil || recorded == nil {
		return err
	}
	err = <-recorded
	p.mu.Lock()
	// Every record queued before the truncation record has completed.
	p.truncating, p.voidLo, p.voidHi = false, 0, 0
	switch {
	case p.closed:
		p.mu.Unlock()
		return ErrClosed
	case err == nil:
		err = p.applyCutLocked(pl, gen)
	case gen == p.gen:
		p.logStorageError("wal truncation record", err)
		p.rollbackLocked(err)
	}
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %s: truncating to %d: %v", ErrStorage, p.name, pl.end, err)
	}
	if err := p.writeEpochsIfDirty(); err != nil {
		// The cache is rebuilt from the log at recovery: the file can lag.
		p.eng.log.Warn("engine: writing the leader epoch checkpoint", "partition", p.name, "err", err)
	}
	p.eng.log.Info("engine: log truncated", "partition", p.name, "offset", offset, "log_end", pl.end)
	return nil
}

// recordCutLocked plans the cut, fails the pending appends beyond it, stops
// appends and queues the truncation record, whose completion will be sent on
// recorded (nil when there is nothing to cut). p.mu held.
func (p *Partition) recordCutLocked(offset int64) (pl cutPlan, gen uint64, recorded chan error, err error) {
	if p.cutFailed {
		offset = min(offset, p.cutFailedAt)
	}
	switch {
	case p.closing || p.closed:
		return pl, 0, nil, ErrClosed
	case offset < p.logStart:
		return pl, 0, nil, fmt.Errorf("%w: %s: truncation to %d, below the log start %d", ErrOffsetOutOfRange, p.name, offset, p.logStart)
	case offset >= p.logEnd:
		return pl, 0, nil, nil
	}
	if pl, err = p.planCutLocked(offset); err != nil {
		p.eng.log.Error("engine: truncation failed; the log is unchanged", "partition", p.name, "offset", offset, "err", err)
		return pl, 0, nil, fmt.Errorf("%w: %s: truncating to %d: %v", ErrStorage, p.name, offset, err)
	}
	p.truncating = true
	p.voidPendingLocked(pl.end)
	recorded = make(chan error, 1)
	if p.eng.cfg.Durability == DurabilityNone {
		// No record: the appends after the cut are not in the WAL either, so replaying one
		// would cut them. The files are cut at once; a kill between the segment's cut and the
		// removal of later segments leaves a log that is not contiguous, whose recovery keeps
		// it only up to the gap: the cut.
		recorded <- nil
		return pl, p.gen, recorded, nil
	}
	p.eng.wal.Append(walTruncation(p.topicID, p.tp.Partition, pl.end), nil, func(_ uint64, err error) { recorded <- err })
	return pl, p.gen, recorded, nil
}

// applyCutLocked cuts the files and memory once the truncation record of pl
// is durable (planned under generation gen): everything before the record is
// durable too, so the durable end reaches the cut. A rollback since (an
// earlier record failed) may have changed the segments: the cut is planned
// again. p.mu held.
func (p *Partition) applyCutLocked(pl cutPlan, gen uint64) error {
	p.dropTailLocked()
	end := pl.end
	if gen != p.gen || pl.idx >= len(p.segments) || p.segments[pl.idx] != pl.at {
		if p.logEnd <= end {
			return nil // the rollback already cut at least as far
		}
		var err error
		if pl, err = p.planCutLocked(end); err == nil && pl.end != end {
			err = fmt.Errorf("no batch starts at %d any more", end)
		}
		if err != nil {
			p.cutFailed, p.cutFailedAt = true, end
			p.storageFailedLocked(err)
			return err
		}
	}
	if err := p.cutLocked(pl); err != nil {
		p.logStorageError("truncate", err)
		p.cutFailed, p.cutFailedAt = true, end
		p.storageFailedLocked(err)
		return err
	}
	p.cutFailed = false
	if gen == p.gen {
		p.advanceDurableLocked(end, p.active().mark())
	}
	return nil
}

// voidPendingLocked fails the pending appends that end beyond the new log
// end and voids their WAL completions. Their records stay in the WAL queue,
// ahead of the truncation record, which replay applies after them. p.mu
// held.
func (p *Partition) voidPendingLocked(end int64) {
	keep := 0
	for keep < len(p.pending) && p.pending[keep].end <= end {
		keep++
	}
	if keep == len(p.pending) {
		return
	}
	err := fmt.Errorf("%w: %s: the log was truncated to %d", ErrClosed, p.name, end)
	for _, pa := range p.pending[keep:] {
		if pa.id != 0 {
			if p.voidLo == 0 {
				p.voidLo = pa.id
			}
			p.voidHi = pa.id
		}
		if pa.done != nil {
			p.complete(pa.done, err)
		}
	}
	p.pending = p.pending[:keep]
}
