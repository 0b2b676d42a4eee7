package engine

import (
	"errors"
	"fmt"

	"github.com/ringtail/ringtail/vfs"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/internal/invariants"
)

// Appends come in two kinds sharing one write path:
//
//   - a leader append (Append) validates a producer's batches, deduplicates
//     idempotent retries, assigns offsets, the log-append time and the
//     leader epoch;
//   - a plain append writes batches that already carry their offsets and
//     epochs: writeLocked puts them at the log end (roll, write, index,
//     producer state, epoch cache) and queueLocked sends them to the WAL
//     (with Durability "none", completes them at once instead).
//     The leader path, AppendReplicated (a follower's) and the WAL replay
//     (writeLocked only: the records are already in the WAL) use it.

// mapBatchError turns a batch package error into the engine's sentinel.
func mapBatchError(err error) error {
	switch {
	case errors.Is(err, batch.ErrTooLarge):
		return fmt.Errorf("%w: %v", ErrMessageTooLarge, err)
	case errors.Is(err, batch.ErrDecompressedTooLarge):
		// Not MESSAGE_TOO_LARGE: max.message.bytes is about the batch as
		// sent; this is the decompression-bomb guard.
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	case errors.Is(err, batch.ErrUnsupportedMagic):
		return fmt.Errorf("%w: %v", ErrUnsupportedMagic, err)
	default:
		return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
}

// Append validates the record batches in records (a produce request's
// records field), assigns their offsets, stamps the leader epoch and writes
// them at the end of the log. It takes ownership of records (base offsets,
// leader epochs and, for LogAppendTime topics, timestamps are patched in
// place).
//
// A non-nil error means nothing was written and done will not be called.
// Otherwise done (when non-nil) is called exactly once, in append order,
// when the records are locally durable (done(nil)) or have been dropped
// after a storage error (an error wrapping ErrStorage), a Close or a
// TruncateTo (ErrClosed). Config.OnDurable runs for the durable end that
// covers them before their done(nil). done runs on an engine goroutine: it
// must not block, but it may call any Partition method except TruncateTo
// (which waits for the WAL that may be running done).
func (p *Partition) Append(records []byte, done func(error)) (AppendResult, error) {
	cfg := p.Config()
	// One batch, the usual case, is split and parsed into arrays on the stack.
	var oneRaw [1][]byte
	var oneHeader [1]batch.Header
	raw, err := batch.SplitInto(oneRaw[:0], records)
	if err != nil {
		return AppendResult{}, mapBatchError(err)
	}
	if len(raw) == 0 {
		return AppendResult{}, fmt.Errorf("%w: no record batch", ErrCorruptMessage)
	}
	hs := oneHeader[:]
	if len(raw) > 1 {
		hs = make([]batch.Header, len(raw))
	}
	for i, b := range raw {
		if err := batch.Validate(b, int(cfg.MaxMessageBytes)); err != nil {
			return AppendResult{}, mapBatchError(err)
		}
		h, err := batch.ParseHeader(b)
		if err != nil {
			return AppendResult{}, mapBatchError(err)
		}
		if h.IsTransactional() && h.ProducerID < 0 {
			return AppendResult{}, fmt.Errorf("%w: transactional batch without a producer id", ErrInvalidRecord)
		}
		if h.NumRecords == 0 {
			return AppendResult{}, fmt.Errorf("%w: batch without records", ErrInvalidRecord)
		}
		if h.IsControl() {
			return AppendResult{}, fmt.Errorf("%w: control batch from a producer", ErrInvalidRecord)
		}
		if cfg.Compaction.Enabled {
			if err := checkKeyed(b); err != nil {
				return AppendResult{}, err
			}
		}
		hs[i] = h
	}
	if cfg.Recompress {
		for i, b := range raw {
			if hs[i].Codec() == cfg.Compression {
				continue
			}
			nb, err := batch.Recompress(b, cfg.Compression)
			if err != nil {
				return AppendResult{}, mapBatchError(err)
			}
			if hs[i], err = batch.ParseHeader(nb); err != nil {
				return AppendResult{}, mapBatchError(err)
			}
			raw[i] = nb
		}
	}
	logAppendTime := int64(-1)
	if cfg.LogAppendTime {
		logAppendTime = p.eng.now()
	}

	p.mu.Lock()
	res, werr := p.appendLeaderLocked(raw, hs, logAppendTime, cfg.SegmentMs, done)
	p.mu.Unlock()
	p.runCompletions()
	if werr == nil && !res.Duplicate && p.eng.cfg.OnAppend != nil {
		p.eng.cfg.OnAppend(p)
	}
	return res, werr
}

// appendableLocked says why the partition takes no appends now, if it
// does not. p.mu held.
func (p *Partition) appendableLocked() error {
	switch {
	case p.closing || p.closed:
		return ErrClosed
	case p.truncating:
		return fmt.Errorf("%w: %s: the log is being truncated", ErrClosed, p.name)
	case p.cutFailed:
		return fmt.Errorf("%w: %s: a truncation recorded in the wal is not applied to the log; TruncateTo must succeed first", ErrStorage, p.name)
	case p.storageFailed && p.eng.cfg.RefuseAppendsAfterStorageFailure:
		return fmt.Errorf("%w: %s: a storage failure rolled the log back; no appends until a restart", ErrStorage, p.name)
	}
	return nil
}

// appendLeaderLocked does the part of Append that must be ordered:
// producer checks, offsets, log-append time, leader epoch. p.mu held.
func (p *Partition) appendLeaderLocked(raw [][]byte, hs []batch.Header, logAppendTime, segmentMs int64, done func(error)) (AppendResult, error) {
	if err := p.appendableLocked(); err != nil {
		return AppendResult{}, err
	}
	// Producer checks, on a scratch copy when one request carries several
	// batches (later ones must chain on earlier ones).
	scratch := p.prod
	if len(raw) > 1 {
		scratch = p.prod.clone()
	}
	dup := make([]bool, len(raw))
	origBase := make([]int64, len(raw))
	ndup := 0
	for i, h := range hs {
		if h.ProducerID < 0 {
			continue
		}
		base, isDup, err := scratch.check(h)
		if err != nil {
			return AppendResult{}, err
		}
		if isDup {
			dup[i], origBase[i] = true, base
			ndup++
			continue
		}
		if len(raw) > 1 {
			h.BaseOffset = 0           // only sequences matter for the chain check
			scratch.apply(h, noMarker) // a producer's batches: never a marker
		}
	}
	res := AppendResult{LogAppendTime: logAppendTime, LogStartOffset: p.logStart, BaseOffset: -1}
	if ndup == len(raw) {
		last := len(raw) - 1
		res.Duplicate, res.BaseOffset, res.LogAppendTime = true, origBase[0], -1
		res.EndOffset = origBase[last] + int64(hs[last].LastOffsetDelta) + 1
		if done != nil {
			if res.EndOffset <= p.durableEnd {
				p.complete(done, nil)
			} else {
				p.pending = append(p.pending, pendingAppend{end: p.logEnd, done: done})
			}
		}
		return res, nil
	}

	// Assign offsets and epochs, and build the write.
	epoch := p.leaderEpoch.Load()
	next := p.logEnd
	var buf []byte
	// The headers of the batches written, in place over hs: entry k is written after entry
	// i >= k was read, and hs is not read again.
	stored := hs[:0]
	for i, b := range raw {
		if dup[i] {
			if res.BaseOffset < 0 {
				res.BaseOffset = origBase[i]
			}
			continue
		}
		batch.SetBaseOffset(b, next)
		batch.SetPartitionLeaderEpoch(b, epoch)
		hs[i].PartitionLeaderEpoch = epoch
		if logAppendTime >= 0 {
			batch.SetLogAppendTime(b, logAppendTime)
			hs[i].MaxTimestamp = logAppendTime
			hs[i].Attributes |= 0x08 // the timestamp-type bit SetLogAppendTime set
		}
		hs[i].BaseOffset = next
		if res.BaseOffset < 0 {
			res.BaseOffset = next
		}
		next = hs[i].LastOffset() + 1
		stored = append(stored, hs[i])
		if len(raw)-ndup == 1 {
			buf = b
		} else {
			buf = append(buf, b...)
		}
	}
	if op, err := p.writeLocked(buf, stored, segmentMs); err != nil {
		p.logStorageError(op, err)
		p.rollbackLocked(err)
		return AppendResult{}, fmt.Errorf("%w: %s: %v", ErrStorage, p.name, err)
	}
	p.updateTailLocked(buf, stored[0].BaseOffset, p.logEnd, true)
	res.EndOffset = p.logEnd
	p.queueLocked(buf, stored, done)
	return res, nil
}

// AppendReplicated appends batches that already carry their offsets and
// leader epochs (a follower's copy of its leader's log): each batch's CRC is
// verified, the first base offset must be the log end (or the first batch an
// empty one holding it: a merged run of removed batches, whose part from the
// log end on is kept) and the batches must
// be contiguous, else nothing is written and the error wraps
// ErrCorruptMessage (bad bytes) or ErrOffsetOutOfRange (wrong offsets).
// Nothing else is checked or changed: no producer checks, timestamps and
// epochs as they are. It takes ownership of records. done is called as for
// Append: once the batches are locally durable, through the same WAL and
// group commit, or dropped.
func (p *Partition) AppendReplicated(records []byte, done func(error)) (AppendResult, error) {
	var oneRaw [1][]byte
	raw, err := batch.SplitInto(oneRaw[:0], records)
	if err != nil {
		return AppendResult{}, mapBatchError(err)
	}
	if len(raw) == 0 {
		return AppendResult{}, fmt.Errorf("%w: no record batch", ErrCorruptMessage)
	}
	hs := make([]batch.Header, len(raw))
	for i, b := range raw {
		if hs[i], err = batch.CheckCRC(b); err != nil {
			return AppendResult{}, mapBatchError(err)
		}
		if i > 0 && hs[i].BaseOffset != hs[i-1].LastOffset()+1 {
			return AppendResult{}, fmt.Errorf("%w: batch at offset %d follows one ending at %d", ErrOffsetOutOfRange, hs[i].BaseOffset, hs[i-1].LastOffset())
		}
	}
	segmentMs := p.Config().SegmentMs

	p.mu.Lock()
	res, werr := p.appendReplicatedLocked(records, hs, segmentMs, done)
	p.mu.Unlock()
	p.runCompletions()
	return res, werr
}

func (p *Partition) appendReplicatedLocked(buf []byte, hs []batch.Header, segmentMs int64, done func(error)) (AppendResult, error) {
	if err := p.appendableLocked(); err != nil {
		return AppendResult{}, err
	}
	if h := hs[0]; h.BaseOffset < p.logEnd && h.NumRecords == 0 && h.LastOffset() >= p.logEnd {
		// An empty batch the leader's cleaner merged from removed batches some of which this
		// log holds (ReplicaSpan): its part from the log end on, as an empty batch of its own.
		h.LastOffsetDelta, h.BaseOffset = int32(h.LastOffset()-p.logEnd), p.logEnd
		nb := batch.BuildCompacted(h, nil, batch.CodecNone)
		buf = append(nb, buf[hs[0].Size():]...)
		hs[0], _ = batch.ParseHeader(nb)
	}
	if hs[0].BaseOffset != p.logEnd {
		return AppendResult{}, fmt.Errorf("%w: %s: batches start at %d, the log ends at %d", ErrOffsetOutOfRange, p.name, hs[0].BaseOffset, p.logEnd)
	}
	if op, err := p.writeLocked(buf, hs, segmentMs); err != nil {
		p.logStorageError(op, err)
		p.rollbackLocked(err)
		return AppendResult{}, fmt.Errorf("%w: %s: %v", ErrStorage, p.name, err)
	}
	p.dropTailLocked()
	p.queueLocked(buf, hs, done)
	return AppendResult{BaseOffset: hs[0].BaseOffset, EndOffset: p.logEnd, LogAppendTime: -1, LogStartOffset: p.logStart}, nil
}

// writeLocked writes batches that carry their offsets (headers hs, bytes buf
// back to back) at the log end: rolls the segment when due (segmentMs: 0
// never by age), writes, indexes, updates the producer state and the epoch
// cache, and moves the log end. On an error it returns the operation that
// failed; the caller decides what a failure means. p.mu held.
//
// The write to the segment file is deferred (it keeps buf, which the caller
// must not change): the appends of one WAL cycle reach the file with one
// pwritev when the first of them is durable (walDone), instead of one pwrite
// each. Until then nothing reads those bytes from the file: reads stop at the
// high watermark, below the durable end; the checkpoint, a roll, a
// truncation and a follower's catch-up write them first (flushLocked).
// Beyond maxUnwrittenBytes, and with Durability "none" (durable once
// written), it writes at once.
func (p *Partition) writeLocked(buf []byte, hs []batch.Header, segmentMs int64) (string, error) {
	if hs[0].BaseOffset != p.logEnd {
		return "append", fmt.Errorf("batches start at %d, the log ends at %d", hs[0].BaseOffset, p.logEnd)
	}
	if invariants.Enabled {
		for i := 1; i < len(hs); i++ {
			if hs[i].BaseOffset != hs[i-1].LastOffset()+1 {
				panic(fmt.Sprintf("engine: %s: batch at %d follows one ending at %d", p.name, hs[i].BaseOffset, hs[i-1].LastOffset()))
			}
		}
	}
	seg := p.active()
	segmentBytes := p.eng.cfg.SegmentBytes
	if b := p.cfg.Load().SegmentBytes; b > 0 && b < segmentBytes {
		segmentBytes = b
	}
	if seg.size > 0 && (seg.size+int64(len(buf)) > segmentBytes || p.segmentAged(seg, segmentMs)) {
		if err := p.rollLocked(); err != nil {
			return "roll segment", err
		}
		seg = p.active()
	}
	if p.eng.cfg.Durability != DurabilityNone && seg.unwrittenBytes+int64(len(buf)) < maxUnwrittenBytes {
		seg.unwritten = append(seg.unwritten, buf)
		seg.unwrittenBytes += int64(len(buf))
	} else if err := seg.flush(buf); err != nil {
		return "write", err
	}
	pos := seg.size
	if seg.size+int64(len(buf))-seg.wbFrom >= writeBehindBytes && !seg.wbAsked {
		seg.wbAsked = true
		p.eng.ckpt.requestWriteback()
	}
	at := pos
	for _, h := range hs {
		seg.observe(h, pos, p.eng.cfg.IndexIntervalBytes)
		coordEpoch := int32(noMarker)
		if h.IsTransactional() {
			coordEpoch = p.observeTxnLocked(seg, h, buf[pos-at:pos-at+int64(h.Size())])
		}
		p.applyLocked(h, coordEpoch)
		p.epochs.observe(h.PartitionLeaderEpoch, h.BaseOffset)
		pos += int64(h.Size())
	}
	p.logEnd = seg.end
	p.ckptDirty = true
	p.checkOffsetsLocked("append")
	return "", nil
}

// queueLocked sends what writeLocked just wrote (hs, buf) to the WAL, queued
// under p.mu so the WAL holds a partition's appends in offset order, and
// makes done wait for its durability; with Durability "none" it calls done
// at once. p.mu held.
func (p *Partition) queueLocked(buf []byte, hs []batch.Header, done func(error)) {
	var idem []prodBatch
	pos := 0
	for _, h := range hs {
		if h.ProducerID >= 0 {
			idem = append(idem, prodBatch{h: h, coordEpoch: markerEpoch(h, buf[pos:pos+h.Size()])})
		}
		pos += h.Size()
	}
	if p.eng.cfg.Durability == DurabilityNone {
		// Written is durable here, and the WAL gets nothing: the segment is the only copy
		// (see noneWrote).
		for _, b := range idem {
			p.durableProd.apply(b.h, b.coordEpoch)
		}
		p.advanceDurableLocked(p.logEnd, p.active().mark())
		if done != nil {
			p.complete(done, nil)
		}
		p.eng.noneWrote(int64(len(buf)))
		return
	}
	meta := walDataHeader(p.topicID, p.tp.Partition, hs[0].BaseOffset)
	p.lastID++
	id := p.lastID
	p.pending = append(p.pending, pendingAppend{id: id, end: p.logEnd, done: done, headers: idem})
	gen, end, mark := p.gen, p.logEnd, p.active().mark()
	// A record rolled back before the WAL writes it (an earlier record of
	// the partition failed) is dropped, so it cannot resurface at replay.
	p.eng.wal.AppendChecked(meta, buf, func() bool { return p.genSeen.Load() == gen },
		func(_ uint64, err error) { p.walDone(gen, id, end, mark, err) })
}

// walDone is the WAL's completion of append id that ended at end (whose
// position is mark), made under generation gen. It runs on a WAL
// goroutine, in append order.
func (p *Partition) walDone(gen, id uint64, end int64, mark segMark, err error) {
	p.mu.Lock()
	if p.closed || gen != p.gen {
		// Rolled back (or deleted) since: its done already ran.
		p.mu.Unlock()
		return
	}
	switch {
	case err != nil:
		// A failure rolls back even for an append a truncation cut off:
		// the part of it below the cut is not durable either.
		p.logStorageError("wal", err)
		p.rollbackLocked(err)
	case id >= p.voidLo && id <= p.voidHi:
		// Cut off by TruncateTo (its done already ran); the truncation
		// record's completion advances the durable end.
	default:
		// What becomes durable must be in the segment file first: reads go up to the
		// durable end (a failed write rolls back, as a failed WAL write does).
		if p.flushLocked() == nil {
			p.advanceDurableLocked(end, mark)
		}
	}
	p.mu.Unlock()
	p.runCompletions()
}

// maxUnwrittenBytes bounds a partition's deferred segment writes (writeLocked): a WAL
// cycle's appends in one pwritev, yet no long write on the completion path.
const maxUnwrittenBytes = 64 << 10

// flush writes the segment's deferred appends, then extra (when not nil), to its file. On an
// error they stay deferred.
func (s *segment) flush(extra []byte) error {
	bufs := s.unwritten
	if extra != nil {
		bufs = append(bufs, extra)
	}
	if len(bufs) == 0 {
		return nil
	}
	if _, err := vfs.WriteVAt(s.file, bufs, s.written()); err != nil {
		return err
	}
	// Drop the buffers and keep bufs' array for the next appends: it is s.unwritten's, or the
	// one append grew for extra (without keeping it, every undeferred write allocated one).
	clear(bufs)
	s.unwritten, s.unwrittenBytes = bufs[:0], 0
	return nil
}

// flushLocked writes the active segment's deferred appends to its file (only the active
// segment has any: a roll writes them first). They all lie above the durable end, so a
// failure rolls the partition back, as a failed WAL write does, and is returned. p.mu held.
func (p *Partition) flushLocked() error {
	seg := p.active()
	if seg.unwrittenBytes == 0 {
		return nil
	}
	if err := seg.flush(nil); err != nil {
		p.logStorageError("write", err)
		p.rollbackLocked(err)
		return fmt.Errorf("%w: %s: %v", ErrStorage, p.name, err)
	}
	return nil
}

// segmentAged reports whether seg is older than segment.ms (ms): its first batch's timestamp is
// that far behind the clock (Kafka's rule; a segment without timestamps never ages).
func (p *Partition) segmentAged(seg *segment, ms int64) bool {
	return ms > 0 && seg.firstTs >= 0 && p.eng.now()-seg.firstTs >= ms
}

// rollLocked seals the active segment and starts a new one at the log end.
func (p *Partition) rollLocked() error {
	old := p.active()
	// A sealed segment has no deferred writes: the checkpoint syncs it as it is. A failure
	// leaves them deferred, for walDone's flush to retry (and roll back).
	if err := old.flush(nil); err != nil {
		return err
	}
	seg, err := newSegment(p.eng.fs, p.dir, p.logEnd)
	if err != nil {
		return err
	}
	// The producer state after the sealed segment: recovery starts from it
	// instead of reading the sealed segments' headers.
	p.snapQueue = append(p.snapQueue, p.snapshotLocked())
	p.segments = append(p.segments, seg)
	p.unsynced = append(p.unsynced, old)
	p.dirDirty = true
	return nil
}

// advanceDurableLocked moves the durable end to end (whose position is m),
// queues the OnDurable call for it and then the done callbacks of the
// appends it covers. p.mu held.
func (p *Partition) advanceDurableLocked(end int64, m segMark) {
	if end <= p.durableEnd {
		return
	}
	p.durableEnd, p.durableMark = end, m
	if p.followDurable {
		p.hw.Store(end)
		p.hwMark = m
	}
	p.durableLocked(end)
	n := 0
	for n < len(p.pending) && p.pending[n].end <= end {
		pa := p.pending[n]
		for _, b := range pa.headers {
			p.durableProd.apply(b.h, b.coordEpoch)
		}
		if pa.done != nil {
			p.complete(pa.done, nil)
		}
		n++
	}
	p.pending = p.pending[n:]
	p.checkOffsetsLocked("durable end advance")
}
