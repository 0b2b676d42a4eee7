package engine

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/ringtail/ringtail/engine/batch"
)

// Log compaction, the pure part: what to clean and how each batch comes out. No I/O, no clock
// (time is passed in), no locks; cleaner.go does the reading, writing and swapping around it.
//
// As Kafka's log cleaner does, a compacted partition's log has a clean section (below the
// cleaner's checkpoint, firstDirty: cleaned before, at most one record per key) followed by a
// dirty section (written since). A pass builds a key map from the dirty section (key → the
// offset of its latest record there) and rewrites every cleanable segment, clean and dirty,
// keeping a record when no later record of its key is in the map. Offsets are never renumbered:
// a kept batch keeps its base offset and its last offset delta (batch.BuildCompacted), so a
// fetch, a follower and an idempotent producer's sequence ranges see the same offsets, with
// records missing and runs of emptied batches merged into one (segCleaner).
//
// Transactions: a pass reads only below the last stable offset, where every transaction is
// decided. Records of committed ones enter the key map and are compacted like any others;
// records of aborted ones (abortedRanges: the segments' aborted lists) are dropped and shadow
// nothing. A control batch (a transaction's marker) goes as Kafka's cleaner lets it go: once no
// batch of its transaction is left in the pass's output (a pass walks the cleanable section from
// the log start, in offset order, so it has seen every batch the marker ends), the marker is
// stamped with a delete horizon as a tombstone is, and the first pass after the horizon removes
// it. What then holds the transaction's offsets is an empty batch without a producer
// (segCleaner), so a recovery that rebuilds the producer state from the batch headers finds
// neither the transaction's batches nor its marker: no transaction left open. The producer's
// last batch stays (producerLast), and with it the marker of its transaction. A producer
// snapshot taken while the transaction was open would hold it open with nothing left to close
// it: recovery does not trust a snapshot whose open transaction's first batch is gone
// (verifyOpenTxns). As with tombstones, delete.retention.ms is how far behind a reader may be: a
// follower that lags past the marker's horizon, holding the transaction's records but not yet
// its marker, receives an empty batch in its place and keeps the transaction open (Kafka's
// follower would too); so does a read_uncommitted consumer's view of an aborted transaction.
// A producer with no sequenced batch in its current epoch (a marker moved it to that epoch, or
// it only ever wrote a coordinator's offsets) keeps its last marker (producerMarker), as
// Kafka's cleaner keeps an active producer's last control batch, so a recovery from the
// headers alone still learns its epoch; once it has expired (producers.expire) the marker goes
// like any other. Such a recovery loses only the coordinator epoch of a removed marker whose
// producer wrote sequenced batches since, as Kafka's does; snapshots keep it.
//
// What is never rewritten (the cleanable limit, planCleaning's in.Limit): the active segment, and
// anything at or above the high watermark (a follower may not have it yet, and a truncation may
// still cut it) or the checkpointed position (WAL replay after a crash may still rewrite those
// bytes in place, which would undo a cleaning or mix old and new bytes). min.compaction.lag.ms
// keeps segments with younger records out too; max.compaction.lag.ms forces a pass whatever the
// dirty ratio once the oldest dirty record is that old.
//
// Tombstones: the pass that first keeps a tombstone stamps its batch with a delete horizon (now
// plus delete.retention.ms, KIP-534), and a pass after the horizon removes it. A partition that
// receives no more writes has nothing dirty, so the dirty ratio would never bring that pass:
// as Kafka's cleaner manager picks a log whose delete horizon has passed when none is filthy
// enough, planCleaning plans a pass when a cleanable segment holds a batch with tombstones whose
// horizon has passed (cleanSeg.horizon). With nothing dirty its key map is empty: it only drops
// those tombstones (and clears the horizon of the batches left without one, see cleanBatch), so
// afterwards no cleanable segment has a passed horizon and the next plan has nothing to do.

// Compaction is the compaction policy of one partition. The zero value compacts nothing.
type Compaction struct {
	Enabled           bool    // cleanup.policy includes compact
	MinDirtyRatio     float64 // min.cleanable.dirty.ratio: clean once dirty/(clean+dirty) bytes reach it
	MinLagMs          int64   // min.compaction.lag.ms: records younger than this stay uncompacted
	MaxLagMs          int64   // max.compaction.lag.ms: a dirty record this old forces a pass; <= 0 or MaxInt64: never
	DeleteRetentionMs int64   // delete.retention.ms: how long a tombstone outlives its first cleaning
}

