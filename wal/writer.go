package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/uring"
	"github.com/ringtail/ringtail/vfs"
)

// Defaults and bounds.
const (
	DefaultFileBytes  = 64 << 20
	DefaultCycleBytes = 4 << 20
	DefaultInFlight   = 2
	walSpareFiles     = 2 // recycled files kept for reuse; the rest are removed
	// walPrepName: a fresh file being zero-filled (or ready) in the
	// background; never a live name, removed at open.
	walPrepName = "prepared.tmp"
	// walPrepChunk: the preparer syncs after this many zero bytes, so its
	// writeback reaches the device in small pieces between the writer's syncs.
	walPrepChunk = 2 << 20
)

// walTestHook, when set by a test, runs on the writer goroutine before each cycle.
var walTestHook func()

// walLaneTestHook, when set by a test, runs on a lane's goroutine before it
// writes a cycle.
var walLaneTestHook func(first uint64)

// ErrClosed fails appends queued after Close.
var ErrClosed = errors.New("wal: closed")

// ErrCanceled: the record's validity check rejected it before it was written.
var ErrCanceled = errors.New("wal: record canceled before it was written")

// ErrRecordTooLarge: a record cannot fit a WAL file.
var ErrRecordTooLarge = errors.New("wal: record larger than a wal file")

// Position names a point in the log: the next record is read (or written)
// in file File at byte Offset and carries sequence number Seq.
type Position struct {
	File   uint64
	Offset int64
	Seq    uint64
}

// Options configures Open.
type Options struct {
	Dir        string // created if missing
	FS         vfs.FS // file management and the portable writer; nil means vfs.OSFS{}
	IO         string // IOAuto (default), IOUring or IOPortable
	FileBytes  int64  // size of each preallocated file; default DefaultFileBytes
	CycleBytes int    // staging buffer, the most one cycle writes (larger records get a one-off buffer); default DefaultCycleBytes, at most FileBytes/4
	Logger     *slog.Logger
	// NotifyBytes and Notify: after a cycle, Notify is called (on the writer
	// goroutine; it must not block) when at least NotifyBytes were written
	// since the position last passed to Release.
	NotifyBytes int64
	Notify      func()
	// InFlight is how many cycles may be written and synced at once (each
	// on its own lane: an io_uring ring and descriptor, or a goroutine
	// for the portable writer); completions still run in cycle order.
	// Default DefaultInFlight; 1 is the strictly sequential writer.
	InFlight int
	// OnCycle, when set, is told about every cycle a lane wrote: its
	// records, its bytes (padding included), how long the write and sync
	// took, and the error if it failed. It runs on the lane's goroutine and
	// must not block (metrics).
	OnCycle func(records int, bytes int64, took time.Duration, err error)
}

type walReq struct {
	meta, data []byte
	valid      func() bool
	done       func(seq uint64, err error)
}

