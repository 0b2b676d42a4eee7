package engine

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ringtail/ringtail/engine/batch"
)

func TestPlanCleaning(t *testing.T) {
	seg := func(base, end, bytes, firstTs, maxTs int64) cleanSeg {
		return cleanSeg{base: base, end: end, bytes: bytes, firstTs: firstTs, maxTs: maxTs, horizon: noHorizon, horizonKnown: true}
	}
	// Three sealed segments of 100 bytes; the first cleaned before (firstDirty 10).
	segs := []cleanSeg{seg(0, 10, 100, 1000, 1100), seg(10, 20, 100, 2000, 2100), seg(20, 30, 100, 3000, 3100)}
	cfg := DefaultCompaction
	cases := []struct {
		name        string
		in          cleanInput
		clean       bool
		forced      bool
		dirty, to   int
		ratio       float64
		nextDirty   int64
		description string
	}{
		{name: "off", in: cleanInput{segs: segs, limit: 30, cfg: Compaction{}}},
		{name: "all dirty", in: cleanInput{segs: segs, limit: 30, nowMs: 5000, cfg: cfg}, clean: true, to: 3, ratio: 1, nextDirty: 30},
		{name: "two of three dirty", in: cleanInput{segs: segs, firstDirty: 10, limit: 30, nowMs: 5000, cfg: cfg},
			clean: true, dirty: 1, to: 3, ratio: 2.0 / 3, nextDirty: 30},
		{name: "limit stops at the high watermark or checkpoint", in: cleanInput{segs: segs, firstDirty: 10, limit: 29, nowMs: 5000, cfg: cfg},
			clean: true, dirty: 1, to: 2, ratio: 0.5, nextDirty: 20},
		{name: "ratio below the minimum", in: cleanInput{segs: segs, firstDirty: 20, limit: 30, nowMs: 5000, cfg: cfg},
			dirty: 2, to: 3, ratio: 1.0 / 3},
		{name: "max lag forces", in: cleanInput{segs: segs, firstDirty: 20, limit: 30, nowMs: 5000,
			cfg: Compaction{Enabled: true, MinDirtyRatio: 0.5, MaxLagMs: 1000}},
			clean: true, forced: true, dirty: 2, to: 3, ratio: 1.0 / 3, nextDirty: 30},
		{name: "max lag not yet", in: cleanInput{segs: segs, firstDirty: 20, limit: 30, nowMs: 3500,
			cfg: Compaction{Enabled: true, MinDirtyRatio: 0.5, MaxLagMs: 1000}},
			dirty: 2, to: 3, ratio: 1.0 / 3},
		{name: "min lag keeps young segments", in: cleanInput{segs: segs, firstDirty: 10, limit: 30, nowMs: 3150,
			cfg: Compaction{Enabled: true, MinDirtyRatio: 0.5, MinLagMs: 1000}},
			clean: true, dirty: 1, to: 2, ratio: 0.5, nextDirty: 20},
		{name: "nothing cleanable", in: cleanInput{segs: segs, firstDirty: 30, limit: 30, nowMs: 5000, cfg: cfg}, dirty: 3, to: 3},
		{name: "no segments", in: cleanInput{limit: 30, nowMs: 5000, cfg: cfg}},
		{name: "nothing below the limit", in: cleanInput{segs: segs, limit: 5, nowMs: 5000, cfg: cfg}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pl := planCleaning(c.in)
			if pl.clean != c.clean || pl.forced != c.forced || pl.dirty != c.dirty || pl.to != c.to ||
				math.Abs(pl.ratio-c.ratio) > 1e-9 || (pl.clean && pl.nextDirty != c.nextDirty) {
				t.Fatalf("plan %+v, want clean %v forced %v dirty %d to %d ratio %.3f nextDirty %d",
					pl, c.clean, c.forced, c.dirty, c.to, c.ratio, c.nextDirty)
			}
			if pl.why == "" {
				t.Fatal("a plan says why")
			}
		})
	}
}

