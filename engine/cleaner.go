package engine

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs"
)

// The log cleaner: one goroutine per engine (Kafka's log cleaner thread) that compacts the
// partitions whose Compaction is enabled, with the plan and the batch rules of cleaner_plan.go.
//
// A pass over one partition: plan under the partition lock (sealed, indexed segments wholly
// below the cleanable limit: see cleanableLimitLocked); build the key map from the dirty
// segments and rewrite each segment without any lock (sealed segments below the high watermark
// do not change), to <base>.log.cleaned, synced; then swap it in. The swap, per segment:
//
//  1. remove <base>.index and <base>.timeindex, sync the directory: from here on recovery
//     validates this segment (and the later ones) batch by batch instead of trusting index
//     files that may describe the other content;
//  2. rename <base>.log.cleaned over <base>.log, sync the directory: the one atomic step. A
//     crash before it leaves the old segment (recovery removes a stray .cleaned file), after it
//     the new one. Kafka goes through .swap files because it merges several segments into one;
//     a cleaned segment here replaces exactly one, so a rename does;
//  3. open the new file, read its batch headers into the in-memory indexes, write and sync its
//     index files, point the producer snapshot that names its last batch at the new copy
//     (restampSnapshots), and put it in place of the old segment under the partition lock. The old
//     segment's descriptor goes to the graves (retention.go): a read that found it before the
//     swap goes on reading the old inode, and a later retention pass closes it.
//
// The swap holds startMu (TruncateTo and DeleteRecords wait) and checks under mu that the
// segment is still there unchanged (retention may have deleted it, a truncation cut it) and the
// partition open; otherwise the cleaned file is dropped. The cleaner checkpoint (firstDirty,
// cleaner_ckpt.go) is written after the swaps of a pass.

// DefaultCleanerKeyMapBytes bounds the memory of one pass's key map (Kafka's
// log.cleaner.dedupe.buffer.size is 128 MiB).
const DefaultCleanerKeyMapBytes = 128 << 20

// DefaultCleanerInterval is how often the cleaner looks for work (Kafka's log.cleaner.backoff.ms
// is 15 s).
const DefaultCleanerInterval = 15 * time.Second

// cleanedSuffix names a cleaned segment before the swap.
const cleanedSuffix = ".cleaned"

// cleanerState is one partition's cleaner bookkeeping. Guarded by the partition's mu.
type cleanerState struct {
	// firstDirty: segments based below it were cleaned by an earlier pass (cleaner_ckpt.go).
	firstDirty int64
	// persisted and persistedEpoch: what the cleaner checkpoint file holds (0, -1: none).
	persisted      int64
	persistedEpoch int32
	// cuts counts the cuts of the log: a pass raises firstDirty only if none came meanwhile.
	cuts uint64
	// ckptSafe: every batch below it was durable before the WAL position of the last durable
	// checkpoint was taken, so WAL replay never rewrites those bytes (set by the checkpointer).
	ckptSafe int64
	running  bool // a pass is under way; the next waits
}

// cut forgets what the cleaner knew of offsets at and above end: a truncation or reset put
// other batches there, which a later checkpoint has to make safe again.
func (c *cleanerState) cut(end int64) {
	c.firstDirty = min(c.firstDirty, end)
	c.ckptSafe = min(c.ckptSafe, end)
	c.cuts++
}

// CleanerStats is what the cleaner did since the engine opened (ringtail_log_cleaner_*).
type CleanerStats struct {
	Passes        uint64  // partition passes that cleaned something
	BytesRead     uint64  // segment bytes read (key maps and rewrites)
	BytesWritten  uint64  // cleaned segment bytes written
	LastRunMs     int64   // duration of the last cleaning pass over all partitions, ms
	MaxDirtyRatio float64 // the largest dirty ratio the last run saw
}

type cleanerCounters struct {
	passes, bytesRead, bytesWritten atomic.Uint64
	lastRunMs                       atomic.Int64
	maxDirtyRatio                   atomic.Uint64 // math.Float64bits
}

