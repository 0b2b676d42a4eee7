package engine

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ringtail/ringtail/engine/batch"
)

// pendingAppend is an append written to the segment but not yet below the
// high watermark.
type pendingAppend struct {
	end     int64 // offset after its last batch
	done    func(error)
	headers []batch.Header // its idempotent batches, for the producer state at the high watermark
}

type completion struct {
	done func(error)
	err  error
}

// segMark is the state of a segment at one instant; restoring it undoes
// every append made after it (indexes are append-only).
type segMark struct {
	seg                *segment
	size, end          int64
	nIndex, nTimes     int
	sinceIndex         int
	maxTs, maxTsOffset int64
}

func (s *segment) mark() segMark {
	return segMark{seg: s, size: s.size, end: s.end, nIndex: len(s.index), nTimes: len(s.times),
		sinceIndex: s.sinceIndex, maxTs: s.maxTs, maxTsOffset: s.maxTsOffset}
}

func (s *segment) restore(m segMark) {
	if m.size == 0 {
		s.firstTs = -1
	}
	s.size, s.end = m.size, m.end
	s.index, s.times = s.index[:m.nIndex], s.times[:m.nTimes]
	s.sinceIndex, s.maxTs, s.maxTsOffset = m.sinceIndex, m.maxTs, m.maxTsOffset
}

// Partition is one partition's log: an ordered list of segments, the last
// of which receives appends.
type Partition struct {
	eng     *Engine
	tp      TopicPartition
	name    string // "<topic>-<partition>", also the directory name
	dir     string
	topicID [16]byte
	cfg     atomic.Pointer[PartitionConfig]

	mu        sync.Mutex // guards everything below, and every segment's fields
	closing   bool       // no new appends (engine closing)
	closed    bool       // files closed
	segments  []*segment // by base offset; the last one is active
	logStart  int64
	logEnd    int64         // next offset to assign
	hw        int64         // high watermark: offset after the last durable (fsync) or written (none) batch
	hwMark    segMark       // where hw lies on disk
	gen       uint64        // bumped by every rollback; a WAL completion of an append before one is void
	genSeen   atomic.Uint64 // gen, readable without mu (the WAL writer's validity check)
	pending   []pendingAppend
	prod      producers  // producer state including written, not yet durable batches
	hwProd    producers  // producer state at the high watermark
	unsynced  []*segment // sealed segments written since the last checkpoint started
	dirDirty  bool       // directory entries changed since the last checkpoint started
	ckptDirty bool       // the active segment was written since the last checkpoint started
	changed   chan struct{}

	replayStopped bool // recovery: a gap or bad record stopped the WAL replay for this partition

	graves    []grave    // segments deleted by retention whose descriptors are still open
	trimBelow int64      // TrimBefore: segments wholly below this offset may go, whatever the policy
	startMu   sync.Mutex // serializes DeleteRecordsBefore's persisted updates (delete_records.go)

	cqMu     sync.Mutex // guards cq, draining
	cq       []completion
	draining bool
}

func dirName(tp TopicPartition) string { return fmt.Sprintf("%s-%d", tp.Topic, tp.Partition) }

// TopicID returns the partition's topic id.
func (p *Partition) TopicID() [16]byte { return p.topicID }

// TopicPartition returns the partition's name.
func (p *Partition) TopicPartition() TopicPartition { return p.tp }

// Config returns the partition's current settings.
func (p *Partition) Config() PartitionConfig { return *p.cfg.Load() }

// SetConfig replaces the partition's settings; appends that start later use them.
func (p *Partition) SetConfig(c PartitionConfig) {
	c = withPartitionDefaults(c)
	p.cfg.Store(&c)
}

func withPartitionDefaults(c PartitionConfig) PartitionConfig {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1048588
	}
	if c.MessageTimestampType == "" {
		c.MessageTimestampType = "CreateTime"
	}
	if c.CompressionType == "" {
		c.CompressionType = "producer"
	}
	return c
}

// HighWatermark returns the offset after the last durable record.
func (p *Partition) HighWatermark() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hw
}

// LogStartOffset returns the first offset still in the log.
func (p *Partition) LogStartOffset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logStart
}

// LogEndOffset returns the offset the next appended record will get
// (written, not necessarily durable).
func (p *Partition) LogEndOffset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logEnd
}

// Changed returns a channel closed the next time the high watermark advances.
func (p *Partition) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *Partition) active() *segment { return p.segments[len(p.segments)-1] }

