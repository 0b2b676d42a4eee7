package engine

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs"
)

// Transactions in the log (Kafka's KIP-98 storage side):
//
//   - a producer's transactional batches are ordinary batches with the
//     transactional attribute; the producer state remembers the first
//     offset of each producer's ongoing transaction (producerState.txnFirst);
//   - the broker ends a transaction with a control batch (AppendMarker):
//     one record whose key is (version i16, type i16: 0 abort, 1 commit) and
//     whose value is (version i16, coordinator epoch i32), Kafka's
//     EndTxnMarker; it is written by the leader and replicated like any
//     batch, so every replica sees the same markers at the same offsets;
//   - the last stable offset (LSO) is the high watermark, or the first
//     offset of the earliest transaction that is not decided below the high
//     watermark (ongoing, or whose marker the high watermark has not passed)
//     if that is lower; read_committed fetches read below it;
//   - every aborted transaction is listed (producer id, first offset, the
//     marker's offset) in the segment that holds its marker, in memory and,
//     once the segment is sealed and durable (or at a clean close), in a
//     <base>.txnindex file in Kafka's format (version i16 = 0, producer id
//     i64, first offset i64, last offset i64, last stable offset i64, big
//     endian), written with the .index and .timeindex files. A
//     read_committed fetch returns the aborted transactions that overlap
//     the records it returns, so the client drops their records.
//
// Recovery: the markers of the batches it walks after the newest producer
// snapshot (which carries each producer's ongoing transaction) add their
// entries; the segments below the snapshot bring theirs from their
// .txnindex files. When one of those is missing or does not verify, the
// snapshot is not used: the producer state and every entry are rebuilt from
// the log start (finishRecovery then writes the missing files).

const txnIndexSuffix = ".txnindex"

// indexSuffixes are the files a sealed segment has besides its log.
var indexSuffixes = []string{indexSuffix, timeIndexSuffix, txnIndexSuffix}

// Control record types (Kafka's ControlRecordType).
const (
	controlAbort  = 0
	controlCommit = 1
)

const txnIndexEntrySize = 34

// AbortedTxn is one aborted transaction: its producer, its first offset and
// the offset of its ABORT marker.
type AbortedTxn struct {
	ProducerID  int64
	FirstOffset int64
	LastOffset  int64
}

// txnSpan is a decided transaction whose marker the high watermark may not
// have passed yet.
type txnSpan struct{ first, marker int64 }

// txnStart is an ongoing transaction in txnLog.ongoing.
type txnStart struct{ first, pid int64 }

// txnLog is the partition's transaction bookkeeping beyond the producer
// state. Guarded by Partition.mu.
type txnLog struct {
	seen     bool      // a transactional batch was applied: the LSO needs computing
	unstable []txnSpan // decided transactions, oldest marker first, until the high watermark passes the marker
	// ongoing indexes the producers' ongoing transactions by first offset
	// (Kafka's ProducerStateManager.ongoingTxns), so the LSO is read from its
	// front instead of a walk over every producer. An entry is live while its
	// producer's txnFirst is its first offset: a marker ends a transaction in
	// the producer state alone, and the dead entries go when they reach the
	// front (lastStableLocked) or at a compaction. Appended in offset order as
	// transactions start (applyLocked); rebuilt from the producer state
	// wherever that is replaced (rebuildOngoingLocked): an index missing a
	// live transaction would raise the LSO over it.
	ongoing   []txnStart
	compactAt int // compact ongoing once it grows past this
}

// applyLocked applies stored batch h (a marker's coordinator epoch
// coordEpoch) to the producer state and the index of ongoing transactions.
// p.mu held (or the partition not shared yet).
func (p *Partition) applyLocked(h batch.Header, coordEpoch int32) {
	p.prod.apply(h, coordEpoch)
	if !h.IsTransactional() || h.IsControl() || p.prod[h.ProducerID].txnFirst != h.BaseOffset {
		return
	}
	p.txn.ongoing = append(p.txn.ongoing, txnStart{first: h.BaseOffset, pid: h.ProducerID})
	if len(p.txn.ongoing) > p.txn.compactAt {
		// Dead entries behind a long transaction at the front: bounded at twice the live ones.
		p.txn.ongoing = slices.DeleteFunc(p.txn.ongoing, func(x txnStart) bool { return !p.ongoingLive(x) })
		p.txn.compactAt = 2*len(p.txn.ongoing) + 64
	}
}