// CleanerStats returns the cleaner's counters.
func (e *Engine) CleanerStats() CleanerStats {
	c := &e.cleaner
	return CleanerStats{Passes: c.passes.Load(), BytesRead: c.bytesRead.Load(), BytesWritten: c.bytesWritten.Load(),
		LastRunMs: c.lastRunMs.Load(), MaxDirtyRatio: float64frombits(c.maxDirtyRatio.Load())}
}

// CleanerCounters is CleanerStats for the metrics: bytes read and written, the last run's
// duration and largest dirty ratio.
func (e *Engine) CleanerCounters() (read, written uint64, lastRun time.Duration, maxDirtyRatio float64) {
	st := e.CleanerStats()
	return st.BytesRead, st.BytesWritten, time.Duration(st.LastRunMs) * time.Millisecond, st.MaxDirtyRatio
}

// cleanerLoop runs Clean every interval until stop is closed.
func (e *Engine) cleanerLoop(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			e.runCleaner(stop)
		}
	}
}

// Clean runs one cleaner pass over every partition whose policy compacts. It runs on the
// cleaner's timer; tests and tools may call it directly.
func (e *Engine) Clean() { e.runCleaner(nil) }

func (e *Engine) runCleaner(stop <-chan struct{}) {
	start := time.Now()
	maxRatio := 0.0
	for _, p := range e.Partitions() {
		select {
		case <-stop:
			return
		default:
		}
		ratio, err := p.cleanOnce(e.now(), stop)
		maxRatio = max(maxRatio, ratio)
		if err != nil && !errors.Is(err, errCleanAborted) {
			e.log.Error("engine: log cleaner: pass failed; the log is as it was", "partition", p.name, "err", err)
		}
	}
	e.cleaner.lastRunMs.Store(time.Since(start).Milliseconds())
	e.cleaner.maxDirtyRatio.Store(float64bits(maxRatio))
}

// errCleanAborted: the partition changed under the pass (closed, truncated, segment deleted).
var errCleanAborted = errors.New("engine: cleaning aborted")

// cleanableLimitLocked is the offset no pass may rewrite at or past: the high watermark (a
// follower may not have what lies above, and a truncation may cut it), the last durable
// checkpoint's safe offset (WAL replay may rewrite what lies above in place; with Durability
// "none" the WAL holds none of the partition's records, and the offset is what the checkpoint
// synced). And the last stable offset, as Kafka's cleaner. p.mu held.
func (p *Partition) cleanableLimitLocked() int64 {
	// Whether an open transaction's records commit or abort is not known yet.
	return min(p.hw.Load(), p.lastStableLocked(), p.cleaner.ckptSafe)
}

// checkKeyed refuses a batch with a record without a key: a compacted topic keeps the latest
// record per key, and Kafka answers INVALID_RECORD to such a produce.
func checkKeyed(b []byte) error {
	recs, err := batch.Records(b)
	if err != nil {
		return mapBatchError(err)
	}
	for _, r := range recs {
		if r.Key == nil {
			return fmt.Errorf("%w: a record without a key (offset delta %d) on a compacted topic", ErrInvalidRecord, r.OffsetDelta)
		}
	}
	return nil
}

// cleanerSafeEnds takes every compacted partition's durable end before a checkpoint takes its
// WAL position.
func (e *Engine) cleanerSafeEnds() map[*Partition]int64 {
	var safe map[*Partition]int64
	for _, p := range e.Partitions() {
		if !p.Config().Compaction.Enabled {
			continue
		}
		if safe == nil {
			safe = map[*Partition]int64{}
		}
		p.mu.Lock()
		safe[p] = p.durableEnd
		p.mu.Unlock()
	}
	return safe
}

