package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/crashfs"
)

// txnProduce appends one transactional batch of n records and waits until it is durable.
func txnProduce(t *testing.T, p *Partition, pid int64, epoch int16, seq int32, n int) AppendResult {
	t.Helper()
	return mustAppend(t, p, mkBatch(batchOpts{pid: pid, epoch: epoch, seq: seq, n: n, value: "txn", attrs: 0x10}))
}

// marker appends a transaction marker and waits until it is durable.
func marker(t *testing.T, p *Partition, pid int64, epoch int16, commit bool) int64 {
	t.Helper()
	ch := make(chan error, 1)
	res, err := p.AppendMarker(pid, epoch, commit, 3, func(err error) { ch <- err })
	if err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	return res.BaseOffset
}

// readIsolated reads from offset to the limit of the isolation level and
// returns the batch headers and the aborted transactions the reads listed.
func readIsolated(t *testing.T, p *Partition, from int64, committed bool) ([]batch.Header, []AbortedTxn) {
	t.Helper()
	var hs []batch.Header
	var aborted []AbortedTxn
	for off := from; ; {
		res, err := p.ReadIsolated(off, 700, true, committed)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) == 0 {
			return hs, aborted
		}
		bs, err := batch.Split(res.Records)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			h, _ := batch.ParseHeader(b)
			if committed && h.LastOffset() >= res.LastStableOffset {
				t.Fatalf("read_committed returned a batch ending at %d, last stable offset %d", h.LastOffset(), res.LastStableOffset)
			}
			hs = append(hs, h)
			off = h.LastOffset() + 1
		}
		for _, a := range res.Aborted {
			if !slices.Contains(aborted, a) {
				aborted = append(aborted, a)
			}
		}
	}
}

func endOf(hs []batch.Header) int64 {
	if len(hs) == 0 {
		return 0
	}
	return hs[len(hs)-1].LastOffset() + 1
}