// ongoingLive says whether index entry x is still its producer's ongoing transaction. p.mu held.
func (p *Partition) ongoingLive(x txnStart) bool {
	st, ok := p.prod[x.pid]
	return ok && st.txnFirst == x.first
}

// rebuildOngoingLocked rebuilds the index of ongoing transactions from the
// producer state, which was replaced (recovery, rollback, truncation). p.mu
// held (or the partition not shared yet).
func (p *Partition) rebuildOngoingLocked() {
	p.txn.ongoing = p.txn.ongoing[:0]
	for pid, st := range p.prod {
		if st.txnFirst >= 0 {
			p.txn.ongoing = append(p.txn.ongoing, txnStart{first: st.txnFirst, pid: pid})
		}
	}
	slices.SortFunc(p.txn.ongoing, func(a, b txnStart) int { return cmp.Compare(a.first, b.first) })
	p.txn.compactAt = 2*len(p.txn.ongoing) + 64
}

// checkOngoingLocked panics unless the index of ongoing transactions holds
// every producer's ongoing transaction, in first-offset order: what a walk
// over the producer state finds (invariants builds). p.mu held.
func (p *Partition) checkOngoingLocked(after string) {
	live := 0
	for i, x := range p.txn.ongoing {
		if i > 0 && x.first <= p.txn.ongoing[i-1].first {
			panic(fmt.Sprintf("engine: %s: after %s: ongoing transactions out of order at %d: %v", p.name, after, i, p.txn.ongoing))
		}
		if p.ongoingLive(x) {
			live++
		}
	}
	want := 0
	for _, st := range p.prod {
		if st.txnFirst >= 0 {
			want++
		}
	}
	if live != want {
		panic(fmt.Sprintf("engine: %s: after %s: %d ongoing transactions indexed, the producer state holds %d", p.name, after, live, want))
	}
}

// addAborted lists an aborted transaction whose marker lies in s; a walk
// over batches the .txnindex already listed adds nothing.
func (s *segment) addAborted(a AbortedTxn) {
	if n := len(s.aborted); n > 0 && s.aborted[n-1].LastOffset >= a.LastOffset {
		return
	}
	s.aborted = append(s.aborted, a)
}

// markerOf returns the control record type of control batch b and the
// coordinator epoch its value carries (noMarker when the value is too short
// to hold one: the type, in the key, still counts).
func markerOf(b []byte) (typ int16, coordEpoch int32, err error) {
	recs, err := batch.Records(b)
	if err != nil {
		return 0, noMarker, err
	}
	if len(recs) == 0 || len(recs[0].Key) < 4 {
		return 0, noMarker, fmt.Errorf("%w: control batch without a control record key", batch.ErrCorrupt)
	}
	coordEpoch = noMarker
	if v := recs[0].Value; len(v) >= 6 {
		coordEpoch = int32(binary.BigEndian.Uint32(v[2:]))
	}
	return int16(binary.BigEndian.Uint16(recs[0].Key[2:])), coordEpoch, nil
}

// markerEpochAt returns the coordinator epoch of marker h at pos of seg, or
// noMarker for another batch (read for it: a walk has only headers).
func (s *segment) markerEpochAt(h batch.Header, pos int64) (int32, error) {
	if !h.IsControl() {
		return noMarker, nil
	}
	b := make([]byte, h.Size())
	if _, err := s.file.ReadAt(b, pos); err != nil {
		return noMarker, err
	}
	_, ce, _ := markerOf(b) // an unreadable marker fences nothing
	return ce, nil
}

