package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/wal"
)

// The checkpointer: segment files are not synced per WAL cycle. When the
// WAL has grown by Config.CheckpointBytes since the last checkpoint, and on
// Close, a checkpoint fdatasyncs every segment written since the last one,
// records in wal/checkpoint the WAL position they cover (where the next
// replay starts) and lets the WAL reuse the files before it. Between
// checkpoints it hands growing active segments to the kernel's writeback.
// It also writes the leader-epoch checkpoints that changed.

// WAL files owned by the engine (the framing is package wal's).
const (
	walDirName     = "wal"
	checkpointName = "checkpoint"
	ckptSize       = 32
	ckptMagic      = 0x52434b50 // "RCKP"
)

// defaultWALFileBytes is a variable so the package's tests can shrink it.
var defaultWALFileBytes int64 = wal.DefaultFileBytes

// checkpoint file: magic u32, crc32c u32 of bytes 8..32, seq u64, file u64, offset u64 (little endian).
func (e *Engine) ckptPath() string { return filepath.Join(e.cfg.DataDir, walDirName, checkpointName) }

// castagnoli is the CRC-32C table of the engine's small state files.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (e *Engine) readCheckpoint() (wal.Position, bool, error) {
	b, err := vfs.ReadFile(e.fs, e.ckptPath())
	if errors.Is(err, os.ErrNotExist) {
		return wal.Position{}, false, nil
	}
	if err != nil {
		return wal.Position{}, false, err
	}
	if len(b) != ckptSize || binary.LittleEndian.Uint32(b) != ckptMagic ||
		binary.LittleEndian.Uint32(b[4:]) != crc32.Checksum(b[8:], castagnoli) {
		// Written to a temporary file, synced and renamed: never torn.
		return wal.Position{}, false, fmt.Errorf("%w: corrupt wal checkpoint %s", ErrStorage, e.ckptPath())
	}
	return wal.Position{
		Seq:    binary.LittleEndian.Uint64(b[8:]),
		File:   binary.LittleEndian.Uint64(b[16:]),
		Offset: int64(binary.LittleEndian.Uint64(b[24:])),
	}, true, nil
}

func (e *Engine) writeCheckpoint(pos wal.Position) error {
	return vfs.WriteFileAtomic(e.fs, e.ckptPath(), encodePosition(ckptMagic, pos))
}

// encodePosition is the checkpoint file's layout, also the clean-shutdown marker's.
func encodePosition(magic uint32, pos wal.Position) []byte {
	b := make([]byte, ckptSize)
	binary.LittleEndian.PutUint32(b, magic)
	binary.LittleEndian.PutUint64(b[8:], pos.Seq)
	binary.LittleEndian.PutUint64(b[16:], pos.File)
	binary.LittleEndian.PutUint64(b[24:], uint64(pos.Offset))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return b
}

// checkpointer makes segment files durable behind the WAL and records how
// far, so the WAL can be reused: when the WAL has grown by CheckpointBytes
// since the last checkpoint (with Durability "none", the segments: noneWrote),
// and on Close.
type checkpointer struct {
	e         *Engine
	mu        sync.Mutex
	cond      *sync.Cond
	requested bool
	writeback bool // a segment has writeBehindBytes not yet handed to writeback
	stopped   bool
	exited    chan struct{}
	run1      sync.Mutex // one checkpoint at a time; TruncateTo holds it from its WAL record to its cut

	// syncFailed holds, for the life of the process, the first failed
	// segment or directory sync of a checkpoint. Linux
	// reports a writeback error to one fdatasync and then marks the pages
	// clean: a retry succeeds without writing them, and a checkpoint after
	// it would release the WAL records that are now the only durable copy
	// of those pages. Checkpoints stop instead; the WAL keeps every record
	// since the last good one, and the replay at the next start rewrites
	// the segments from it (Partition.replay).
	syncFailed atomic.Pointer[error]
}

// errCheckpointsStopped: a segment sync failed earlier in this process.
var errCheckpointsStopped = errors.New("checkpoints stopped after a failed segment sync; restart the broker to rewrite the segments from the wal")