// TestTransactionsInTheLog: the last stable offset stops at the first
// offset of an ongoing transaction; read_committed reads below it; an
// aborted transaction is listed for reads overlapping it, a committed one
// is not; a marker of an older epoch is refused. All of it survives a
// clean restart, a crash restart and the loss of the .txnindex files.
func TestTransactionsInTheLog(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, SegmentBytes: 1 << 10, IndexIntervalBytes: 256}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	fill(t, p, 3)
	if lso := p.LastStableOffset(); lso != p.HighWatermark() {
		t.Fatalf("lso %d without transactions, hw %d", lso, p.HighWatermark())
	}

	// Producer 5 aborts, producer 6 commits, interleaved with plain batches.
	first5 := txnProduce(t, p, 5, 1, 0, 2).BaseOffset
	fill(t, p, 2)
	first6 := txnProduce(t, p, 6, 0, 0, 3).BaseOffset
	txnProduce(t, p, 5, 1, 2, 2)
	if lso := p.LastStableOffset(); lso != first5 {
		t.Fatalf("lso %d, want the first offset %d of the open transaction", lso, first5)
	}
	hs, _ := readIsolated(t, p, 0, true)
	if endOf(hs) != first5 {
		t.Fatalf("read_committed read up to %d, want %d", endOf(hs), first5)
	}
	if hs, _ := readIsolated(t, p, 0, false); endOf(hs) != p.HighWatermark() {
		t.Fatalf("read_uncommitted read up to %d, want the hw %d", endOf(hs), p.HighWatermark())
	}
	if _, err := p.AppendMarker(5, 0, true, 3, nil); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("marker of an older epoch: %v", err)
	}
	abort5 := marker(t, p, 5, 1, false)
	if lso := p.LastStableOffset(); lso != first6 {
		t.Fatalf("lso %d after the abort, want %d (producer 6 still open)", lso, first6)
	}
	commit6 := marker(t, p, 6, 0, true)
	fill(t, p, 4) // roll past the markers' segment
	// Producer 5 goes on in the same epoch, sequence continued, and aborts again.
	first5b := txnProduce(t, p, 5, 1, 4, 1).BaseOffset
	abort5b := marker(t, p, 5, 1, false)

	want := []AbortedTxn{{5, first5, abort5}, {5, first5b, abort5b}}
	check := func(when string) {
		t.Helper()
		if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != hw {
			t.Fatalf("%s: lso %d, hw %d: no transaction is open", when, lso, hw)
		}
		hs, aborted := readIsolated(t, p, 0, true)
		if endOf(hs) != p.HighWatermark() {
			t.Fatalf("%s: read_committed read up to %d, hw %d", when, endOf(hs), p.HighWatermark())
		}
		if !slices.Equal(aborted, want) {
			t.Fatalf("%s: aborted %v, want %v (commit marker at %d)", when, aborted, want, commit6)
		}
		// A read starting after the first abort's marker lists only the second.
		if _, a := readIsolated(t, p, abort5+1, true); !slices.Equal(a, want[1:]) {
			t.Fatalf("%s: aborted from %d: %v", when, abort5+1, a)
		}
		if res := txnProduce(t, p, 5, 1, 4, 1); !res.Duplicate || res.BaseOffset != first5b {
			t.Fatalf("%s: resent transactional batch: %+v, want a duplicate at %d", when, res, first5b)
		}
	}
	check("live")
	// An open transaction across restarts.
	first7 := txnProduce(t, p, 7, 0, 0, 1).BaseOffset

	reopen := func(when string, crash bool, prep func()) {
		t.Helper()
		e.Close()
		if crash {
			asAfterCrash(t, dir)
		}
		if prep != nil {
			prep()
		}
		e = openEngine(t, cfg, tpA)
		p = e.Partition(tpA)
		if lso := p.LastStableOffset(); lso != first7 {
			t.Fatalf("%s: lso %d, want producer 7's first offset %d", when, lso, first7)
		}
		hs, aborted := readIsolated(t, p, 0, true)
		if endOf(hs) != first7 || !slices.Equal(aborted, want) {
			t.Fatalf("%s: read_committed up to %d (want %d), aborted %v (want %v)", when, endOf(hs), first7, aborted, want)
		}
	}
	reopen("clean restart", false, nil)
	reopen("crash restart", true, nil)
	txi, _ := filepath.Glob(filepath.Join(dir, "orders-0", "*"+txnIndexSuffix))
	if len(txi) < 1 {
		logs, _ := filepath.Glob(filepath.Join(dir, "orders-0", "*"))
		t.Fatalf("%d .txnindex files; want one per sealed segment: %v", len(txi), logs)
	}
	reopen("txnindex files lost", true, func() {
		for _, f := range txi {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	})
	if again, _ := filepath.Glob(filepath.Join(dir, "orders-0", "*"+txnIndexSuffix)); len(again) < len(txi)-1 {
		t.Fatalf("recovery rewrote %d of %d .txnindex files", len(again), len(txi))
	}
	marker(t, p, 7, 0, true)
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != hw {
		t.Fatalf("lso %d after producer 7 committed, hw %d", lso, hw)
	}
}

// TestTransactionUnstableBelowHighWatermark: in a cluster the high
// watermark lags the log end; a transaction decided by a marker the high
// watermark has not passed is not stable yet.
func TestTransactionUnstableBelowHighWatermark(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), OnDurable: func(*Partition, int64) {}}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	first := txnProduce(t, p, 5, 0, 0, 2).BaseOffset
	m := marker(t, p, 5, 0, true)
	p.SetHighWatermark(m) // the marker itself is not below it
	if lso := p.LastStableOffset(); lso != first {
		t.Fatalf("lso %d with the commit marker at the hw %d, want %d", lso, m, first)
	}
	p.SetHighWatermark(m + 1)
	if lso := p.LastStableOffset(); lso != m+1 {
		t.Fatalf("lso %d once the hw passed the marker, want %d", lso, m+1)
	}
}

