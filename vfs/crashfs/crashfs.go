// Package crashfs is a test double of vfs.FS that simulates a power cut at
// any storage operation (see FS). Only tests import it.
package crashfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ringtail/ringtail/vfs"
	"golang.org/x/sys/unix"
)

// FS wraps a vfs.FS and can simulate a power cut: Crash undoes every
// write and truncation not yet covered by a Datasync of the same file, then
// makes every later operation through this FS fail with EIO, so the
// abandoned process can do no more harm. Reopen the directory through the
// inner vfs.FS (or a new FS) to recover.
//
// It keeps an undo log per file path (the bytes a write or truncation
// replaced), cleared by Datasync, and a log of directory changes (files and
// directories created, renamed or removed), each cleared once SyncDir has
// run on every directory it touched. Crash undoes the unsynced data first,
// then the unsynced directory changes, newest first: a file created since
// its directory was last synced is gone, a removed one is back with the
// content it last had on stable storage, a rename is reversed. That is the
// POSIX promise, stricter than ext4 in practice, and the one a broker
// meant to run on any file system must be correct under.
//
// FS is for tests on a real directory tree: it looks at the tree with
// os.Stat and os.ReadDir besides going through the inner vfs.FS.
type FS struct {
	inner vfs.FS

	mu      sync.RWMutex // writers and syncs hold it shared, Crash exclusively
	undoMu  sync.Mutex
	undo    map[string][]undoEntry
	entries []entryOp // directory changes not yet covered by SyncDir, oldest first
	nextID  uint64    // numbers undo entries and entry ops in the order they are recorded
	crashed bool

	// ops counts mutating operations; the crashAt-th one crashes instead
	// of running (0: never), tearing it when it is a write and tear is set.
	ops     atomic.Uint64
	crashAt atomic.Uint64
	tear    atomic.Bool
	kill    atomic.Bool // at crashAt, Kill instead of Crash

	failSync func(name string) bool // the next Datasync of a file it accepts fails (under undoMu)
}

type undoEntry struct {
	id   uint64 // recording order: a Datasync covers the entries recorded before it started
	size int64  // file size before the operation
	off  int64  // where old was
	old  []byte // bytes the operation overwrote (inside the old size)
	n    int64  // bytes written at off (0 for a truncation)
	// lost: a Datasync covering this write failed. The kernel has marked
	// its pages clean without writing them, so no later Datasync covers
	// it; only a later synced write of the same bytes does.
	lost bool
}

// entryOp is a directory change a power cut may still take back.
type entryOp struct {
	id   uint64
	dirs map[string]bool // directories whose SyncDir is still needed
	undo func(inner vfs.FS) error
}

var _ vfs.FS = (*FS)(nil)

// New wraps inner.
func New(inner vfs.FS) *FS {
	return &FS{inner: inner, undo: make(map[string][]undoEntry)}
}

var errCrashed = &fs.PathError{Op: "io", Path: "crashfs", Err: unix.EIO}

// CrashAt arranges a power cut just before the n-th mutating operation
// from now on counted from 1 since New (WriteAt, Truncate, Datasync,
// SyncDir, Rename, Remove, RemoveAll, across all files): that operation
// fails with EIO instead of running, and Crash runs. With tear, when that
// operation is a write, the first half of its bytes (rounded down to 512)
// then reach the disk anyway, as a power cut in the middle of a write can
// leave them. Ops tells how many operations a run made, so a test can crash
// a workload at every one of them in turn.
func (c *FS) CrashAt(n uint64, tear bool) {
	c.kill.Store(false)
	c.tear.Store(tear)
	c.crashAt.Store(n)
}

// KillAt arranges for the process to be killed (SIGKILL) just before the n-th mutating
// operation, counted as CrashAt counts: that operation fails with EIO instead of running, and
// Kill runs.
func (c *FS) KillAt(n uint64) {
	c.tear.Store(false)
	c.kill.Store(true)
	c.crashAt.Store(n)
}

// FailNextSync makes the next Datasync of a file that match accepts fail
// with EIO, the way Linux reports a writeback error: once, after which the
// writes that sync covered are lost (a crash undoes them) even though later
// syncs of the file succeed. Only writing the same range again and syncing
// it saves them.
func (c *FS) FailNextSync(match func(name string) bool) {
	c.undoMu.Lock()
	c.failSync = match
	c.undoMu.Unlock()
}