// DefaultCompaction is Kafka's defaults with compaction on.
var DefaultCompaction = Compaction{Enabled: true, MinDirtyRatio: 0.5, MaxLagMs: math.MaxInt64, DeleteRetentionMs: 86400000}

// cleanSeg is what the planner knows of one sealed segment.
type cleanSeg struct {
	base, end int64 // first offset (the file name) and the offset after its last batch
	bytes     int64
	firstTs   int64 // the first batch's max timestamp, -1 when unknown or empty
	maxTs     int64 // the largest batch max timestamp, -1 when unknown or empty
	// horizon: the earliest delete horizon of a batch in it that holds tombstones
	// (pendingHorizon), noHorizon when none; meaningful only when horizonKnown.
	horizon      int64
	horizonKnown bool
}

// noHorizon is the horizon of a segment without tombstones waiting for one.
const noHorizon = math.MaxInt64

// pendingHorizon is the delete horizon of the stored batch h when a later pass has something
// to remove from it once the horizon has passed: tombstones, or the batch itself when it is a
// transaction's marker. A cleaner stamps a horizon only on a batch whose tombstones it keeps or
// on a marker whose transaction left nothing else, and clears it from a batch whose tombstones
// are gone (cleanBatch); an empty batch holds nothing, whatever its flags say.
func pendingHorizon(h batch.Header) (int64, bool) {
	return h.FirstTimestamp, h.HasDeleteHorizon() && h.NumRecords > 0
}

// cleanInput is one partition's state as a pass sees it.
type cleanInput struct {
	segs       []cleanSeg // sealed segments, oldest first (never the active one)
	firstDirty int64      // the cleaner checkpoint: segments with a base below it were cleaned
	limit      int64      // nothing at or past this offset is rewritten (see above)
	nowMs      int64
	cfg        Compaction
}

// cleanPlan is what a pass does: rewrite segs[0:to] with a key map built from segs[dirty:to].
type cleanPlan struct {
	clean      bool
	forced     bool // by max.compaction.lag.ms
	expired    bool // by a delete horizon that has passed (neither the dirty ratio nor the lag)
	dirty, to  int  // segment indexes: the dirty section is [dirty, to), everything rewritten [0, to)
	cleanBytes int64
	dirtyBytes int64
	ratio      float64 // dirty/(clean+dirty) over [0, to); 0 when nothing is cleanable
	nextDirty  int64   // the cleaner checkpoint after the pass: the end of segs[to-1], never below firstDirty
	why        string  // why not, or why: for the log line
	// needHorizons: no pass is due by dirt and a segment of segs[0:to] has no known horizon;
	// the caller learns it (reading the segment's batch headers) and plans again.
	needHorizons bool
}

// planCleaning decides whether and what to clean.
func planCleaning(in cleanInput) cleanPlan {
	var pl cleanPlan
	if !in.cfg.Enabled {
		pl.why = "compaction off"
		return pl
	}
	// The cleanable section ends at the first segment that crosses the limit or holds records
	// younger than min.compaction.lag.ms (a segment without timestamps counts as old).
	to := 0
	for to < len(in.segs) {
		s := in.segs[to]
		if s.end > in.limit || in.cfg.MinLagMs > 0 && s.maxTs > in.nowMs-in.cfg.MinLagMs {
			break
		}
		to++
	}
	dirty := 0
	for dirty < to && in.segs[dirty].base < in.firstDirty {
		dirty++
	}
	for i := 0; i < to; i++ {
		if i < dirty {
			pl.cleanBytes += in.segs[i].bytes
		} else {
			pl.dirtyBytes += in.segs[i].bytes
		}
	}
	pl.dirty, pl.to = dirty, to
	if dirty == to || pl.dirtyBytes == 0 {
		pl.why = "nothing dirty below the cleanable limit"
	} else {
		pl.ratio = float64(pl.dirtyBytes) / float64(pl.cleanBytes+pl.dirtyBytes)
		if lag := in.cfg.MaxLagMs; lag > 0 && lag < math.MaxInt64 {
			if ts := in.segs[dirty].firstTs; ts >= 0 && ts < in.nowMs-lag {
				pl.forced = true
			}
		}
		switch {
		case pl.forced:
			pl.clean, pl.why = true, fmt.Sprintf("max.compaction.lag.ms %d passed", in.cfg.MaxLagMs)
		case pl.ratio >= in.cfg.MinDirtyRatio:
			pl.clean, pl.why = true, fmt.Sprintf("dirty ratio %.3f >= %.3f", pl.ratio, in.cfg.MinDirtyRatio)
		default:
			pl.why = fmt.Sprintf("dirty ratio %.3f below %.3f", pl.ratio, in.cfg.MinDirtyRatio)
		}
	}
	if !pl.clean && to > 0 {
		// Tombstones past their delete horizon (see the top of this file). The pass covers
		// the dirty section below the limit too, if any, as Kafka's does: it rewrites the
		// clean section anyway, and the checkpoint moves past the dirty one.
		horizon := int64(noHorizon)
		for _, s := range in.segs[:to] {
			if !s.horizonKnown {
				pl.needHorizons = true
				pl.why += "; delete horizons not known yet"
				return pl
			}
			horizon = min(horizon, s.horizon)
		}
		if horizon <= in.nowMs {
			pl.clean, pl.expired = true, true
			pl.why = fmt.Sprintf("delete horizon %d passed (%s)", horizon, pl.why)
		}
	}
	if pl.clean {
		// With nothing dirty the pass ends where the clean section already did, or below it
		// (the limit): the checkpoint never moves back.
		pl.nextDirty = max(in.firstDirty, in.segs[to-1].end)
	}
	return pl
}