// TestPlanCleaningDeleteHorizon: with nothing dirty (or too little), a pass is planned once a
// cleanable segment holds tombstones past their delete horizon, and only then; it never moves
// the cleaner checkpoint back; a segment whose horizon is not known asks for it.
func TestPlanCleaningDeleteHorizon(t *testing.T) {
	seg := func(base, end, horizon int64) cleanSeg {
		return cleanSeg{base: base, end: end, bytes: 100, firstTs: base * 100, maxTs: base*100 + 50, horizon: horizon, horizonKnown: true}
	}
	// Three clean segments; the second holds tombstones due at 4000, the third at 3000.
	segs := []cleanSeg{seg(0, 10, noHorizon), seg(10, 20, 4000), seg(20, 30, 3000)}
	unknown := slices.Clone(segs)
	unknown[0].horizonKnown = false
	cfg := DefaultCompaction
	cases := []struct {
		name         string
		in           cleanInput
		clean        bool
		expired      bool // brought by the horizon, not by dirt
		needHorizons bool
		dirty, to    int
		nextDirty    int64
	}{
		{name: "before the horizon", in: cleanInput{segs: segs, firstDirty: 30, limit: 30, nowMs: 2999, cfg: cfg}, dirty: 3, to: 3},
		{name: "at the horizon", in: cleanInput{segs: segs, firstDirty: 30, limit: 30, nowMs: 3000, cfg: cfg},
			clean: true, expired: true, dirty: 3, to: 3, nextDirty: 30},
		{name: "the passed horizon above the limit", in: cleanInput{segs: segs, firstDirty: 30, limit: 25, nowMs: 3500, cfg: cfg},
			dirty: 2, to: 2},
		{name: "below the limit, the checkpoint stays", in: cleanInput{segs: segs, firstDirty: 30, limit: 25, nowMs: 4000, cfg: cfg},
			clean: true, expired: true, dirty: 2, to: 2, nextDirty: 30},
		{name: "min lag keeps it out", in: cleanInput{segs: segs, firstDirty: 30, limit: 30, nowMs: 3000,
			cfg: Compaction{Enabled: true, MinDirtyRatio: 0.5, DeleteRetentionMs: 1000, MinLagMs: 1000}}, dirty: 2, to: 2},
		{name: "dirty ratio too low, the horizon brings the pass", in: cleanInput{segs: segs, firstDirty: 20, limit: 30, nowMs: 4000, cfg: cfg},
			clean: true, expired: true, dirty: 2, to: 3, nextDirty: 30},
		{name: "tombstones gone", in: cleanInput{segs: []cleanSeg{seg(0, 10, noHorizon), seg(10, 20, noHorizon), seg(20, 30, noHorizon)},
			firstDirty: 30, limit: 30, nowMs: 1 << 50, cfg: cfg}, dirty: 3, to: 3},
		{name: "a horizon not known", in: cleanInput{segs: unknown, firstDirty: 30, limit: 30, nowMs: 2000, cfg: cfg},
			needHorizons: true, dirty: 3, to: 3},
		{name: "not asked when dirt brings a pass", in: cleanInput{segs: unknown, firstDirty: 10, limit: 30, nowMs: 2000, cfg: cfg},
			clean: true, dirty: 1, to: 3, nextDirty: 30},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pl := planCleaning(c.in)
			if pl.clean != c.clean || pl.needHorizons != c.needHorizons || pl.dirty != c.dirty || pl.to != c.to ||
				(pl.clean && pl.nextDirty != c.nextDirty) {
				t.Fatalf("plan %+v, want clean %v needHorizons %v dirty %d to %d nextDirty %d",
					pl, c.clean, c.needHorizons, c.dirty, c.to, c.nextDirty)
			}
			if pl.expired != c.expired {
				t.Fatalf("plan %+v: expired %v", pl, pl.expired)
			}
			if pl.expired && !strings.Contains(pl.why, "delete horizon") {
				t.Fatalf("plan %+v: the log line says %q", pl, pl.why)
			}
			if pl.why == "" {
				t.Fatal("a plan says why")
			}
		})
	}
}

