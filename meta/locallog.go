package meta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/ringtail/ringtail/vfs"
)

// The files of a LocalLog, in its directory:
//
//	snapshot   the state after the first N commands, replaced with vfs.WriteFileAtomic:
//	           CRC-32C of the rest (4 bytes) | N (uint64) | State.Snapshot()
//	commands   the commands after it, appended: one record each,
//	           length of the body (uint32) | CRC-32C of the body (uint32) | body
//	           body: the command's index (uint64; the first command is 1) | EncodeCommand
//	meta.json  the state as written before the command log; imported on open, then removed
//
// Integers are big-endian. The index in each record is what makes compaction safe: the
// snapshot is written first and the command file emptied after, so a cut in between leaves
// records the snapshot already holds, and replay skips them by index instead of applying
// them twice (allocating producer ids twice, for one).
const (
	snapshotFile = "snapshot"
	commandsFile = "commands"
	legacyFile   = "meta.json"

	recordHeader = 8 // length and CRC
	// maxRecordBytes bounds a command: a topic of MaxPartitions partitions with MaxReplicas
	// replicas each fits, and a damaged length cannot make replay allocate more.
	maxRecordBytes = 16 << 20
	// compactBytes: a command file this long is compacted whatever its command count, so
	// that replay on open stays short.
	compactBytes = 4 << 20
)

// DefaultSnapshotEvery is how many commands a LocalLog appends between snapshots.
const DefaultSnapshotEvery = 1000

// LocalLogConfig configures OpenLocalLog.
type LocalLogConfig struct {
	Dir string
	FS  vfs.FS // nil: vfs.OSFS
	// NodeID is the replica, leader and ISR of every partition imported from a meta.json.
	NodeID int32
	// SnapshotEvery is how many commands are appended between snapshots (0: the default).
	SnapshotEvery int
	Logger        *slog.Logger // nil: discard
}

// LocalLog is the Log of a single node: each command is appended to the command file and
// fdatasynced before Propose returns; open replays the command file after the snapshot, and
// every SnapshotEvery commands the state is written to a new snapshot and the command file
// emptied. All its file I/O goes through vfs.FS.
type LocalLog struct {
	fs    vfs.FS
	dir   string
	every int
	log   *slog.Logger

	state Published // after each command; never modified once stored

	mu        sync.Mutex // serializes Propose, compaction and Close; guards the fields below
	file      vfs.File   // the command file
	size      int64      // bytes of whole records in it; the next one goes here
	index     uint64     // of the last command applied
	snapIndex uint64     // commands the snapshot file holds
	// failed: a write, sync or truncation of the command file failed, so its tail is not
	// known (after a failed fdatasync Linux may have dropped the pages): no more commands
	// are taken until a restart replays what is really there.
	failed error
	closed bool
}

var _ Log = (*LocalLog)(nil)