// WAL is the shared write-ahead log of one data directory.
//
// # Files
//
// <dir>/<20-digit number>.wal, each FileBytes long, zero-filled once at
// creation (so later overwrites never convert unwritten extents and
// fdatasync is a pure data flush) and reused afterwards: files wholly behind
// the position passed to Release are renamed to the next number when the
// writer needs one. The writer fills file N, then moves to N+1.
//
// # Cycles
//
// Everything appended while a cycle is in flight goes into the next one: the
// records are copied into one block-aligned off-heap buffer, followed by a
// pad record (or fewer than 32 zero bytes) up to the next 4 KiB boundary,
// written at the current position with one durable write (RWF_DSYNC, or a
// write linked to an fdatasync),
// and the next cycle starts at that boundary. A block holding acknowledged
// data is therefore never rewritten. A cycle that does not fit the rest of
// the file goes to offset 0 of the next file.
//
// # What recovery accepts
//
// Reading from a checkpoint position, a record is live when its magic and
// CRC verify and its sequence number is exactly the one expected (pads carry
// the expected number without consuming it). Fewer than 32 bytes left in a
// block are skipped. At the first record that fails, the reader tries offset
// 0 of the next file, and stops there too if that fails. Stale records in a
// reused file carry older numbers, so they never pass. After recovery the
// writer continues in a new file (numbered after every file that exists), so
// the torn tail of a crashed cycle is never followed by live records.
//
// # Failures
//
// When a cycle's write or sync fails, its records fail with the error, the
// position and sequence number rewind to the cycle's start, and the next
// cycle first overwrites the failed extent with zeros (and syncs) before it
// writes records: a record whose append was reported failed never becomes
// live later. Records queued meanwhile are written normally unless their
// validity check (AppendChecked) rejects them.
type Log struct {
	opts     Options
	fs       vfs.FS
	log      *slog.Logger
	dev      walDevice             // lanes[0].dev: also clears failed extents
	staging  *uring.AlignedBuffers // lanes[0].staging
	lanes    []*walLane
	lanesWG  sync.WaitGroup
	hook     func() // tests: runs before each cycle is built
	laneHook func(first uint64)

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []walReq
	closing  bool
	spares   []uint64 // recyclable file numbers, ascending
	released Position
	// committed: the position after the last completed cycle.
	committed Position
	// Cycles in flight, oldest first; unacked counts the cycles whose
	// completions have not all run yet (they may have left flight).
	flight  []*walCycle
	unacked int
	// epoch moves at each failed cycle; the cycles reserved before it
	// (still in flight) fail with failErr whatever their own result.
	epoch   uint64
	failErr error
	drain   bool       // the writer waits for unacked == 0 before its next cycle
	compMu  sync.Mutex // completions run one cycle at a time, in order

	// Writer state. file and cur change only with nothing in flight; pos
	// and seq (the next cycle's start) and the dirty extent are guarded by
	// mu: the writer reserves a cycle's extent, a failure rewinds them.
	file     uint64   // current file number
	cur      vfs.File // nil until the first cycle in file
	pos      int64
	seq      uint64
	dirty    bool // a failed extent [dirtyLo, dirtyHi) of file dirtyFile must be zeroed
	dirtyF   uint64
	dirtyLo  int64
	dirtyHi  int64
	exited   chan struct{}
	notified bool

	// The preparer: a goroutine that zero-fills a new file ahead of need
	// (at open, and when the writer passes the middle of its file, if no
	// spare exists),
	// so switching files never waits for 64 MiB of zeros on the writer.
	// Guarded by mu.
	prepReady   bool // walPrepName is complete (zero-filled and synced)
	prepRunning bool // the preparer is filling it now
	prepWant    bool // requested, not yet started
	prepCond    *sync.Cond
	prepExited  chan struct{}
	prepErrs    int           // consecutive failures; after 3 the writer creates files itself
	prepUsed    atomic.Uint64 // files the writer took from the preparer (tests)

	cycles  atomic.Uint64
	records atomic.Uint64
	written atomic.Int64 // bytes written by cycles, padding included
	// appended and settled count the records queued and the records completed (durable,
	// failed or rejected; counted just before their done runs): a writer with appended >
	// settled that does not move settled is stuck (Progress, the broker's watchdog).
	appended atomic.Uint64
	settled  atomic.Uint64
	// wedge, when set, holds the writer before its next cycle until it is closed (Wedge).
	wedge  atomic.Pointer[chan struct{}]
	held   atomic.Bool // the writer waits on wedge now (tests)
	mode   string
	reason string
}