// observeTxnLocked records what batch h (bytes b, stored in seg) means for
// transactions, before the producer state applies it: a marker decides
// the producer's ongoing transaction, an ABORT lists it in seg. It returns
// a marker's coordinator epoch (noMarker for other batches), for the
// producer state. p.mu held (or the partition not shared yet).
func (p *Partition) observeTxnLocked(seg *segment, h batch.Header, b []byte) int32 {
	if h.IsTransactional() {
		p.txn.seen = true
	}
	if !h.IsControl() || h.ProducerID < 0 {
		return noMarker
	}
	typ, coordEpoch, err := markerOf(b)
	if err != nil {
		p.eng.log.Error("engine: reading a transaction marker; its transaction counts as committed", "partition", p.name, "offset", h.BaseOffset, "err", err)
	}
	st, ok := p.prod[h.ProducerID]
	if !ok || st.txnFirst < 0 {
		return coordEpoch // a marker for a transaction that wrote nothing here
	}
	if n := len(p.txn.unstable); n > 0 && p.txn.unstable[0].marker < p.hw.Load() {
		p.pruneStableLocked() // a replica nobody fetches read_committed from prunes here
	}
	p.txn.unstable = append(p.txn.unstable, txnSpan{first: st.txnFirst, marker: h.BaseOffset})
	if err == nil && typ == controlAbort {
		seg.addAborted(AbortedTxn{ProducerID: h.ProducerID, FirstOffset: st.txnFirst, LastOffset: h.BaseOffset})
	}
	return coordEpoch
}

// txnCutLocked forgets what lies at or beyond end (a rollback or a
// truncation cut the log there; the producer state was rebuilt, so the
// index of ongoing transactions is too). p.mu held.
func (p *Partition) txnCutLocked(end int64) {
	p.rebuildOngoingLocked()
	n := 0
	for _, u := range p.txn.unstable {
		if u.marker < end {
			p.txn.unstable[n] = u
			n++
		}
	}
	p.txn.unstable = p.txn.unstable[:n]
	for _, s := range p.segments {
		for len(s.aborted) > 0 && s.aborted[len(s.aborted)-1].LastOffset >= end {
			s.aborted = s.aborted[:len(s.aborted)-1]
		}
	}
}

// pruneStableLocked forgets the decided transactions whose marker the high watermark passed.
// p.mu held.
func (p *Partition) pruneStableLocked() {
	hw := p.hw.Load()
	n := 0
	for _, u := range p.txn.unstable {
		if u.marker >= hw {
			p.txn.unstable[n] = u
			n++
		}
	}
	clear(p.txn.unstable[n:])
	p.txn.unstable = p.txn.unstable[:n]
}

// lastStableLocked returns the last stable offset. p.mu held.
func (p *Partition) lastStableLocked() int64 {
	hw := p.hw.Load()
	if !p.txn.seen {
		return hw
	}
	lso := hw
	p.pruneStableLocked()
	for _, u := range p.txn.unstable {
		lso = min(lso, u.first)
	}
	for len(p.txn.ongoing) > 0 && !p.ongoingLive(p.txn.ongoing[0]) {
		p.txn.ongoing = p.txn.ongoing[1:]
	}
	if len(p.txn.ongoing) > 0 {
		lso = min(lso, p.txn.ongoing[0].first)
	}
	return max(lso, p.logStart)
}

// LastStableOffset returns the last stable offset: read_committed
// consumers read below it.
func (p *Partition) LastStableOffset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastStableLocked()
}

// stableViewLocked is viewLocked for a read limited to lso (below the high
// watermark): the position after the last batch below lso in segment i.
// p.mu held.
func (p *Partition) stableViewLocked(i int, lso int64) (*segment, int64, error) {
	seg := p.segments[i]
	if seg.end <= lso && seg.base < p.hwMark.seg.base {
		return seg, seg.size, nil
	}
	if seg.base >= lso {
		return seg, 0, nil
	}
	limit := seg.size
	if seg == p.hwMark.seg {
		limit = p.hwMark.size
	}
	pos := seg.lookup(lso)
	hr := newHeaderReader(seg.file)
	for pos < limit {
		h, err := hr.header(pos, limit)
		if err != nil {
			return seg, 0, err
		}
		if h.BaseOffset >= lso {
			break
		}
		pos += int64(h.Size())
	}
	return seg, pos, nil
}