// OpenLocalLog opens the log in cfg.Dir, creating it on first use, importing a meta.json left
// by an older version, and replaying the commands after the snapshot. A torn last record (a
// cut during its append, so its Propose never returned) is cut off.
func OpenLocalLog(cfg LocalLogConfig) (*LocalLog, error) {
	l := &LocalLog{fs: cfg.FS, dir: cfg.Dir, every: cfg.SnapshotEvery, log: cfg.Logger}
	if l.fs == nil {
		l.fs = vfs.OSFS{}
	}
	if l.every <= 0 {
		l.every = DefaultSnapshotEvery
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	// Durably, like every file in it: a new directory's entry lives in its parent.
	if err := vfs.MkdirAllDurable(l.fs, l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	st, err := l.loadSnapshot(cfg.NodeID)
	if err != nil {
		return nil, err
	}
	if err := l.openCommands(st); err != nil {
		return nil, err
	}
	return l, nil
}

// loadSnapshot reads the snapshot file, or imports meta.json into a new one, or starts empty.
func (l *LocalLog) loadSnapshot(nodeID int32) (*State, error) {
	path := filepath.Join(l.dir, snapshotFile)
	b, err := vfs.ReadFile(l.fs, path)
	switch {
	case err == nil:
		st, index, err := decodeSnapshotFile(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
		}
		l.snapIndex, l.index = index, index
		// A meta.json beside a snapshot is one whose import was cut before its removal.
		return st, l.removeLegacy()
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("meta: reading %s: %w", path, err)
	}
	legacy := filepath.Join(l.dir, legacyFile)
	b, err = vfs.ReadFile(l.fs, legacy)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return NewState(), nil
	case err != nil:
		return nil, fmt.Errorf("meta: reading %s: %w", legacy, err)
	}
	st, err := importLegacy(b, nodeID)
	if err != nil {
		return nil, fmt.Errorf("meta: importing %s: %w", legacy, err)
	}
	// The snapshot is durable before meta.json goes: a cut in between finds both, and the
	// snapshot wins.
	if err := vfs.WriteFileAtomic(l.fs, path, encodeSnapshotFile(0, st)); err != nil {
		return nil, fmt.Errorf("meta: writing %s: %w", path, err)
	}
	if err := l.removeLegacy(); err != nil {
		return nil, err
	}
	l.log.Info("metadata imported into the command log", "from", legacy, "topics", len(st.topics))
	return st, nil
}

// removeLegacy removes meta.json and the temporary file of its last write, durably.
func (l *LocalLog) removeLegacy() error {
	removed := false
	for _, name := range []string{legacyFile, legacyFile + ".tmp"} {
		err := l.fs.Remove(filepath.Join(l.dir, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("meta: %w", err)
		}
		removed = removed || err == nil
	}
	if !removed {
		return nil
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	return nil
}

// openCommands opens (or creates) the command file, replays it onto st and publishes the result.
func (l *LocalLog) openCommands(st *State) error {
	path := filepath.Join(l.dir, commandsFile)
	f, err := l.fs.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if f, err = l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644); err == nil {
			// The records synced into it are only as durable as its directory entry.
			if err = l.fs.SyncDir(l.dir); err != nil {
				f.Close()
			}
		}
	}
	if err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	if err := l.replay(f, st); err != nil {
		f.Close()
		return err
	}
	l.file = f
	l.state.Store(st)
	return nil
}

// replay applies the records of f after the snapshot to st and cuts a torn tail.
func (l *LocalLog) replay(f vfs.File, st *State) error {
	n, err := f.Size()
	if err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("meta: reading %s: %w", f.Name(), err)
	}
	off, prev := 0, uint64(0)
	for {
		index, cmd, size, ok := nextRecord(b[off:])
		if !ok {
			break
		}
		switch {
		case cmd == nil:
			return fmt.Errorf("%w: %s: the record at %d has a valid checksum but does not decode", ErrCorrupt, f.Name(), off)
		case off > 0 && index != prev+1:
			return fmt.Errorf("%w: %s: command %d follows command %d", ErrCorrupt, f.Name(), index, prev)
		case off == 0 && (index == 0 || index > l.snapIndex+1):
			return fmt.Errorf("%w: %s: starts at command %d, the snapshot ends at %d", ErrCorrupt, f.Name(), index, l.snapIndex)
		}
		if index > l.snapIndex {
			// Only commands that applied are written, and Apply is deterministic, so a
			// rejection here means the files or the code changed under the log.
			if _, err := Apply(st, cmd); err != nil {
				return fmt.Errorf("%w: %s: command %d no longer applies: %v", ErrCorrupt, f.Name(), index, err)
			}
			l.index = index
		}
		off += size
		prev = index
	}
	if off < len(b) {
		// Commands are synced one by one, so only the last can be incomplete: a cut during
		// its append, whose Propose never returned.
		l.log.Warn("metadata command log: cutting a torn last record", "file", f.Name(), "at", off, "bytes", len(b)-off)
		if err := f.Truncate(int64(off)); err != nil {
			return fmt.Errorf("meta: %w", err)
		}
		if err := f.Datasync(); err != nil {
			return fmt.Errorf("meta: %w", err)
		}
	}
	l.size = int64(off)
	return nil
}

// nextRecord reads the record at the start of b. ok is false when there is no whole record
// with a valid checksum there; cmd is nil when the checksum is valid but the command does
// not decode.
func nextRecord(b []byte) (index uint64, cmd Command, size int, ok bool) {
	if len(b) < recordHeader {
		return 0, nil, 0, false
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < 9 || n > maxRecordBytes || len(b)-recordHeader < n {
		return 0, nil, 0, false
	}
	body := b[recordHeader : recordHeader+n]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return 0, nil, 0, false
	}
	cmd, _ = DecodeCommand(body[8:])
	return binary.BigEndian.Uint64(body), cmd, recordHeader + n, true
}