// mapBatchError turns a batch package error into the engine's sentinel.
func mapBatchError(err error) error {
	switch {
	case errors.Is(err, batch.ErrTooLarge):
		return fmt.Errorf("%w: %v", ErrMessageTooLarge, err)
	case errors.Is(err, batch.ErrUnsupportedMagic):
		return fmt.Errorf("%w: %v", ErrUnsupportedMagic, err)
	default:
		return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
}

// Append validates the record batches in records (a produce request's
// records field), assigns their offsets and writes them at the end of the
// log. It takes ownership of records (base offsets and, for LogAppendTime
// topics, timestamps are patched in place).
//
// A non-nil error means nothing was written and done will not be called.
// Otherwise done (when non-nil) is called exactly once, in append order,
// when the records are below the high watermark (done(nil)) or have been
// dropped after a storage error (an error wrapping ErrStorage) or a Close
// (ErrClosed). done runs on an engine goroutine: it must not block, but it
// may call any Partition method.
func (p *Partition) Append(records []byte, done func(error)) (AppendResult, error) {
	cfg := p.Config()
	raw, err := batch.Split(records)
	if err != nil {
		return AppendResult{}, mapBatchError(err)
	}
	if len(raw) == 0 {
		return AppendResult{}, fmt.Errorf("%w: no record batch", ErrCorruptMessage)
	}
	hs := make([]batch.Header, len(raw))
	for i, b := range raw {
		if err := batch.Validate(b, int(cfg.MaxMessageBytes)); err != nil {
			return AppendResult{}, mapBatchError(err)
		}
		h, err := batch.ParseHeader(b)
		if err != nil {
			return AppendResult{}, mapBatchError(err)
		}
		if h.IsTransactional() {
			return AppendResult{}, ErrTransactionalUnsupported
		}
		if h.NumRecords == 0 {
			return AppendResult{}, fmt.Errorf("%w: batch without records", ErrInvalidRecord)
		}
		if h.IsControl() {
			return AppendResult{}, fmt.Errorf("%w: control batch from a producer", ErrInvalidRecord)
		}
		hs[i] = h
	}
	if ct := cfg.CompressionType; ct != "producer" {
		codec, ok := batch.ParseCodec(ct)
		if !ok {
			return AppendResult{}, fmt.Errorf("%w: unknown compression.type %q", ErrInvalidRecord, ct)
		}
		for i, b := range raw {
			if hs[i].Codec() == codec {
				continue
			}
			nb, err := batch.Recompress(b, codec)
			if err != nil {
				return AppendResult{}, mapBatchError(err)
			}
			if hs[i], err = batch.ParseHeader(nb); err != nil {
				return AppendResult{}, mapBatchError(err)
			}
			raw[i] = nb
		}
	}
	logAppendTime := int64(-1)
	if cfg.MessageTimestampType == "LogAppendTime" {
		logAppendTime = p.eng.now()
	}

	p.mu.Lock()
	res, werr := p.appendLocked(raw, hs, logAppendTime, cfg.SegmentMs, done)
	p.mu.Unlock()
	p.runCompletions()
	return res, werr
}

// appendLocked does the part of Append that must be ordered. p.mu held.
func (p *Partition) appendLocked(raw [][]byte, hs []batch.Header, logAppendTime, segmentMs int64, done func(error)) (AppendResult, error) {
	if p.closing || p.closed {
		return AppendResult{}, ErrClosed
	}
	// Producer checks, on a scratch copy when one request carries several
	// batches (later ones must chain on earlier ones).
	scratch := p.prod
	if len(raw) > 1 {
		scratch = p.prod.clone()
	}
	dup := make([]bool, len(raw))
	origBase := make([]int64, len(raw))
	ndup := 0
	for i, h := range hs {
		if h.ProducerID < 0 {
			continue
		}
		base, isDup, err := scratch.check(h)
		if err != nil {
			return AppendResult{}, err
		}
		if isDup {
			dup[i], origBase[i] = true, base
			ndup++
			continue
		}
		if len(raw) > 1 {
			h.BaseOffset = 0 // only sequences matter for the chain check
			scratch.apply(h)
		}
	}
	res := AppendResult{LogAppendTime: logAppendTime, LogStartOffset: p.logStart, BaseOffset: -1}
	if ndup == len(raw) {
		res.Duplicate, res.BaseOffset, res.LogAppendTime = true, origBase[0], -1
		if done != nil {
			if origBase[0] < p.hw {
				p.complete(done, nil)
			} else {
				p.pending = append(p.pending, pendingAppend{end: p.logEnd, done: done})
			}
		}
		return res, nil
	}

	// Assign offsets and build the write.
	next := p.logEnd
	var buf []byte
	var idem []batch.Header
	stored := make([]batch.Header, 0, len(raw))
	for i, b := range raw {
		if dup[i] {
			if res.BaseOffset < 0 {
				res.BaseOffset = origBase[i]
			}
			continue
		}
		batch.SetBaseOffset(b, next)
		if logAppendTime >= 0 {
			batch.SetLogAppendTime(b, logAppendTime)
			hs[i].MaxTimestamp = logAppendTime
			hs[i].Attributes |= 0x08 // the timestamp-type bit SetLogAppendTime set
		}
		hs[i].BaseOffset = next
		if res.BaseOffset < 0 {
			res.BaseOffset = next
		}
		next = hs[i].LastOffset() + 1
		stored = append(stored, hs[i])
		if hs[i].ProducerID >= 0 {
			idem = append(idem, hs[i])
		}
		if len(raw)-ndup == 1 {
			buf = b
		} else {
			buf = append(buf, b...)
		}
	}

	seg := p.active()
	if seg.size > 0 && (seg.size+int64(len(buf)) > p.eng.cfg.SegmentBytes || p.segmentAged(seg, segmentMs)) {
		if err := p.rollLocked(); err != nil {
			p.logStorageError("roll segment", err)
			p.rollbackLocked(err)
			return AppendResult{}, fmt.Errorf("%w: %s: %v", ErrStorage, p.name, err)
		}
		seg = p.active()
	}
	if _, err := seg.file.WriteAt(buf, seg.size); err != nil {
		p.logStorageError("write", err)
		p.rollbackLocked(err)
		return AppendResult{}, fmt.Errorf("%w: %s: %v", ErrStorage, p.name, err)
	}
	pos := seg.size
	if seg.size+int64(len(buf))-seg.wbFrom >= writeBehindBytes && !seg.wbAsked {
		seg.wbAsked = true
		p.eng.ckpt.requestWriteback()
	}
	for _, h := range stored {
		seg.observe(h, pos, p.eng.cfg.IndexIntervalBytes)
		pos += int64(h.Size())
	}
	p.logEnd = next
	p.ckptDirty = true
	for _, h := range idem {
		p.prod.apply(h)
	}
	// The same bytes go to the WAL, queued under p.mu so the WAL holds a
	// partition's appends in offset order.
	meta := walMeta(p.topicID, p.tp.Partition, stored[0].BaseOffset)
	if p.eng.cfg.Durability == DurabilityNone {
		for _, h := range idem {
			p.hwProd.apply(h)
		}
		p.advanceLocked(p.logEnd, seg.mark(), nil)
		if done != nil {
			p.complete(done, nil)
		}
		p.eng.wal.Append(meta, buf, nil) // failures are logged by the WAL; the checkpoint still syncs the segment
		return res, nil
	}
	p.pending = append(p.pending, pendingAppend{end: p.logEnd, done: done, headers: idem})
	gen, end, mark := p.gen, p.logEnd, seg.mark()
	// A record rolled back before the WAL writes it (an earlier record of
	// the partition failed) is dropped, so it cannot resurface at replay.
	p.eng.wal.AppendChecked(meta, buf, func() bool { return p.genSeen.Load() == gen },
		func(_ uint64, err error) { p.walDone(gen, end, mark, err) })
	return res, nil
}

// walDone is the WAL's completion of an append that ended at end (whose
// position is mark), made under generation gen. It runs on the WAL writer
// goroutine, in append order.
func (p *Partition) walDone(gen uint64, end int64, mark segMark, err error) {
	p.mu.Lock()
	if p.closed || gen != p.gen {
		// Rolled back (or deleted) since: its done already ran.
		p.mu.Unlock()
		return
	}
	if err != nil {
		p.logStorageError("wal", err)
		p.rollbackLocked(err)
	} else {
		p.advanceLocked(end, mark, nil)
	}
	p.mu.Unlock()
	p.runCompletions()
}

// segmentAged reports whether seg is older than segment.ms (ms): its first batch's timestamp is
// that far behind the clock (Kafka's rule; a segment without timestamps never ages).
func (p *Partition) segmentAged(seg *segment, ms int64) bool {
	return ms > 0 && seg.firstTs >= 0 && p.eng.now()-seg.firstTs >= ms
}

// rollLocked seals the active segment and starts a new one at the log end.
func (p *Partition) rollLocked() error {
	old := p.active()
	seg, err := newSegment(p.eng.fs, p.dir, p.logEnd)
	if err != nil {
		return err
	}
	p.segments = append(p.segments, seg)
	p.unsynced = append(p.unsynced, old)
	p.dirDirty = true
	return nil
}

// advanceLocked moves the high watermark to hw (whose position is m),
// completes the appends now below it and wakes waiters. p.mu held.
func (p *Partition) advanceLocked(hw int64, m segMark, _ error) {
	if hw <= p.hw {
		return
	}
	p.hw, p.hwMark = hw, m
	if hook := p.eng.cfg.OnDurable; hook != nil {
		p.complete(func(error) { hook(p, hw) }, nil)
	}
	n := 0
	for n < len(p.pending) && p.pending[n].end <= hw {
		pa := p.pending[n]
		for _, h := range pa.headers {
			p.hwProd.apply(h)
		}
		if pa.done != nil {
			p.complete(pa.done, nil)
		}
		n++
	}
	p.pending = p.pending[n:]
	close(p.changed)
	p.changed = make(chan struct{})
}

// rollbackLocked undoes everything above the high watermark after a
// storage error: pending appends fail, files are cut back, producer state
// rewinds. Nothing unacknowledged stays visible. p.mu held.
func (p *Partition) rollbackLocked(cause error) {
	p.gen++
	p.genSeen.Store(p.gen)
	err := fmt.Errorf("%w: %s: %v", ErrStorage, p.name, cause)
	for _, pa := range p.pending {
		if pa.done != nil {
			p.complete(pa.done, err)
		}
	}
	p.pending = nil

	// Find the segment that becomes active again: the one holding the high
	// watermark, or its (emptied) successor when the high watermark is at
	// its very end, so a sealed segment is never reopened.
	keep := len(p.segments) - 1
	for i, s := range p.segments {
		if s == p.hwMark.seg {
			keep = i
			break
		}
	}
	target := p.segments[keep]
	grew := target.size > p.hwMark.size
	target.restore(p.hwMark)
	if !grew && keep+1 < len(p.segments) {
		keep++
		target = p.segments[keep]
		target.reset()
	}
	for _, s := range p.segments[keep+1:] {
		p.removeSegmentFiles(s)
	}
	p.segments = p.segments[:keep+1]
	if err := target.file.Truncate(target.size); err != nil {
		p.eng.log.Error("engine: truncate after storage error failed", "partition", p.name, "segment", target.path, "err", err)
	}
	p.unsynced = nil
	for _, s := range p.segments[:keep] {
		if !s.indexed {
			p.unsynced = append(p.unsynced, s)
		}
	}
	p.ckptDirty = true
	p.logEnd = p.hw
	p.prod = p.hwProd.clone()
}

func (p *Partition) removeSegmentFiles(s *segment) {
	s.file.Close()
	p.unlinkSegment(s)
}

// unlinkSegment removes a segment's files from the directory; its descriptor stays as it is.
func (p *Partition) unlinkSegment(s *segment) {
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if err := p.eng.fs.Remove(segmentName(p.dir, s.base, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			p.eng.log.Warn("engine: removing segment file", "partition", p.name, "err", err)
		}
	}
	p.dirDirty = true
}

func (p *Partition) logStorageError(op string, err error) {
	p.eng.log.Error("engine: storage error, failing unacknowledged appends", "partition", p.name, "op", op, "err", err)
}

// complete queues a done callback. p.mu held, so the queue order is the
// append order.
func (p *Partition) complete(done func(error), err error) {
	p.cqMu.Lock()
	p.cq = append(p.cq, completion{done, err})
	p.cqMu.Unlock()
}

// runCompletions calls queued callbacks in order, outside p.mu. If another
// goroutine is already draining, it will pick these up.
func (p *Partition) runCompletions() {
	p.cqMu.Lock()
	if p.draining {
		p.cqMu.Unlock()
		return
	}
	p.draining = true
	for len(p.cq) > 0 {
		q := p.cq
		p.cq = nil
		p.cqMu.Unlock()
		for _, c := range q {
			c.done(c.err)
		}
		p.cqMu.Lock()
	}
	p.draining = false
	p.cqMu.Unlock()
}

// closeLocked fails pending appends with err and closes the files. p.mu held.
func (p *Partition) closeLocked(err error) {
	if p.closed {
		return
	}
	p.closed, p.closing = true, true
	for _, pa := range p.pending {
		if pa.done != nil {
			p.complete(pa.done, err)
		}
	}
	p.pending = nil
	for _, s := range p.segments {
		s.file.Close()
	}
	for _, g := range p.graves {
		g.seg.file.Close()
	}
	p.graves = nil
	close(p.changed)
	p.changed = make(chan struct{})
}
