package engine

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringtail/ringtail/uring"
)

// maxConcurrentSyncs bounds the fdatasync calls one group-commit cycle runs
// at once.
const maxConcurrentSyncs = 16

// Engine owns every partition log in one data directory.
type Engine struct {
	cfg    Config
	fs     uring.FS
	log    *slog.Logger
	syncer *syncer

	mu     sync.Mutex
	parts  map[TopicPartition]*Partition
	closed bool
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
		cfg.FS = uring.OSFS{}
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
	if err := e.fs.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
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
	e.syncer = newSyncer(e)
	for _, s := range specs {
		p, err := e.openPartition(s)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.parts[s.TopicPartition] = p
	}
	go e.syncer.run()
	e.log.Info("engine: recovered", "dir", cfg.DataDir, "partitions", len(specs), "removed", removed, "took", time.Since(start))
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
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if p := e.parts[spec.TopicPartition]; p != nil {
		if p.topicID == spec.TopicID {
			p.SetConfig(spec.Config)
			return p, nil
		}
		if err := e.deleteLocked(p); err != nil {
			return nil, err
		}
	}
	p, err := e.openPartition(spec)
	if err != nil {
		return nil, err
	}
	e.parts[spec.TopicPartition] = p
	return p, nil
}

// DeletePartition closes a partition and removes its files; its pending
// appends fail with ErrClosed.
func (e *Engine) DeletePartition(tp TopicPartition) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.parts[tp]
	if p == nil {
		return nil
	}
	return e.deleteLocked(p)
}

func (e *Engine) deleteLocked(p *Partition) error {
	delete(e.parts, p.tp)
	p.mu.Lock()
	p.closeLocked(ErrClosed)
	p.mu.Unlock()
	p.runCompletions()
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
	parts := make([]*Partition, 0, len(e.parts))
	for _, p := range e.parts {
		parts = append(parts, p)
	}
	e.mu.Unlock()
	for _, p := range parts {
		p.mu.Lock()
		p.closing = true
		p.mu.Unlock()
	}
	if e.syncer != nil {
		for _, p := range parts {
			e.syncer.enqueue(p)
		}
		e.syncer.stop()
	}
	for _, p := range parts {
		p.mu.Lock()
		p.closeLocked(ErrClosed)
		p.mu.Unlock()
		p.runCompletions()
	}
	return nil
}

// syncer is the engine's group-commit loop: each cycle takes every
// partition dirtied since the previous cycle started, fdatasyncs them, and
// then advances their high watermarks. Appends arriving during a cycle
// wait for the next one, so there is no timer and no linger: a lone append
// pays exactly one sync.
type syncer struct {
	e       *Engine
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*Partition
	stopped bool
	started bool
	exited  chan struct{}
}

func newSyncer(e *Engine) *syncer {
	s := &syncer{e: e, exited: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *syncer) enqueue(p *Partition) {
	s.mu.Lock()
	if !p.queued {
		p.queued = true
		s.queue = append(s.queue, p)
		s.cond.Signal()
	}
	s.mu.Unlock()
}

// stop lets the loop finish what is queued, then waits for it to exit.
func (s *syncer) stop() {
	s.mu.Lock()
	s.stopped = true
	started := s.started
	s.cond.Signal()
	s.mu.Unlock()
	if started {
		<-s.exited
	}
}

func (s *syncer) run() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		close(s.exited)
		return
	}
	s.started = true
	s.mu.Unlock()
	defer close(s.exited)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.stopped {
			s.cond.Wait()
		}
		if len(s.queue) == 0 {
			s.mu.Unlock()
			return
		}
		q := s.queue
		s.queue = nil
		for _, p := range q {
			p.queued = false
		}
		s.mu.Unlock()
		s.cycle(q)
	}
}

func (s *syncer) cycle(q []*Partition) {
	jobs := make([]syncJob, 0, len(q))
	for _, p := range q {
		if j, ok := p.prepareSync(); ok {
			jobs = append(jobs, j)
		}
	}
	if len(jobs) == 1 {
		jobs[0].run(s.e.fs)
	} else if len(jobs) > 1 {
		var wg sync.WaitGroup
		sem := make(chan struct{}, maxConcurrentSyncs)
		for i := range jobs {
			wg.Add(1)
			sem <- struct{}{}
			go func(j *syncJob) {
				defer wg.Done()
				j.run(s.e.fs)
				<-sem
			}(&jobs[i])
		}
		wg.Wait()
	}
	for _, j := range jobs {
		j.p.finishSync(j)
	}
}