// keyMap is the latest offset of each key in the dirty section.
type keyMap map[string]int64

// add records the keyed records of stored batch b (offsets ascending across calls) and returns
// about how many bytes the map grew by. Control batches hold transaction markers, not keys;
// records of aborted transactions never shadow anything. Records of committed transactions
// count like any others: everything a pass reads lies below the last stable offset.
func (m keyMap) add(b []byte, aborted abortedRanges) (int64, error) {
	h, err := batch.ParseHeader(b)
	if err != nil {
		return 0, err
	}
	if h.IsControl() || h.IsTransactional() && aborted.covers(h.ProducerID, h.BaseOffset) {
		return 0, nil
	}
	recs, err := batch.Records(b)
	if err != nil {
		return 0, err
	}
	var grew int64
	for _, r := range recs {
		if r.Key == nil {
			continue
		}
		if _, ok := m[string(r.Key)]; !ok {
			grew += int64(len(r.Key)) + keyMapEntryBytes
		}
		m[string(r.Key)] = h.BaseOffset + int64(r.OffsetDelta)
	}
	return grew, nil
}

// abortedRanges is a partition's aborted transactions by producer, in marker order (the
// segments' aborted lists, oldest segment first). A pass rewrites only what lies below the last
// stable offset, where every transaction is decided and its marker below the high watermark, so
// a transactional data batch there belongs to an aborted transaction exactly when one of its
// producer's ranges covers it, and to a committed one otherwise (Kafka's cleaner asks its
// aborted-transaction index the same way).
type abortedRanges map[int64][]AbortedTxn

// covers reports whether producer pid's batch at offset off belongs to an aborted transaction.
func (a abortedRanges) covers(pid, off int64) bool {
	txns := a[pid]
	i, _ := slices.BinarySearchFunc(txns, off, func(t AbortedTxn, off int64) int { return cmp.Compare(t.LastOffset, off) })
	return i < len(txns) && txns[i].FirstOffset <= off
}

// keyMapEntryBytes is about what a key map entry costs besides its key's bytes: the string
// header, the offset and the map's own share (Go maps hold about 8 entries per 200-byte bucket).
const keyMapEntryBytes = 48

// cleanRules is what a pass applies to each batch of the segments it rewrites.
type cleanRules struct {
	keys    keyMap
	aborted abortedRanges
	nowMs   int64
	// deleteRetentionMs: a tombstone kept by a pass gets a delete horizon of now plus this in
	// its batch (KIP-534); a later pass past the horizon removes it.
	deleteRetentionMs int64
	// producerLast: producer id → base offset of its last batch in the log. That batch is kept,
	// empty if need be, so the producer state rebuilt at recovery knows the producer's last
	// sequence and epoch.
	producerLast map[int64]int64
	// producerMarker: for each producer without a sequenced batch in its current epoch (one a
	// marker moved to a new epoch, a coordinator that only wrote its offsets), its epoch and
	// last marker. That marker is kept, as Kafka's cleaner keeps an active producer's last
	// control batch when it has no data: it is all that tells recovery the producer's epoch
	// and coordinator epoch. Offset -1 (not known since a restart from a snapshot) keeps every
	// marker of that epoch until the producer's next one, or until it expires.
	producerMarker map[int64]producerMarker
	// txnLeft: producer id → a batch of its transaction open at this point of the pass is in
	// the pass's output, so that transaction's marker stays. A pass is one walk in offset order.
	txnLeft map[int64]bool
}