func newCheckpointer(e *Engine) *checkpointer {
	c := &checkpointer{e: e, exited: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *checkpointer) request() {
	c.mu.Lock()
	c.requested = true
	c.cond.Signal()
	c.mu.Unlock()
}

// noneWrote counts n bytes appended with Durability "none", which the WAL never sees, and asks
// for a checkpoint each time another CheckpointBytes have been: the segments are those bytes'
// only copy, and their fdatasync by a checkpoint is what bounds the loss in a power cut, as the
// WAL's growth does in "fsync". It must not block (it runs under a partition lock).
func (e *Engine) noneWrote(n int64) {
	total := e.noneBytes.Add(n)
	if total/e.cfg.CheckpointBytes != (total-n)/e.cfg.CheckpointBytes {
		e.ckpt.request()
	}
}

// requestWriteback asks for write-behind of the active segments; it must
// not block (it runs under a partition lock).
func (c *checkpointer) requestWriteback() {
	c.mu.Lock()
	if !c.writeback {
		c.writeback = true
		c.cond.Signal()
	}
	c.mu.Unlock()
}

func (c *checkpointer) stop() {
	c.mu.Lock()
	c.stopped = true
	c.cond.Signal()
	c.mu.Unlock()
	<-c.exited
}

func (c *checkpointer) run() {
	defer close(c.exited)
	for {
		c.mu.Lock()
		for !c.requested && !c.writeback && !c.stopped {
			c.cond.Wait()
		}
		if c.stopped {
			c.mu.Unlock()
			return
		}
		wb, ck := c.writeback, c.requested
		c.writeback, c.requested = false, false
		c.mu.Unlock()
		if wb {
			c.writeBehind()
		}
		if !ck {
			continue
		}
		if err := c.checkpoint(); err != nil && !errors.Is(err, errCheckpointsStopped) {
			c.e.log.Error("engine: checkpoint failed; the wal keeps growing until one succeeds", "err", err)
		}
	}
}

// checkpoint fdatasyncs every segment written since the last checkpoint,
// then records the WAL position all of them cover and releases the WAL
// files behind it.
func (c *checkpointer) checkpoint() error {
	c.run1.Lock()
	defer c.run1.Unlock()
	if first := c.syncFailed.Load(); first != nil {
		return fmt.Errorf("%w: %w (first failure: %v)", ErrStorage, errCheckpointsStopped, *first)
	}
	e := c.e
	start := time.Now()
	// What is durable now lies before pos (the WAL sets its committed position before the
	// completions advance durable ends): once pos is the checkpoint, replay never touches it,
	// and the log cleaner may rewrite it (cleaner.go).
	safe := e.cleanerSafeEnds()
	// Every record before pos was added to its segment before it was
	// queued, so before the snapshots below (written or deferred).
	pos := e.wal.Committed()
	type job struct {
		p      *Partition
		sealed []*segment
		active *segment
		dir    bool
		snaps  []*prodSnapshot
	}
	var jobs []job
	for _, p := range e.Partitions() {
		p.mu.Lock()
		if !p.closed && p.flushLocked() != nil {
			// Records before pos whose completion has not run yet may still be deferred
			// writes: they must be in the files this checkpoint syncs. A failure rolled the
			// partition back, records before pos included, as their recovery would not;
			// its failed appends are answered here.
			p.mu.Unlock()
			p.runCompletions()
			p.mu.Lock()
		}
		if !p.closed && (p.ckptDirty || len(p.unsynced) > 0 || p.dirDirty || len(p.snapQueue) > 0) {
			jobs = append(jobs, job{p: p, sealed: p.unsynced, active: p.active(), dir: p.dirDirty, snaps: p.takeDueSnapshotsLocked()})
			p.unsynced, p.dirDirty, p.ckptDirty = nil, false, false
		}
		p.mu.Unlock()
	}
	// The partitions sync concurrently: segment files that grew need a journal commit each,
	// and fdatasyncs that run together share one commit (and one device flush) instead of
	// queueing a commit apiece in front of the WAL's own flushes.
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = syncJob(e, j.p, append(j.sealed, j.active), j.dir)
		}()
	}
	wg.Wait()
	var firstErr error
	for i, j := range jobs {
		if errs[i] == nil {
			continue
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("%w: %s: %v", ErrStorage, j.p.name, errs[i])
		}
	}
	if firstErr != nil {
		c.syncFailed.Store(&firstErr)
		e.log.Error("engine: a segment sync failed: no more checkpoints in this process (the wal keeps every record since the last one and grows); restart the broker to rewrite the segments from the wal", "err", firstErr)
		return firstErr
	}
	if err := e.writeCheckpoint(pos); err != nil {
		for _, j := range jobs {
			j.p.mu.Lock()
			j.p.unsynced = append(j.sealed, j.p.unsynced...)
			j.p.dirDirty, j.p.ckptDirty = true, true
			j.p.mu.Unlock()
		}
		return fmt.Errorf("%w: writing the wal checkpoint: %v", ErrStorage, err)
	}
	e.wal.Release(pos)
	setCleanerSafeEnds(safe)
	// Producer snapshots whose segments are now durable. A failure costs
	// only recovery time: recovery uses an older snapshot, or the headers.
	for _, j := range jobs {
		for _, s := range j.snaps {
			if err := j.p.writeSnapshot(s); err != nil {
				e.log.Warn("engine: writing a producer snapshot (recovery reads the headers instead)", "partition", j.p.name, "offset", s.offset, "err", err)
				continue
			}
			j.p.snapshotWritten(s.offset)
		}
	}
	// Sealed segments now durable and wholly acknowledged get their index
	// files, written under the lock (retention may not delete the segment
	// meanwhile) and synced after it, so recovery can load them (their
	// names reach the disk with the next checkpoint's directory sync).
	var written []string
	for _, j := range jobs {
		p := j.p
		p.mu.Lock()
		for _, s := range j.sealed {
			if p.closed || s.indexed || s == p.active() {
				continue
			}
			if s.end > p.hw.Load() {
				// Durable, but not wholly acknowledged yet: a later checkpoint indexes it
				// (retention deletes only indexed segments, so it must come back).
				p.unsynced = append(p.unsynced, s)
				continue
			}
			s.indexed = true
			if err := s.writeIndexFiles(e.fs, p.dir); err != nil {
				e.log.Warn("engine: writing index files (rebuilt at recovery)", "partition", p.name, "segment", s.path, "err", err)
				continue
			}
			p.dirDirty = true
			for _, suffix := range indexSuffixes {
				written = append(written, segmentName(p.dir, s.base, suffix))
			}
		}
		p.mu.Unlock()
	}
	for _, path := range written {
		if err := syncFile(e.fs, path); err != nil && !errors.Is(err, os.ErrNotExist) {
			e.log.Warn("engine: syncing index files (rebuilt at recovery)", "file", path, "err", err)
		}
	}
	c.writeEpochs()
	e.log.Debug("engine: checkpoint", "wal_file", pos.File, "wal_offset", pos.Offset, "seq", pos.Seq, "partitions", len(jobs), "took", time.Since(start))
	return nil
}

