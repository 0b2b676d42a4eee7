package engine

import (
	"fmt"

	"github.com/ringtail/ringtail/vfs"
)

// Span is a run of whole record batches in one segment file, as stored: what a leader sends a
// follower, straight from the file (sendfile) rather than through a buffer.
type Span struct {
	File      vfs.File
	Pos       int64 // byte position of the first batch in File
	Len       int64 // bytes, whole batches
	Offset    int64 // offset of the first batch
	EndOffset int64 // offset after the last batch: where the next span starts
	// next is where the following span starts in the file when it is in this segment (the
	// caller passes the span back to ReplicaSpan to skip the index lookup and the scan).
	segBase int64
}

// ReplicaSpan returns the batches a follower needs next: from offset, which must be where a
// batch starts (a follower's log end always is, once its history agrees with this log's), up
// to the log end — above the high watermark and the durable end too, as a leader streams what
// it wrote before its own sync completes. The span lies in one segment; it holds at most
// maxBytes unless its first batch alone is larger. At the log end it is empty (Len 0).
//
// prev, when not nil, is the span sent before, ending at offset: its position saves the index
// lookup and the scan for the first batch.
//
// The bytes stay valid while the segment exists and is not truncated: a retention pass or a
// TruncateTo may close the file under a reader, whose read then fails (the caller starts over).
func (p *Partition) ReplicaSpan(offset int64, maxBytes int, prev *Span) (Span, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return Span{}, ErrClosed
	}
	// Below the log start only from the batch that holds it (ReplicaStart): DeleteRecords may
	// have put the log start inside a batch, and a replica's log starts where a batch does.
	below, start := offset < p.logStart, p.logStart
	if offset < p.segments[0].base || offset > p.logEnd {
		end := p.logEnd
		p.mu.Unlock()
		return Span{}, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, offset, start, end)
	}
	if offset == p.logEnd {
		p.mu.Unlock()
		return Span{Offset: offset, EndOffset: offset}, nil
	}
	i := p.segmentIndex(offset)
	seg := p.segments[i]
	limit, segEnd := seg.size, seg.end
	if seg.unwrittenBytes > 0 {
		// A follower catching up reads the file (fresh appends go from the tail). Below the
		// deferred appends it reads what is written, leaving them to share their WAL cycle's
		// write; only a follower that reached them has them written now.
		if writtenEnd := seg.unwrittenBase(); offset < writtenEnd {
			limit, segEnd = seg.written(), writtenEnd
		} else if err := p.flushLocked(); err != nil {
			p.mu.Unlock()
			p.runCompletions() // the appends the rollback failed
			return Span{}, err
		}
	}
	// The span before ends where this one starts: no lookup, no scan for the first batch.
	known := !below && prev != nil && prev.File == seg.file && prev.segBase == seg.base && prev.EndOffset == offset && prev.Pos+prev.Len <= limit
	var pos int64
	if known {
		pos = prev.Pos + prev.Len
	} else {
		pos = seg.lookup(offset)
	}
	p.mu.Unlock()

	// The header reader (and its buffer) only when a scan is needed: a follower keeping up
	// gets each span from the one before, whole, and this runs once per span per follower.
	var hr *headerReader
	if !known || limit-pos > int64(maxBytes) {
		hr = newHeaderReader(seg.file)
	}
	for !known {
		h, err := hr.header(pos, limit)
		if err != nil {
			return Span{}, readErr(err)
		}
		if h.BaseOffset == offset {
			if below && h.LastOffset() < start {
				return Span{}, fmt.Errorf("%w: %d is below the log start %d, and its batch does not hold it", ErrOffsetOutOfRange, offset, start)
			}
			break
		}
		if h.NumRecords == 0 && h.BaseOffset < offset && h.LastOffset() >= offset {
			// An empty batch the cleaner merged from a run of removed ones, around the log end
			// of a follower that lagged behind the high watermark: sent whole, the follower
			// keeps its part from offset on (AppendReplicated).
			break
		}
		if h.BaseOffset > offset || h.LastOffset() >= offset {
			return Span{}, fmt.Errorf("%w: %s: %d is inside the batch at %d, not where one starts", ErrOffsetOutOfRange, p.name, offset, h.BaseOffset)
		}
		pos += int64(h.Size())
	}
	sp := Span{File: seg.file, Pos: pos, Offset: offset, segBase: seg.base}
	if limit-pos <= int64(maxBytes) {
		sp.Len, sp.EndOffset = limit-pos, segEnd
		return sp, nil
	}
	// More than maxBytes: whole batches up to it, at least one.
	end := pos
	next := offset
	for end < limit {
		h, err := hr.header(end, limit)
		if err != nil {
			return Span{}, readErr(err)
		}
		if end > pos && end+int64(h.Size())-pos > int64(maxBytes) {
			break
		}
		end += int64(h.Size())
		next = h.LastOffset() + 1
	}
	sp.Len, sp.EndOffset = end-pos, next
	return sp, nil
}

// LastLogEpoch returns the leader epoch of the log's last batch (-1 when the log holds none
// with an epoch): what a follower fetches with as its last fetched epoch.
func (p *Partition) LastLogEpoch() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epochs.latest()
}

// ReplicaStart returns where a follower whose log ends below the log start restarts its log
// (ResetTo): the base offset of the batch holding the log start, which DeleteRecords may have
// put inside a batch (a replica's log starts where a batch does; it then moves its log start
// up to the leader's).
func (p *Partition) ReplicaStart() (int64, error) {
	p.mu.Lock()
	start, end := p.logStart, p.logEnd
	if start >= end {
		p.mu.Unlock()
		return start, nil
	}
	seg := p.segments[p.segmentIndex(start)]
	if seg.unwrittenBytes > 0 {
		if err := p.flushLocked(); err != nil {
			p.mu.Unlock()
			p.runCompletions() // the appends the rollback failed
			return 0, err
		}
	}
	pos, limit := seg.lookup(start), seg.size
	p.mu.Unlock()
	hr := newHeaderReader(seg.file)
	for pos < limit {
		h, err := hr.header(pos, limit)
		if err != nil {
			return 0, readErr(err)
		}
		if h.LastOffset() >= start {
			return h.BaseOffset, nil
		}
		pos += int64(h.Size())
	}
	return start, nil
}
