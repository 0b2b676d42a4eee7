package engine

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ringtail/ringtail/engine/batch"
)

// viewLocked returns the segment at index i and how far it may be read
// (up to the high watermark). A read takes this under p.mu and does its
// file I/O without the lock: everything below the high watermark stays as
// it is while appends go on (only a TruncateTo below it, which a replica
// never needs, changes such bytes). p.mu held.
func (p *Partition) viewLocked(i int) (seg *segment, limit int64) {
	seg = p.segments[i]
	switch {
	case seg == p.hwMark.seg:
		return seg, p.hwMark.size
	case seg.base < p.hwMark.seg.base:
		return seg, seg.size
	default:
		return seg, 0
	}
}

// segmentIndex returns the index of the segment holding offset. p.mu held.
func (p *Partition) segmentIndex(offset int64) int {
	i := len(p.segments) - 1
	for i > 0 && p.segments[i].base > offset {
		i--
	}
	return i
}

func readErr(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %v", ErrStorage, err)
}

// Read returns whole record batches, as stored, starting with the batch that
// contains offset and never reaching past the high watermark, at most
// maxBytes in total except that with minOneBatch the first batch is returned
// whole even when larger. An offset from the high watermark to the log end
// gives no records and no error (as Kafka answers a consumer: a new leader's
// high watermark may lag offsets its predecessor had committed, and a consumer
// there must wait, not reset); an offset below the log start or past the log
// end gives ErrOffsetOutOfRange.
func (p *Partition) Read(offset int64, maxBytes int, minOneBatch bool) (ReadResult, error) {
	return p.ReadIsolated(offset, maxBytes, minOneBatch, false)
}

// ReadIsolated is Read with Kafka's isolation level: with readCommitted
// the read stops at the last stable offset (as if it were the high
// watermark) and the result lists the aborted transactions overlapping the
// batches returned (txn.go).
func (p *Partition) ReadIsolated(offset int64, maxBytes int, minOneBatch, readCommitted bool) (ReadResult, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ReadResult{}, ErrClosed
	}
	hw := p.hw.Load()
	res := ReadResult{HighWatermark: hw, LastStableOffset: p.lastStableLocked(), LogStartOffset: p.logStart}
	if offset < p.logStart || offset > p.logEnd {
		p.mu.Unlock()
		return res, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, offset, p.logStart, p.logEnd)
	}
	upTo := hw
	if readCommitted {
		upTo = res.LastStableOffset
	}
	if offset >= upTo {
		p.mu.Unlock()
		return res, nil
	}
	seg, limit := p.viewLocked(p.segmentIndex(offset))
	if upTo < hw {
		var err error
		if seg, limit, err = p.stableViewLocked(p.segmentIndex(offset), upTo); err != nil {
			p.mu.Unlock()
			return res, readErr(err)
		}
	}
	start := seg.lookup(offset)
	p.mu.Unlock()

	// Find the batch containing offset.
	hr := newHeaderReader(seg.file)
	pos := start
	var first batch.Header
	for {
		if pos >= limit {
			return res, fmt.Errorf("%w: %s: offset %d not found below position %d of %s", ErrStorage, p.name, offset, limit, seg.path)
		}
		h, err := hr.header(pos, limit)
		if err != nil {
			return res, readErr(err)
		}
		if h.LastOffset() >= offset {
			first = h
			break
		}
		pos += int64(h.Size())
	}
	want := int64(maxBytes)
	if want > limit-pos {
		want = limit - pos
	}
	if want < int64(first.Size()) {
		if !minOneBatch {
			return res, nil
		}
		want = int64(first.Size())
	}
	buf := make([]byte, want)
	if _, err := seg.file.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
		return res, readErr(err)
	}
	// Keep whole batches only.
	n := 0
	lastOffset := offset
	for n+batch.HeaderSize <= len(buf) {
		h, err := batch.ParseHeader(buf[n:])
		if err != nil || n+h.Size() > len(buf) {
			break
		}
		n += h.Size()
		lastOffset = h.LastOffset()
	}
	res.Records = buf[:n]
	if readCommitted && n > 0 {
		p.mu.Lock()
		res.Aborted = p.abortedLocked(offset, lastOffset)
		p.mu.Unlock()
	}
	return res, nil
}