// writeEpochs writes the leader-epoch checkpoint of every partition whose
// cache changed. A failure is logged: the cache is rebuilt from the log at
// recovery, so the file may lag it.
func (c *checkpointer) writeEpochs() {
	for _, p := range c.e.Partitions() {
		p.startMu.Lock()
		err := p.writeEpochsIfDirty()
		p.startMu.Unlock()
		if err != nil {
			c.e.log.Warn("engine: writing the leader epoch checkpoint", "partition", p.name, "err", err)
		}
	}
}

// syncJob fdatasyncs a partition's segments for a checkpoint, and its directory when dir is
// set. A file removed meanwhile (partition deleted, or a rollback dropped the segment) is no
// error.
func syncJob(e *Engine, p *Partition, segs []*segment, dir bool) error {
	for _, s := range segs {
		if err := s.file.Datasync(); err != nil && p.stillHas(s) {
			return err
		}
	}
	if dir {
		if err := e.fs.SyncDir(p.dir); err != nil && p.stillHas(nil) {
			return err
		}
	}
	return nil
}

// writeBehindBytes: once an active segment has this many bytes not yet
// handed to the kernel's writeback, the checkpointer starts writing them
// (sync_file_range, no wait). The checkpoint's fdatasyncs then find little
// dirty data, instead of flushing ~CheckpointBytes at once while the WAL's
// syncs queue behind them on the device.
const writeBehindBytes = 512 << 10

// writeBehind starts writeback of the bytes the active segments gained
// since the last call. A hint: errors are ignored (the checkpoint's
// fdatasync reports real ones).
func (c *checkpointer) writeBehind() {
	for _, p := range c.e.Partitions() {
		p.mu.Lock()
		if p.closed || len(p.segments) == 0 {
			p.mu.Unlock()
			continue
		}
		s := p.active()
		from, to := s.wbFrom, s.written()
		if from > to { // cut back by a rollback
			from, s.wbFrom = to, to
		}
		s.wbAsked = false
		wb, ok := s.file.(vfs.WriteBehind)
		if !ok || to-from < writeBehindBytes {
			if !ok {
				s.wbFrom = to
			}
			p.mu.Unlock()
			continue
		}
		s.wbFrom = to
		p.mu.Unlock()
		_ = wb.StartWriteback(from, to-from)
	}
}

// stillHas reports whether the partition is open and (for a non-nil s)
// still holds segment s.
func (p *Partition) stillHas(s *segment) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if s == nil {
		return true
	}
	for _, x := range p.segments {
		if x == s {
			return true
		}
	}
	return false
}

// syncFile fdatasyncs a file written earlier.
func syncFile(fsys vfs.FS, path string) error {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = f.Datasync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
