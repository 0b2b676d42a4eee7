package engine

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Truncation: TruncateTo cuts the log end back (a follower whose log
// diverged from its new leader's, KIP-101). The cut is made in the files and
// in memory under p.mu, then a truncation record (walpayload.go) is queued to
// the WAL under the same lock, so it lands after every record of the batches
// it removes and before every later append of the partition. TruncateTo
// returns once that record is durable, and the WAL completes records in
// order, so no append made after the cut is acknowledged before the cut is
// durable. Replay applies the record in sequence order: the batches it cut
// cannot come back, whatever the segment files held at the crash.
//
// If the record fails, the partition rolls back (as after any WAL error) and
// refuses appends until a TruncateTo succeeds: the cut is in memory but a
// crash could undo it.

// cutPlan is where a cut falls, worked out before anything changes.
type cutPlan struct {
	idx  int       // index of the segment the cut falls in; later ones go
	pos  int64     // the segment's new size
	end  int64     // the new log end: the base of the first batch cut
	seg  segment   // the segment's in-memory state rebuilt up to pos
	prod producers // producer state rebuilt from the batches kept
}

// planCutLocked reads the batch headers needed to cut the log before the
// batch holding offset: the segment's up to the cut, to rebuild its
// indexes, and every earlier segment's, to rebuild the producer state (as
// recovery does). Nothing changes. p.mu held.
func (p *Partition) planCutLocked(offset int64) (cutPlan, error) {
	pl := cutPlan{idx: p.segmentIndex(offset), prod: producers{}}
	for _, s := range p.segments[:pl.idx] {
		hr := newHeaderReader(s.file)
		for pos := int64(0); pos < s.size; {
			h, err := hr.header(pos, s.size)
			if err != nil {
				return cutPlan{}, err
			}
			pl.prod.apply(h)
			pos += int64(h.Size())
		}
	}
	s := p.segments[pl.idx]
	pl.seg = segment{base: s.base, path: s.path, file: s.file, end: s.base, maxTs: -1, maxTsOffset: -1, firstTs: -1}
	hr := newHeaderReader(s.file)
	for pl.seg.size < s.size {
		h, err := hr.header(pl.seg.size, s.size)
		if err != nil {
			return cutPlan{}, err
		}
		if h.LastOffset() >= offset {
			break
		}
		pl.seg.observe(h, pl.seg.size, p.eng.cfg.IndexIntervalBytes)
		pl.prod.apply(h)
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
		for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
			if err := p.eng.fs.Remove(segmentName(p.dir, s.base, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
				p.eng.log.Warn("engine: removing index file", "partition", p.name, "err", err)
			}
		}
		s.indexed = false
		p.dirDirty = true
	}
	s.size, s.end = pl.seg.size, pl.seg.end
	s.index, s.times, s.sinceIndex = pl.seg.index, pl.seg.times, pl.seg.sinceIndex
	s.maxTs, s.maxTsOffset, s.firstTs = pl.seg.maxTs, pl.seg.maxTsOffset, pl.seg.firstTs
	p.unsynced = nil
	for _, x := range p.segments[:pl.idx] {
		if !x.indexed {
			p.unsynced = append(p.unsynced, x)
		}
	}
	p.ckptDirty = true
	p.logEnd = pl.end
	p.prod = pl.prod
	p.epochs.truncateFromEnd(pl.end)
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
// offsets are), records the cut durably in the WAL and returns. offset
// must be at least the log start (else ErrOffsetOutOfRange); at or beyond
// the log end nothing is cut. The high watermark and durable end are lowered
// to the new log end if they were above it (a high watermark above it is
// logged: a replica never cuts what its leader committed). Pending appends
// ending beyond the cut fail with an error wrapping ErrClosed; reads racing
// a cut below the high watermark may see the cut bytes' replacements.
//
// It reads every batch header of the log, under the partition lock, to
// rebuild the producer state: a cost for leader changes, not for appends.
func (p *Partition) TruncateTo(offset int64) error {
	p.startMu.Lock()
	defer p.startMu.Unlock()
	p.mu.Lock()
	switch {
	case p.closing || p.closed:
		p.mu.Unlock()
		return ErrClosed
	case offset < p.logStart:
		defer p.mu.Unlock()
		return fmt.Errorf("%w: %s: truncation to %d, below the log start %d", ErrOffsetOutOfRange, p.name, offset, p.logStart)
	case offset >= p.logEnd && !p.cutFailed:
		p.mu.Unlock()
		return nil
	}
	end := p.logEnd
	if offset < p.logEnd {
		pl, err := p.planCutLocked(offset)
		if err == nil {
			err = p.cutLocked(pl)
		}
		if err != nil {
			p.mu.Unlock()
			p.eng.log.Error("engine: truncation failed; the log is unchanged", "partition", p.name, "offset", offset, "err", err)
			return fmt.Errorf("%w: %s: truncating to %d: %v", ErrStorage, p.name, offset, err)
		}
		end = pl.end
		p.voidPendingLocked(end)
	}
	gen, mark := p.gen, p.active().mark()
	recorded := make(chan error, 1)
	p.eng.wal.Append(walTruncation(p.topicID, p.tp.Partition, end), nil, func(_ uint64, err error) {
		p.cutRecorded(gen, end, mark, err)
		recorded <- err
	})
	p.mu.Unlock()
	p.runCompletions()
	if err := <-recorded; err != nil {
		return fmt.Errorf("%w: %s: recording the truncation to %d in the wal: %v", ErrStorage, p.name, end, err)
	}
	if err := p.writeEpochsIfDirty(); err != nil {
		// The cache is rebuilt from the log at recovery: the file can lag.
		p.eng.log.Warn("engine: writing the leader epoch checkpoint", "partition", p.name, "err", err)
	}
	p.eng.log.Info("engine: log truncated", "partition", p.name, "offset", offset, "log_end", end)
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

// cutRecorded is the WAL's completion of a truncation record made under
// generation gen, cutting the log to end (position mark). Every record
// queued before it has completed, so the void range ends here. Success
// makes the log up to end durable: it holds nothing the WAL does not, up to
// there.
func (p *Partition) cutRecorded(gen uint64, end int64, mark segMark, err error) {
	p.mu.Lock()
	p.voidLo, p.voidHi = 0, 0
	if p.closed {
		p.mu.Unlock()
		return
	}
	if err != nil {
		p.cutFailed = true
		if gen == p.gen {
			p.logStorageError("wal truncation record", err)
			p.rollbackLocked(err)
		}
	} else {
		p.cutFailed = false
		if gen == p.gen {
			p.advanceDurableLocked(end, mark)
		}
	}
	p.mu.Unlock()
	p.runCompletions()
}
