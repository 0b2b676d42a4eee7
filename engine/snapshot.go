package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs"
)

// Producer-state snapshots: what recovery would otherwise rebuild by
// reading every batch header of the log. A snapshot holds the idempotent
// producer state (producers) and the leader-epoch cache as they were after
// every batch below its offset, so recovery reads only the headers that
// follow the newest snapshot it can trust.
//
// When: a segment roll queues one at the new segment's base (the state
// then is the state after the sealed segment); the checkpoint that has
// made the sealed segment durable writes it, once the offset is below the
// durable end (a rollback never goes below it, so a written snapshot never
// describes batches a rollback undid). A clean Close writes one at the log
// end. The two newest files are kept.
//
// Trust: a snapshot names the last batch below its offset (segment,
// position, CRC-32C). Recovery takes the newest snapshot at or below the
// log end whose file checks out (magic, length, CRC-32C) and whose named
// batch is in the log, at that position, ending at its offset, with that
// CRC; otherwise the next older one, and without any, it reads every
// header from the log start (as before snapshots existed). A truncation
// removes the snapshots beyond its cut; one whose removal a crash undid
// names a batch the log no longer holds (or holds with other bytes: the
// CRC covers the producer id, sequence and records), so it is not taken.
// A crash while a snapshot is written leaves the previous file (they are
// written to a temporary file, synced and renamed).
//
// File <offset, 20 digits>.snapshot in the partition directory, little
// endian (Ringtail's own format, not Kafka's):
//
//	magic u32 "RPS1" | crc32c u32 of what follows | offset i64 |
//	segment base i64 | position i64 (-1: no batch below offset) | batch crc u32 |
//	epochs u32, then (epoch i32, start i64)... |
//	producers u32, then (id i64, epoch i16, batches u8, then (first seq i32, last seq i32, base offset i64)...,
//	  ongoing transaction's first offset i64 (-1: none),
//	  last marker's coordinator epoch i32 (-1: none), last batch's max timestamp i64 (-1: none))... |
//	transactions seen u8 (1: a transactional batch lies below offset)
//
// "RPS1" files (written before transactions) lack the transaction fields and
// are still read: they describe no transaction. "RPS2" files lack the
// coordinator epoch and timestamp and are still read: without them the
// next marker of any coordinator is taken (as before the check existed).

const (
	snapshotSuffix = ".snapshot"
	snapMagic      = 0x33535052 // "RPS3"
	snapMagicV2    = 0x32535052 // "RPS2": no coordinator epoch, no timestamp
	snapMagicV1    = 0x31535052 // "RPS1": no transaction field
	snapsKept      = 2
)

// prodSnapshot is the producer state and epoch cache after every batch
// below offset.
type prodSnapshot struct {
	offset  int64
	lastSeg int64  // base of the segment holding the last batch below offset
	lastPos int64  // its position there; -1 when no batch lies below offset
	lastCRC uint32 // its CRC-32C
	prod    producers
	epochs  []epochEntry
	// txnSeen: a transactional batch lies below offset, so the aborted transactions there
	// matter (recovery wants them from .txnindex files, txn.go).
	txnSeen bool
}

func snapshotPath(dir string, offset int64) string { return segmentName(dir, offset, snapshotSuffix) }

