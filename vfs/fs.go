package vfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// File is an open file. All I/O is positional: the engine never relies on a
// file offset, so many goroutines may read while one writes.
//
// WriteAt writes all of p or returns an error (a short write is an error).
// ReadAt returns io.EOF when fewer than len(p) bytes exist at off.
// Datasync returns once the file's data (and the metadata needed to read it,
// such as its size) is on stable storage: fdatasync(2).
type File interface {
	WriteAt(p []byte, off int64) (int, error)
	ReadAt(p []byte, off int64) (int, error)
	Datasync() error
	Truncate(size int64) error
	Size() (int64, error)
	Close() error
	Name() string
}

// WriteBehind is implemented by files that can start writing back dirty
// pages early (OSFS: sync_file_range). It is a hint: it makes nothing
// durable, and callers skip it on files that lack it.
type WriteBehind interface {
	StartWriteback(off, n int64) error
}

// VectorWriter is implemented by files that write several buffers back to back in one system
// call (OSFS: pwritev). WriteVAt writes all of bufs from off or returns an error.
type VectorWriter interface {
	WriteVAt(bufs [][]byte, off int64) (int64, error)
}

// WriteVAt writes bufs back to back from off: in one call where f is a VectorWriter, else with a
// WriteAt per buffer.
func WriteVAt(f File, bufs [][]byte, off int64) (int64, error) {
	if vw, ok := f.(VectorWriter); ok {
		return vw.WriteVAt(bufs, off)
	}
	var n int64
	for _, b := range bufs {
		m, err := f.WriteAt(b, off+n)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Descriptor is implemented by files backed by an OS file descriptor (OSFS): Control runs fn
// with it, for system calls the File interface does not offer (sendfile(2) from a segment to
// a socket). It fails with an error matching os.ErrClosed once the file is closed.
type Descriptor interface {
	Control(fn func(fd uintptr)) error
}

// FS is the file system the engine runs on.
//
// SyncDir makes the directory's entries (files created, removed or renamed
// in it) durable: a new segment file is not guaranteed to exist after a power
// cut until its directory has been synced.
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	RemoveAll(name string) error
	Rename(oldname, newname string) error
	MkdirAll(dir string, perm os.FileMode) error
	ReadDir(dir string) ([]fs.DirEntry, error)
	SyncDir(dir string) error
}

// MkdirAllDurable creates dir and any missing parents, and syncs the parent
// of each directory it created, so that a power cut cannot take a new
// directory (and the files later synced into it) away.
func MkdirAllDurable(fsys FS, dir string, perm os.FileMode) error {
	missing := MissingDirs(dir, func(d string) bool { _, err := fsys.ReadDir(d); return err == nil })
	if err := fsys.MkdirAll(dir, perm); err != nil {
		return err
	}
	for _, d := range missing {
		if err := fsys.SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// MissingDirs lists dir and those of its parents that do not exist, deepest
// first: what a MkdirAll of dir would create.
func MissingDirs(dir string, exists func(string) bool) []string {
	var missing []string
	for d := filepath.Clean(dir); d != filepath.Dir(d) && !exists(d); d = filepath.Dir(d) {
		missing = append(missing, d)
	}
	return missing
}

// WriteFileSynced creates or truncates path, writes b into it and
// fdatasyncs it. Making its directory entry durable is the caller's part.
func WriteFileSynced(fsys FS, path string, b []byte) error {
	f, err := fsys.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Datasync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// WriteFileAtomic replaces the small file path with b so that a crash leaves
// the old content or the new, never a mix and never nothing: b goes to
// path.tmp, which is synced, renamed over path, and the directory synced.
// Every small state file of the broker (the WAL checkpoint, a partition's
// log start, the metadata snapshot) is written with it.
func WriteFileAtomic(fsys FS, path string, b []byte) error {
	tmp := path + ".tmp"
	if err := WriteFileSynced(fsys, tmp, b); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return err
	}
	return fsys.SyncDir(filepath.Dir(path))
}

// ReadFile reads the whole of a (small) file.
func ReadFile(fsys FS, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}
