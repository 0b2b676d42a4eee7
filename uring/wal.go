package uring

// The write-ahead log writer: one per data directory, one goroutine, group
// commit without a timer. See WAL for the file format and the rules that let
// recovery tell live records from stale ones.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WAL I/O modes (the wal.io setting).
const (
	WALIOAuto     = "auto"     // io_uring when the kernel allows it, else portable (logged once)
	WALIOUring    = "uring"    // io_uring or fail
	WALIOPortable = "portable" // pwrite + fdatasync through the FS
)

// Record framing. Every record starts on an 8-byte boundary:
//
//	off  size
//	0    4    magic "RWAL" (0x4c415752 little endian)
//	4    4    CRC-32C (Castagnoli) of bytes 8..32 and, for data records, the payload
//	8    8    sequence number (data: this record's; pad: the next data record's)
//	16   4    payload length
//	20   1    kind: 1 data, 2 pad
//	21   11   zero
//	32   len  payload, then zeros up to the next multiple of 8
const (
	walHeaderSize        = 32
	walMagic      uint32 = 0x4c415752
	walKindData   byte   = 1
	walKindPad    byte   = 2
	walSuffix            = ".wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Defaults and bounds.
const (
	DefaultWALFileBytes  = 64 << 20
	DefaultWALCycleBytes = 4 << 20
	DefaultWALInFlight   = 2
	walSpareFiles        = 2 // recycled files kept for reuse; the rest are removed
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

// ErrWALClosed fails appends queued after Close.
var ErrWALClosed = errors.New("uring: wal closed")

// ErrWALCanceled: the record's validity check rejected it before it was written.
var ErrWALCanceled = errors.New("uring: wal record canceled before it was written")

// ErrWALRecordTooLarge: a record cannot fit a WAL file.
var ErrWALRecordTooLarge = errors.New("uring: wal record larger than a wal file")

// WALPosition names a point in the log: the next record is read (or written)
// in file File at byte Offset and carries sequence number Seq.
type WALPosition struct {
	File   uint64
	Offset int64
	Seq    uint64
}

// WALOptions configures OpenWAL.
type WALOptions struct {
	Dir        string // created if missing
	FS         FS     // file management and the portable writer; nil means OSFS{}
	IO         string // WALIOAuto (default), WALIOUring or WALIOPortable
	FileBytes  int64  // size of each preallocated file; default DefaultWALFileBytes
	CycleBytes int    // staging buffer, the most one cycle writes (larger records get a one-off buffer); default DefaultWALCycleBytes, at most FileBytes/4
	Logger     *slog.Logger
	// NotifyBytes and Notify: after a cycle, Notify is called (on the writer
	// goroutine; it must not block) when at least NotifyBytes were written
	// since the position last passed to Release.
	NotifyBytes int64
	Notify      func()
	// InFlight is how many cycles may be written and synced at once (each
	// on its own lane: an io_uring ring and descriptor, or a goroutine
	// for the portable writer); completions still run in cycle order.
	// Default DefaultWALInFlight; 1 is the strictly sequential writer.
	InFlight int
	// OnCycle, when set, is told about every cycle a lane wrote: its
	// records, its bytes (padding included), how long the write and sync
	// took, and the error if it failed. It runs on the lane's goroutine and
	// must not block (metrics).
	OnCycle func(records int, bytes int64, took time.Duration, err error)
}

// walLane is one I/O lane of the writer: a device and its staging buffer,
// driven by its own goroutine.
type walLane struct {
	dev     walDevice
	staging *AlignedBuffers
	busy    bool // a cycle is being written or synced (w.mu)
	ch      chan *walCycle
}

// walCycle is one group of records on its way to the disk.
type walCycle struct {
	reqs   []walReq
	lane   *walLane
	buf    []byte
	oneOff *AlignedBuffers
	file   uint64
	start  int64
	length int64
	first  uint64 // seq of reqs[0]
	epoch  uint64 // w.epoch when reserved: a failure before it fails it too
	done   bool   // its I/O finished (w.mu)
	err    error
}

type walReq struct {
	meta, data []byte
	valid      func() bool
	done       func(seq uint64, err error)
}

func walRecordSize(payload int) int { return (walHeaderSize + payload + 7) &^ 7 }

// walDevice writes a cycle's buffer at off in the current file and makes it
// durable. Both implementations write the same bytes at the same offsets.
type walDevice interface {
	name() string
	use(f File, path string) error // switch to a new current file
	writeSync(buf []byte, off int64) error
	close() error
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
type WAL struct {
	opts     WALOptions
	fs       FS
	log      *slog.Logger
	dev      walDevice       // lanes[0].dev: also clears failed extents
	staging  *AlignedBuffers // lanes[0].staging
	lanes    []*walLane
	lanesWG  sync.WaitGroup
	hook     func() // tests: runs before each cycle is built
	laneHook func(first uint64)

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []walReq
	closing  bool
	spares   []uint64 // recyclable file numbers, ascending
	released WALPosition
	// committed: the position after the last completed cycle.
	committed WALPosition
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
	file     uint64 // current file number
	cur      File   // nil until the first cycle in file
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
	mode    string
	reason  string
}

// OpenWAL recovers the log in opts.Dir from position from (the last
// checkpoint; the zero value means "from the beginning of a new log"),
// calling replay for every live data record in order, and starts the writer.
// replay's error aborts the open.
func OpenWAL(opts WALOptions, from WALPosition, replay func(seq uint64, payload []byte) error) (*WAL, error) {
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	if opts.IO == "" {
		opts.IO = WALIOAuto
	}
	if opts.FileBytes <= 0 {
		opts.FileBytes = DefaultWALFileBytes
	}
	if opts.CycleBytes <= 0 {
		opts.CycleBytes = DefaultWALCycleBytes
		if q := opts.FileBytes / 4 &^ (BlockSize - 1); int64(opts.CycleBytes) > q && q > 0 {
			opts.CycleBytes = int(q)
		}
	}
	if opts.FileBytes%BlockSize != 0 || opts.CycleBytes%BlockSize != 0 || int64(opts.CycleBytes) > opts.FileBytes {
		return nil, fmt.Errorf("uring: wal file size %d and cycle size %d must be multiples of %d, cycle <= file",
			opts.FileBytes, opts.CycleBytes, BlockSize)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.InFlight <= 0 {
		opts.InFlight = DefaultWALInFlight
	}
	if from.Seq == 0 {
		from.Seq = 1
	}
	w := &WAL{opts: opts, fs: opts.FS, log: opts.Logger, exited: make(chan struct{}), hook: walTestHook, laneHook: walLaneTestHook}
	w.cond = sync.NewCond(&w.mu)
	w.prepCond = sync.NewCond(&w.mu)
	w.prepExited = make(chan struct{})
	if err := MkdirAllDurable(w.fs, opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("uring: wal: %w", err)
	}
	if err := w.recover(from, replay); err != nil {
		return nil, err
	}
	if err := w.openLanes(); err != nil {
		return nil, err
	}
	if err := w.switchTo(w.file); err != nil {
		w.closeLanes()
		return nil, fmt.Errorf("uring: wal: starting file %d: %w", w.file, err)
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

func (w *WAL) path(n uint64) string {
	return filepath.Join(w.opts.Dir, fmt.Sprintf("%020d%s", n, walSuffix))
}

func (w *WAL) listFiles() ([]uint64, error) {
	ents, err := w.fs.ReadDir(w.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("uring: wal: %w", err)
	}
	var ns []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, walSuffix) || len(name) != 20+len(walSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, walSuffix), 10, 64)
		if err == nil {
			ns = append(ns, n)
		}
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
	return ns, nil
}

// recover replays from, removes files after the last one holding live
// records, and puts the writer at offset 0 of the following file.
func (w *WAL) recover(from WALPosition, replay func(uint64, []byte) error) error {
	files, err := w.listFiles()
	if err != nil {
		return err
	}
	exists := make(map[uint64]bool, len(files))
	for _, n := range files {
		exists[n] = true
	}
	start := time.Now()
	file, pos, seq := from.File, from.Offset, from.Seq
	last := from.File
	replayed := 0
	var r *walReader
	defer func() {
		if r != nil {
			r.f.Close()
		}
	}()
	openReader := func(n uint64) error {
		if r != nil {
			r.f.Close()
			r = nil
		}
		f, err := w.fs.OpenFile(w.path(n), os.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("uring: wal: %w", err)
		}
		size, err := f.Size()
		if err != nil {
			f.Close()
			return fmt.Errorf("uring: wal: %w", err)
		}
		r = &walReader{f: f, size: size}
		return nil
	}
	if exists[file] {
		if err := openReader(file); err != nil {
			return err
		}
	}
	for r != nil {
		kind, payload, size, err := r.record(pos, seq)
		if err != nil {
			return err
		}
		if kind != 0 {
			if kind == walKindData {
				if err := replay(seq, payload); err != nil {
					return err
				}
				seq++
				replayed++
			}
			pos += int64(size)
			last = file
			continue
		}
		if rem := BlockSize - pos%BlockSize; rem < walHeaderSize && pos+rem <= r.size {
			pos += rem
			continue
		}
		// Try the start of the next file.
		if !exists[file+1] {
			break
		}
		if err := openReader(file + 1); err != nil {
			return err
		}
		if k, _, _, err := r.record(0, seq); err != nil {
			return err
		} else if k == 0 {
			break
		}
		file, pos = file+1, 0
	}
	// Files past the last live one hold only a torn cycle or stale data.
	removed := false
	if err := w.fs.Remove(filepath.Join(w.opts.Dir, walPrepName)); err == nil {
		removed = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("uring: wal: %w", err)
	}
	for _, n := range files {
		switch {
		case n > last:
			if err := w.fs.Remove(w.path(n)); err != nil {
				return fmt.Errorf("uring: wal: %w", err)
			}
			removed = true
		case n < from.File:
			w.spares = append(w.spares, n)
		}
	}
	for len(w.spares) > walSpareFiles {
		if err := w.fs.Remove(w.path(w.spares[0])); err != nil {
			return fmt.Errorf("uring: wal: %w", err)
		}
		w.spares = w.spares[1:]
		removed = true
	}
	if removed {
		if err := w.fs.SyncDir(w.opts.Dir); err != nil {
			return fmt.Errorf("uring: wal: %w", err)
		}
	}
	w.file, w.pos, w.seq = last+1, 0, seq
	w.committed = WALPosition{File: w.file, Offset: 0, Seq: seq}
	w.released = from
	w.log.Info("uring: wal recovered", "dir", w.opts.Dir, "from_file", from.File, "from_offset", from.Offset,
		"records", replayed, "next_seq", seq, "took", time.Since(start))
	return nil
}

// walReader reads records through a window buffer.
type walReader struct {
	f      File
	size   int64
	buf    []byte
	wstart int64
	wlen   int
}

const walReadWindow = 1 << 20

// bytes returns n bytes at pos, or nil when the file ends first.
func (r *walReader) bytes(pos int64, n int) ([]byte, error) {
	if pos < 0 || pos+int64(n) > r.size {
		return nil, nil
	}
	if pos >= r.wstart && pos+int64(n) <= r.wstart+int64(r.wlen) {
		o := pos - r.wstart
		return r.buf[o : o+int64(n)], nil
	}
	want := walReadWindow
	if n > want {
		want = n
	}
	if rest := r.size - pos; int64(want) > rest {
		want = int(rest)
	}
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	got, err := r.f.ReadAt(r.buf, pos)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("uring: wal read: %w", err)
	}
	r.wstart, r.wlen = pos, got
	if got < n {
		return nil, nil
	}
	return r.buf[:n], nil
}

// record parses the record at pos expecting sequence number seq. kind 0
// means no live record is there.
func (r *walReader) record(pos int64, seq uint64) (kind byte, payload []byte, size int, err error) {
	h, err := r.bytes(pos, walHeaderSize)
	if err != nil || h == nil {
		return 0, nil, 0, err
	}
	if binary.LittleEndian.Uint32(h[0:]) != walMagic || binary.LittleEndian.Uint64(h[8:]) != seq {
		return 0, nil, 0, nil
	}
	n := int(binary.LittleEndian.Uint32(h[16:]))
	kind = h[20]
	want := binary.LittleEndian.Uint32(h[4:])
	size = walRecordSize(n)
	switch kind {
	case walKindPad:
		if crc32.Checksum(h[8:walHeaderSize], castagnoli) != want || pos+int64(size) > r.size {
			return 0, nil, 0, nil
		}
		return kind, nil, size, nil
	case walKindData:
		if pos+int64(walHeaderSize+n) > r.size {
			return 0, nil, 0, nil
		}
		crc := crc32.Update(0, castagnoli, h[8:walHeaderSize])
		whole, err := r.bytes(pos, walHeaderSize+n)
		if err != nil || whole == nil {
			return 0, nil, 0, err
		}
		if crc32.Update(crc, castagnoli, whole[walHeaderSize:]) != want {
			return 0, nil, 0, nil
		}
		return kind, append([]byte(nil), whole[walHeaderSize:]...), size, nil
	}
	return 0, nil, 0, nil
}

// putHeader writes a record header into b[:32].
func putHeader(b []byte, kind byte, seq uint64, payload [][]byte) {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	binary.LittleEndian.PutUint32(b[0:], walMagic)
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint32(b[16:], uint32(n))
	b[20] = kind
	clear(b[21:walHeaderSize])
	crc := crc32.Update(0, castagnoli, b[8:walHeaderSize])
	for _, p := range payload {
		crc = crc32.Update(crc, castagnoli, p)
	}
	binary.LittleEndian.PutUint32(b[4:], crc)
}

// Append queues a record whose payload is meta followed by data. done runs
// on the writer goroutine, in append order, once the record is durable
// (nil) or has failed; it must not block. The WAL reads meta and data until
// then: the caller must not modify them.
func (w *WAL) Append(meta, data []byte, done func(seq uint64, err error)) {
	w.AppendChecked(meta, data, nil, done)
}

// AppendChecked is Append with a validity check: valid (when non-nil) is
// called on the writer goroutine just before the record is copied into a
// cycle, and a record it rejects is not written; its done gets
// ErrWALCanceled. The engine uses it so that an append rolled back after a
// failure (its partition's state moved on) never reaches the file.
func (w *WAL) AppendChecked(meta, data []byte, valid func() bool, done func(seq uint64, err error)) {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		if done != nil {
			done(0, ErrWALClosed)
		}
		return
	}
	w.queue = append(w.queue, walReq{meta: meta, data: data, valid: valid, done: done})
	if len(w.queue) == 1 {
		w.cond.Signal()
	}
	w.mu.Unlock()
}

// Committed returns the position after the last completed cycle: every
// record before it is durable, and each was appended before the call.
func (w *WAL) Committed() WALPosition {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.committed
}

// Release says every record before pos is no longer needed (the caller made
// its contents durable elsewhere): files wholly before pos.File are reused or
// removed.
func (w *WAL) Release(pos WALPosition) {
	files, err := w.listFiles()
	if err != nil {
		w.log.Warn("uring: wal release: listing files", "err", err)
		return
	}
	w.mu.Lock()
	if pos.File > w.released.File || pos.File == w.released.File && pos.Offset > w.released.Offset {
		w.released = pos
		w.notified = false
	}
	have := make(map[uint64]bool, len(w.spares))
	for _, n := range w.spares {
		have[n] = true
	}
	for _, n := range files {
		if n < pos.File && !have[n] {
			w.spares = append(w.spares, n)
		}
	}
	sort.Slice(w.spares, func(i, j int) bool { return w.spares[i] < w.spares[j] })
	var drop []uint64
	for len(w.spares) > walSpareFiles {
		drop = append(drop, w.spares[0])
		w.spares = w.spares[1:]
	}
	w.mu.Unlock()
	for _, n := range drop {
		if err := w.fs.Remove(w.path(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("uring: wal: removing a recycled file", "err", err)
		} else {
			w.log.Debug("uring: wal: removed a file beyond the spares", "file", n)
		}
	}
}

// Written counts the bytes written by completed cycles, padding included.
func (w *WAL) Written() int64 { return w.written.Load() }

// Cycles counts completed write+sync cycles, Records the records they held.
func (w *WAL) Cycles() uint64  { return w.cycles.Load() }
func (w *WAL) Records() uint64 { return w.records.Load() }

// Mode says how the WAL writes: "uring+direct", "uring", "portable+direct"
// or "portable"; FallbackReason is why io_uring is not used ("" when it is,
// or when portable was asked for).
func (w *WAL) Mode() string           { return w.mode }
func (w *WAL) FallbackReason() string { return w.reason }

// Close writes and syncs what is queued, completes it, stops the writer
// and closes the files. Appends after Close fail with ErrWALClosed.
func (w *WAL) Close() error {
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

// openLanes opens opts.InFlight lanes of the mode openDevice picks; a
// lane beyond the first that cannot open is logged and left out.
func (w *WAL) openLanes() error {
	for i := 0; i < w.opts.InFlight; i++ {
		var dev walDevice
		var err error
		if i == 0 {
			dev, err = w.openDevice()
		} else if _, ok := w.dev.(*uringDevice); ok {
			dev, err = newUringDevice(w.opts.Dir, w.log)
		} else {
			dev = &portableDevice{}
		}
		if err != nil {
			if i == 0 {
				return err
			}
			w.log.Warn("uring: wal: fewer cycles in flight than asked", "in_flight", i, "err", err)
			break
		}
		staging, err := NewAlignedBuffers(1, w.opts.CycleBytes)
		if err != nil {
			dev.close()
			if i == 0 {
				return err
			}
			w.log.Warn("uring: wal: fewer cycles in flight than asked", "in_flight", i, "err", err)
			break
		}
		if ud, ok := dev.(*uringDevice); ok {
			ud.register(staging)
		}
		l := &walLane{dev: dev, staging: staging, ch: make(chan *walCycle, 1)}
		w.lanes = append(w.lanes, l)
		if i == 0 {
			w.dev, w.staging = dev, staging
		}
	}
	return nil
}

func (w *WAL) closeLanes() error {
	var err error
	for _, l := range w.lanes {
		if cerr := l.dev.close(); cerr != nil && err == nil {
			err = cerr
		}
		if cerr := l.staging.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// runLane writes and syncs the cycles handed to lane l.
func (w *WAL) runLane(l *walLane) {
	defer w.lanesWG.Done()
	for c := range l.ch {
		if w.laneHook != nil {
			w.laneHook(c.first)
		}
		t0 := time.Now()
		c.err = l.dev.writeSync(c.buf, c.start)
		d := time.Since(t0)
		if w.opts.OnCycle != nil {
			w.opts.OnCycle(len(c.reqs), c.length, d, c.err)
		}
		if d > 5*time.Millisecond {
			w.log.Debug("uring: wal: slow cycle", "file", c.file, "offset", c.start, "bytes", c.length, "records", len(c.reqs), "took", d)
		}
		w.finish(c)
	}
}

// run is the writer loop: it builds a cycle whenever records are queued
// and a lane is free, unless a failure or a file switch needs every cycle
// in flight completed first.
func (w *WAL) run() {
	defer close(w.exited)
	for {
		w.mu.Lock()
		var lane *walLane
		for {
			if len(w.queue) == 0 && w.closing && w.unacked == 0 {
				w.mu.Unlock()
				return
			}
			if len(w.queue) > 0 && (w.unacked == 0 || !w.dirty && !w.drain) {
				if lane = w.freeLaneLocked(); lane != nil {
					break
				}
			}
			w.cond.Wait()
		}
		w.drain = false
		zero := w.dirty // stable: nothing is in flight when it is set
		w.mu.Unlock()
		if w.hook != nil {
			w.hook()
		}
		w.cycle(lane, zero)
	}
}

// take removes from the queue the requests of the next cycle: as many as
// fit the staging buffer (at least one), and at most max when max >= 0.
func (w *WAL) take(max int) []walReq {
	w.mu.Lock()
	defer w.mu.Unlock()
	limit := int64(w.opts.CycleBytes)
	used := int64(0)
	n := 0
	for n < len(w.queue) && (max < 0 || n < max) {
		sz := int64(walRecordSize(len(w.queue[n].meta) + len(w.queue[n].data)))
		if n > 0 && used+sz > limit {
			break
		}
		used += sz
		n++
	}
	reqs := make([]walReq, n)
	copy(reqs, w.queue)
	rest := copy(w.queue, w.queue[n:])
	clear(w.queue[rest:])
	w.queue = w.queue[:rest]
	return reqs
}

func (w *WAL) freeLaneLocked() *walLane {
	for _, l := range w.lanes {
		if !l.busy {
			return l
		}
	}
	return nil
}

// requeue puts records back at the head of the queue and makes the writer
// wait for every cycle in flight to complete before it takes them again
// (their validity is checked again then).
func (w *WAL) requeueLocked(reqs []walReq) {
	w.queue = append(reqs, w.queue...)
	w.drain = true
}

// failOrdered fails reqs once every earlier cycle has completed (so
// completions stay in append order): now when none is in flight, else
// they are requeued behind a drain and fail on the next attempt.
func (w *WAL) failOrdered(reqs []walReq, err error) {
	w.mu.Lock()
	if w.unacked > 0 {
		w.requeueLocked(reqs)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	w.complete(reqs, 0, err)
}

// cycle builds one group of records and hands it to lane l. zero: a failed
// extent must be cleared first (nothing is in flight then).
func (w *WAL) cycle(l *walLane, zero bool) {
	if zero {
		w.mu.Lock()
		queued := len(w.queue)
		w.mu.Unlock()
		if err := w.zeroDirty(); err != nil {
			// The records queued before the attempt fail with it; later
			// ones get an attempt of their own.
			w.log.Error("uring: wal: cannot clear a failed cycle's extent", "err", err)
			w.complete(w.take(queued), 0, err)
			return
		}
	}
	reqs := w.take(-1)
	// Drop records their owner no longer wants (rolled back meanwhile).
	kept := reqs[:0:0]
	for _, r := range reqs {
		if r.valid != nil && !r.valid() {
			if r.done != nil {
				r.done(0, ErrWALCanceled)
			}
			continue
		}
		kept = append(kept, r)
	}
	reqs = kept
	total := 0
	for _, r := range reqs {
		total += walRecordSize(len(r.meta) + len(r.data))
	}
	if len(reqs) == 0 {
		return
	}
	length := int64(total+BlockSize-1) &^ (BlockSize - 1)
	if length > w.opts.FileBytes {
		w.failOrdered(reqs, fmt.Errorf("%w: %d bytes, file %d", ErrWALRecordTooLarge, total, w.opts.FileBytes))
		return
	}
	buf := l.staging.Slot(0)
	var oneOff *AlignedBuffers
	if length > int64(len(buf)) {
		b, err := NewAlignedBuffers(1, int(length))
		if err != nil {
			w.failOrdered(reqs, err)
			return
		}
		oneOff, buf = b, b.Slot(0)
	}
	buf = buf[:length]
	// Reserve the extent.
	w.mu.Lock()
	if w.dirty || w.pos+length > w.opts.FileBytes && w.unacked > 0 {
		// A cycle failed since the loop looked (its records' owners may
		// be rolling back), or a file switch must wait for the cycles in
		// flight.
		w.requeueLocked(reqs)
		w.mu.Unlock()
		if oneOff != nil {
			oneOff.Close()
		}
		return
	}
	if w.pos+length > w.opts.FileBytes {
		next := w.file + 1
		w.mu.Unlock()
		t0 := time.Now()
		err := w.switchTo(next)
		w.log.Debug("uring: wal: switched file", "file", next, "took", time.Since(t0))
		if err != nil {
			w.log.Error("uring: wal: cannot start a new file", "file", next, "err", err)
			if oneOff != nil {
				oneOff.Close()
			}
			w.complete(reqs, 0, err)
			return
		}
		w.mu.Lock()
	}
	c := &walCycle{reqs: reqs, lane: l, buf: buf, oneOff: oneOff, file: w.file, start: w.pos, length: length,
		first: w.seq, epoch: w.epoch}
	w.pos += length
	w.seq += uint64(len(reqs))
	w.flight = append(w.flight, c)
	w.unacked++
	l.busy = true
	w.mu.Unlock()

	off := 0
	seq := c.first
	for _, r := range reqs {
		b := buf[off:]
		n := copy(b[walHeaderSize:], r.meta)
		n += copy(b[walHeaderSize+n:], r.data)
		putHeader(b, walKindData, seq, [][]byte{b[walHeaderSize : walHeaderSize+n]})
		sz := walRecordSize(n)
		clear(b[walHeaderSize+n : sz])
		off += sz
		seq++
	}
	if rem := int(length) - off; rem >= walHeaderSize {
		putHeader(buf[off:], walKindPad, seq, nil)
		binary.LittleEndian.PutUint32(buf[off+16:], uint32(rem-walHeaderSize))
		// The pad's CRC covers its header only, length included.
		binary.LittleEndian.PutUint32(buf[off+4:], crc32.Checksum(buf[off+8:off+walHeaderSize], castagnoli))
		clear(buf[off+walHeaderSize:])
	} else {
		clear(buf[off:])
	}
	l.ch <- c
}

// finish records that cycle c's I/O is over and completes, in order, every
// cycle at the head of the flight that is over. A failed cycle fails the
// cycles reserved after it too, rewinds the writer to its start and marks
// the whole extent they used for clearing.
func (w *WAL) finish(c *walCycle) {
	w.mu.Lock()
	c.done = true
	c.lane.busy = false
	w.cond.Signal()
	w.mu.Unlock()

	w.compMu.Lock()
	defer w.compMu.Unlock()
	w.mu.Lock()
	var ready []*walCycle
	notify := false
	for len(w.flight) > 0 && w.flight[0].done {
		d := w.flight[0]
		w.flight[0] = nil
		w.flight = w.flight[1:]
		switch {
		case d.epoch != w.epoch:
			d.err = w.failErr
		case d.err != nil:
			w.log.Error("uring: wal: cycle failed; its records (and those of the cycles in flight after it) fail and the extent will be cleared",
				"file", d.file, "offset", d.start, "bytes", d.length, "in_flight_after", len(w.flight), "err", d.err)
			w.epoch++
			w.failErr = d.err
			w.dirty, w.dirtyF, w.dirtyLo, w.dirtyHi = true, d.file, d.start, w.pos
			w.pos, w.seq = d.start, d.first
		default:
			w.cycles.Add(1)
			w.records.Add(uint64(len(d.reqs)))
			w.written.Add(d.length)
			w.committed = WALPosition{File: d.file, Offset: d.start + d.length, Seq: d.first + uint64(len(d.reqs))}
			if d.start+d.length >= w.opts.FileBytes/2 {
				w.wantPreparedLocked()
			}
			if w.opts.Notify != nil && !w.notified && w.sinceReleasedLocked() >= w.opts.NotifyBytes {
				w.notified, notify = true, true
			}
		}
		ready = append(ready, d)
	}
	if len(w.flight) == 0 {
		w.flight = w.flight[:0:0]
	}
	w.mu.Unlock()
	for _, d := range ready {
		w.complete(d.reqs, d.first, d.err)
		if d.oneOff != nil {
			d.oneOff.Close()
		}
	}
	if notify {
		w.opts.Notify()
	}
	if len(ready) > 0 {
		w.mu.Lock()
		w.unacked -= len(ready)
		w.cond.Signal()
		w.mu.Unlock()
	}
}

// sinceReleasedLocked estimates the bytes between the released position and
// the committed one. w.mu held.
func (w *WAL) sinceReleasedLocked() int64 {
	c, r := w.committed, w.released
	if c.File < r.File {
		return 0
	}
	return int64(c.File-r.File)*w.opts.FileBytes + c.Offset - r.Offset
}

// complete runs the done callbacks of one cycle in order.
func (w *WAL) complete(reqs []walReq, first uint64, err error) {
	for i, r := range reqs {
		if r.done != nil {
			if err != nil {
				r.done(0, err)
			} else {
				r.done(first+uint64(i), nil)
			}
		}
	}
}

// zeroDirty overwrites a failed cycle's extent with zeros and syncs, then
// rewinds the writer to its start.
func (w *WAL) zeroDirty() error {
	// Nothing is in flight: only the writer touches these now.
	w.mu.Lock()
	dirtyF, lo, hi, file := w.dirtyF, w.dirtyLo, w.dirtyHi, w.file
	w.mu.Unlock()
	if dirtyF != file {
		// The failed extent is in a file we no longer write: only possible
		// if the switch failed, and then nothing was written there.
		w.mu.Lock()
		w.dirty = false
		w.mu.Unlock()
		return nil
	}
	n := hi - lo
	buf := w.staging.Slot(0)
	var oneOff *AlignedBuffers
	if n > int64(len(buf)) {
		b, err := NewAlignedBuffers(1, int(n))
		if err != nil {
			return err
		}
		oneOff, buf = b, b.Slot(0)
		defer oneOff.Close()
	}
	buf = buf[:n]
	clear(buf)
	if err := w.dev.writeSync(buf, lo); err != nil {
		return err
	}
	w.mu.Lock()
	w.pos = lo
	w.dirty = false
	w.mu.Unlock()
	return nil
}

// switchTo makes file n current: a spare renamed, or a new preallocated one.
func (w *WAL) switchTo(n uint64) error {
	path := w.path(n)
	w.mu.Lock()
	var spare uint64
	haveSpare := len(w.spares) > 0
	if haveSpare {
		spare = w.spares[0]
		w.spares = w.spares[1:]
	}
	usePrep := false
	if !haveSpare {
		// A file the preparer is filling is closer to ready than one we
		// would start now.
		for w.prepRunning {
			w.prepCond.Wait()
		}
		usePrep, w.prepReady = w.prepReady, false
	}
	w.mu.Unlock()
	var f File
	var err error
	if usePrep {
		if err = w.fs.Rename(filepath.Join(w.opts.Dir, walPrepName), path); err == nil {
			f, err = w.openRecycled(path)
		}
		if err == nil {
			w.prepUsed.Add(1)
		}
		if err != nil {
			w.log.Warn("uring: wal: using the prepared file failed, creating a new one", "err", err)
			_ = w.fs.Remove(path)
			f = nil
		}
	} else if haveSpare {
		if err = w.fs.Rename(w.path(spare), path); err == nil {
			f, err = w.openRecycled(path)
		}
		if err != nil {
			w.log.Warn("uring: wal: recycling failed, creating a new file", "err", err)
			_ = w.fs.Remove(path)
			f = nil
		}
	}
	if f == nil {
		if f, err = w.create(path); err != nil {
			_ = w.fs.Remove(path)
			return err
		}
	}
	if err := w.fs.SyncDir(w.opts.Dir); err != nil {
		f.Close()
		return err
	}
	for _, l := range w.lanes {
		if err := l.dev.use(f, path); err != nil {
			f.Close()
			return err
		}
	}
	if w.cur != nil {
		w.cur.Close()
	}
	w.mu.Lock()
	w.cur, w.file, w.pos = f, n, 0
	w.mu.Unlock()
	return nil
}

// openRecycled opens a renamed spare or prepared file and checks its size.
func (w *WAL) openRecycled(path string) (File, error) {
	f, err := w.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	size, err := f.Size()
	if err == nil && size != w.opts.FileBytes {
		err = fmt.Errorf("recycled wal file %s has %d bytes, want %d", path, size, w.opts.FileBytes)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// wantPreparedLocked asks the preparer for a fresh file when the writer
// would otherwise have to create its next one. w.mu held.
func (w *WAL) wantPreparedLocked() {
	if len(w.spares) > 0 || w.prepReady || w.prepRunning || w.prepWant || w.prepErrs >= 3 {
		return
	}
	w.prepWant = true
	w.prepCond.Broadcast()
}

// prepare is the preparer goroutine: it zero-fills walPrepName on request.
func (w *WAL) prepare() {
	defer close(w.prepExited)
	path := filepath.Join(w.opts.Dir, walPrepName)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for !w.prepWant && !w.closing {
			w.prepCond.Wait()
		}
		if w.closing {
			return
		}
		w.prepWant, w.prepRunning = false, true
		w.mu.Unlock()
		start := time.Now()
		f, err := w.fill(path, walPrepChunk, func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.closing
		})
		if err == nil {
			err = f.Close()
		}
		if err != nil {
			_ = w.fs.Remove(path)
		}
		w.mu.Lock()
		w.prepRunning = false
		if err != nil {
			w.prepErrs++
			if !w.closing {
				w.log.Warn("uring: wal: preparing the next file failed; the writer creates it when needed", "err", err)
			}
		} else {
			w.prepErrs = 0
			w.prepReady = true
			w.log.Debug("uring: wal: next file prepared", "bytes", w.opts.FileBytes, "took", time.Since(start))
		}
		w.prepCond.Broadcast()
	}
}

var errWALPrepStopped = errors.New("uring: wal: closing")

// create makes a zero-filled file of FileBytes and syncs it.
func (w *WAL) create(path string) (File, error) {
	return w.fill(path, w.opts.FileBytes, nil)
}

// fill makes a zero-filled file of FileBytes at path, syncing after every
// syncEvery bytes and at the end; stop (when non-nil) is asked between
// chunks and ends the fill early with an error.
func (w *WAL) fill(path string, syncEvery int64, stop func() bool) (File, error) {
	f, err := w.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	zero := make([]byte, 1<<20)
	unsynced := int64(0)
	for off := int64(0); off < w.opts.FileBytes; off += int64(len(zero)) {
		if stop != nil && stop() {
			f.Close()
			return nil, errWALPrepStopped
		}
		chunk := zero
		if rest := w.opts.FileBytes - off; rest < int64(len(chunk)) {
			chunk = chunk[:rest]
		}
		if _, err := f.WriteAt(chunk, off); err != nil {
			f.Close()
			return nil, err
		}
		if unsynced += int64(len(chunk)); unsynced >= syncEvery && off+int64(len(chunk)) < w.opts.FileBytes {
			if err := f.Datasync(); err != nil {
				f.Close()
				return nil, err
			}
			unsynced = 0
		}
	}
	if err := f.Datasync(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openDevice picks the writer implementation for opts.IO.
func (w *WAL) openDevice() (walDevice, error) {
	_, osfs := w.fs.(OSFS)
	switch w.opts.IO {
	case WALIOPortable:
		w.mode = "portable"
		return &portableDevice{}, nil
	case WALIOUring, WALIOAuto:
		if !osfs {
			if w.opts.IO == WALIOUring {
				return nil, errors.New("uring: wal.io=uring needs the OS file system")
			}
			w.mode, w.reason = "portable", "file system is not the OS one (tests)"
			return &portableDevice{}, nil
		}
		d, err := newUringDevice(w.opts.Dir, w.log)
		if err != nil {
			if w.opts.IO == WALIOUring || !errors.Is(err, ErrUnavailable) {
				return nil, err
			}
			w.mode, w.reason = "portable", err.Error()
			w.log.Warn("uring: io_uring unavailable, the wal uses the portable pwrite+fdatasync writer", "err", err)
			return &portableDevice{}, nil
		}
		w.mode = "uring"
		if d.direct {
			w.mode = "uring+direct"
		}
		return d, nil
	}
	return nil, fmt.Errorf("uring: unknown wal.io %q (auto, uring or portable)", w.opts.IO)
}

// portableDevice writes with pwrite and fdatasync through the FS.
type portableDevice struct{ f File }

func (d *portableDevice) name() string { return "portable" }
func (d *portableDevice) use(f File, _ string) error {
	d.f = f
	return nil
}
func (d *portableDevice) writeSync(buf []byte, off int64) error {
	if _, err := d.f.WriteAt(buf, off); err != nil {
		return err
	}
	return d.f.Datasync()
}
func (d *portableDevice) close() error { return nil }
