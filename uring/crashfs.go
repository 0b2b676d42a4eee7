package uring

import (
	"io/fs"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// CrashFS wraps an FS and can simulate a power cut: Crash undoes every
// write and truncation not yet covered by a Datasync of the same file, then
// makes every later operation through this CrashFS fail with EIO, so the
// abandoned process can do no more harm. Reopen the directory through the
// inner FS (or a new CrashFS) to recover.
//
// It keeps an undo log per file path (the bytes a write or truncation
// replaced), cleared by Datasync. Directory entries are not simulated:
// files created, renamed or removed stay so.
type CrashFS struct {
	inner FS

	mu      sync.RWMutex // writers and syncs hold it shared, Crash exclusively
	undoMu  sync.Mutex
	undo    map[string][]undoEntry
	nextID  uint64 // numbers undo entries in the order they are recorded
	crashed bool

	// ops counts mutating operations; the crashAt-th one crashes instead
	// of running (0: never), tearing it when it is a write and tear is set.
	ops     atomic.Uint64
	crashAt atomic.Uint64
	tear    atomic.Bool
}

type undoEntry struct {
	id   uint64 // recording order: a Datasync covers the entries recorded before it started
	size int64  // file size before the operation
	off  int64  // where old was
	old  []byte // bytes the operation overwrote (inside the old size)
}

var _ FS = (*CrashFS)(nil)

// NewCrashFS wraps inner.
func NewCrashFS(inner FS) *CrashFS {
	return &CrashFS{inner: inner, undo: make(map[string][]undoEntry)}
}

var errCrashed = &fs.PathError{Op: "io", Path: "crashfs", Err: unix.EIO}

// CrashAt arranges a power cut just before the n-th mutating operation
// from now on counted from 1 since NewCrashFS (WriteAt, Truncate, Datasync,
// SyncDir, Rename, Remove, RemoveAll, across all files): that operation
// fails with EIO instead of running, and Crash runs. With tear, when that
// operation is a write, the first half of its bytes (rounded down to 512)
// then reach the disk anyway, as a power cut in the middle of a write can
// leave them. Ops tells how many operations a run made, so a test can crash
// a workload at every one of them in turn.
func (c *CrashFS) CrashAt(n uint64, tear bool) {
	c.tear.Store(tear)
	c.crashAt.Store(n)
}

// CrashPoint is the n of the last CrashAt (0: none).
func (c *CrashFS) CrashPoint() uint64 { return c.crashAt.Load() }

// Ops is the number of mutating operations so far.
func (c *CrashFS) Ops() uint64 { return c.ops.Load() }

// enterMutation is enter for an operation CrashAt counts. It reports
// crashNow when this operation is the crash point; Crash has run then.
func (c *CrashFS) enterMutation() (crashNow bool, err error) {
	if err := c.enter(); err != nil {
		return false, err
	}
	n := c.ops.Add(1)
	if at := c.crashAt.Load(); at == 0 || n != at {
		return false, nil
	}
	c.leave()
	if err := c.Crash(); err != nil {
		return true, err
	}
	return true, errCrashed
}

// Crash drops everything not synced and fails every later operation.
func (c *CrashFS) Crash() error {
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
	return nil
}

func (c *CrashFS) enter() error {
	c.mu.RLock()
	if c.crashed {
		c.mu.RUnlock()
		return errCrashed
	}
	return nil
}

func (c *CrashFS) leave() { c.mu.RUnlock() }

// OpenFile opens a file whose unsynced changes Crash undoes. A file opened
// with O_TRUNC records its old content first.
func (c *CrashFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.leave()
	if flag&os.O_TRUNC != 0 {
		if old, err := c.inner.OpenFile(name, os.O_RDONLY, 0); err == nil {
			size, _ := old.Size()
			buf := make([]byte, size)
			if size > 0 {
				_, _ = old.ReadAt(buf, 0)
			}
			old.Close()
			c.record(name, undoEntry{size: size, off: 0, old: buf})
		}
	}
	f, err := c.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, c: c, name: name}, nil
}

func (c *CrashFS) record(name string, u undoEntry) {
	c.undoMu.Lock()
	c.nextID++
	u.id = c.nextID
	c.undo[name] = append(c.undo[name], u)
	c.undoMu.Unlock()
}

func (c *CrashFS) forget(name string) {
	c.undoMu.Lock()
	delete(c.undo, name)
	c.undoMu.Unlock()
}

// Remove passes through.
func (c *CrashFS) Remove(name string) error {
	if _, err := c.enterMutation(); err != nil {
		return err
	}
	defer c.leave()
	c.forget(name)
	return c.inner.Remove(name)
}

// RemoveAll passes through (undo logs below name are kept but find no file).
func (c *CrashFS) RemoveAll(name string) error {
	if _, err := c.enterMutation(); err != nil {
		return err
	}
	defer c.leave()
	return c.inner.RemoveAll(name)
}

// Rename moves the undo log with the file.
func (c *CrashFS) Rename(oldname, newname string) error {
	if _, err := c.enterMutation(); err != nil {
		return err
	}
	defer c.leave()
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
	return nil
}

// MkdirAll passes through.
func (c *CrashFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.leave()
	return c.inner.MkdirAll(dir, perm)
}

// ReadDir passes through.
func (c *CrashFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.leave()
	return c.inner.ReadDir(dir)
}

// SyncDir passes through.
func (c *CrashFS) SyncDir(dir string) error {
	if _, err := c.enterMutation(); err != nil {
		return err
	}
	defer c.leave()
	return c.inner.SyncDir(dir)
}

type crashFile struct {
	File
	c    *CrashFS
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
	u := undoEntry{size: size, off: off}
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
	f.c.undoMu.Unlock()
	if err := f.File.Datasync(); err != nil {
		return err
	}
	f.c.undoMu.Lock()
	log := f.c.undo[f.name]
	i := 0
	for i < len(log) && log[i].id <= upTo {
		i++
	}
	f.c.undo[f.name] = log[i:]
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