// producerMarker is a producer's current epoch and its last marker's offset (-1: not known).
type producerMarker struct {
	epoch  int16
	offset int64
}

// keepsEpoch reports whether control batch h is the marker that carries its producer's
// current epoch (producerMarker).
func (r *cleanRules) keepsEpoch(h batch.Header) bool {
	m, ok := r.producerMarker[h.ProducerID]
	return ok && h.ProducerEpoch == m.epoch && (m.offset < 0 || m.offset == h.BaseOffset)
}

// cleanStats counts what a pass did.
type cleanStats struct {
	batchesIn, batchesOut int
	recordsIn, recordsOut int
	tombstonesRemoved     int
	unkeyedRemoved        int
	abortedRemoved        int // records of aborted transactions
	markersRemoved        int // control batches of transactions that left nothing else
	bytesIn, bytesOut     int64
}

// cleanBatch returns what replaces stored batch b: b itself when nothing changes, a rebuilt batch
// with the kept records, or nil when no record stays (segCleaner makes it part of an empty batch).
func (r *cleanRules) cleanBatch(b []byte, st *cleanStats) ([]byte, error) {
	h, err := batch.ParseHeader(b)
	if err != nil {
		return nil, err
	}
	st.batchesIn++
	st.bytesIn += int64(len(b))
	keepAll := func() ([]byte, error) {
		st.batchesOut++
		st.recordsIn += int(h.NumRecords)
		st.recordsOut += int(h.NumRecords)
		st.bytesOut += int64(len(b))
		return b, nil
	}
	if h.IsControl() {
		return r.cleanMarker(b, h, st, keepAll)
	}
	recs, err := batch.Records(b)
	if err != nil {
		return nil, err
	}
	st.recordsIn += len(recs)
	kept := recs[:0:0]
	if h.IsTransactional() && r.aborted.covers(h.ProducerID, h.BaseOffset) {
		// No reader is to see them: read_committed ones skip them by the aborted list, and a
		// read_uncommitted reader of a compacted topic gets no promise about superseded or
		// aborted values (Kafka's cleaner drops them too). The marker stays.
		st.abortedRemoved += len(recs)
		recs = nil
	}
	horizonDue := h.HasDeleteHorizon() && r.nowMs >= h.FirstTimestamp
	needHorizon, keptTombstone := false, false
	for _, rec := range recs {
		off := h.BaseOffset + int64(rec.OffsetDelta)
		switch latest, ok := r.keys[string(rec.Key)]; {
		case rec.Key == nil:
			// Never produced to a compacted topic (refused with INVALID_RECORD), but a topic
			// switched to compact may hold some: Kafka's cleaner drops them too.
			st.unkeyedRemoved++
			continue
		case ok && off < latest:
			continue // superseded
		case rec.Value == nil && horizonDue:
			st.tombstonesRemoved++
			continue
		case rec.Value == nil && !h.HasDeleteHorizon():
			needHorizon = true
		}
		keptTombstone = keptTombstone || rec.Value == nil
		kept = append(kept, rec)
	}
	// A batch keeps its horizon only while it holds a tombstone: the planner takes a batch
	// with one for a batch with tombstones to remove (pendingHorizon), so one left flagged
	// past its horizon would bring a pass at every plan. An emptied batch keeps its header.
	clearHorizon := h.HasDeleteHorizon() && !keptTombstone && len(kept) > 0
	st.recordsOut += len(kept)
	if len(kept) == 0 {
		if last, ok := r.producerLast[h.ProducerID]; !ok || h.ProducerID < 0 || last != h.BaseOffset {
			return nil, nil
		}
	}
	if h.IsTransactional() && h.ProducerID >= 0 {
		r.noteTxnLeft(h.ProducerID)
	}
	// An empty batch that says it is compressed (written so before batch.Build knew better)
	// is rebuilt: clients cannot decompress its missing payload.
	if len(kept) == int(h.NumRecords) && !needHorizon && !clearHorizon && (len(kept) > 0 || h.Codec() == batch.CodecNone) {
		st.batchesOut++
		st.bytesOut += int64(len(b))
		return b, nil
	}
	nh := h
	switch {
	case needHorizon:
		nh.SetDeleteHorizon(r.nowMs + r.deleteRetentionMs)
	case clearHorizon:
		nh.ClearDeleteHorizon(h.FirstTimestamp + kept[0].TimestampDelta) // the first record's time
	}
	if shift := h.FirstTimestamp - nh.FirstTimestamp; shift != 0 {
		// Record timestamps are FirstTimestamp + delta: shift the deltas so they stay.
		for i := range kept {
			kept[i].TimestampDelta += shift
		}
	}
	out := batch.BuildCompacted(nh, kept, h.Codec())
	st.batchesOut++
	st.bytesOut += int64(len(out))
	return out, nil
}