// setCleanerSafeEnds records what cleanerSafeEnds took, once its checkpoint is durable.
func setCleanerSafeEnds(safe map[*Partition]int64) {
	for p, end := range safe {
		p.mu.Lock()
		p.cleaner.ckptSafe = max(p.cleaner.ckptSafe, end)
		p.mu.Unlock()
	}
}

// cleanOnce plans and, when due, runs one pass over p. It returns the dirty ratio it saw.
func (p *Partition) cleanOnce(nowMs int64, stop <-chan struct{}) (float64, error) {
	p.mu.Lock()
	cfg := p.Config().Compaction
	if p.closed || p.closing || !cfg.Enabled || p.cleaner.running {
		p.mu.Unlock()
		return 0, nil
	}
	// A sealed segment below the high watermark waits for a checkpoint to index it or to put it
	// below ckptSafe: ask for one rather than wait for the WAL to grow by a checkpoint interval
	// (a follower's high watermark often passes a segment's end only after the checkpoint that
	// synced it).
	for _, s := range p.segments[:len(p.segments)-1] {
		if s.end <= p.hw.Load() && (!s.indexed || s.end > p.cleaner.ckptSafe) {
			p.eng.ckpt.request()
			break
		}
	}
	cuts := p.cleaner.cuts
	segs, pl := p.planLocked(cfg, nowMs)
	if pl.needHorizons {
		// Segments recovery loaded from their index files: their headers are read once, here,
		// and the horizons kept with the segments (see learnHorizons); then plan again.
		var unknown []*segment
		for _, s := range segs[:pl.to] {
			if !s.horizonKnown {
				unknown = append(unknown, s)
			}
		}
		p.cleaner.running = true
		p.mu.Unlock()
		err := p.learnHorizons(unknown, cuts, newThrottle(p.eng.cfg.CleanerIOBytesPerSecond, stop))
		p.mu.Lock()
		p.cleaner.running = false
		if err != nil || p.closed || p.closing {
			p.mu.Unlock()
			return pl.ratio, err
		}
		cuts = p.cleaner.cuts
		segs, pl = p.planLocked(cfg, nowMs)
	}
	if !pl.clean {
		p.mu.Unlock()
		return pl.ratio, nil
	}
	producerLast := make(map[int64]int64, len(p.prod))
	epochMarkers := map[int64]producerMarker{}
	for pid, st := range p.prod {
		if n := len(st.batches); n > 0 {
			producerLast[pid] = st.batches[n-1].baseOffset
		} else {
			epochMarkers[pid] = producerMarker{epoch: st.epoch, offset: st.lastMarker}
		}
	}
	aborted := abortedRanges{}
	for _, s := range p.segments {
		for _, a := range s.aborted {
			aborted[a.ProducerID] = append(aborted[a.ProducerID], a)
		}
	}
	p.cleaner.running = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.cleaner.running = false
		p.mu.Unlock()
	}()

	start := time.Now()
	e := p.eng
	th := newThrottle(e.cfg.CleanerIOBytesPerSecond, stop)
	keys := keyMap{}
	var keyBytes int64
	add := func(b []byte) error {
		n, err := keys.add(b, aborted)
		keyBytes += n
		return err
	}
	budget := e.cfg.CleanerKeyMapBytes
	if budget <= 0 {
		budget = DefaultCleanerKeyMapBytes
	}
	for i := pl.dirty; i < pl.to; i++ {
		if err := eachSegmentBatch(segs[i], th, &e.cleaner, add); err != nil {
			return pl.ratio, fmt.Errorf("building the key map from %s: %w", segs[i].path, err)
		}
		if keyBytes > budget && i+1 < pl.to {
			// The map is full: this pass cleans up to the last segment it covers (the rest
			// stays dirty for the next), as Kafka's does when its dedupe buffer fills. Keys of a
			// segment not rewritten would still be right: a later record never goes.
			e.log.Info("engine: log cleaner: key map full, cleaning part of the dirty section", "partition", p.name,
				"key_map_bytes", keyBytes, "budget", budget, "segments", i+1-pl.dirty, "dirty_segments", pl.to-pl.dirty)
			pl.to, pl.nextDirty = i+1, segs[i].end
			break
		}
	}
	rules := cleanRules{keys: keys, aborted: aborted, nowMs: nowMs, deleteRetentionMs: cfg.DeleteRetentionMs, producerLast: producerLast, producerMarker: epochMarkers}
	var st cleanStats
	swapped := 0
	for _, s := range segs[:pl.to] {
		select {
		case <-stop: // the engine is closing: what is swapped stays, the rest waits for a later pass
			return pl.ratio, errCleanAborted
		default:
		}
		changed, err := p.cleanSegment(s, &rules, th, &st, cuts)
		if err != nil {
			return pl.ratio, fmt.Errorf("cleaning %s: %w", s.path, err)
		}
		if changed {
			swapped++
		}
	}
	if err := p.saveCleanerCheckpoint(pl.nextDirty, cuts); err != nil {
		// The cleaned segments are in place; only the next restart's first pass pays.
		e.log.Warn("engine: log cleaner: writing the cleaner checkpoint", "partition", p.name, "err", err)
	}
	e.cleaner.passes.Add(1)
	e.log.Info("engine: log cleaner compacted a partition", "partition", p.name, "why", pl.why,
		"segments", pl.to, "dirty_segments", pl.to-pl.dirty, "rewritten", swapped, "keys", len(keys),
		"records_in", st.recordsIn, "records_out", st.recordsOut, "tombstones_removed", st.tombstonesRemoved,
		"aborted_removed", st.abortedRemoved, "markers_removed", st.markersRemoved,
		"bytes_in", st.bytesIn, "bytes_out", st.bytesOut, "took", time.Since(start))
	return pl.ratio, nil
}