// Open recovers the log in opts.Dir from position from (the last
// checkpoint; the zero value means "from the beginning of a new log"),
// calling replay for every live data record in order, and starts the writer.
// replay's error aborts the open.
func Open(opts Options, from Position, replay func(seq uint64, payload []byte) error) (*Log, error) {
	if opts.FS == nil {
		opts.FS = vfs.OSFS{}
	}
	if opts.IO == "" {
		opts.IO = IOAuto
	}
	if opts.FileBytes <= 0 {
		opts.FileBytes = DefaultFileBytes
	}
	if opts.CycleBytes <= 0 {
		opts.CycleBytes = DefaultCycleBytes
		if q := opts.FileBytes / 4 &^ (uring.BlockSize - 1); int64(opts.CycleBytes) > q && q > 0 {
			opts.CycleBytes = int(q)
		}
	}
	if opts.FileBytes%uring.BlockSize != 0 || opts.CycleBytes%uring.BlockSize != 0 || int64(opts.CycleBytes) > opts.FileBytes {
		return nil, fmt.Errorf("wal: file size %d and cycle size %d must be multiples of %d, cycle <= file",
			opts.FileBytes, opts.CycleBytes, uring.BlockSize)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.InFlight <= 0 {
		opts.InFlight = DefaultInFlight
	}
	if from.Seq == 0 {
		from.Seq = 1
	}
	w := &Log{opts: opts, fs: opts.FS, log: opts.Logger, exited: make(chan struct{}), hook: walTestHook, laneHook: walLaneTestHook}
	w.cond = sync.NewCond(&w.mu)
	w.prepCond = sync.NewCond(&w.mu)
	w.prepExited = make(chan struct{})
	if err := vfs.MkdirAllDurable(w.fs, opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	if err := w.recover(from, replay); err != nil {
		return nil, err
	}
	if err := w.openLanes(); err != nil {
		return nil, err
	}
	if err := w.switchTo(w.file); err != nil {
		w.closeLanes()
		return nil, fmt.Errorf("wal: starting file %d: %w", w.file, err)
	}
	for _, l := range w.lanes {
		w.lanesWG.Add(1)
		go w.runLane(l)
	}
	go w.run()
	go w.prepare()
	// A new log (or one with no file to recycle) gets its next file now,
	// while the broker is starting, rather than under load.
	w.mu.Lock()
	w.wantPreparedLocked()
	w.mu.Unlock()
	return w, nil
}

// Append queues a record whose payload is meta followed by data. done runs
// on the writer goroutine, in append order, once the record is durable
// (nil) or has failed; it must not block. The WAL reads meta and data until
// then: the caller must not modify them.
func (w *Log) Append(meta, data []byte, done func(seq uint64, err error)) {
	w.AppendChecked(meta, data, nil, done)
}

// AppendChecked is Append with a validity check: valid (when non-nil) is
// called on the writer goroutine just before the record is copied into a
// cycle, and a record it rejects is not written; its done gets
// ErrCanceled. The engine uses it so that an append rolled back after a
// failure (its partition's state moved on) never reaches the file.
func (w *Log) AppendChecked(meta, data []byte, valid func() bool, done func(seq uint64, err error)) {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		if done != nil {
			done(0, ErrClosed)
		}
		return
	}
	w.queue = append(w.queue, walReq{meta: meta, data: data, valid: valid, done: done})
	w.appended.Add(1)
	if len(w.queue) == 1 {
		w.cond.Signal()
	}
	w.mu.Unlock()
}

// Committed returns the position after the last completed cycle: every
// record before it is durable, and each was appended before the call.
func (w *Log) Committed() Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.committed
}

// Written counts the bytes written by completed cycles, padding included.
func (w *Log) Written() int64 { return w.written.Load() }

// Cycles counts completed write+sync cycles, Records the records they held.
func (w *Log) Cycles() uint64 { return w.cycles.Load() }

func (w *Log) Records() uint64 { return w.records.Load() }

// Progress reports how many records have settled (completed: durable, failed or rejected; their
// done runs or has run) and whether any queued record has not: a writer that has work and does
// not move settled is stuck.
func (w *Log) Progress() (settled uint64, pending bool) {
	// settled first: a record counted there was counted in appended before, so the pair never
	// shows more settled than appended.
	settled = w.settled.Load()
	return settled, w.appended.Load() > settled
}

// Wedge holds the writer before its next cycle until release is called, as a writer stuck in
// the kernel would be: fault injection for the broker's watchdog test. Records queue meanwhile
// and their done callbacks wait.
func (w *Log) Wedge() (release func()) {
	ch := make(chan struct{})
	if !w.wedge.CompareAndSwap(nil, &ch) {
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			w.wedge.Store(nil)
			close(ch)
		})
	}
}

// Mode says how the WAL writes: "uring+direct", "uring", "portable+direct"
// or "portable"; FallbackReason is why io_uring is not used ("" when it is,
// or when portable was asked for).
func (w *Log) Mode() string { return w.mode }

func (w *Log) FallbackReason() string { return w.reason }

// Close writes and syncs what is queued, completes it, stops the writer
// and closes the files. Appends after Close fail with ErrClosed.
func (w *Log) Close() error {
	w.mu.Lock()
	already := w.closing
	w.closing = true
	w.cond.Signal()
	w.prepCond.Broadcast()
	w.mu.Unlock()
	<-w.exited
	<-w.prepExited
	if already {
		return nil
	}
	for _, l := range w.lanes {
		close(l.ch)
	}
	w.lanesWG.Wait()
	var err error
	if w.cur != nil {
		if cerr := w.cur.Close(); cerr != nil {
			err = cerr
		}
	}
	if cerr := w.closeLanes(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}