// noteTxnLeft records that a batch of producer pid's open transaction stays.
func (r *cleanRules) noteTxnLeft(pid int64) {
	if r.txnLeft == nil {
		r.txnLeft = map[int64]bool{}
	}
	r.txnLeft[pid] = true
}

// cleanMarker returns what replaces control batch b (header h): b while a batch of its
// transaction stays or its delete horizon is ahead, b stamped with a horizon once nothing else
// of its transaction is left, nil (removed) once that horizon has passed. A control batch
// without a producer is no transaction's and stays; so does the one that carries its
// producer's epoch (keepsEpoch).
func (r *cleanRules) cleanMarker(b []byte, h batch.Header, st *cleanStats, keep func() ([]byte, error)) ([]byte, error) {
	left := r.txnLeft[h.ProducerID]
	delete(r.txnLeft, h.ProducerID)
	keepEpoch := r.keepsEpoch(h)
	switch {
	case left || h.ProducerID < 0 || keepEpoch && !h.HasDeleteHorizon():
		return keep()
	case keepEpoch:
		// Stamped before its producer's epoch came to depend on it (since a restart, its
		// offset is not known, and every marker of the epoch stays): rebuilt below without
		// the horizon, or every later plan would find it passed and plan a pass for nothing.
	case h.HasDeleteHorizon() && r.nowMs >= h.FirstTimestamp:
		st.recordsIn += int(h.NumRecords)
		st.markersRemoved++
		return nil, nil
	case h.HasDeleteHorizon():
		return keep()
	}
	recs, err := batch.Records(b)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return keep()
	}
	nh := h
	if keepEpoch {
		nh.ClearDeleteHorizon(h.FirstTimestamp + recs[0].TimestampDelta) // the marker's time
	} else {
		nh.SetDeleteHorizon(r.nowMs + r.deleteRetentionMs)
	}
	if shift := h.FirstTimestamp - nh.FirstTimestamp; shift != 0 {
		for i := range recs {
			recs[i].TimestampDelta += shift // record timestamps stay FirstTimestamp + delta
		}
	}
	out := batch.BuildCompacted(nh, recs, h.Codec())
	st.batchesOut++
	st.recordsIn += len(recs)
	st.recordsOut += len(recs)
	st.bytesOut += int64(len(out))
	return out, nil
}

// segCleaner applies cleanRules to a segment's batches in order and emits the new contents.
// A batch removed whole becomes part of an empty batch (a header, 61 bytes): a run of such
// batches of one leader epoch, none of them a producer's last, becomes one empty batch spanning
// their offsets (no producer, not transactional, not control: a removed transaction's batches
// and marker must open or close nothing at recovery), so the log stays contiguous — recovery, the
// index files' checks, WAL replay and the segment's own range see no gap — while a compacted
// segment no longer keeps 61 bytes per removed batch. Kafka's cleaner drops such batches and
// leaves gaps instead; every local check here relies on contiguity, and gaps would make a
// follower's missing WAL record look like a cleaned one. A follower whose log ends inside such
// a batch (it lagged behind the high watermark when the leader cleaned) gets it whole and keeps
// its part above its log end (ReplicaSpan, AppendReplicated). The producer state rebuilt from
// headers loses the merged batches' producer fields, as Kafka's loses the dropped ones: each
// producer's last batch is never merged (cleanRules.producerLast).
type segCleaner struct {
	r       *cleanRules
	st      *cleanStats
	emit    func(b []byte) error // b is only valid during the call
	changed bool                 // the output differs from the input
	run     emptyRun             // removed batches not emitted yet
	horizon int64                // the emitted batches' earliest pendingHorizon; starts at noHorizon
	// removedMarkers: offsets of the markers removed from this segment (the swap drops their
	// aborted-transaction entries).
	removedMarkers []int64
}