// planLocked plans a pass over p at nowMs: the sealed, indexed segments below the high
// watermark and the durable end, and the plan over them. p.mu held.
func (p *Partition) planLocked(cfg Compaction, nowMs int64) ([]*segment, cleanPlan) {
	in := cleanInput{firstDirty: p.cleaner.firstDirty, limit: p.cleanableLimitLocked(), nowMs: nowMs, cfg: cfg}
	var segs []*segment
	for _, s := range p.segments[:len(p.segments)-1] {
		if !s.indexed || s == p.hwMark.seg || s == p.durableMark.seg {
			break
		}
		segs = append(segs, s)
		in.segs = append(in.segs, cleanSeg{base: s.base, end: s.end, bytes: s.size, firstTs: s.firstTs, maxTs: s.maxTs,
			horizon: s.deleteHorizon, horizonKnown: s.horizonKnown})
	}
	return segs, planCleaning(in)
}

// learnHorizons reads the batch headers of sealed segments whose delete horizon is not known
// (recovery loaded them from their index files) and keeps each one's horizon with it, unless
// the log was cut meanwhile (cuts changed). p.mu not held; the pass's running flag set.
//
// Why read headers once per segment after a restart rather than keep the horizon on disk or
// accept a first pass: the horizon is known of every segment whose headers this process saw
// (appends, recovery's scans, the cleaner's rewrites), but the index files recovery trusts
// instead have no place for it, and another file would be one more thing to keep in step with
// the segments through crashes, truncations and swaps. Without it a partition that receives no
// more writes would keep its tombstones past their horizon until its next write. A pass over the
// clean section after every restart would read and decode every record of every compacted
// partition; the header scan reads the headers only (for small batches that is still the whole
// file, in 16 KiB reads, but no decompression and no writes), once per segment and process,
// only when no pass is due by dirt (a pass learns the horizons of what it rewrites), and only
// for the segments below the cleanable limit. Its reads go through the cleaner's throttle th:
// right after a restart, with every compacted partition's segments unknown, they would
// otherwise take the disk from the appends the bound is there to protect.
func (p *Partition) learnHorizons(segs []*segment, cuts uint64, th *throttle) error {
	for _, s := range segs {
		select {
		case <-th.stop:
			return nil // the engine is closing
		default:
		}
		p.mu.Lock()
		size, live := s.size, p.segmentPos(s) >= 0
		p.mu.Unlock()
		if !live {
			continue
		}
		horizon := int64(noHorizon)
		hr := newHeaderReader(s.file)
		hr.onRead = th.wait
		var err error
		for pos := int64(0); pos < size; {
			var h batch.Header
			if h, err = hr.header(pos, size); err != nil {
				break
			}
			if hz, ok := pendingHorizon(h); ok {
				horizon = min(horizon, hz)
			}
			pos += int64(h.Size())
		}
		p.mu.Lock()
		i := p.segmentPos(s)
		valid := i >= 0 && i < len(p.segments)-1 && s.size == size && p.cleaner.cuts == cuts && !p.closed
		if valid && err == nil {
			s.deleteHorizon, s.horizonKnown = horizon, true
		}
		p.mu.Unlock()
		if valid && err != nil {
			return fmt.Errorf("reading the delete horizons of %s: %w", s.path, err)
		}
	}
	return nil
}