// TestCleanerDeleteHorizonWithoutWrites runs the pure cleaner over a log that receives nothing
// after its first cleaning: the pass that keeps the tombstones stamps their horizon; before it
// no pass is planned, at it one removes them (a batch that keeps a value loses its horizon
// flag, its timestamps unchanged), and after that nothing is left to do, however late.
func TestCleanerDeleteHorizonWithoutWrites(t *testing.T) {
	const retention = 500
	cfg := Compaction{Enabled: true, MinDirtyRatio: 0.5, MaxLagMs: math.MaxInt64, DeleteRetentionMs: retention}
	rec := func(delta int32, key, value string) batch.Record {
		r := batch.Record{OffsetDelta: delta, TimestampDelta: int64(delta), Key: []byte(key)}
		if value != "" {
			r.Value = []byte(value)
		}
		return r
	}
	b := func(base int64, recs ...batch.Record) []byte {
		h := batch.Header{BaseOffset: base, FirstTimestamp: 100 + base, MaxTimestamp: 100 + base + int64(len(recs)-1),
			ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
		return batch.Build(h, recs, batch.CodecNone)
	}
	l := propLog{bases: []int64{0, 3, 5}, segs: [][]byte{
		slices.Concat(b(0, rec(0, "k1", "a")), b(1, rec(0, "k2", "b"), rec(1, "k1", ""))), // k1 deleted at 2
		slices.Concat(b(3, rec(0, "k3", "c")), b(4, rec(0, "k5", ""))),                    // k5 deleted at 4
		b(5, rec(0, "k4", "d")), // the active segment
	}}
	const limit = 5
	tombstones := func() (n int) {
		for _, s := range l.segs[:2] {
			eachBatch(t, s, func(b []byte) {
				recs, _ := batch.Records(b)
				for _, r := range recs {
					if r.Value == nil {
						n++
					}
				}
			})
		}
		return n
	}
	horizon := func() int64 {
		h := int64(noHorizon)
		for _, s := range l.input(limit, 0, cfg).segs[:2] {
			h = min(h, s.horizon)
		}
		return h
	}

	if !l.pass(t, limit, 1000, cfg, nil) {
		t.Fatal("no first pass over a dirty log")
	}
	if n, h := tombstones(), horizon(); n != 2 || h != 1000+retention {
		t.Fatalf("after the first pass: %d tombstones, horizon %d; want 2 at %d", n, h, 1000+retention)
	}
	for _, now := range []int64{1001, 1000 + retention - 1} {
		if pl := planCleaning(l.input(limit, now, cfg)); pl.clean || pl.needHorizons {
			t.Fatalf("at %d, before the horizon: plan %+v", now, pl)
		}
	}
	pl := planCleaning(l.input(limit, 1000+retention, cfg))
	if !pl.clean || !pl.expired || pl.dirty != 2 || pl.to != 2 || pl.nextDirty != limit {
		t.Fatalf("at the horizon: plan %+v", pl)
	}
	if !l.pass(t, limit, 1000+retention, cfg, nil) {
		t.Fatal("no pass at the horizon")
	}
	if n, h := tombstones(), horizon(); n != 0 || h != noHorizon {
		t.Fatalf("after the horizon pass: %d tombstones, horizon %d", n, h)
	}
	if l.firstDirty != limit {
		t.Fatalf("cleaner checkpoint %d, want %d", l.firstDirty, limit)
	}
	left := map[string]int64{}
	for _, s := range l.segs {
		eachBatch(t, s, func(b []byte) {
			h, _ := batch.ParseHeader(b)
			if h.HasDeleteHorizon() && h.NumRecords > 0 {
				t.Fatalf("batch at %d keeps a delete horizon without tombstones", h.BaseOffset)
			}
			recs, _ := batch.Records(b)
			for _, r := range recs {
				left[string(r.Key)] = h.FirstTimestamp + r.TimestampDelta
			}
		})
	}
	if want := map[string]int64{"k2": 101, "k3": 103, "k4": 105}; !maps.Equal(left, want) {
		t.Fatalf("records left (key: timestamp) %v, want %v", left, want)
	}
	for _, now := range []int64{1000 + retention, 1000 + 2*retention, 1 << 50} {
		if pl := planCleaning(l.input(limit, now, cfg)); pl.clean {
			t.Fatalf("at %d, the tombstones gone: plan %+v", now, pl)
		}
	}
}

// modelRecord is one record of the model log, by offset.
type modelRecord struct {
	key, value []byte
	ts         int64
}

// propLog is a log of segments held in memory, cleaned by the pure functions as the cleaner does.
type propLog struct {
	bases      []int64  // segment base offsets (file names; never change)
	segs       [][]byte // segment contents
	firstDirty int64
	expired    int // passes planned for a passed delete horizon
}

func (l *propLog) input(limit, now int64, cfg Compaction) cleanInput {
	in := cleanInput{firstDirty: l.firstDirty, limit: limit, nowMs: now, cfg: cfg}
	for i, b := range l.segs {
		s := cleanSeg{base: l.bases[i], end: l.bases[i], bytes: int64(len(b)), firstTs: -1, maxTs: -1, horizon: noHorizon, horizonKnown: true}
		for pos := 0; pos < len(b); {
			h, _ := batch.ParseHeader(b[pos:])
			if pos == 0 {
				s.firstTs = h.MaxTimestamp
			}
			if hz, ok := pendingHorizon(h); ok {
				s.horizon = min(s.horizon, hz)
			}
			s.maxTs = max(s.maxTs, h.MaxTimestamp)
			s.end = h.LastOffset() + 1
			pos += h.Size()
		}
		if len(b) == 0 && i+1 < len(l.bases) {
			s.end = l.bases[i+1] // a segment emptied by cleaning still spans up to the next
		}
		in.segs = append(in.segs, s)
	}
	return in
}

// pass runs one cleaner pass; it reports whether it cleaned.
func (l *propLog) pass(t *testing.T, limit, now int64, cfg Compaction, aborted abortedRanges) bool {
	t.Helper()
	pl := planCleaning(l.input(limit, now, cfg))
	if !pl.clean {
		return false
	}
	if pl.expired {
		l.expired++
	}
	keys := keyMap{}
	for _, s := range l.segs[pl.dirty:pl.to] {
		eachBatch(t, s, func(b []byte) {
			if _, err := keys.add(b, aborted); err != nil {
				t.Fatal(err)
			}
		})
	}
	r := cleanRules{keys: keys, aborted: aborted, nowMs: now, deleteRetentionMs: cfg.DeleteRetentionMs, producerLast: map[int64]int64{}}
	for _, s := range l.segs {
		eachBatch(t, s, func(b []byte) {
			h, _ := batch.ParseHeader(b)
			if h.ProducerID >= 0 && !h.IsControl() { // as the engine's producer state: markers carry no sequence
				r.producerLast[h.ProducerID] = h.BaseOffset
			}
		})
	}
	var st cleanStats
	var in, out int64
	for i := 0; i < pl.to; i++ {
		in += int64(len(l.segs[i]))
		cleaned, err := r.cleanSegmentBytes(l.segs[i], &st)
		if err != nil {
			t.Fatal(err)
		}
		l.segs[i] = cleaned
		out += int64(len(cleaned))
	}
	if st.recordsOut > st.recordsIn || st.bytesIn != in || st.bytesOut != out || st.batchesOut > st.batchesIn {
		t.Fatalf("stats %+v: %d bytes in, %d out", st, in, out)
	}
	l.firstDirty = pl.nextDirty
	return true
}

func eachBatch(t *testing.T, seg []byte, f func(b []byte)) {
	t.Helper()
	for pos := 0; pos < len(seg); {
		h, err := batch.ParseHeader(seg[pos:])
		if err != nil {
			t.Fatal(err)
		}
		b := seg[pos : pos+h.Size()]
		if err := batch.ValidateStored(b); err != nil {
			t.Fatalf("stored batch at offset %d: %v", h.BaseOffset, err)
		}
		f(b)
		pos += h.Size()
	}
}

// TestCleanerProperty builds random logs (few keys, tombstones, idempotent producers,
// transactions committed and aborted, spanning batches of other producers and segments, some
// left open, many segments), cleans them in passes with random limits (never past the last
// stable offset) and clocks, and checks after every pass that each record left is the original
// record at its offset, offsets strictly rise, every batch keeps its original offset range,
// each producer's last batch is there, records of open transactions are untouched, and a
// read_committed reader (skipping aborted transactions) gets the latest value of every key that
// the model (the latest record per key, aborted ones left out) names; at the end, after passes
// past the delete horizon, the clean section holds each key at most once, no tombstone and no
// aborted record, so a read_uncommitted reader gets the model's values too.
func TestCleanerProperty(t *testing.T) {
	merged, expired, removedMarkers := 0, 0, 0
	for seed := uint64(1); seed <= 60; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			m, e, r := cleanerProperty(t, seed)
			merged, expired, removedMarkers = merged+m, expired+e, removedMarkers+r
		})
	}
	if removedMarkers == 0 {
		t.Fatal("no transaction marker was removed in any seed")
	}
	if merged == 0 {
		t.Fatal("no run of removed batches was merged into one empty batch in any seed")
	}
	if expired == 0 {
		t.Fatal("no pass was planned for a passed delete horizon in any seed")
	}
}

