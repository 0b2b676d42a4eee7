package engine

// A leader keeps its latest appends in memory, as the buffers they arrived in, so that it can
// stream them to its followers with one writev per round (ReplicaTail) instead of a header
// write and a sendfile per partition; a follower that falls behind the kept tail is served
// from the segment files (ReplicaSpan). The buffers are the producers' requests, owned by the
// engine since Append and never changed after it: keeping them costs memory, no copy.
//
// The tail is bounded per partition (maxTailPartitionBytes) and across the engine
// (Config.ReplicaTailBytes); Config.ReplicaTailBytes 0 keeps none (one node has no followers).
// It holds exactly the batches ending at the log end it was last extended to, back to back:
// any write that is not a leader append, a truncation and a rollback break that, and
// ReplicaTail serves nothing until a leader append starts a new tail.

// maxTailPartitionBytes bounds one partition's tail: a few rounds of fresh appends, which is
// what a follower keeping up needs.
const maxTailPartitionBytes = 1 << 20

// maxTailEntries bounds the entries of one tail (many tiny appends).
const maxTailEntries = 256

// tailEntry is one leader append's batches.
type tailEntry struct {
	base, end int64 // offsets: the first batch's base, after the last batch
	buf       []byte
	charge    int64 // what the entry counts against the bounds: the capacity it keeps alive
}

// replicaTail is a partition's kept appends, oldest first. Guarded by Partition.mu.
type replicaTail struct {
	entries []tailEntry
	bytes   int64
}

// updateTailLocked records a leader append's batches [base, end) in buf, written at the log
// end; any other write (extend false) drops the tail. p.mu held.
func (p *Partition) updateTailLocked(buf []byte, base, end int64, extend bool) {
	t := &p.tail
	limit := p.eng.cfg.ReplicaTailBytes
	if !extend || limit <= 0 {
		p.dropTailLocked()
		return
	}
	if n := len(t.entries); n > 0 && t.entries[n-1].end != base {
		p.dropTailLocked()
	}
	// The capacity, not the length: a batch is a slice of its request, and the request stays
	// alive as long as the entry does.
	charge := int64(cap(buf))
	for len(t.entries) > 0 && (t.bytes+charge > maxTailPartitionBytes || len(t.entries) >= maxTailEntries ||
		p.eng.tailBytes.Load()+charge > limit) {
		p.popTailLocked()
	}
	if charge > maxTailPartitionBytes || p.eng.tailBytes.Load()+charge > limit {
		return // too big to keep: its followers read it from the segment
	}
	t.entries = append(t.entries, tailEntry{base: base, end: end, buf: buf, charge: charge})
	t.bytes += charge
	p.eng.tailBytes.Add(charge)
}

func (p *Partition) popTailLocked() {
	t := &p.tail
	e := t.entries[0]
	t.entries[0] = tailEntry{}
	t.entries = t.entries[1:]
	t.bytes -= e.charge
	p.eng.tailBytes.Add(-e.charge)
}

// dropTailLocked forgets the tail. p.mu held.
func (p *Partition) dropTailLocked() {
	t := &p.tail
	if len(t.entries) == 0 {
		return
	}
	p.eng.tailBytes.Add(-t.bytes)
	clear(t.entries)
	t.entries, t.bytes = t.entries[:0], 0
}

// ReplicaTail appends to bufs the batches from offset on that the partition still holds in
// memory, as the buffers they were appended in: at least one append's, then more while they
// fit in maxBytes. It returns the offset after them and their length; ok is false when offset
// is not where a kept append starts (older, or inside one), and the caller reads the segment
// (ReplicaSpan). The buffers must not be changed.
func (p *Partition) ReplicaTail(offset int64, maxBytes int, bufs [][]byte) (_ [][]byte, end, n int64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := &p.tail
	if len(t.entries) == 0 || t.entries[len(t.entries)-1].end != p.logEnd || offset < p.logStart {
		return bufs, 0, 0, false // a truncation or a rollback since: the segment is the truth
	}
	lo, hi := 0, len(t.entries)
	for lo < hi {
		mid := (lo + hi) / 2
		if t.entries[mid].base < offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(t.entries) || t.entries[lo].base != offset {
		return bufs, 0, 0, false
	}
	for _, e := range t.entries[lo:] {
		if n > 0 && n+int64(len(e.buf)) > int64(maxBytes) {
			break
		}
		bufs = append(bufs, e.buf)
		n += int64(len(e.buf))
		end = e.end
	}
	return bufs, end, n, true
}