// CrashPoint is the n of the last CrashAt (0: none).
func (c *FS) CrashPoint() uint64 { return c.crashAt.Load() }

// Ops is the number of mutating operations so far.
func (c *FS) Ops() uint64 { return c.ops.Load() }

// enterMutation is enter for an operation CrashAt counts. It reports
// crashNow when this operation is the crash point; Crash has run then.
func (c *FS) enterMutation() (crashNow bool, err error) {
	if err := c.enter(); err != nil {
		return false, err
	}
	n := c.ops.Add(1)
	if at := c.crashAt.Load(); at == 0 || n != at {
		return false, nil
	}
	c.leave()
	if c.kill.Load() {
		c.Kill()
		return true, errCrashed
	}
	if err := c.Crash(); err != nil {
		return true, err
	}
	return true, errCrashed
}

// Kill fails every later operation and keeps everything done so far, synced or not: the
// page cache outlives a killed process.
func (c *FS) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.crashed = true
	c.undo, c.entries = nil, nil
}

// Crash drops everything not synced and fails every later operation.
func (c *FS) Crash() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return nil
	}
	c.crashed = true
	for name, log := range c.undo {
		f, err := c.inner.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			continue // removed meanwhile
		}
		for i := len(log) - 1; i >= 0; i-- {
			u := log[i]
			if len(u.old) > 0 {
				if _, err := f.WriteAt(u.old, u.off); err != nil {
					f.Close()
					return err
				}
			}
			if err := f.Truncate(u.size); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Datasync(); err != nil {
			f.Close()
			return err
		}
		f.Close()
	}
	c.undo = nil
	for i := len(c.entries) - 1; i >= 0; i-- {
		if err := c.entries[i].undo(c.inner); err != nil {
			return err
		}
	}
	c.entries = nil
	return nil
}

func (c *FS) enter() error {
	c.mu.RLock()
	if c.crashed {
		c.mu.RUnlock()
		return errCrashed
	}
	return nil
}

func (c *FS) leave() { c.mu.RUnlock() }

// OpenFile opens a file whose unsynced changes Crash undoes. A file opened
// with O_TRUNC records its old content first. Creating a file counts as a
// mutating operation, undone by Crash until its directory is synced.
func (c *FS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	creates := false
	if flag&os.O_CREATE != 0 {
		_, err := os.Lstat(name)
		creates = errors.Is(err, fs.ErrNotExist)
	}
	if creates {
		if _, err := c.enterMutation(); err != nil {
			return nil, err
		}
	} else if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.leave()
	if flag&os.O_TRUNC != 0 && !creates {
		if old, err := c.durableContent(name); err == nil {
			c.record(name, undoEntry{size: int64(len(old)), off: 0, old: old})
		}
	}
	f, err := c.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if creates {
		c.recordEntry(func(inner vfs.FS) error { return removeIfExists(inner, name) }, filepath.Dir(name))
	}
	return &crashFile{File: f, c: c, name: name}, nil
}

func (c *FS) record(name string, u undoEntry) {
	c.undoMu.Lock()
	c.nextID++
	u.id = c.nextID
	c.undo[name] = append(c.undo[name], u)
	c.undoMu.Unlock()
}

// recordEntry logs a directory change that SyncDir of every one of dirs
// makes durable, and undo takes back.
func (c *FS) recordEntry(undo func(inner vfs.FS) error, dirs ...string) {
	c.undoMu.Lock()
	c.nextID++
	op := entryOp{id: c.nextID, dirs: make(map[string]bool, len(dirs)), undo: undo}
	for _, d := range dirs {
		op.dirs[filepath.Clean(d)] = true
	}
	c.entries = append(c.entries, op)
	c.undoMu.Unlock()
}

// dropUndo forgets a path's data undo log.
func (c *FS) dropUndo(name string) {
	c.undoMu.Lock()
	delete(c.undo, name)
	c.undoMu.Unlock()
}

// durableContent is what a power cut now would leave in the file: its
// bytes with the unsynced writes and truncations undone.
func (c *FS) durableContent(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	c.undoMu.Lock()
	log := c.undo[name]
	c.undoMu.Unlock()
	return revert(b, log), nil
}