// TestPowerCutKeepsMarkers cuts the power while transactions commit and
// abort: after recovery (and the aborts a coordinator sends for what is
// left open) every acknowledged abort is listed and no acknowledged commit.
// After each step the last stable offset from the index of ongoing
// transactions is what a walk over every producer finds.
func TestPowerCutKeepsMarkers(t *testing.T) {
	dir := t.TempDir()
	cfs := crashfs.New(vfs.OSFS{})
	cfg := Config{DataDir: dir, FS: cfs, Logger: quietLogger(), SegmentBytes: 2 << 10, IndexIntervalBytes: 256,
		WALFileBytes: 64 << 10, CheckpointBytes: 8 << 10}
	e, err := testOpen(cfg, []PartitionSpec{specFor(tpA)})
	if err != nil {
		t.Fatal(err)
	}
	p := e.Partition(tpA)
	type txn struct {
		pid   int64
		first int64
		end   int64
		abort bool
	}
	var mu sync.Mutex
	var acked []txn
	var wg sync.WaitGroup
	for w := int64(1); w <= 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, seq := 0, int32(0); ; i, seq = i+1, seq+2 {
				res, err := appendWaitQuiet(p, mkBatch(batchOpts{pid: w, seq: seq, n: 2, value: "txn", attrs: 0x10}))
				if err != nil {
					return
				}
				abort := (i+int(w))%2 == 0
				ch := make(chan error, 1)
				mres, err := p.AppendMarker(w, 0, !abort, 0, func(err error) { ch <- err })
				if err == nil {
					err = <-ch
				}
				if err != nil {
					return
				}
				checkLSO(t, p, fmt.Sprintf("producer %d's transaction %d", w, i))
				mu.Lock()
				acked = append(acked, txn{w, res.BaseOffset, mres.BaseOffset, abort})
				n := len(acked)
				mu.Unlock()
				if n == 60 {
					if err := cfs.Crash(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	e.Close()

	cfg.FS = vfs.OSFS{}
	e = openEngine(t, cfg, tpA)
	p = e.Partition(tpA)
	// Transactions whose marker was not acknowledged may be open: the
	// coordinator would abort them after its own recovery.
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso > hw {
		t.Fatalf("lso %d above hw %d", lso, hw)
	}
	checkLSO(t, p, "recovered")
	for w := int64(1); w <= 3; w++ {
		marker(t, p, w, 0, false)
		checkLSO(t, p, fmt.Sprintf("producer %d aborted", w))
	}
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != hw {
		t.Fatalf("lso %d, hw %d after every producer's transaction was aborted", lso, hw)
	}
	_, aborted := readIsolated(t, p, 0, true)
	for _, x := range acked {
		listed := slices.Contains(aborted, AbortedTxn{ProducerID: x.pid, FirstOffset: x.first, LastOffset: x.end})
		if listed != x.abort {
			t.Fatalf("acknowledged transaction %+v: listed as aborted %v; aborted %v", x, listed, aborted)
		}
	}
}

// markerFrom appends a marker of coordinator epoch coordEpoch and waits until it is durable;
// it returns the append's error.
func markerFrom(p *Partition, pid int64, coordEpoch int32) error {
	ch := make(chan error, 1)
	if _, err := p.AppendMarker(pid, 0, true, coordEpoch, func(err error) { ch <- err }); err != nil {
		return err
	}
	return <-ch
}

// TestMarkerOfDeposedCoordinatorRefused: a marker whose coordinator epoch is below that of the
// producer's last marker is refused (TRANSACTION_COORDINATOR_FENCED), an equal or higher one
// taken; the epoch survives a clean restart (snapshot), a crash restart, a restart without
// snapshots (every header walked) and a truncation, which brings back the epoch of the last
// marker kept. DescribeProducers' fields come from the same state.
func TestMarkerOfDeposedCoordinatorRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, SegmentBytes: 1 << 10, IndexIntervalBytes: 256}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	seq := int32(0)
	txn := func(coordEpoch int32) error {
		t.Helper()
		txnProduce(t, p, 5, 0, seq, 1)
		seq++
		return markerFrom(p, 5, coordEpoch)
	}
	if err := txn(4); err != nil {
		t.Fatal(err)
	}
	if err := txn(3); !errors.Is(err, ErrCoordinatorFenced) {
		t.Fatalf("marker of coordinator epoch 3 after one of 4: %v", err)
	}
	if err := markerFrom(p, 5, 4); err != nil { // the same coordinator again
		t.Fatal(err)
	}
	if err := markerFrom(p, 6, 1); err != nil { // a producer without markers here takes any
		t.Fatal(err)
	}
	fill(t, p, 8) // roll: snapshots below the markers
	check := func(when string, want int32) {
		t.Helper()
		if err := markerFrom(p, 5, want-1); !errors.Is(err, ErrCoordinatorFenced) {
			t.Fatalf("%s: marker of coordinator epoch %d after one of %d: %v", when, want-1, want, err)
		}
		var got *ProducerInfo
		for _, pi := range p.Producers() {
			if pi.ProducerID == 5 {
				got = &pi
			}
		}
		if got == nil || got.CoordinatorEpoch != want || got.LastTimestamp < 0 {
			t.Fatalf("%s: producer 5 described as %+v, want coordinator epoch %d and a timestamp", when, got, want)
		}
	}
	check("live", 4)
	reopen := func(crash, dropSnapshots bool) {
		t.Helper()
		e.Close()
		if crash {
			asAfterCrash(t, dir)
		}
		if dropSnapshots {
			snaps, _ := filepath.Glob(filepath.Join(dir, "orders-0", "*"+snapshotSuffix))
			if len(snaps) == 0 {
				t.Fatal("no producer snapshot was written")
			}
			for _, f := range snaps {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
		}
		e = openEngine(t, cfg, tpA)
		p = e.Partition(tpA)
	}
	reopen(false, false)
	check("clean restart", 4)
	reopen(true, false)
	check("crash restart", 4)
	reopen(true, true)
	check("restart without snapshots", 4)

	// A later coordinator's marker, then a truncation cutting it: epoch 4 again.
	txnProduce(t, p, 5, 0, seq, 1)
	cut := p.LogEndOffset()
	if err := markerFrom(p, 5, 9); err != nil {
		t.Fatal(err)
	}
	check("after epoch 9", 9)
	if err := p.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	check("truncated", 4)
	if err := markerFrom(p, 5, 4); err != nil {
		t.Fatalf("marker of coordinator epoch 4 after the truncation: %v", err)
	}
}

// TestSnapshotV2Readable: a producer snapshot written before coordinator epochs ("RPS2") is
// read; its producers have no marker epoch (any coordinator's marker is taken).
func TestSnapshotV2Readable(t *testing.T) {
	st := producerState{epoch: 3, batches: []seqRange{{0, 4, 100}}, txnFirst: 120}
	b := make([]byte, 8, 128)
	for _, v := range []int64{200, 0, 150} { // offset, last segment, last position
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	b = binary.LittleEndian.AppendUint32(b, 0xabcd) // last batch's CRC
	b = binary.LittleEndian.AppendUint32(b, 0)      // epochs
	b = binary.LittleEndian.AppendUint32(b, 1)      // producers
	b = binary.LittleEndian.AppendUint64(b, 7)
	b = binary.LittleEndian.AppendUint16(b, uint16(st.epoch))
	b = append(b, 1)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 4)
	b = binary.LittleEndian.AppendUint64(b, 100)
	b = binary.LittleEndian.AppendUint64(b, 120)
	b = append(b, 1) // transactions seen
	binary.LittleEndian.PutUint32(b, snapMagicV2)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	s, err := decodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	got := s.prod[7]
	if got.epoch != 3 || got.txnFirst != 120 || len(got.batches) != 1 || got.coordEpoch != noMarker || got.lastTs != -1 || !s.txnSeen {
		t.Fatalf("decoded %+v (seen %v)", got, s.txnSeen)
	}
	if err := s.prod.checkCoordinator(7, 0); err != nil {
		t.Fatal(err)
	}
	// And the current format round-trips both fields.
	got.coordEpoch, got.lastTs = 6, 1234
	s.prod[7] = got
	again, err := decodeSnapshot(s.encode())
	if err != nil || again.prod[7].coordEpoch != 6 || again.prod[7].lastTs != 1234 {
		t.Fatalf("round trip: %+v, %v", again, err)
	}
}

// lsoByWalk is the last stable offset as it was computed before the index of ongoing
// transactions: a walk over every producer.
func lsoByWalk(p *Partition) int64 {
	lso := p.hw.Load()
	if !p.txn.seen {
		return lso
	}
	p.pruneStableLocked()
	for _, u := range p.txn.unstable {
		lso = min(lso, u.first)
	}
	for _, st := range p.prod {
		if st.txnFirst >= 0 {
			lso = min(lso, st.txnFirst)
		}
	}
	return max(lso, p.logStart)
}

// checkLSO fails unless the last stable offset read from the index of ongoing transactions is
// what a walk over every producer finds.
func checkLSO(t *testing.T, p *Partition, when string) {
	t.Helper()
	p.mu.Lock()
	walked, indexed := lsoByWalk(p), p.lastStableLocked()
	p.mu.Unlock()
	if walked != indexed {
		t.Errorf("%s: last stable offset %d from the index of ongoing transactions, %d from a walk over the producers", when, indexed, walked)
	}
}

// TestOngoingIndexProperty runs random transactional workloads (producers opening, committing
// and aborting transactions, plain batches, truncations, clean and crash restarts, with and
// without snapshots) and compares, after every operation, the last stable offset read from the
// index of ongoing transactions with a walk over every producer.
func TestOngoingIndexProperty(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { ongoingIndexProperty(t, seed) })
	}
}