func appendRecord(b []byte, index uint64, cmd []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(8+len(cmd)))
	crcAt := len(b)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint64(b, index)
	b = append(b, cmd...)
	binary.BigEndian.PutUint32(b[crcAt:], crc32.Checksum(b[crcAt+4:], castagnoli))
	return b
}

// State returns the state after the last command.
func (l *LocalLog) State() *State { return l.state.Load() }

// Watch returns the state after the last command and a channel closed once another applies.
func (l *LocalLog) Watch() (*State, <-chan struct{}) { return l.state.Watch() }

// Propose applies cmd to a copy of the state; if it applies, appends and fdatasyncs its record,
// then publishes the new state. A rejected command writes nothing: replaying it would reject
// it again. The log never waits on anything but its disk, so ctx is only checked on entry.
func (l *LocalLog) Propose(ctx context.Context, cmd Command) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return Result{}, ErrClosed
	case l.failed != nil:
		return Result{}, l.failed
	}
	next := l.state.Load().Clone()
	res, err := Apply(next, cmd)
	if err != nil {
		return Result{}, err
	}
	enc := EncodeCommand(cmd)
	if 8+len(enc) > maxRecordBytes {
		return Result{}, fmt.Errorf("%w: %T encodes to %d bytes (at most %d)", ErrInvalidCommand, cmd, len(enc), maxRecordBytes-8)
	}
	rec := appendRecord(nil, l.index+1, enc)
	if _, err := l.file.WriteAt(rec, l.size); err != nil {
		return Result{}, l.fail(err)
	}
	if err := l.file.Datasync(); err != nil {
		return Result{}, l.fail(err)
	}
	l.size += int64(len(rec))
	l.index++
	l.state.Store(next)
	if l.index-l.snapIndex >= uint64(l.every) || l.size >= compactBytes {
		l.compactLocked()
	}
	return res, nil
}

// fail stops the log after a failed write to the command file. l.mu must be held.
func (l *LocalLog) fail(err error) error {
	l.failed = fmt.Errorf("meta: command log %s failed; restart to recover: %w", l.file.Name(), err)
	l.log.Error("metadata command log failed; no further metadata changes until a restart", "err", err)
	return l.failed
}

// compactLocked writes the state to a new snapshot and empties the command file. The command
// that triggered it is durable already, so a failure here is logged, not returned: a snapshot
// that could not be written leaves the old one and the whole command file, and compaction is
// tried again after the next command. l.mu must be held.
func (l *LocalLog) compactLocked() {
	path := filepath.Join(l.dir, snapshotFile)
	if err := vfs.WriteFileAtomic(l.fs, path, encodeSnapshotFile(l.index, l.state.Load())); err != nil {
		l.log.Warn("metadata snapshot failed; the command log keeps growing", "file", path, "err", err)
		return
	}
	l.snapIndex = l.index
	// From here a cut leaves records the snapshot holds, which replay skips by index.
	if err := l.file.Truncate(0); err != nil {
		l.fail(err)
		return
	}
	if err := l.file.Datasync(); err != nil {
		l.fail(err)
		return
	}
	l.size = 0
}

// Close closes the command file; the state stays readable.
func (l *LocalLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.file.Close()
}

func encodeSnapshotFile(index uint64, st *State) []byte {
	b := make([]byte, 4, 64)
	b = binary.BigEndian.AppendUint64(b, index)
	b = append(b, st.Snapshot()...)
	binary.BigEndian.PutUint32(b, crc32.Checksum(b[4:], castagnoli))
	return b
}

func decodeSnapshotFile(b []byte) (*State, uint64, error) {
	if len(b) < 12 {
		return nil, 0, fmt.Errorf("%d bytes is too short", len(b))
	}
	if crc32.Checksum(b[4:], castagnoli) != binary.BigEndian.Uint32(b) {
		return nil, 0, fmt.Errorf("checksum mismatch")
	}
	st := NewState()
	if err := st.Restore(b[12:]); err != nil {
		return nil, 0, err
	}
	return st, binary.BigEndian.Uint64(b[4:]), nil
}