// parseSnapshotName returns the offset of a "<20 digits>.snapshot" name.
func parseSnapshotName(name string) (int64, bool) {
	digits, ok := strings.CutSuffix(name, snapshotSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	off, err := strconv.ParseInt(digits, 10, 64)
	return off, err == nil && off >= 0
}

// snapshotLocked is the state at the log end, naming the last batch. p.mu held.
func (p *Partition) snapshotLocked() *prodSnapshot {
	s := &prodSnapshot{offset: p.logEnd, lastPos: -1, prod: p.prod.clone(), epochs: slices.Clone(p.epochs.entries), txnSeen: p.txn.seen}
	for i := len(p.segments) - 1; i >= 0; i-- {
		if seg := p.segments[i]; seg.lastPos >= 0 {
			s.lastSeg, s.lastPos, s.lastCRC = seg.base, seg.lastPos, seg.lastCRC
			break
		}
	}
	return s
}

func (s *prodSnapshot) encode() []byte {
	b := make([]byte, 8, 64+24*len(s.epochs)+64*len(s.prod))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.offset))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.lastSeg))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.lastPos))
	b = binary.LittleEndian.AppendUint32(b, s.lastCRC)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.epochs)))
	for _, e := range s.epochs {
		b = binary.LittleEndian.AppendUint32(b, uint32(e.epoch))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.start))
	}
	ids := make([]int64, 0, len(s.prod))
	for id := range s.prod {
		ids = append(ids, id)
	}
	slices.Sort(ids) // the same state, the same bytes
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		st := s.prod[id]
		b = binary.LittleEndian.AppendUint64(b, uint64(id))
		b = binary.LittleEndian.AppendUint16(b, uint16(st.epoch))
		b = append(b, byte(len(st.batches)))
		for _, r := range st.batches {
			b = binary.LittleEndian.AppendUint32(b, uint32(r.firstSeq))
			b = binary.LittleEndian.AppendUint32(b, uint32(r.lastSeq))
			b = binary.LittleEndian.AppendUint64(b, uint64(r.baseOffset))
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(st.txnFirst))
		b = binary.LittleEndian.AppendUint32(b, uint32(st.coordEpoch))
		b = binary.LittleEndian.AppendUint64(b, uint64(st.lastTs))
	}
	seen := byte(0)
	if s.txnSeen {
		seen = 1
	}
	b = append(b, seen)
	binary.LittleEndian.PutUint32(b, snapMagic)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return b
}

// errBadSnapshot: a snapshot file that does not decode.
var errBadSnapshot = errors.New("engine: bad producer snapshot")

func decodeSnapshot(b []byte) (*prodSnapshot, error) {
	if len(b) < 8 || binary.LittleEndian.Uint32(b[4:]) != crc32.Checksum(b[8:], castagnoli) {
		return nil, fmt.Errorf("%w: magic or checksum", errBadSnapshot)
	}
	magic := binary.LittleEndian.Uint32(b)
	v1, v2 := magic == snapMagicV1, magic == snapMagicV2
	if !v1 && !v2 && magic != snapMagic {
		return nil, fmt.Errorf("%w: magic or checksum", errBadSnapshot)
	}
	r := snapReader{b: b[8:]}
	s := &prodSnapshot{offset: r.i64(), lastSeg: r.i64(), lastPos: r.i64(), lastCRC: r.u32(), prod: producers{}}
	n := r.count(12)
	for i := 0; i < n; i++ {
		s.epochs = append(s.epochs, epochEntry{epoch: int32(r.u32()), start: r.i64()})
	}
	n = r.count(11)
	for i := 0; i < n; i++ {
		id := r.i64()
		st := producerState{epoch: int16(r.u16()), txnFirst: -1, coordEpoch: noMarker, lastTs: -1, lastMarker: -1}
		nb := r.u8()
		if nb > producerWindow {
			r.bad = true
		}
		for j := 0; j < nb && !r.bad; j++ {
			st.batches = append(st.batches, seqRange{firstSeq: int32(r.u32()), lastSeq: int32(r.u32()), baseOffset: r.i64()})
		}
		if !v1 {
			st.txnFirst = r.i64()
		}
		if !v1 && !v2 {
			st.coordEpoch, st.lastTs = int32(r.u32()), r.i64()
		}
		s.prod[id] = st
	}
	if !v1 {
		s.txnSeen = r.u8() == 1
	}
	if r.bad || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: truncated or trailing bytes", errBadSnapshot)
	}
	return s, nil
}

// snapReader reads little-endian fields; a read past the end sets bad.
type snapReader struct {
	b   []byte
	bad bool
}