func ongoingIndexProperty(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir()
	cfg := Config{DataDir: dir, SegmentBytes: 1 << 10, IndexIntervalBytes: 256}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)
	var bases []int64 // base offsets of the batches in the log, for truncation points
	next := func(pid int64) (int16, int32) {
		for _, pi := range p.Producers() {
			if pi.ProducerID == pid {
				return pi.ProducerEpoch, pi.LastSequence + 1
			}
		}
		return 0, 0
	}
	for op := 0; op < 300; op++ {
		pid := int64(1 + rng.IntN(6))
		var what string
		switch k := rng.IntN(20); {
		case k < 8:
			what = "transactional batch"
			epoch, seq := next(pid)
			bases = append(bases, txnProduce(t, p, pid, epoch, seq, 1+rng.IntN(3)).BaseOffset)
		case k < 13:
			what = "marker"
			epoch, _ := next(pid)
			ch := make(chan error, 1)
			res, err := p.AppendMarker(pid, epoch, rng.IntN(2) == 0, 0, func(err error) { ch <- err })
			if err != nil {
				t.Fatal(err)
			}
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
			bases = append(bases, res.BaseOffset)
		case k < 16:
			what = "plain batch"
			bases = append(bases, mustAppend(t, p, mkBatch(batchOpts{n: 2, value: "plain"})).BaseOffset)
		case k < 18:
			if len(bases) == 0 {
				continue
			}
			i := rng.IntN(len(bases))
			what = fmt.Sprintf("truncation to %d", bases[i])
			if err := p.TruncateTo(bases[i]); err != nil {
				t.Fatal(err)
			}
			bases = bases[:i]
		default:
			crash, drop := rng.IntN(2) == 0, rng.IntN(3) == 0
			what = fmt.Sprintf("restart (crash %v, snapshots dropped %v)", crash, drop)
			e.Close()
			if crash {
				asAfterCrash(t, dir)
			}
			if drop {
				snaps, _ := filepath.Glob(filepath.Join(dir, "orders-0", "*"+snapshotSuffix))
				for _, f := range snaps {
					if err := os.Remove(f); err != nil {
						t.Fatal(err)
					}
				}
			}
			e = openEngine(t, cfg, tpA)
			p = e.Partition(tpA)
		}
		checkLSO(t, p, fmt.Sprintf("op %d, %s", op, what))
		if t.Failed() {
			return
		}
	}
}

// TestMarkerOf: a marker's type comes from its key and its coordinator epoch from its value; a
// value too short for the epoch leaves the type readable (an ABORT stays an abort).
func TestMarkerOf(t *testing.T) {
	h := batch.Header{Attributes: 0x30, ProducerID: 5, BaseSequence: -1}
	full := batch.Build(h, []batch.Record{{Key: []byte{0, 0, 0, controlAbort}, Value: []byte{0, 0, 0, 0, 0, 9}}}, batch.CodecNone)
	if typ, ce, err := markerOf(full); err != nil || typ != controlAbort || ce != 9 {
		t.Fatalf("full marker: type %d, coordinator epoch %d, %v", typ, ce, err)
	}
	short := batch.Build(h, []batch.Record{{Key: []byte{0, 0, 0, controlAbort}, Value: []byte{0, 0}}}, batch.CodecNone)
	if typ, ce, err := markerOf(short); err != nil || typ != controlAbort || ce != noMarker {
		t.Fatalf("marker with a short value: type %d, coordinator epoch %d, %v", typ, ce, err)
	}
}