// abortedLocked returns the aborted transactions that overlap the offsets
// from..to (inclusive): their marker at or after from, their first offset
// at or before to. p.mu held.
func (p *Partition) abortedLocked(from, to int64) []AbortedTxn {
	var out []AbortedTxn
	for i := p.segmentIndex(from); i < len(p.segments); i++ {
		for _, a := range p.segments[i].aborted {
			if a.LastOffset >= from && a.FirstOffset <= to {
				out = append(out, a)
			}
		}
	}
	return out
}

// AppendMarker ends producerID's transaction in this partition with a
// COMMIT (commit) or ABORT control batch, as a leader append: an epoch
// below the producer's is refused (ErrInvalidProducerEpoch), and so is a
// coordinatorEpoch below that of the producer's last marker here
// (ErrCoordinatorFenced: a deposed coordinator's); else the marker gets the
// next offset and done runs as for Append. coordinatorEpoch is the
// transaction coordinator's epoch (the leader epoch of its
// __transaction_state partition), recorded in the marker.
func (p *Partition) AppendMarker(producerID int64, epoch int16, commit bool, coordinatorEpoch int32, done func(error)) (AppendResult, error) {
	typ := byte(controlAbort)
	if commit {
		typ = controlCommit
	}
	value := binary.BigEndian.AppendUint32([]byte{0, 0}, uint32(coordinatorEpoch))
	now := p.eng.now()
	h := batch.Header{
		Attributes:     0x30, // transactional | control
		FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: producerID, ProducerEpoch: epoch, BaseSequence: -1,
	}
	b := batch.Build(h, []batch.Record{{Key: []byte{0, 0, 0, typ}, Value: value}}, batch.CodecNone)
	hs, err := batch.ParseHeader(b)
	if err != nil {
		return AppendResult{}, mapBatchError(err)
	}
	cfg := p.Config()
	p.mu.Lock()
	if err := p.prod.checkCoordinator(producerID, coordinatorEpoch); err != nil {
		p.mu.Unlock()
		return AppendResult{}, err
	}
	res, werr := p.appendLeaderLocked([][]byte{b}, []batch.Header{hs}, -1, cfg.SegmentMs, done)
	p.mu.Unlock()
	p.runCompletions()
	if werr == nil && p.eng.cfg.OnAppend != nil {
		p.eng.cfg.OnAppend(p)
	}
	return res, werr
}

