package uring

import (
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
	var missing []string // deepest first
	for d := filepath.Clean(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := fsys.ReadDir(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
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