// cleanSegment rewrites s by r into <base>.log.cleaned and swaps it in; it reports whether
// anything changed. Either way it keeps the delete horizon of what it wrote with the segment
// (unless the log was cut since the pass was planned, when cuts changed).
func (p *Partition) cleanSegment(s *segment, r *cleanRules, th *throttle, st *cleanStats, cuts uint64) (bool, error) {
	fsys := p.eng.fs
	tmp := s.path + cleanedSuffix
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return false, err
	}
	w := &cleanedWriter{f: f, th: th, ctr: &p.eng.cleaner}
	c := segCleaner{r: r, st: st, horizon: noHorizon, emit: w.write}
	err = eachSegmentBatch(s, th, &p.eng.cleaner, c.add)
	if err == nil {
		err = c.finish()
	}
	if err == nil && c.changed {
		err = w.flush()
	}
	if err == nil && c.changed {
		err = f.Datasync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || !c.changed {
		if rerr := fsys.Remove(tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			p.eng.log.Warn("engine: removing a cleaned segment file (recovery removes it)", "file", tmp, "err", rerr)
		}
		if err == nil {
			// Unchanged: what it holds is what the pass wrote.
			p.mu.Lock()
			if i := p.segmentPos(s); i >= 0 && i < len(p.segments)-1 && p.cleaner.cuts == cuts {
				s.deleteHorizon, s.horizonKnown = c.horizon, true
			}
			p.mu.Unlock()
		}
		return false, err
	}
	return true, p.swapCleaned(s, tmp, c.removedMarkers)
}