// txnIndexBytes is the content of the segment's .txnindex file.
func (s *segment) txnIndexBytes() []byte {
	b := make([]byte, 0, txnIndexEntrySize*len(s.aborted))
	for _, a := range s.aborted {
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint64(b, uint64(a.ProducerID))
		b = binary.BigEndian.AppendUint64(b, uint64(a.FirstOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(a.LastOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(a.FirstOffset))
	}
	return b
}

// errBadTxnIndex: a .txnindex file that does not fit its segment.
var errBadTxnIndex = errors.New("engine: transaction index does not verify")

// loadTxnIndex reads the segment's .txnindex file: whole entries, version
// 0, markers inside the segment and rising, first offsets not after them.
func (s *segment) loadTxnIndex(fsys vfs.FS, dir string) error {
	b, err := vfs.ReadFile(fsys, segmentName(dir, s.base, txnIndexSuffix))
	if err != nil {
		return err
	}
	if len(b)%txnIndexEntrySize != 0 {
		return fmt.Errorf("%w: %s: %d bytes", errBadTxnIndex, s.path, len(b))
	}
	var out []AbortedTxn
	for i := 0; i < len(b); i += txnIndexEntrySize {
		a := AbortedTxn{
			ProducerID:  int64(binary.BigEndian.Uint64(b[i+2:])),
			FirstOffset: int64(binary.BigEndian.Uint64(b[i+10:])),
			LastOffset:  int64(binary.BigEndian.Uint64(b[i+18:])),
		}
		if binary.BigEndian.Uint16(b[i:]) != 0 || a.LastOffset < s.base || a.LastOffset >= s.end || a.FirstOffset > a.LastOffset ||
			(len(out) > 0 && a.LastOffset <= out[len(out)-1].LastOffset) {
			return fmt.Errorf("%w: %s: entry %d (%d, %d..%d)", errBadTxnIndex, s.path, len(out), a.ProducerID, a.FirstOffset, a.LastOffset)
		}
		out = append(out, a)
	}
	s.aborted, s.txnLoaded = out, true
	return nil
}

// txnIndexesBelow reports whether every segment starting below off
// brought its aborted transactions from its .txnindex file.
func (p *Partition) txnIndexesBelow(off int64) bool {
	for _, s := range p.segments {
		if s.base < off && !s.txnLoaded {
			return false
		}
	}
	return true
}

// observeWalkedLocked feeds the producer state and the transaction
// bookkeeping with a batch recovery or a truncation walks (header h at pos
// of seg): a marker's bytes are read for its type.
func (p *Partition) observeWalkedLocked(seg *segment, h batch.Header, pos int64) error {
	coordEpoch := int32(noMarker)
	if h.IsControl() {
		b := make([]byte, h.Size())
		if _, err := seg.file.ReadAt(b, pos); err != nil {
			return err
		}
		coordEpoch = p.observeTxnLocked(seg, h, b)
	} else if h.IsTransactional() {
		p.txn.seen = true
	}
	p.applyLocked(h, coordEpoch)
	p.epochs.observe(h.PartitionLeaderEpoch, h.BaseOffset)
	return nil
}

// writeMissingTxnIndexes writes the .txnindex file of each sealed segment
// that has index files but brought no .txnindex (one written before
// transactions, or lost in a crash): recovery rebuilt its entries.
func (p *Partition) writeMissingTxnIndexes() error {
	for _, s := range p.segments[:len(p.segments)-1] {
		if s.indexed && !s.txnLoaded {
			if err := writeFile(p.eng.fs, segmentName(p.dir, s.base, txnIndexSuffix), s.txnIndexBytes()); err != nil {
				return err
			}
			if err := syncFile(p.eng.fs, segmentName(p.dir, s.base, txnIndexSuffix)); err != nil {
				return err
			}
		}
		s.txnLoaded = true
	}
	return nil
}

// removeIndexFiles removes a segment's index files (it became, or is, the
// active one: they would go stale). A missing file is no error.
func (p *Partition) removeIndexFiles(base int64) error {
	for _, suffix := range indexSuffixes {
		if err := p.eng.fs.Remove(segmentName(p.dir, base, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// ProducerInfo describes one producer the partition remembers (DescribeProducers).
type ProducerInfo struct {
	ProducerID    int64
	ProducerEpoch int16
	LastSequence  int32 // -1 when none
	// TxnStartOffset is the first offset of its ongoing transaction, -1 when none.
	TxnStartOffset int64
	// LastTimestamp is the max timestamp of its last batch (a marker's is its append time).
	LastTimestamp int64
	// CoordinatorEpoch is the coordinator epoch of its last marker, -1 when none.
	CoordinatorEpoch int32
}

// Producers lists the producers the partition remembers, by id.
func (p *Partition) Producers() []ProducerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ProducerInfo, 0, len(p.prod))
	for id, st := range p.prod {
		pi := ProducerInfo{ProducerID: id, ProducerEpoch: st.epoch, LastSequence: -1, TxnStartOffset: st.txnFirst,
			LastTimestamp: st.lastTs, CoordinatorEpoch: st.coordEpoch}
		if n := len(st.batches); n > 0 {
			pi.LastSequence = st.batches[n-1].lastSeq
		}
		out = append(out, pi)
	}
	slices.SortFunc(out, func(a, b ProducerInfo) int { return cmp.Compare(a.ProducerID, b.ProducerID) })
	return out
}
