package engine

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ringtail/ringtail/vfs"
)

// Reset: ResetTo empties the log and restarts it at an offset beyond its end (Kafka's
// truncateFullyAndStartAt). A follower whose log ends below its leader's log start (it was
// away while retention or DeleteRecords removed what it would fetch next) cannot copy its way
// there; it drops its log and copies from the leader's log start.
//
// As with a truncation (truncate.go), the decision reaches the WAL before anything else: appends
// are refused, the pending ones fail, a reset record is queued after every record of the log it
// drops, and only once the record is durable do the files change — a new empty segment at the
// offset, then the old segments go. Replay applies the record in sequence order (replayReset):
// whatever the directory held at a crash, the log after it is empty at the offset and holds only
// what the WAL has after the record. Recovery's scan keeps the segments from the first one on
// only while they are contiguous, so a directory caught between the two steps (old segments
// beside the new one) loses the new one, and the replay makes it again.

// ResetTo empties the log and restarts it at offset, which must be beyond the log end (a
// shorter cut is TruncateTo's): log start, log end, durable end and high watermark all become
// offset, the producer state and the leader epoch cache are emptied. It is durable before it
// returns. Pending appends fail with an error wrapping ErrClosed.
func (p *Partition) ResetTo(offset int64) error {
	err := p.reset(offset)
	p.runCompletions()
	return err
}

func (p *Partition) reset(offset int64) error {
	ckpt := &p.eng.ckpt.run1 // no checkpoint between the record and the new files
	ckpt.Lock()
	defer ckpt.Unlock()
	p.startMu.Lock()
	defer p.startMu.Unlock()

	p.mu.Lock()
	switch {
	case p.closing || p.closed:
		p.mu.Unlock()
		return ErrClosed
	case offset <= p.logEnd:
		end := p.logEnd
		p.mu.Unlock()
		return fmt.Errorf("%w: %s: a reset to %d, not beyond the log end %d", ErrOffsetOutOfRange, p.name, offset, end)
	}
	p.truncating = true
	p.voidPendingLocked(-1)
	recorded := make(chan error, 1)
	if p.eng.cfg.Durability == DurabilityNone {
		// No record, as for a truncation (recordCutLocked): the files change at once. A kill
		// before the last old segment is gone leaves a log that is not contiguous, whose
		// recovery keeps the old segments left (the old log or, as retention would leave it, a
		// suffix of it), and the follower resets again.
		recorded <- nil
	} else {
		p.eng.wal.Append(walReset(p.topicID, p.tp.Partition, offset), nil, func(_ uint64, err error) { recorded <- err })
	}
	gen := p.gen
	p.mu.Unlock()

	err := <-recorded
	if err = p.applyReset(offset, gen, err); err != nil {
		return err
	}
	if err := p.writeEpochsIfDirty(); err != nil {
		// Derived from the log at recovery: the file can lag.
		p.eng.log.Warn("engine: writing the leader epoch checkpoint", "partition", p.name, "err", err)
	}
	p.eng.log.Info("engine: log reset", "partition", p.name, "offset", offset)
	return nil
}

// applyReset makes the new files once the reset record's fate (recordErr) is known.
func (p *Partition) applyReset(offset int64, gen uint64, recordErr error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.truncating, p.voidLo, p.voidHi = false, 0, 0
	switch {
	case p.closed:
		return ErrClosed
	case recordErr != nil:
		if gen == p.gen {
			p.logStorageError("wal reset record", recordErr)
			p.rollbackLocked(recordErr)
		}
		return fmt.Errorf("%w: %s: resetting to %d: %v", ErrStorage, p.name, offset, recordErr)
	}
	if err := p.resetLocked(offset); err != nil {
		// The record is durable but the files are not what it says: no appends until a
		// restart replays it (the directory may be half changed).
		p.logStorageError("reset", err)
		p.cutFailed, p.cutFailedAt = true, p.logStart
		p.storageFailedLocked(err)
		return fmt.Errorf("%w: %s: resetting to %d: %v", ErrStorage, p.name, offset, err)
	}
	p.cutFailed = false
	p.durableLocked(offset)
	return nil
}

// resetLocked makes the log an empty one starting at offset: the new segment first (a file of
// that name is emptied: in a replay it may hold what the WAL replays again), then the old
// ones go (those a read may be in, below the high watermark, once no read can be). p.mu held.
func (p *Partition) resetLocked(offset int64) error {
	// The new log holds nothing the cleaner cleaned.
	if err := p.dropCleanerCheckpointLocked(0); err != nil {
		return err
	}
	var file vfs.File
	for _, s := range p.segments {
		if s.base == offset {
			file = s.file
		}
	}
	if file == nil {
		seg, err := newSegment(p.eng.fs, p.dir, offset)
		if err != nil {
			return err
		}
		file = seg.file
	}
	if size, err := file.Size(); err != nil {
		return err
	} else if size != 0 {
		if err := file.Truncate(0); err != nil {
			return err
		}
	}
	seg := &segment{base: offset, path: segmentName(p.dir, offset, logSuffix), file: file, end: offset, lastPos: -1, maxTs: -1, maxTsOffset: -1, firstTs: -1,
		deleteHorizon: noHorizon, horizonKnown: true}
	hw := p.hw.Load()
	for _, old := range p.segments {
		switch {
		case old.file == file:
		case old.base < hw:
			p.unlinkSegment(old)
			p.graves = append(p.graves, grave{seg: old, deleted: time.Now()})
		default:
			p.removeSegmentFiles(old)
		}
	}
	for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
		if err := p.eng.fs.Remove(segmentName(p.dir, offset, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	p.dropTailLocked()
	// The producer snapshots describe the old log: none may seed a recovery of the new one.
	p.dropSnapshotsAboveLocked(-1)
	p.segments = []*segment{seg}
	p.unsynced = nil
	p.dirDirty, p.ckptDirty = true, true
	p.logStart, p.logEnd, p.durableEnd = offset, offset, offset
	p.cleaner.cut(0)
	p.trimBelow = max(p.trimBelow, offset)
	p.durableMark = seg.mark()
	p.hw.Store(offset)
	p.hwMark = seg.mark()
	p.prod, p.durableProd, p.txn = producers{}, producers{}, txnLog{}
	p.epochs.truncateFromEnd(-1)
	p.checkOffsetsLocked("reset")
	return nil
}

// replayReset applies a reset record during recovery: the log is made empty at offset, even
// when the directory already starts there (the reset's files were made before the crash): the
// records replayed before this one may have written there, and every record written since the
// reset follows it in the WAL (no checkpoint passes the record before its files are made).
// Whatever stopped the replay before is dropped with the log.
func (p *Partition) replayReset(seq uint64, offset int64) (bool, error) {
	if p.replayStopped {
		p.eng.log.Info("engine: a reset record drops what stopped the replay; replay resumes", "partition", p.name, "seq", seq, "offset", offset)
		p.replayStopped = false
	}
	return true, p.resetLocked(offset)
}
