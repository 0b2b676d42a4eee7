// Package errorfs is a test double of vfs.FS that fails chosen operations
// with chosen errors (see FS). Only tests import it.
package errorfs

import (
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/ringtail/ringtail/vfs"
)

// Op is a kind of file operation FS can fail.
type Op int

// Operations FS counts and can fail.
const (
	OpWrite Op = iota // vfs.File.WriteAt
	OpSync            // vfs.File.Datasync and vfs.FS.SyncDir
	numOps
)

func (o Op) String() string {
	switch o {
	case OpWrite:
		return "write"
	case OpSync:
		return "sync"
	}
	return "op?"
}

// FS wraps a vfs.FS and fails chosen operations, for tests.
//
//	f := errorfs.New(vfs.OSFS{})
//	f.FailNth(errorfs.OpSync, 1, unix.EIO)       // the next sync fails once
//	f.FailFrom(errorfs.OpWrite, 1, unix.ENOSPC)  // every write from the next one on fails
//	f.Clear()                                  // space is back
//
// Only files whose name contains Filter (all files when empty) are counted and
// failed. With TornWrites set, a failing write first writes half its bytes,
// as a full disk or a crash may do.
type FS struct {
	inner vfs.FS

	mu         sync.Mutex
	filter     string
	tornWrites bool
	count      [numOps]int64 // operations seen so far
	failAt     [numOps]int64 // 0: none; else fail when count reaches failAt
	sticky     [numOps]bool  // keep failing after failAt
	err        [numOps]error
	failed     [numOps]int64 // operations failed so far
}

var _ vfs.FS = (*FS)(nil)

// New wraps inner.
func New(inner vfs.FS) *FS { return &FS{inner: inner} }

// SetFilter restricts counting and failing to files whose path contains s.
func (f *FS) SetFilter(s string) {
	f.mu.Lock()
	f.filter = s
	f.mu.Unlock()
}

// SetTornWrites makes a failing write store the first half of its bytes.
func (f *FS) SetTornWrites(on bool) {
	f.mu.Lock()
	f.tornWrites = on
	f.mu.Unlock()
}

// FailNth makes the nth operation of kind op from now (n=1: the next one)
// fail once with err.
func (f *FS) FailNth(op Op, n int, err error) { f.arm(op, n, err, false) }

// FailFrom makes every operation of kind op fail with err, starting with the
// nth from now, until Clear.
func (f *FS) FailFrom(op Op, n int, err error) { f.arm(op, n, err, true) }

func (f *FS) arm(op Op, n int, err error, sticky bool) {
	if n < 1 {
		n = 1
	}
	f.mu.Lock()
	f.failAt[op] = f.count[op] + int64(n)
	f.sticky[op] = sticky
	f.err[op] = err
	f.mu.Unlock()
}

// Clear disarms every fault.
func (f *FS) Clear() {
	f.mu.Lock()
	f.failAt = [numOps]int64{}
	f.sticky = [numOps]bool{}
	f.err = [numOps]error{}
	f.mu.Unlock()
}

// Count reports how many operations of kind op were seen.
func (f *FS) Count(op Op) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[op]
}

// Failed reports how many operations of kind op were failed.
func (f *FS) Failed(op Op) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed[op]
}

// check counts one operation on name and returns the error to inject, if any.
func (f *FS) check(op Op, name string) (error, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.filter != "" && !strings.Contains(name, f.filter) {
		return nil, false
	}
	f.count[op]++
	at := f.failAt[op]
	if at == 0 || f.count[op] < at || (!f.sticky[op] && f.count[op] != at) {
		return nil, false
	}
	f.failed[op]++
	return f.err[op], f.tornWrites
}

// OpenFile opens a file whose writes and syncs may fail.
func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	inner, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: inner, fs: f}, nil
}

// Remove passes through.
func (f *FS) Remove(name string) error { return f.inner.Remove(name) }

// RemoveAll passes through.
func (f *FS) RemoveAll(name string) error { return f.inner.RemoveAll(name) }

// Rename passes through.
func (f *FS) Rename(oldname, newname string) error { return f.inner.Rename(oldname, newname) }

// MkdirAll passes through.
func (f *FS) MkdirAll(dir string, perm os.FileMode) error { return f.inner.MkdirAll(dir, perm) }

// ReadDir passes through.
func (f *FS) ReadDir(dir string) ([]fs.DirEntry, error) { return f.inner.ReadDir(dir) }

// SyncDir counts as an OpSync and may fail.
func (f *FS) SyncDir(dir string) error {
	if err, _ := f.check(OpSync, dir); err != nil {
		return &fs.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return f.inner.SyncDir(dir)
}

type faultFile struct {
	vfs.File
	fs *FS
}

func (ff *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err, torn := ff.fs.check(OpWrite, ff.Name()); err != nil {
		n := 0
		if torn && len(p) > 1 {
			n, _ = ff.File.WriteAt(p[:len(p)/2], off)
		}
		return n, &fs.PathError{Op: "pwrite", Path: ff.Name(), Err: err}
	}
	return ff.File.WriteAt(p, off)
}

// WriteVAt is one OpWrite, however many buffers: torn, it writes half of the first.
func (ff *faultFile) WriteVAt(bufs [][]byte, off int64) (int64, error) {
	if err, torn := ff.fs.check(OpWrite, ff.Name()); err != nil {
		var n int
		if torn && len(bufs) > 0 && len(bufs[0]) > 1 {
			n, _ = ff.File.WriteAt(bufs[0][:len(bufs[0])/2], off)
		}
		return int64(n), &fs.PathError{Op: "pwritev", Path: ff.Name(), Err: err}
	}
	return vfs.WriteVAt(ff.File, bufs, off)
}

func (ff *faultFile) Datasync() error {
	if err, _ := ff.fs.check(OpSync, ff.Name()); err != nil {
		return &fs.PathError{Op: "fdatasync", Path: ff.Name(), Err: err}
	}
	return ff.File.Datasync()
}