// emptyRun is a run of removed batches that becomes one empty batch.
type emptyRun struct {
	n     int          // batches in it; 0: none
	first batch.Header // the first one's header
	last  int64        // the last offset
	maxTs int64
	same  bool // a single batch that was already the empty batch it becomes (nothing changes)
}

// emptyBatch is the empty batch a run of removed batches becomes: the first one's offset and
// leader epoch, spanning to last, no producer, no attributes, the run's largest timestamp.
func emptyBatch(first batch.Header, last, maxTs int64) []byte {
	h := first
	h.LastOffsetDelta = int32(last - h.BaseOffset)
	h.ProducerID, h.ProducerEpoch, h.BaseSequence, h.Attributes = -1, -1, -1, 0
	h.FirstTimestamp, h.MaxTimestamp = maxTs, maxTs
	return batch.BuildCompacted(h, nil, batch.CodecNone)
}

// add cleans the next stored batch b (valid only during the call).
func (c *segCleaner) add(b []byte) error {
	h, err := batch.ParseHeader(b)
	if err != nil {
		return err
	}
	nb, err := c.r.cleanBatch(b, c.st)
	if err != nil {
		return fmt.Errorf("engine: cleaning: batch at offset %d: %w", h.BaseOffset, err)
	}
	if nb == nil {
		if h.IsControl() {
			c.removedMarkers = append(c.removedMarkers, h.BaseOffset)
		}
		r := &c.run
		if r.n > 0 && r.first.PartitionLeaderEpoch == h.PartitionLeaderEpoch && h.LastOffset()-r.first.BaseOffset <= math.MaxInt32 {
			r.n, r.last, r.maxTs, r.same = r.n+1, h.LastOffset(), max(r.maxTs, h.MaxTimestamp), false
			return nil
		}
		if err := c.finish(); err != nil {
			return err
		}
		*r = emptyRun{n: 1, first: h, last: h.LastOffset(), maxTs: h.MaxTimestamp,
			same: h.NumRecords == 0 && bytes.Equal(emptyBatch(h, h.LastOffset(), h.MaxTimestamp), b)}
		return nil
	}
	if err := c.finish(); err != nil {
		return err
	}
	if len(nb) != len(b) || &nb[0] != &b[0] && !bytes.Equal(nb, b) {
		c.changed = true
		if h, err = batch.ParseHeader(nb); err != nil {
			return err
		}
	}
	if hz, ok := pendingHorizon(h); ok {
		c.horizon = min(c.horizon, hz)
	}
	return c.emit(nb)
}

// finish emits the pending run of removed batches; called after the segment's last batch too.
func (c *segCleaner) finish() error {
	r := c.run
	if r.n == 0 {
		return nil
	}
	c.run = emptyRun{}
	nb := emptyBatch(r.first, r.last, r.maxTs)
	c.st.batchesOut++
	c.st.bytesOut += int64(len(nb))
	if !r.same {
		c.changed = true
	}
	return c.emit(nb)
}

// cleanSegmentBytes applies r to every batch of a segment's contents and returns the new contents
// (src itself when nothing changed).
func (r *cleanRules) cleanSegmentBytes(src []byte, st *cleanStats) ([]byte, error) {
	out := make([]byte, 0, len(src)/2)
	c := segCleaner{r: r, st: st, horizon: noHorizon, emit: func(b []byte) error { out = append(out, b...); return nil }}
	for pos := 0; pos < len(src); {
		h, err := batch.ParseHeader(src[pos:])
		if err != nil {
			return nil, fmt.Errorf("engine: cleaning: batch at %d: %w", pos, err)
		}
		if pos+h.Size() > len(src) {
			return nil, fmt.Errorf("engine: cleaning: %w: batch at %d ends past the segment (%d bytes)", batch.ErrCorrupt, pos, len(src))
		}
		if err := c.add(src[pos : pos+h.Size()]); err != nil {
			return nil, err
		}
		pos += h.Size()
	}
	if err := c.finish(); err != nil {
		return nil, err
	}
	if !c.changed {
		if !bytes.Equal(out, src) {
			return nil, fmt.Errorf("engine: cleaning: output differs from its input but nothing changed")
		}
		return src, nil
	}
	return out, nil
}
