package uring

import (
	"io/fs"
	"os"
	"strings"
	"sync"
)

// FaultOp is a kind of file operation FaultFS can fail. (Named apart from
// the io_uring opcodes, FaultWrite and friends.)
type FaultOp int

// Operations FaultFS counts and can fail.
const (
	FaultWrite FaultOp = iota // File.WriteAt
	FaultSync                 // File.Datasync and FS.SyncDir
	numFaultOps
)

func (o FaultOp) String() string {
	switch o {
	case FaultWrite:
		return "write"
	case FaultSync:
		return "sync"
	}
	return "op?"
}

// FaultFS wraps an FS and fails chosen operations, for tests.
//
//	f := uring.NewFaultFS(uring.OSFS{})
//	f.FailNth(uring.FaultSync, 1, unix.EIO)       // the next sync fails once
//	f.FailFrom(uring.FaultWrite, 1, unix.ENOSPC)  // every write from the next one on fails
//	f.Clear()                                  // space is back
//
// Only files whose name contains Filter (all files when empty) are counted and
// failed. With TornWrites set, a failing write first writes half its bytes,
// as a full disk or a crash may do.
type FaultFS struct {
	inner FS

	mu         sync.Mutex
	filter     string
	tornWrites bool
	count      [numFaultOps]int64 // operations seen so far
	failAt     [numFaultOps]int64 // 0: none; else fail when count reaches failAt
	sticky     [numFaultOps]bool  // keep failing after failAt
	err        [numFaultOps]error
	failed     [numFaultOps]int64 // operations failed so far
}

var _ FS = (*FaultFS)(nil)

// NewFaultFS wraps inner.
func NewFaultFS(inner FS) *FaultFS { return &FaultFS{inner: inner} }

// SetFilter restricts counting and failing to files whose path contains s.
func (f *FaultFS) SetFilter(s string) {
	f.mu.Lock()
	f.filter = s
	f.mu.Unlock()
}

// SetTornWrites makes a failing write store the first half of its bytes.
func (f *FaultFS) SetTornWrites(on bool) {
	f.mu.Lock()
	f.tornWrites = on
	f.mu.Unlock()
}

// FailNth makes the nth operation of kind op from now (n=1: the next one)
// fail once with err.
func (f *FaultFS) FailNth(op FaultOp, n int, err error) { f.arm(op, n, err, false) }

// FailFrom makes every operation of kind op fail with err, starting with the
// nth from now, until Clear.
func (f *FaultFS) FailFrom(op FaultOp, n int, err error) { f.arm(op, n, err, true) }

func (f *FaultFS) arm(op FaultOp, n int, err error, sticky bool) {
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
func (f *FaultFS) Clear() {
	f.mu.Lock()
	f.failAt = [numFaultOps]int64{}
	f.sticky = [numFaultOps]bool{}
	f.err = [numFaultOps]error{}
	f.mu.Unlock()
}

// Count reports how many operations of kind op were seen.
func (f *FaultFS) Count(op FaultOp) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[op]
}

// Failed reports how many operations of kind op were failed.
func (f *FaultFS) Failed(op FaultOp) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed[op]
}

// check counts one operation on name and returns the error to inject, if any.
func (f *FaultFS) check(op FaultOp, name string) (error, bool) {
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
func (f *FaultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	inner, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: inner, fs: f}, nil
}

// Remove passes through.
func (f *FaultFS) Remove(name string) error { return f.inner.Remove(name) }

// RemoveAll passes through.
func (f *FaultFS) RemoveAll(name string) error { return f.inner.RemoveAll(name) }

// Rename passes through.
func (f *FaultFS) Rename(oldname, newname string) error { return f.inner.Rename(oldname, newname) }

// MkdirAll passes through.
func (f *FaultFS) MkdirAll(dir string, perm os.FileMode) error { return f.inner.MkdirAll(dir, perm) }

// ReadDir passes through.
func (f *FaultFS) ReadDir(dir string) ([]fs.DirEntry, error) { return f.inner.ReadDir(dir) }

// SyncDir counts as an FaultSync and may fail.
func (f *FaultFS) SyncDir(dir string) error {
	if err, _ := f.check(FaultSync, dir); err != nil {
		return &fs.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return f.inner.SyncDir(dir)
}

type faultFile struct {
	File
	fs *FaultFS
}

func (ff *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err, torn := ff.fs.check(FaultWrite, ff.Name()); err != nil {
		n := 0
		if torn && len(p) > 1 {
			n, _ = ff.File.WriteAt(p[:len(p)/2], off)
		}
		return n, &fs.PathError{Op: "pwrite", Path: ff.Name(), Err: err}
	}
	return ff.File.WriteAt(p, off)
}

func (ff *faultFile) Datasync() error {
	if err, _ := ff.fs.check(FaultSync, ff.Name()); err != nil {
		return &fs.PathError{Op: "fdatasync", Path: ff.Name(), Err: err}
	}
	return ff.File.Datasync()
}