// propTxn is one transaction of the property test's log.
type propTxn struct {
	pid           int64
	first, marker int64 // marker -1: still open
	commit        bool
}

func cleanerProperty(t *testing.T, seed uint64) (merged, expired, removedMarkers int) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	nKeys := 1 + rng.IntN(12)
	nBatches := 20 + rng.IntN(200)
	perSeg := 1 + rng.IntN(8)
	codec := []batch.Codec{batch.CodecNone, batch.CodecNone, batch.CodecZstd, batch.CodecLZ4}[rng.IntN(4)]
	cfg := Compaction{Enabled: true, MinDirtyRatio: rng.Float64(), DeleteRetentionMs: 1000 + int64(rng.IntN(5000)),
		MinLagMs: int64(rng.IntN(3)) * 500, MaxLagMs: math.MaxInt64}

	original := map[int64]modelRecord{}
	batchRange := map[int64]int64{} // base offset → last offset
	producerLast := map[int64]int64{}
	control := map[int64]bool{}   // offsets of transaction markers
	inTxn := map[int64]*propTxn{} // offset of a transactional record → its transaction
	open := map[int64]*propTxn{}  // producer → its open transaction
	var txns []*propTxn
	var l propLog
	var cur []byte
	offset, now := int64(0), int64(1_000_000)
	for i := 0; i < nBatches; i++ {
		if i%perSeg == 0 {
			if i > 0 {
				l.segs = append(l.segs, cur)
			}
			l.bases = append(l.bases, offset)
			cur = nil
		}
		// Sometimes a producer's open transaction ends first: its marker, a control batch of one
		// record (key: version 0, type 0 abort or 1 commit).
		if pid := int64(rng.IntN(3)); open[pid] != nil && rng.IntN(3) == 0 {
			tx := open[pid]
			delete(open, pid)
			tx.marker, tx.commit = offset, rng.IntN(3) > 0
			typ := byte(0)
			if tx.commit {
				typ = 1
			}
			ch := batch.Header{BaseOffset: offset, FirstTimestamp: now, MaxTimestamp: now, ProducerID: pid,
				ProducerEpoch: 0, BaseSequence: -1, Attributes: 0x30}
			marker := batch.Record{Key: []byte{0, 0, 0, typ}, Value: []byte{0, 0, 0, 0, 0, 0}}
			cur = append(cur, batch.Build(ch, []batch.Record{marker}, batch.CodecNone)...)
			original[offset] = modelRecord{key: marker.Key, value: marker.Value, ts: now}
			control[offset] = true
			batchRange[offset] = offset
			offset++
		}
		n := 1 + rng.IntN(5)
		h := batch.Header{BaseOffset: offset, FirstTimestamp: now, MaxTimestamp: now + int64(n-1), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
		var tx *propTxn
		if rng.IntN(2) == 0 {
			h.ProducerID, h.ProducerEpoch, h.BaseSequence = int64(rng.IntN(3)), 0, int32(i)
			producerLast[h.ProducerID] = offset
			// A producer in a transaction writes transactional batches until its marker.
			if tx = open[h.ProducerID]; tx == nil && rng.IntN(2) == 0 {
				tx = &propTxn{pid: h.ProducerID, first: offset, marker: -1}
				open[h.ProducerID] = tx
				txns = append(txns, tx)
			}
		}
		if tx != nil {
			h.Attributes |= 0x10
		}
		var recs []batch.Record
		for j := 0; j < n; j++ {
			key := []byte(fmt.Sprintf("k%d", rng.IntN(nKeys)))
			var value []byte
			if rng.IntN(6) > 0 {
				value = []byte(fmt.Sprintf("v%d-%d", offset+int64(j), rng.IntN(1000)))
			}
			recs = append(recs, batch.Record{OffsetDelta: int32(j), TimestampDelta: int64(j), Key: key, Value: value})
			original[offset+int64(j)] = modelRecord{key: key, value: value, ts: now + int64(j)}
			if tx != nil {
				inTxn[offset+int64(j)] = tx
			}
		}
		cur = append(cur, batch.Build(h, recs, codec)...)
		batchRange[offset] = offset + int64(n-1)
		offset += int64(n)
		now += int64(rng.IntN(400))
	}
	l.segs = append(l.segs, cur) // the last one stands for the active segment: never cleaned
	logEnd := offset
	batchEnds := map[int64]bool{}
	for _, last := range batchRange {
		batchEnds[last] = true
	}
	aborted := abortedRanges{}
	for _, tx := range txns { // in order of first offset; per producer that is marker order
		if tx.marker >= 0 && !tx.commit {
			aborted[tx.pid] = append(aborted[tx.pid], AbortedTxn{ProducerID: tx.pid, FirstOffset: tx.first, LastOffset: tx.marker})
		}
	}
	isAborted := func(off int64) bool { tx := inTxn[off]; return tx != nil && tx.marker >= 0 && !tx.commit }
	undecided := func(off int64) bool { tx := inTxn[off]; return tx != nil && tx.marker < 0 }
	// stable bounds a limit by the last stable offset: the first offset of the earliest
	// transaction not decided below it.
	stable := func(limit int64) int64 {
		for _, tx := range txns {
			if tx.first < limit && (tx.marker < 0 || tx.marker >= limit) {
				limit = min(limit, tx.first)
			}
		}
		return limit
	}

	// The model: the latest record per key over the whole log, aborted and open ones left out.
	model := map[string]int64{}
	for off := int64(0); off < logEnd; off++ {
		if !control[off] && !isAborted(off) && !undecided(off) {
			model[string(original[off].key)] = off
		}
	}

	// read reads the log as a consumer of the isolation level does (read_committed: records of
	// aborted transactions skipped, open ones not reached) and returns each key's last offset.
	read := func(committed bool) map[string]int64 {
		latest := map[string]int64{}
		for _, s := range l.segs {
			eachBatch(t, s, func(b []byte) {
				h, _ := batch.ParseHeader(b)
				recs, _ := batch.Records(b)
				for _, r := range recs {
					off := h.BaseOffset + int64(r.OffsetDelta)
					if h.IsControl() || undecided(off) || committed && isAborted(off) {
						continue
					}
					latest[string(r.Key)] = off
				}
			})
		}
		return latest
	}
	checkModel := func(when string, latest map[string]int64, model map[string]int64) {
		t.Helper()
		for k, off := range model {
			got, ok := latest[k]
			if original[off].value == nil {
				if ok && original[got].value != nil {
					t.Fatalf("%s: key %s deleted at %d, still reads %q from %d", when, k, off, original[got].value, got)
				}
				continue
			}
			if !ok || got != off {
				t.Fatalf("%s: key %s latest at %d, want %d", when, k, got, off)
			}
		}
	}

	// txnLeft says what is left in the log of transaction tx besides its marker ("" nothing):
	// a record of it, or a batch that still names its producer.
	txnLeft := func(tx *propTxn) string {
		left := ""
		for _, s := range l.segs {
			eachBatch(t, s, func(b []byte) {
				h, _ := batch.ParseHeader(b)
				if h.IsControl() || h.BaseOffset < tx.first || h.BaseOffset >= tx.marker || h.ProducerID != tx.pid || !h.IsTransactional() {
					return
				}
				left = fmt.Sprintf("its batch at %d (%d records) is there", h.BaseOffset, h.NumRecords)
			})
		}
		return left
	}
	check := func(when string) {
		t.Helper()
		prev, next := int64(-1), int64(0)
		present := map[int64]bool{}
		for i, s := range l.segs {
			if next != l.bases[i] {
				t.Fatalf("%s: segment %d starts at %d, the previous ends at %d", when, l.bases[i], l.bases[i], next)
			}
			eachBatch(t, s, func(b []byte) {
				h, _ := batch.ParseHeader(b)
				// Every batch keeps its original range, or is an empty batch (no producer, no
				// attributes) that stands for one removed batch or merged a run of them: together
				// they cover every offset, in order.
				removed := h.NumRecords == 0 && h.ProducerID == -1 && h.Attributes == 0
				if last, ok := batchRange[h.BaseOffset]; !ok || last != h.LastOffset() {
					_, starts := batchRange[h.BaseOffset]
					_, ends := batchEnds[h.LastOffset()]
					if !starts || !ends || !removed {
						t.Fatalf("%s: batch [%d, %d] (%d records, producer %d) is neither an original batch's range nor a merged empty run",
							when, h.BaseOffset, h.LastOffset(), h.NumRecords, h.ProducerID)
					}
					merged++
				} else if !removed && h.IsTransactional() != (inTxn[h.BaseOffset] != nil || control[h.BaseOffset]) {
					t.Fatalf("%s: batch at %d: transactional %v", when, h.BaseOffset, h.IsTransactional())
				}
				if h.BaseOffset != next {
					t.Fatalf("%s: batch at %d, want %d: the log must stay contiguous", when, h.BaseOffset, next)
				}
				next = h.LastOffset() + 1
				recs, err := batch.Records(b)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					off := h.BaseOffset + int64(r.OffsetDelta)
					if off <= prev {
						t.Fatalf("%s: offset %d after %d", when, off, prev)
					}
					prev = off
					present[off] = true
					if control[off] != h.IsControl() {
						t.Fatalf("%s: offset %d: control %v, was %v", when, off, h.IsControl(), control[off])
					}
					o := original[off]
					ts := h.FirstTimestamp + r.TimestampDelta
					if !bytes.Equal(r.Key, o.key) || !bytes.Equal(r.Value, o.value) || (r.Value == nil) != (o.value == nil) || ts != o.ts {
						t.Fatalf("%s: offset %d is %q=%q at %d, was %q=%q at %d", when, off, r.Key, r.Value, ts, o.key, o.value, o.ts)
					}
				}
			})
		}
		for off := range inTxn {
			if undecided(off) && !present[off] {
				t.Fatalf("%s: record %d of an open transaction is gone", when, off)
			}
		}
		// A marker goes only with everything else of its transaction: no record and no batch
		// of it is left (a producer's last batch stays, empty, and keeps its marker).
		for _, tx := range txns {
			if tx.marker < 0 || present[tx.marker] {
				continue
			}
			if left := txnLeft(tx); left != "" {
				t.Fatalf("%s: the marker at %d of producer %d's transaction from %d is gone, yet %s", when, tx.marker, tx.pid, tx.first, left)
			}
		}
		checkModel(when+", read_committed", read(true), model)
		for pid, base := range producerLast {
			found := false
			for _, s := range l.segs {
				eachBatch(t, s, func(b []byte) {
					h, _ := batch.ParseHeader(b)
					found = found || h.BaseOffset == base && h.ProducerID == pid
				})
			}
			if !found {
				t.Fatalf("%s: producer %d's last batch at %d is gone", when, pid, base)
			}
		}
	}

	activeBase := l.bases[len(l.bases)-1]
	for i := 0; i < 30; i++ {
		limit := stable(l.bases[rng.IntN(len(l.bases))])
		clock := now - int64(rng.IntN(20000)) + int64(i*1000)
		l.pass(t, limit, clock, cfg, aborted)
		check(fmt.Sprintf("pass %d (limit %d, now %d)", i, limit, clock))
	}
	// Everything sealed below the last stable offset, twice past the horizon: the first pass
	// stamps horizons on the tombstones it keeps, the second removes them.
	full := cfg
	full.MinDirtyRatio, full.MinLagMs, full.MaxLagMs = 0, 0, 1
	late := now + 10*cfg.DeleteRetentionMs
	final := stable(activeBase)
	for i := 0; i < 3; i++ {
		l.firstDirty = 0 // a full pass, as a forced one with everything dirty
		l.pass(t, final, late+int64(i)*10*cfg.DeleteRetentionMs, full, aborted)
		check(fmt.Sprintf("final pass %d", i))
	}
	// What the passes rewrote: the segments wholly below the final limit.
	cleaned := 0
	for cleaned+1 < len(l.bases) && l.bases[cleaned+1] <= final {
		cleaned++
	}
	// There, after the final passes, a marker is left exactly when something else of its
	// transaction is: the first pass empties the transaction and stamps the marker, the second,
	// past its horizon, removes it.
	markers := map[int64]bool{}
	for _, s := range l.segs[:cleaned] {
		eachBatch(t, s, func(b []byte) {
			if h, _ := batch.ParseHeader(b); h.IsControl() && h.NumRecords > 0 {
				markers[h.BaseOffset] = true
			}
		})
	}
	for _, tx := range txns {
		if tx.marker < 0 || tx.marker >= l.bases[cleaned] {
			continue
		}
		left := txnLeft(tx)
		if markers[tx.marker] != (left != "") {
			t.Fatalf("after the final passes: producer %d's transaction [%d, %d]: marker there %v, what else is left: %q",
				tx.pid, tx.first, tx.marker, markers[tx.marker], left)
		}
		if !markers[tx.marker] {
			removedMarkers++
		}
	}
	seen := map[string]bool{}
	for _, s := range l.segs[:cleaned] {
		eachBatch(t, s, func(b []byte) {
			h, _ := batch.ParseHeader(b)
			if h.IsControl() {
				return
			}
			recs, _ := batch.Records(b)
			for _, r := range recs {
				off := h.BaseOffset + int64(r.OffsetDelta)
				if isAborted(off) {
					t.Fatalf("record %d of an aborted transaction outlived the cleaning", off)
				}
				if seen[string(r.Key)] {
					t.Fatalf("key %s twice in the cleaned section", r.Key)
				}
				seen[string(r.Key)] = true
				if r.Value == nil {
					t.Fatalf("tombstone of %s outlived its horizon", r.Key)
				}
			}
		})
	}
	// read_uncommitted: what the model says, except for aborted records the passes did not
	// reach (at or past the end of the cleaned section), which such a reader sees.
	cleanEnd := l.bases[cleaned]
	uncommitted := map[string]int64{}
	for off := int64(0); off < logEnd; off++ {
		if !control[off] && !undecided(off) && (!isAborted(off) || off >= cleanEnd) {
			uncommitted[string(original[off].key)] = off
		}
	}
	checkModel("read_uncommitted after the final passes", read(false), uncommitted)
	return merged, l.expired, removedMarkers
}