// BytesToRead returns about how many bytes a read from offset would find (up to the high
// watermark, or with readCommitted the last stable offset) without reading them: from the
// indexed position at or before offset's batch to the position of the end. It may count up to
// an index interval more than a read returns, never a batch less, and it is 0 exactly when a
// read would return nothing. A parked fetch compares it with its MinBytes on every move of the
// high watermark, as Kafka's DelayedFetch compares positions, instead of reading the records
// again each time. Offsets outside the log give ErrOffsetOutOfRange, as a read would.
func (p *Partition) BytesToRead(offset int64, readCommitted bool) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	if offset < p.logStart || offset > p.logEnd {
		return 0, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, offset, p.logStart, p.logEnd)
	}
	upTo := p.hw.Load()
	endSeg, endPos := p.hwMark.seg, p.hwMark.size
	if lso := p.lastStableLocked(); readCommitted && lso < upTo {
		upTo = lso
		end := p.segments[p.segmentIndex(lso)]
		endSeg, endPos = end, end.lookup(lso)
	}
	if offset >= upTo {
		return 0, nil
	}
	var n int64
	for i := p.segmentIndex(offset); i < len(p.segments); i++ {
		seg := p.segments[i]
		start, end := int64(0), seg.size
		if seg.base <= offset {
			start = seg.lookup(offset)
		}
		if seg == endSeg {
			end = endPos
		}
		n += max(end-start, 0)
		if seg == endSeg {
			break
		}
	}
	// A stable end indexed below offset's own position still has offset's batch to read.
	return max(n, 1), nil
}

// OffsetForTime returns the offset and timestamp of the first record whose
// timestamp is >= ts (Kafka ListOffsets by timestamp): the time index finds
// the first batch whose max timestamp qualifies, then that batch's records
// are decoded. ok is false when no record qualifies. Only records below the
// high watermark are considered.
func (p *Partition) OffsetForTime(ts int64) (offset, timestamp int64, ok bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, 0, false
	}
	type cand struct {
		seg          *segment
		start, limit int64
	}
	var cands []cand
	for i, s := range p.segments {
		seg, limit := p.viewLocked(i)
		if limit == 0 {
			break
		}
		// A sealed segment's maxTs covers exactly its bytes; for the hw
		// segment it may include unreadable batches, so scan it anyway.
		if seg.maxTs < ts && seg != p.hwMark.seg {
			continue
		}
		if seg == p.hwMark.seg && p.hwMark.maxTs < ts {
			break
		}
		cands = append(cands, cand{s, s.timeLookup(ts), limit})
	}
	from := p.logStart // records below it were deleted (DeleteRecords) though still on disk
	p.mu.Unlock()
	for _, c := range cands {
		hr := newHeaderReader(c.seg.file)
		for pos := c.start; pos < c.limit; {
			h, err := hr.header(pos, c.limit)
			if err != nil {
				p.eng.log.Error("engine: reading batch header", "partition", p.name, "segment", c.seg.path, "err", err)
				return 0, 0, false
			}
			if h.MaxTimestamp >= ts && h.LastOffset() >= from {
				if off, rts, found := p.recordAtOrAfter(c.seg, pos, h, ts, from); found {
					return off, rts, true
				}
			}
			pos += int64(h.Size())
		}
	}
	return 0, 0, false
}

// recordAtOrAfter decodes the batch at pos and returns its first record at
// or after offset from whose timestamp is >= ts. In a LogAppendTime batch
// every record carries the batch's max timestamp.
func (p *Partition) recordAtOrAfter(seg *segment, pos int64, h batch.Header, ts, from int64) (offset, timestamp int64, ok bool) {
	if h.LogAppendTime() {
		return max(h.BaseOffset, from), h.MaxTimestamp, true
	}
	buf := make([]byte, h.Size())
	if _, err := seg.file.ReadAt(buf, pos); err != nil {
		p.eng.log.Error("engine: reading batch", "partition", p.name, "segment", seg.path, "err", err)
		return 0, 0, false
	}
	recs, err := batch.Records(buf)
	if err != nil {
		p.eng.log.Error("engine: decoding batch", "partition", p.name, "segment", seg.path, "offset", h.BaseOffset, "err", err)
		return 0, 0, false
	}
	for _, r := range recs {
		off := h.BaseOffset + int64(r.OffsetDelta)
		if rts := h.FirstTimestamp + r.TimestampDelta; rts >= ts && off >= from {
			return off, rts, true
		}
	}
	return 0, 0, false
}

// MaxTimestamp returns the largest batch max timestamp below the high
// watermark and the last offset of that batch; (-1, -1) for an empty log.
func (p *Partition) MaxTimestamp() (offset, ts int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	offset, ts = -1, -1
	for _, s := range p.segments {
		mts, moff := s.maxTs, s.maxTsOffset
		if s == p.hwMark.seg {
			mts, moff = p.hwMark.maxTs, p.hwMark.maxTsOffset
		} else if s.base > p.hwMark.seg.base {
			break
		}
		if mts > ts {
			offset, ts = moff, mts
		}
	}
	return offset, ts
}