// swapCleaned puts the cleaned file tmp in place of segment s (see the top of this file);
// removedMarkers are the offsets of the transaction markers the cleaning removed from it.
func (p *Partition) swapCleaned(s *segment, tmp string, removedMarkers []int64) error {
	fsys := p.eng.fs
	p.startMu.Lock()
	defer p.startMu.Unlock()
	abort := func(why string) error {
		_ = fsys.Remove(tmp)
		return fmt.Errorf("%w: %s: %s", errCleanAborted, s.path, why)
	}
	// Retention takes only mu: p.cleaning keeps it away from this segment until the swap is
	// done (or it would delete a name the rename below brings back).
	p.mu.Lock()
	i := p.segmentPos(s)
	live := !p.closed && i >= 0 && i < len(p.segments)-1 && s.end <= p.hw.Load()
	end := s.end
	// The cleaned segment keeps every offset: its aborted transactions are the old one's (its
	// .txnindex is rewritten from them below) but those whose marker went with the rest of them.
	aborted, txnLoaded := s.aborted, s.txnLoaded
	if len(removedMarkers) > 0 {
		aborted = slices.DeleteFunc(slices.Clone(aborted), func(a AbortedTxn) bool { return slices.Contains(removedMarkers, a.LastOffset) })
	}
	if live {
		p.cleaning = s
	}
	p.mu.Unlock()
	if !live {
		return abort("the segment changed meanwhile")
	}
	defer func() {
		p.mu.Lock()
		p.cleaning = nil
		p.mu.Unlock()
	}()
	for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
		if err := fsys.Remove(segmentName(p.dir, s.base, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := fsys.SyncDir(p.dir); err != nil {
		return err
	}
	p.mu.Lock()
	stillLive := !p.closed && p.segmentPos(s) >= 0
	p.mu.Unlock()
	if !stillLive {
		return abort("the partition closed meanwhile")
	}
	if err := fsys.Rename(tmp, s.path); err != nil {
		return err
	}
	if err := fsys.SyncDir(p.dir); err != nil {
		return err
	}
	ns, err := newSegment(fsys, p.dir, s.base)
	if err != nil {
		return err
	}
	nsize, err := ns.file.Size()
	if err == nil {
		var pos int64
		pos, err = p.scanSegment(ns, nsize, false)
		if err == nil && (pos != nsize || ns.end != end) {
			err = fmt.Errorf("engine: cleaned segment %s: %d of %d bytes scanned, ends at %d, want %d", ns.path, pos, nsize, ns.end, end)
		}
	}
	if err == nil {
		ns.aborted, ns.txnLoaded = aborted, txnLoaded
		err = ns.writeIndexFiles(fsys, p.dir)
	}
	for _, suffix := range []string{indexSuffix, timeIndexSuffix, txnIndexSuffix} {
		if err == nil {
			err = syncFile(fsys, segmentName(p.dir, s.base, suffix))
		}
	}
	if err == nil {
		err = fsys.SyncDir(p.dir)
	}
	if err != nil {
		// The rename is done: the directory holds the cleaned segment, without index files
		// (recovery validates and indexes it). This process keeps serving the old one.
		ns.file.Close()
		return err
	}
	p.restampSnapshots(s.base, ns)
	ns.indexed = true
	p.mu.Lock()
	defer p.mu.Unlock()
	j := p.segmentPos(s)
	if j < 0 || p.closed {
		ns.file.Close()
		return fmt.Errorf("%w: %s: removed while its cleaned copy was being indexed", errCleanAborted, s.path)
	}
	p.segments[j] = ns
	p.graves = append(p.graves, grave{seg: s, deleted: time.Now()})
	return nil
}

// restampSnapshots points the producer snapshots that name the last batch of the segment at
// base to that batch in ns, its cleaned copy, which holds it with the same offsets and producer
// fields but maybe at another position and with another CRC: a snapshot that does not verify
// makes recovery read every batch header from the log start instead. Only a snapshot at the
// segment's end (one queued by the roll that sealed it) names a batch of it. A crash before the
// rewrite leaves the old snapshot, which then does not verify: slower, not wrong.
func (p *Partition) restampSnapshots(base int64, ns *segment) {
	p.mu.Lock()
	for _, q := range p.snapQueue {
		if q.lastSeg == base && q.offset == ns.end {
			q.lastPos, q.lastCRC = ns.lastPos, ns.lastCRC
		}
	}
	written := slices.Contains(p.snapFiles, ns.end)
	p.mu.Unlock()
	if !written {
		return
	}
	b, err := vfs.ReadFile(p.eng.fs, snapshotPath(p.dir, ns.end))
	var snap *prodSnapshot
	if err == nil {
		snap, err = decodeSnapshot(b)
	}
	if err == nil && snap.lastSeg == base && (snap.lastPos != ns.lastPos || snap.lastCRC != ns.lastCRC) {
		snap.lastPos, snap.lastCRC = ns.lastPos, ns.lastCRC
		err = p.writeSnapshot(snap)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) { // pruned meanwhile: nothing to do
		p.eng.log.Warn("engine: log cleaner: rewriting the producer snapshot of a cleaned segment; a recovery reads headers instead", "partition", p.name, "snapshot", ns.end, "err", err)
	}
}

// segmentPos is the index of s in p.segments, -1 when gone. p.mu held.
func (p *Partition) segmentPos(s *segment) int {
	for i, x := range p.segments {
		if x == s {
			return i
		}
	}
	return -1
}

// removeStrayCleaned removes a <base>.log.cleaned a crash left before its swap. Recovery.
func removeStrayCleaned(fsys vfs.FS, dir, name string) (bool, error) {
	if !strings.HasSuffix(name, logSuffix+cleanedSuffix) {
		return false, nil
	}
	err := fsys.Remove(dir + "/" + name)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return true, err
}

// eachSegmentBatch reads sealed segment s batch by batch, through chunks of at most
// cleanerChunk bytes (a batch larger than that is read whole), and calls fn with each.
func eachSegmentBatch(s *segment, th *throttle, ctr *cleanerCounters, fn func(b []byte) error) error {
	size := s.size
	buf := make([]byte, 0, cleanerChunk)
	for pos := int64(0); pos < size; {
		n := min(int64(cleanerChunk), size-pos)
		buf = buf[:n]
		if _, err := s.file.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		th.wait(len(buf))
		ctr.bytesRead.Add(uint64(len(buf)))
		off := 0
		for off < len(buf) {
			if len(buf)-off < batch.HeaderSize {
				break
			}
			h, err := batch.ParseHeader(buf[off:])
			if err != nil {
				return fmt.Errorf("batch at %d: %w", pos+int64(off), err)
			}
			if off+h.Size() > len(buf) {
				if off == 0 { // one batch larger than the chunk: read it whole
					buf = make([]byte, h.Size())
					if _, err := s.file.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
						return err
					}
					continue
				}
				break
			}
			if err := fn(buf[off : off+h.Size() : off+h.Size()]); err != nil {
				return err
			}
			off += h.Size()
		}
		if off == 0 {
			return fmt.Errorf("%w: no whole batch at %d", batch.ErrCorrupt, pos)
		}
		pos += int64(off)
		if cap(buf) > cleanerChunk {
			buf = make([]byte, 0, cleanerChunk)
		}
	}
	return nil
}

// cleanerChunk is how much of a segment the cleaner reads at once.
const cleanerChunk = 1 << 20

// cleanedWriter writes a cleaned segment through a buffer.
type cleanedWriter struct {
	f   vfs.File
	buf []byte
	n   int64 // bytes written so far
	th  *throttle
	ctr *cleanerCounters
}

func (w *cleanedWriter) write(b []byte) error {
	w.buf = append(w.buf, b...)
	if len(w.buf) >= cleanerChunk {
		return w.flush()
	}
	return nil
}

func (w *cleanedWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(w.buf, w.n); err != nil {
		return err
	}
	w.th.wait(len(w.buf))
	w.ctr.bytesWritten.Add(uint64(len(w.buf)))
	w.n += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// throttle bounds the cleaner's I/O to a rate (Kafka's log.cleaner.io.max.bytes.per.second).
type throttle struct {
	rate  int64 // bytes per second; 0: unlimited
	start time.Time
	bytes int64
	stop  <-chan struct{}
	mu    sync.Mutex
}

func newThrottle(rate int64, stop <-chan struct{}) *throttle {
	return &throttle{rate: rate, start: time.Now(), stop: stop}
}

// wait accounts n bytes and sleeps until the rate allows them (or the engine closes).
func (t *throttle) wait(n int) {
	if t.rate <= 0 {
		return
	}
	t.mu.Lock()
	t.bytes += int64(n)
	due := t.start.Add(time.Duration(float64(t.bytes) / float64(t.rate) * float64(time.Second)))
	t.mu.Unlock()
	if d := time.Until(due); d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-t.stop:
		}
	}
}

func float64bits(f float64) uint64     { return math.Float64bits(f) }
func float64frombits(u uint64) float64 { return math.Float64frombits(u) }
