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
			if h.ProducerID >= 0 {
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
	merged, expired := 0, 0
	for seed := uint64(1); seed <= 60; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			m, e := cleanerProperty(t, seed)
			merged, expired = merged+m, expired+e
		})
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

func cleanerProperty(t *testing.T, seed uint64) (merged, expired int) {
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
			producerLast[pid] = offset
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
				// Every batch keeps its original range, or is an empty batch (no producer) that
				// merged a run of removed ones: together they cover every offset, in order.
				if last, ok := batchRange[h.BaseOffset]; !ok || last != h.LastOffset() {
					_, starts := batchRange[h.BaseOffset]
					_, ends := batchEnds[h.LastOffset()]
					if !starts || !ends || h.NumRecords != 0 || h.ProducerID != -1 || h.Attributes != 0 {
						t.Fatalf("%s: batch [%d, %d] (%d records, producer %d) is neither an original batch's range nor a merged empty run",
							when, h.BaseOffset, h.LastOffset(), h.NumRecords, h.ProducerID)
					}
					merged++
				} else if h.IsTransactional() != (inTxn[h.BaseOffset] != nil || control[h.BaseOffset]) {
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
		for off := range control {
			if !present[off] {
				t.Fatalf("%s: transaction marker %d is gone", when, off)
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
	return merged, l.expired
}
