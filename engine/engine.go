package engine

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/wal"
)

// Engine owns every partition log in one data directory.
type Engine struct {
	cfg  Config
	fs   vfs.FS
	log  *slog.Logger
	wal  *wal.Log
	ckpt *checkpointer

	tailBytes atomic.Int64 // kept by every partition's replica tail (tail.go)
	noneBytes atomic.Int64 // appended with Durability "none" since Open (noneWrote)

	// clean: the last Close left the clean-shutdown marker (cleanshutdown.go);
	// recovery: what opening the partitions read. Both set by Open.
	clean    bool
	recovery recoveryStats

	mu     sync.Mutex
	parts  map[TopicPartition]*Partition
	closed bool

	retentionStop chan struct{} // closed by Close; nil when the retention timer is off
	retentionDone chan struct{}

	cleaner     cleanerCounters
	cleanerStop chan struct{} // closed by Close; nil when the cleaner is off
	cleanerDone chan struct{}
}

func (e *Engine) now() int64 {
	if e.cfg.Now != nil {
		return e.cfg.Now()
	}
	return time.Now().UnixMilli()
}

func withDefaults(cfg Config) Config {
	if cfg.Durability == "" {
		cfg.Durability = DurabilityFsync
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = 256 << 20
	}
	if cfg.IndexIntervalBytes <= 0 {
		cfg.IndexIntervalBytes = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FS == nil {
		cfg.FS = vfs.OSFS{}
	}
	if cfg.WALIO == "" {
		cfg.WALIO = wal.IOAuto
	}
	if cfg.WALFileBytes <= 0 {
		cfg.WALFileBytes = defaultWALFileBytes
	}
	if cfg.CheckpointBytes <= 0 {
		cfg.CheckpointBytes = cfg.WALFileBytes / 4
	}
	return cfg
}

// Open recovers every partition in specs under cfg.DataDir and removes the
// directories of partitions that are not listed (a topic deleted just before
// a crash, say).
func Open(cfg Config, specs []PartitionSpec) (*Engine, error) {
	cfg = withDefaults(cfg)
	if cfg.Durability != DurabilityFsync && cfg.Durability != DurabilityNone {
		return nil, fmt.Errorf("engine: unknown durability %q", cfg.Durability)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("engine: no data directory")
	}
	e := &Engine{cfg: cfg, fs: cfg.FS, log: cfg.Logger, parts: make(map[TopicPartition]*Partition)}
	start := time.Now()
	if err := vfs.MkdirAllDurable(e.fs, cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	clean, err := e.takeCleanShutdown()
	if err != nil {
		return nil, fmt.Errorf("%w: clean shutdown marker: %v", ErrStorage, err)
	}
	e.clean = clean
	listed := make(map[string]bool, len(specs))
	for _, s := range specs {
		listed[dirName(s.TopicPartition)] = true
	}
	ents, err := e.fs.ReadDir(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	removed := 0
	for _, ent := range ents {
		if !ent.IsDir() || listed[ent.Name()] {
			continue
		}
		if _, ok := parseDirName(ent.Name()); !ok || !e.looksLikePartition(ent.Name()) {
			continue
		}
		e.log.Info("engine: removing partition not in the metadata", "dir", ent.Name())
		if err := e.fs.RemoveAll(dirPath(cfg.DataDir, ent.Name())); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		removed++
	}
	if removed > 0 {
		if err := e.fs.SyncDir(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	e.ckpt = newCheckpointer(e)
	for _, s := range specs {
		p, err := e.openPartition(s, false)
		if err != nil {
			e.closeFiles()
			return nil, err
		}
		e.parts[s.TopicPartition] = p
	}
	replayed, err := e.openWAL()
	if err != nil {
		e.closeFiles()
		return nil, fmt.Errorf("%w: wal: %v", ErrStorage, err)
	}
	for _, p := range e.parts {
		if err := p.finishRecovery(); err != nil {
			e.wal.Close()
			e.closeFiles()
			return nil, fmt.Errorf("%w: recovering %s: %v", ErrStorage, p.name, err)
		}
	}
	// Everything replayed is in fdatasynced segments now: start the WAL
	// afresh from here.
	pos := e.wal.Committed()
	if err := e.writeCheckpoint(pos); err != nil {
		e.wal.Close()
		e.closeFiles()
		return nil, fmt.Errorf("%w: writing the wal checkpoint: %v", ErrStorage, err)
	}
	e.wal.Release(pos)
	for _, p := range e.parts {
		p.mu.Lock()
		p.cleaner.ckptSafe = p.durableEnd // every recovered segment was synced before that checkpoint
		p.mu.Unlock()
		p.runCompletions() // OnDurable with the recovered durable end
	}
	go e.ckpt.run()
	if cfg.CleanerInterval >= 0 {
		interval := cfg.CleanerInterval
		if interval == 0 {
			interval = DefaultCleanerInterval
		}
		e.cleanerStop, e.cleanerDone = make(chan struct{}), make(chan struct{})
		go e.cleanerLoop(interval, e.cleanerStop, e.cleanerDone)
	}
	if cfg.RetentionCheckInterval >= 0 {
		interval := cfg.RetentionCheckInterval
		if interval == 0 {
			interval = DefaultRetentionCheckInterval
		}
		e.retentionStop, e.retentionDone = make(chan struct{}), make(chan struct{})
		go e.retentionLoop(interval, e.retentionStop, e.retentionDone)
	}
	e.logRecovery(replayed)
	e.log.Info("engine: recovered", "dir", cfg.DataDir, "partitions", len(specs), "removed", removed,
		"wal_records_replayed", replayed, "wal_io", e.wal.Mode(), "took", time.Since(start))
	if r := e.wal.FallbackReason(); r != "" {
		e.log.Info("engine: wal not on io_uring", "reason", r)
	}
	return e, nil
}

// looksLikePartition reports whether a directory holds partition files, so
// Open never removes a directory some other component keeps in the data
// directory.
func (e *Engine) looksLikePartition(name string) bool {
	ents, err := e.fs.ReadDir(dirPath(e.cfg.DataDir, name))
	if err != nil {
		return false
	}
	for _, ent := range ents {
		if ent.Name() == metadataFile {
			return true
		}
		if _, ok := parseSegmentName(ent.Name()); ok {
			return true
		}
	}
	return false
}

// parseDirName splits "<topic>-<partition>".
func parseDirName(name string) (TopicPartition, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return TopicPartition{}, false
	}
	n, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != name[i+1:] {
		return TopicPartition{}, false
	}
	return TopicPartition{Topic: name[:i], Partition: int32(n)}, true
}

// CreatePartition creates a partition log, or opens it if it exists with the
// same topic id (an existing one with another topic id is replaced).
func (e *Engine) CreatePartition(spec PartitionSpec) (*Partition, error) {
	e.mu.Lock()
	p, old, err := e.createLocked(spec)
	e.mu.Unlock()
	// Callbacks run outside the engine's lock: the replaced partition's
	// failed appends, the new one's OnDurable.
	if old != nil {
		old.runCompletions()
	}
	if p != nil {
		p.runCompletions()
	}
	return p, err
}

func (e *Engine) createLocked(spec PartitionSpec) (p, old *Partition, err error) {
	if e.closed {
		return nil, nil, ErrClosed
	}
	if p := e.parts[spec.TopicPartition]; p != nil {
		if p.topicID == spec.TopicID {
			p.SetConfig(spec.Config)
			p.SetLeaderEpoch(spec.LeaderEpoch)
			return p, nil, nil
		}
		old = p
		if err := e.deleteLocked(p); err != nil {
			return nil, old, err
		}
	}
	p, err = e.openPartition(spec, true)
	if err != nil {
		return nil, old, err
	}
	e.parts[spec.TopicPartition] = p
	return p, old, nil
}

// DeletePartition closes a partition and removes its files; its pending
// appends fail with ErrClosed.
func (e *Engine) DeletePartition(tp TopicPartition) error {
	e.mu.Lock()
	p := e.parts[tp]
	if p == nil {
		e.mu.Unlock()
		return nil
	}
	err := e.deleteLocked(p)
	e.mu.Unlock()
	p.runCompletions()
	return err
}

// deleteLocked closes p and removes its files; its callbacks are queued for
// the caller to run once e.mu is released.
func (e *Engine) deleteLocked(p *Partition) error {
	delete(e.parts, p.tp)
	p.mu.Lock()
	p.closeLocked(ErrClosed)
	p.mu.Unlock()
	if err := e.fs.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("%w: removing %s: %v", ErrStorage, p.dir, err)
	}
	if err := e.fs.SyncDir(e.cfg.DataDir); err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return nil
}

// Partition returns the open partition, or nil.
func (e *Engine) Partition(tp TopicPartition) *Partition {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.parts[tp]
}

// Partitions returns every open partition, in no particular order.
func (e *Engine) Partitions() []*Partition {
	e.mu.Lock()
	defer e.mu.Unlock()
	ps := make([]*Partition, 0, len(e.parts))
	for _, p := range e.parts {
		ps = append(ps, p)
	}
	return ps
}

// Close stops new appends, runs a last sync for what was written (those
// appends complete normally), then closes every file; anything still
// pending fails with ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	if e.retentionStop != nil {
		close(e.retentionStop)
	}
	if e.cleanerStop != nil {
		close(e.cleanerStop)
	}
	parts := make([]*Partition, 0, len(e.parts))
	for _, p := range e.parts {
		parts = append(parts, p)
	}
	e.mu.Unlock()
	if e.retentionDone != nil {
		<-e.retentionDone
	}
	if e.cleanerDone != nil {
		<-e.cleanerDone // a pass under way stops between segments; a swap finishes first
	}
	for _, p := range parts {
		p.mu.Lock()
		p.closing = true
		p.mu.Unlock()
	}
	// Appends already queued complete normally; then the segments are
	// made durable behind the whole WAL.
	if e.wal == nil {
		return nil
	}
	if err := e.wal.Close(); err != nil {
		e.log.Error("engine: closing the wal", "err", err)
	}
	e.ckpt.stop()
	if err := e.ckpt.checkpoint(); err != nil {
		e.log.Error("engine: final checkpoint failed; the wal is replayed at the next start", "err", err)
	} else if err := e.writeCleanShutdown(parts); err != nil {
		e.log.Warn("engine: no clean shutdown marker; the next start recovers as after a crash", "err", err)
	}
	for _, p := range parts {
		p.mu.Lock()
		p.closeLocked(ErrClosed)
		p.mu.Unlock()
		p.runCompletions()
	}
	return nil
}

// closeFiles closes every partition's files after a failed Open.
func (e *Engine) closeFiles() {
	for _, p := range e.parts {
		for _, s := range p.segments {
			s.file.Close()
		}
	}
}

// WALMode says how the WAL writes ("uring+direct", "uring",
// "portable"), and WALFallbackReason why io_uring is not used ("" when it
// is or when portable was configured): for the broker's log and metrics.
func (e *Engine) WALMode() string           { return e.wal.Mode() }
func (e *Engine) WALFallbackReason() string { return e.wal.FallbackReason() }

// WALStats reports the WAL's completed cycles and the records they held.
func (e *Engine) WALStats() (cycles, records uint64) { return e.wal.Cycles(), e.wal.Records() }

// WALProgress reports the WAL records settled so far and whether any queued record has not
// settled: with work pending and settled not moving, the writer is stuck (the broker's
// watchdog health check).
func (e *Engine) WALProgress() (settled uint64, pending bool) { return e.wal.Progress() }

// WedgeWAL holds the WAL writer before its next cycle until release is called: fault
// injection for the watchdog test, never used otherwise.
func (e *Engine) WedgeWAL() (release func()) { return e.wal.Wedge() }

// CheckpointsStopped reports whether a failed segment sync has stopped
// checkpoints for the life of this process.
func (e *Engine) CheckpointsStopped() bool { return e.ckpt.syncFailed.Load() != nil }

// Checkpoint runs a checkpoint now (tests, admin).
func (e *Engine) Checkpoint() error { return e.ckpt.checkpoint() }