// TestCleanerRemovesMarkers follows transaction markers through passes of the pure cleaner:
// a marker whose transaction left nothing else (its records superseded, or aborted) is stamped
// with a delete horizon by the pass that empties the transaction, stays until the horizon, and
// goes with the first pass after it, its offsets then held by an empty batch without a producer
// or attributes that also stands for the transaction's emptied batches; a marker whose
// transaction keeps a record, or whose producer's last batch is in it, stays unstamped.
func TestCleanerRemovesMarkers(t *testing.T) {
	const retention = 500
	var seg []byte
	off := int64(0)
	add := func(pid int64, attrs int16, recs ...batch.Record) int64 {
		h := batch.Header{BaseOffset: off, FirstTimestamp: 100 + off, MaxTimestamp: 100 + off, ProducerID: pid,
			ProducerEpoch: -1, BaseSequence: -1, Attributes: attrs}
		if pid >= 0 {
			h.ProducerEpoch = 0
		}
		for i := range recs {
			recs[i].OffsetDelta = int32(i)
		}
		seg = append(seg, batch.Build(h, recs, batch.CodecNone)...)
		base := off
		off += int64(len(recs))
		return base
	}
	rec := func(k, v string) batch.Record { return batch.Record{Key: []byte(k), Value: []byte(v)} }
	mark := func(pid int64, commit bool) int64 {
		typ := byte(0)
		if commit {
			typ = 1
		}
		return add(pid, 0x30, batch.Record{Key: []byte{0, 0, 0, typ}, Value: []byte{0, 0, 0, 0, 0, 3}})
	}
	superseded := add(5, 0x10, rec("a", "old"))
	supersededMarker := mark(5, true)
	abortedData := add(6, 0x10, rec("b", "aborted"))
	abortedMarker := mark(6, false)
	add(-1, 0, rec("a", "new"))
	keptData := add(7, 0x10, rec("z", "latest"))
	keptMarker := mark(7, true)
	lastData := add(8, 0x10, rec("c", "old"))
	lastMarker := mark(8, true)
	add(-1, 0, rec("c", "new"), rec("b", "committed"))
	end := off

	aborted := abortedRanges{6: {{ProducerID: 6, FirstOffset: abortedData, LastOffset: abortedMarker}}}
	keys := keyMap{}
	for pos := 0; pos < len(seg); {
		h, _ := batch.ParseHeader(seg[pos:])
		if _, err := keys.add(seg[pos:pos+h.Size()], aborted); err != nil {
			t.Fatal(err)
		}
		pos += h.Size()
	}
	pass := func(now int64) (out []byte, st cleanStats) {
		t.Helper()
		r := cleanRules{keys: keys, aborted: aborted, nowMs: now, deleteRetentionMs: retention,
			producerLast: map[int64]int64{8: lastData}}
		out, err := r.cleanSegmentBytes(seg, &st)
		if err != nil {
			t.Fatal(err)
		}
		return out, st
	}
	type view struct {
		h    batch.Header
		recs int
	}
	batches := func(b []byte) map[int64]view {
		m := map[int64]view{}
		var next int64
		for pos := 0; pos < len(b); {
			h, err := batch.ParseHeader(b[pos:])
			if err != nil {
				t.Fatal(err)
			}
			if h.BaseOffset != next {
				t.Fatalf("batch at %d after one ending at %d", h.BaseOffset, next-1)
			}
			next = h.LastOffset() + 1
			m[h.BaseOffset] = view{h, int(h.NumRecords)}
			pos += h.Size()
		}
		if next != end {
			t.Fatalf("the cleaned segment ends at %d, want %d", next, end)
		}
		return m
	}

	// The first pass empties transactions 5 and 6 and stamps their markers; 7 keeps a record,
	// 8 its producer's last batch (empty, named): their markers stay as they were.
	seg, _ = pass(1000)
	bs := batches(seg)
	for _, m := range []int64{supersededMarker, abortedMarker} {
		v := bs[m]
		if !v.h.IsControl() || v.recs != 1 || !v.h.HasDeleteHorizon() || v.h.FirstTimestamp != 1000+retention {
			t.Fatalf("marker at %d after the first pass: %+v", m, v.h)
		}
		if hz, ok := pendingHorizon(v.h); !ok || hz != 1000+retention {
			t.Fatalf("marker at %d: pending horizon %d, %v", m, hz, ok)
		}
		recs, err := batch.Records(segBatch(t, seg, m))
		if err != nil || len(recs) != 1 || v.h.FirstTimestamp+recs[0].TimestampDelta != 100+m {
			t.Fatalf("marker at %d: its record's timestamp moved: %+v, %v", m, recs, err)
		}
	}
	for _, d := range []int64{superseded, abortedData} {
		if v := bs[d]; v.recs != 0 || v.h.ProducerID != -1 || v.h.Attributes != 0 {
			t.Fatalf("emptied transactional batch at %d still names its producer: %+v", d, v.h)
		}
	}
	for _, m := range []int64{keptMarker, lastMarker} {
		if v := bs[m]; !v.h.IsControl() || v.h.HasDeleteHorizon() {
			t.Fatalf("marker at %d of a transaction with something left: %+v", m, v.h)
		}
	}
	if v := bs[lastData]; v.recs != 0 || v.h.ProducerID != 8 || !v.h.IsTransactional() {
		t.Fatalf("producer 8's last batch: %+v", v.h)
	}
	if v := bs[keptData]; v.recs != 1 || v.h.ProducerID != 7 {
		t.Fatalf("transaction 7's kept record: %+v", v.h)
	}

	// Before the horizon nothing changes.
	if out, _ := pass(1000 + retention - 1); !bytes.Equal(out, seg) {
		t.Fatal("a pass before the markers' horizon changed the segment")
	}
	// At the horizon the two markers go: the run of both transactions' emptied batches and
	// markers becomes one empty batch.
	seg, st := pass(1000 + retention)
	if st.markersRemoved != 2 {
		t.Fatalf("%d markers removed, want 2", st.markersRemoved)
	}
	bs = batches(seg)
	if v, ok := bs[superseded]; !ok || v.h.LastOffset() != abortedMarker || v.recs != 0 || v.h.ProducerID != -1 || v.h.Attributes != 0 {
		t.Fatalf("offsets %d-%d after the horizon: %+v", superseded, abortedMarker, v.h)
	}
	for _, m := range []int64{keptMarker, lastMarker} {
		if v := bs[m]; !v.h.IsControl() || v.recs != 1 {
			t.Fatalf("marker at %d went: %+v", m, v.h)
		}
	}
	// And then the segment is stable, however late.
	if out, _ := pass(1 << 50); !bytes.Equal(out, seg) {
		t.Fatal("a pass after the removal changed the segment again")
	}
}

// segBatch returns the batch of seg that starts at offset base.
func segBatch(t *testing.T, seg []byte, base int64) []byte {
	t.Helper()
	for pos := 0; pos < len(seg); {
		h, err := batch.ParseHeader(seg[pos:])
		if err != nil {
			t.Fatal(err)
		}
		if h.BaseOffset == base {
			return seg[pos : pos+h.Size()]
		}
		pos += h.Size()
	}
	t.Fatalf("no batch at %d", base)
	return nil
}