// revert applies an undo log to a file's bytes, newest entry first.
func revert(b []byte, log []undoEntry) []byte {
	for i := len(log) - 1; i >= 0; i-- {
		u := log[i]
		if end := u.off + int64(len(u.old)); end > int64(len(b)) {
			b = append(b, make([]byte, end-int64(len(b)))...)
		}
		copy(b[u.off:], u.old)
		if u.size <= int64(len(b)) {
			b = b[:u.size]
		} else {
			b = append(b, make([]byte, u.size-int64(len(b)))...)
		}
	}
	return b
}

// savedTree is a file or directory tree as a power cut would leave it.
type savedTree struct {
	path    string
	dir     bool
	content []byte
}

// saveTree captures root's durable state (and takes the data undo logs
// below it: the removal makes them moot until a cut brings the files back).
func (c *FS) saveTree(root string) ([]savedTree, error) {
	var saved []savedTree
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			saved = append(saved, savedTree{path: path, dir: true})
			return nil
		}
		b, err := c.durableContent(path)
		if err != nil {
			return err
		}
		c.dropUndo(path)
		saved = append(saved, savedTree{path: path, content: b})
		return nil
	})
	return saved, err
}

// restoreTree puts a saved tree back, durably.
func restoreTree(inner vfs.FS, saved []savedTree) error {
	for _, t := range saved {
		if t.dir {
			if err := inner.MkdirAll(t.path, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := vfs.WriteFileSynced(inner, t.path, t.content); err != nil {
			return err
		}
	}
	return nil
}

func removeIfExists(inner vfs.FS, name string) error {
	if err := inner.RemoveAll(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Remove removes name; until its directory is synced, a cut brings it back
// with its durable content.
func (c *FS) Remove(name string) error {
	if _, err := c.enterMutation(); err != nil {
		return err
	}
	defer c.leave()
	saved, err := c.saveTree(name)
	if err != nil {
		return c.inner.Remove(name) // the inner FS says why (usually: no such file)
	}
	if err := c.inner.Remove(name); err != nil {
		return err
	}
	c.recordEntry(func(inner vfs.FS) error { return restoreTree(inner, saved) }, filepath.Dir(name))
	return nil
}

// RemoveAll removes a tree; until its parent directory is synced, a cut
// brings the tree back as it last was on stable storage.
func (c *FS) RemoveAll(name string) error {
	if _, err := c.enterMutation(); err != nil {
		return err
	}
	defer c.leave()
	saved, err := c.saveTree(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.inner.RemoveAll(name); err != nil {
		return err
	}
	c.recordEntry(func(inner vfs.FS) error { return restoreTree(inner, saved) }, filepath.Dir(name))
	return nil
}

// Rename moves the undo log with the file; until both directories are
// synced, a cut moves the file back and restores what it replaced.
func (c *FS) Rename(oldname, newname string) error {
	if _, err := c.enterMutation(); err != nil {
		return err
	}
	defer c.leave()
	var replaced []savedTree
	if _, err := os.Lstat(newname); err == nil {
		if replaced, err = c.saveTree(newname); err != nil {
			return err
		}
	}
	if err := c.inner.Rename(oldname, newname); err != nil {
		return err
	}
	c.undoMu.Lock()
	if log, ok := c.undo[oldname]; ok {
		delete(c.undo, oldname)
		c.undo[newname] = log
	} else {
		delete(c.undo, newname)
	}
	c.undoMu.Unlock()
	c.recordEntry(func(inner vfs.FS) error {
		if err := inner.Rename(newname, oldname); err != nil {
			return err
		}
		return restoreTree(inner, replaced)
	}, filepath.Dir(oldname), filepath.Dir(newname))
	return nil
}

// MkdirAll creates the missing directories of a path; until each one's
// parent is synced, a cut removes it with all it holds.
func (c *FS) MkdirAll(dir string, perm os.FileMode) error {
	missing := vfs.MissingDirs(dir, func(d string) bool { _, err := os.Lstat(d); return err == nil })
	if len(missing) == 0 {
		if err := c.enter(); err != nil {
			return err
		}
		defer c.leave()
		return c.inner.MkdirAll(dir, perm)
	}
	if _, err := c.enterMutation(); err != nil {
		return err
	}
	defer c.leave()
	if err := c.inner.MkdirAll(dir, perm); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		c.recordEntry(func(inner vfs.FS) error { return removeIfExists(inner, d) }, filepath.Dir(d))
	}
	return nil
}

// ReadDir passes through.
func (c *FS) ReadDir(dir string) ([]fs.DirEntry, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.leave()
	return c.inner.ReadDir(dir)
}

// SyncDir makes the directory changes in dir recorded before it started
// durable.
func (c *FS) SyncDir(dir string) error {
	if _, err := c.enterMutation(); err != nil {
		return err
	}
	defer c.leave()
	c.undoMu.Lock()
	upTo := c.nextID
	c.undoMu.Unlock()
	if err := c.inner.SyncDir(dir); err != nil {
		return err
	}
	dir = filepath.Clean(dir)
	c.undoMu.Lock()
	kept := c.entries[:0]
	for _, op := range c.entries {
		if op.id <= upTo {
			delete(op.dirs, dir)
		}
		if len(op.dirs) > 0 {
			kept = append(kept, op)
		}
	}
	c.entries = kept
	c.undoMu.Unlock()
	return nil
}

type crashFile struct {
	vfs.File
	c    *FS
	name string
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	if crashNow, err := f.c.enterMutation(); err != nil {
		if crashNow && f.c.tear.Load() {
			// The crashed process's write, half done: straight to the
			// inner file, past the undo log Crash has already replayed.
			if half := len(p) / 2 &^ 511; half > 0 {
				if _, werr := f.File.WriteAt(p[:half], off); werr != nil {
					return 0, werr
				}
				if serr := f.File.Datasync(); serr != nil {
					return 0, serr
				}
			}
		}
		return 0, err
	}
	defer f.c.leave()
	size, err := f.File.Size()
	if err != nil {
		return 0, err
	}
	u := undoEntry{size: size, off: off, n: int64(len(p))}
	if off < size {
		n := int64(len(p))
		if off+n > size {
			n = size - off
		}
		u.old = make([]byte, n)
		if _, err := f.File.ReadAt(u.old, off); err != nil {
			return 0, err
		}
	}
	f.c.record(f.name, u)
	return f.File.WriteAt(p, off)
}

func (f *crashFile) Truncate(size int64) error {
	if _, err := f.c.enterMutation(); err != nil {
		return err
	}
	defer f.c.leave()
	old, err := f.File.Size()
	if err != nil {
		return err
	}
	u := undoEntry{size: old, off: size}
	if size < old {
		u.old = make([]byte, old-size)
		if _, err := f.File.ReadAt(u.old, size); err != nil {
			return err
		}
	}
	f.c.record(f.name, u)
	return f.File.Truncate(size)
}

func (f *crashFile) Datasync() error {
	if _, err := f.c.enterMutation(); err != nil {
		return err
	}
	defer f.c.leave()
	// Only what was written before the sync started is covered by it.
	// Entries are dropped by number, not count: syncs of the same file may
	// run concurrently (the WAL's lanes), each dropping its own prefix.
	f.c.undoMu.Lock()
	upTo := f.c.nextID
	if f.c.failSync != nil && f.c.failSync(f.name) {
		f.c.failSync = nil
		log := f.c.undo[f.name]
		for i := range log {
			if log[i].id <= upTo {
				log[i].lost = true
			}
		}
		f.c.undoMu.Unlock()
		return &fs.PathError{Op: "fdatasync", Path: f.name, Err: unix.EIO}
	}
	f.c.undoMu.Unlock()
	if err := f.File.Datasync(); err != nil {
		return err
	}
	f.c.undoMu.Lock()
	log := f.c.undo[f.name]
	var synced []undoEntry
	kept := log[:0]
	for _, u := range log {
		switch {
		case u.id > upTo || u.lost:
			kept = append(kept, u)
		case u.n > 0:
			synced = append(synced, u)
		}
	}
	// A lost write is saved by a later synced write over all its bytes.
	log = kept[:0]
	for _, u := range kept {
		if u.lost && slices.ContainsFunc(synced, func(w undoEntry) bool {
			return w.id > u.id && w.off <= u.off && w.off+w.n >= u.off+u.n
		}) {
			continue
		}
		log = append(log, u)
	}
	f.c.undo[f.name] = log
	f.c.undoMu.Unlock()
	return nil
}

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.c.enter(); err != nil {
		return 0, err
	}
	defer f.c.leave()
	return f.File.ReadAt(p, off)
}