func (r *snapReader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
func (r *snapReader) u8() int     { return int(r.take(1)[0]) }
func (r *snapReader) u16() uint16 { return binary.LittleEndian.Uint16(r.take(2)) }
func (r *snapReader) u32() uint32 { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *snapReader) i64() int64  { return int64(binary.LittleEndian.Uint64(r.take(8))) }

// count reads an element count, refusing one the remaining bytes cannot hold.
func (r *snapReader) count(minSize int) int {
	n := int(r.u32())
	if n*minSize > len(r.b) {
		r.bad = true
		return 0
	}
	return n
}

// writeSnapshot writes s durably (temporary file, synced, renamed, directory synced).
func (p *Partition) writeSnapshot(s *prodSnapshot) error {
	return vfs.WriteFileAtomic(p.eng.fs, snapshotPath(p.dir, s.offset), s.encode())
}

// snapshotWritten records the file of a snapshot just written and removes
// all but the snapsKept newest. p.mu not held.
func (p *Partition) snapshotWritten(off int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if !slices.Contains(p.snapFiles, off) {
		p.snapFiles = append(p.snapFiles, off)
		slices.Sort(p.snapFiles)
	}
	for len(p.snapFiles) > snapsKept {
		p.removeSnapshotLocked(p.snapFiles[0])
	}
}

// removeSnapshotLocked removes one snapshot file. p.mu held.
func (p *Partition) removeSnapshotLocked(off int64) {
	if err := p.eng.fs.Remove(snapshotPath(p.dir, off)); err != nil && !errors.Is(err, os.ErrNotExist) {
		p.eng.log.Warn("engine: removing a producer snapshot", "partition", p.name, "offset", off, "err", err)
	}
	p.snapFiles = slices.DeleteFunc(p.snapFiles, func(x int64) bool { return x == off })
	p.dirDirty = true
}

// dropSnapshotsAboveLocked forgets the snapshots, queued or written, of
// offsets beyond end: the log was cut back to end. p.mu held.
func (p *Partition) dropSnapshotsAboveLocked(end int64) {
	p.snapQueue = slices.DeleteFunc(p.snapQueue, func(s *prodSnapshot) bool { return s.offset > end })
	for _, off := range slices.Clone(p.snapFiles) {
		if off > end {
			p.removeSnapshotLocked(off)
		}
	}
}

// takeDueSnapshotsLocked returns the queued snapshots at or below the
// durable end, for a checkpoint to write once it has synced the segments
// below them (they were sealed, and queued for that sync, under the same
// lock). p.mu held.
func (p *Partition) takeDueSnapshotsLocked() []*prodSnapshot {
	n := 0
	for n < len(p.snapQueue) && p.snapQueue[n].offset <= p.durableEnd {
		n++
	}
	due := p.snapQueue[:n:n]
	p.snapQueue = p.snapQueue[n:]
	return due
}

// verifySnapshot checks that the batch s names is in the log as it was:
// in the segment, at the position, ending at the snapshot's offset, with
// the CRC. A snapshot with no batch below it is good only for a log that
// starts at its offset.
func (p *Partition) verifySnapshot(s *prodSnapshot) error {
	if s.lastPos < 0 {
		if s.offset != p.segments[0].base {
			return fmt.Errorf("names no batch, and the log starts at %d", p.segments[0].base)
		}
		return nil
	}
	var seg *segment
	for _, x := range p.segments {
		if x.base == s.lastSeg {
			seg = x
		}
	}
	if seg == nil || s.lastPos >= seg.size {
		return fmt.Errorf("segment %d holds no batch at position %d", s.lastSeg, s.lastPos)
	}
	h, err := newHeaderReader(seg.file).header(s.lastPos, seg.size)
	if err != nil {
		return err
	}
	if h.LastOffset()+1 != s.offset || h.CRC != s.lastCRC {
		return fmt.Errorf("the batch at position %d of segment %d ends at %d with crc %#08x, the snapshot says %d and %#08x",
			s.lastPos, s.lastSeg, h.LastOffset()+1, h.CRC, s.offset, s.lastCRC)
	}
	return p.verifyOpenTxns(s)
}

// verifyOpenTxns checks that the first batch of every transaction s holds open is still in
// the log. The log cleaner removes a transaction's marker only once nothing else of it is left,
// so a snapshot taken between its batches and its marker describes a transaction the log can no
// longer close: its first batch is gone (or is an empty batch without a producer). A first batch
// below the first segment went with a retention pass, as before cleaning existed.
func (p *Partition) verifyOpenTxns(s *prodSnapshot) error {
	for pid, st := range s.prod {
		if st.txnFirst < p.segments[0].base {
			continue
		}
		var seg *segment
		for _, x := range p.segments {
			if x.base <= st.txnFirst && st.txnFirst < x.end {
				seg = x
			}
		}
		if seg == nil {
			return fmt.Errorf("producer %d's open transaction starts at %d, outside the log", pid, st.txnFirst)
		}
		hr := newHeaderReader(seg.file)
		for pos := seg.lookup(st.txnFirst); ; {
			h, err := hr.header(pos, seg.size)
			if err != nil {
				return fmt.Errorf("producer %d's open transaction at %d: %w", pid, st.txnFirst, err)
			}
			if h.LastOffset() < st.txnFirst {
				pos += int64(h.Size())
				continue
			}
			if h.BaseOffset != st.txnFirst || h.ProducerID != pid || !h.IsTransactional() || h.IsControl() {
				return fmt.Errorf("producer %d's open transaction starts at %d, where the log holds no batch of it (a log cleaner removed the transaction)", pid, st.txnFirst)
			}
			break
		}
	}
	return nil
}

// loadProducerState sets the producer state and the epoch cache for the
// scanned log: from the newest snapshot that checks out (snaps: the
// offsets of the snapshot files), then the batch headers after it. It
// removes snapshot files beyond the log end. It returns the bytes of
// headers read (what a snapshot saves) and whether a snapshot was used.
// p.mu held or the partition not yet shared.
func (p *Partition) loadProducerState(snaps []int64) (int64, bool, error) {
	slices.Sort(snaps)
	end := p.active().end
	p.snapFiles = nil
	for _, off := range snaps {
		if off > end {
			p.removeSnapshotLocked(off)
		} else {
			p.snapFiles = append(p.snapFiles, off)
		}
	}
	snap := p.newestGoodSnapshot(end)
	if snap != nil && snap.txnSeen && !p.txnIndexesBelow(snap.offset) {
		p.eng.log.Warn("engine: a segment below the producer snapshot has no transaction index; the log is read from its start", "partition", p.name, "snapshot", snap.offset)
		snap = nil
	}
	p.prod, p.epochs, p.txn = producers{}, epochCache{}, txnLog{}
	from := p.segments[0].base
	if snap != nil {
		p.prod, p.epochs.entries, from = snap.prod, snap.epochs, snap.offset
		p.txn.seen = snap.txnSeen
	} else {
		for _, s := range p.segments {
			s.aborted, s.txnLoaded = nil, false
		}
	}
	walked, err := p.applyHeaders(from, end, func(h batch.Header, seg *segment, pos int64) error {
		return p.observeWalkedLocked(seg, h, pos)
	})
	return walked, snap != nil, err
}

// newestGoodSnapshot returns the newest snapshot at or below limit that
// decodes and verifies, or nil.
func (p *Partition) newestGoodSnapshot(limit int64) *prodSnapshot {
	for i := len(p.snapFiles) - 1; i >= 0; i-- {
		off := p.snapFiles[i]
		if off > limit || off < p.segments[0].base {
			continue
		}
		b, err := vfs.ReadFile(p.eng.fs, snapshotPath(p.dir, off))
		var s *prodSnapshot
		if err == nil {
			s, err = decodeSnapshot(b)
		}
		if err == nil && s.offset != off {
			err = fmt.Errorf("%w: file of offset %d holds offset %d", errBadSnapshot, off, s.offset)
		}
		if err == nil {
			err = p.verifySnapshot(s)
		}
		if err != nil {
			p.eng.log.Warn("engine: producer snapshot not used; an older one or the batch headers are read instead", "partition", p.name, "offset", off, "err", err)
			continue
		}
		return s
	}
	return nil
}

// applyHeaders calls fn with every batch header whose base offset lies in
// [from, to), in order, and returns the bytes of headers walked.
func (p *Partition) applyHeaders(from, to int64, fn func(h batch.Header, seg *segment, pos int64) error) (int64, error) {
	var walked int64
	for _, seg := range p.segments {
		if seg.end <= from || seg.base >= to {
			continue
		}
		hr := newHeaderReader(seg.file)
		start := seg.lookup(from)
		pos := start
		for pos < seg.size {
			h, err := hr.header(pos, seg.size)
			if err != nil {
				return walked, err
			}
			if h.BaseOffset >= to {
				break
			}
			if h.BaseOffset >= from {
				if err := fn(h, seg, pos); err != nil {
					return walked, err
				}
			}
			pos += int64(h.Size())
		}
		walked += pos - start
	}
	return walked, nil
}
