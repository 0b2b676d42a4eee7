// Package memfs is a test double of vfs.FS that keeps every directory and
// file in memory, for tests that run several brokers (or engines) in one
// process without touching the disk. Only tests import it.
//
// It owns the in-memory tree and its POSIX behaviour as the engine sees it
// through vfs.OSFS on Linux: the same errno values (ENOENT, EEXIST, EISDIR,
// ENOTDIR, ENOTEMPTY, EBADF, EINVAL) in the same error types (*fs.PathError,
// *os.LinkError for Rename), so errors.Is(err, os.ErrNotExist) and
// errors.Is(err, unix.ENOENT) both work; a removed or renamed-over file stays
// readable and writable through the handles already open on it. It does not
// simulate power cuts (vfs/crashfs does) or faults (vfs/errorfs does), and it
// checks no permissions: perm is kept for ReadDir's Info and nothing else.
//
// Names are cleaned with filepath.Clean; a relative name is taken relative
// to the root "/", which always exists.
package memfs

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ringtail/ringtail/vfs"
)

// FS is an in-memory file system, safe for concurrent use. The zero value is
// not usable; call New.
//
// Lock order: FS.mu (the tree: names, directories) before inode.mu (one
// file's bytes). File I/O takes only inode.mu, so reads and writes of open
// files never wait for directory operations elsewhere.
type FS struct {
	mu   sync.RWMutex
	root *node
}

var _ vfs.FS = (*FS)(nil)

// New returns an empty file system holding only the root directory "/".
func New() *FS {
	return &FS{root: newDir(0o755)}
}

// node is a directory (children non-nil) or a file (file non-nil).
type node struct {
	children map[string]*node
	file     *inode
	perm     os.FileMode
	modTime  time.Time
}

func newDir(perm os.FileMode) *node {
	return &node{children: map[string]*node{}, perm: perm.Perm(), modTime: time.Now()}
}

func (n *node) isDir() bool { return n.children != nil }

// pageSize is the unit file bytes are stored in. Pages never written, or
// written only with zeros, are not stored: the WAL zero-fills its
// preallocated files (64 MiB each by default), and those zeros would
// otherwise cost real memory per broker.
const pageSize = 4096

var zeroPage [pageSize]byte

// inode is one file's content. Invariant: every stored byte at or past size
// is zero, so growing the file (Truncate up, a write past the end) needs no
// clearing and a missing page reads as zeros.
type inode struct {
	mu    sync.RWMutex
	pages map[int64]*[pageSize]byte
	size  int64
}

func (in *inode) writeAt(p []byte, off int64) {
	end := off + int64(len(p))
	for len(p) > 0 {
		idx, at := off/pageSize, off%pageSize
		n := min(int64(len(p)), pageSize-at)
		pg := in.pages[idx]
		if pg == nil && !bytes.Equal(p[:n], zeroPage[:n]) {
			pg = new([pageSize]byte)
			in.pages[idx] = pg
		}
		if pg != nil {
			copy(pg[at:], p[:n])
		}
		p, off = p[n:], off+n
	}
	in.size = max(in.size, end)
}

// readAt fills p from off, which must be below size; it returns how many
// bytes exist there (at most len(p)).
func (in *inode) readAt(p []byte, off int64) int {
	total := int(min(int64(len(p)), in.size-off))
	p = p[:total]
	for len(p) > 0 {
		idx, at := off/pageSize, off%pageSize
		n := min(int64(len(p)), pageSize-at)
		if pg := in.pages[idx]; pg != nil {
			copy(p[:n], pg[at:])
		} else {
			clear(p[:n])
		}
		p, off = p[n:], off+n
	}
	return total
}

func (in *inode) truncate(size int64) {
	if size < in.size {
		for idx := range in.pages {
			if idx*pageSize >= size {
				delete(in.pages, idx)
			}
		}
		if pg := in.pages[size/pageSize]; pg != nil {
			clear(pg[size%pageSize:])
		}
	}
	in.size = size
}

// split cleans name and returns its components below the root ("/" has none).
func split(name string) []string {
	clean := filepath.Clean("/" + name)
	if clean == "/" {
		return nil
	}
	return strings.Split(clean[1:], "/")
}

// dirOf walks to the directory that holds the last component of parts.
// m.mu held (either way).
func (m *FS) dirOf(parts []string) (*node, error) {
	d := m.root
	for _, p := range parts[:len(parts)-1] {
		c := d.children[p]
		switch {
		case c == nil:
			return nil, syscall.ENOENT
		case !c.isDir():
			return nil, syscall.ENOTDIR
		}
		d = c
	}
	return d, nil
}

// lookup returns the node called name. m.mu held (either way).
func (m *FS) lookup(name string) (*node, error) {
	parts := split(name)
	if len(parts) == 0 {
		return m.root, nil
	}
	d, err := m.dirOf(parts)
	if err != nil {
		return nil, err
	}
	n := d.children[parts[len(parts)-1]]
	if n == nil {
		return nil, syscall.ENOENT
	}
	return n, nil
}

// OpenFile opens (with O_CREATE: creates) the file name. The access mode
// (O_RDONLY, O_WRONLY, O_RDWR) decides which of ReadAt, WriteAt and
// Truncate the handle allows; O_EXCL with O_CREATE refuses an existing
// name (EEXIST); O_TRUNC empties a file opened for writing. Other flags
// (O_DIRECT, O_DSYNC, O_APPEND, …) are accepted and ignored: memory needs
// no alignment and no sync, and the engine writes only at explicit offsets.
// A directory opens read-only, as on Linux.
func (m *FS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	pathErr := func(err error) error { return &fs.PathError{Op: "open", Path: name, Err: err} }
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	writable := acc == os.O_WRONLY || acc == os.O_RDWR
	m.mu.Lock()
	defer m.mu.Unlock()
	var n *node
	if parts := split(name); len(parts) == 0 {
		n = m.root
	} else {
		d, err := m.dirOf(parts)
		if err != nil {
			return nil, pathErr(err)
		}
		base := parts[len(parts)-1]
		n = d.children[base]
		if n == nil {
			if flag&os.O_CREATE == 0 {
				return nil, pathErr(syscall.ENOENT)
			}
			n = &node{file: &inode{pages: map[int64]*[pageSize]byte{}}, perm: perm.Perm(), modTime: time.Now()}
			d.children[base] = n
			d.modTime = n.modTime
			return &file{name: name, in: n.file, read: acc != os.O_WRONLY, write: writable}, nil
		}
	}
	if flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL {
		return nil, pathErr(syscall.EEXIST)
	}
	if n.isDir() {
		if writable || flag&os.O_CREATE != 0 {
			return nil, pathErr(syscall.EISDIR)
		}
		return &file{name: name, dir: true, read: true}, nil
	}
	if flag&os.O_TRUNC != 0 && writable {
		n.file.mu.Lock()
		n.file.truncate(0)
		n.file.mu.Unlock()
		n.modTime = time.Now()
	}
	return &file{name: name, in: n.file, read: acc != os.O_WRONLY, write: writable}, nil
}

// Remove removes a file or an empty directory. Open handles of a removed
// file keep working on its content, as an unlinked inode does.
func (m *FS) Remove(name string) error {
	pathErr := func(err error) error { return &fs.PathError{Op: "remove", Path: name, Err: err} }
	m.mu.Lock()
	defer m.mu.Unlock()
	parts := split(name)
	if len(parts) == 0 {
		return pathErr(syscall.EBUSY)
	}
	d, err := m.dirOf(parts)
	if err != nil {
		return pathErr(err)
	}
	base := parts[len(parts)-1]
	n := d.children[base]
	switch {
	case n == nil:
		return pathErr(syscall.ENOENT)
	case n.isDir() && len(n.children) > 0:
		return pathErr(syscall.ENOTEMPTY)
	}
	delete(d.children, base)
	d.modTime = time.Now()
	return nil
}

// RemoveAll removes name and everything under it. A name that does not
// exist is no error.
func (m *FS) RemoveAll(name string) error {
	switch {
	case name == "":
		return nil // as os.RemoveAll: an empty name is not the root
	case name == "." || strings.HasSuffix(name, "/."):
		// os.RemoveAll refuses these, as rmdir(2) refuses ".".
		return &fs.PathError{Op: "RemoveAll", Path: name, Err: syscall.EINVAL}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	parts := split(name)
	if len(parts) == 0 {
		clear(m.root.children)
		return nil
	}
	d, err := m.dirOf(parts)
	if err != nil {
		return nil // no parent directory: nothing there to remove
	}
	if _, ok := d.children[parts[len(parts)-1]]; ok {
		delete(d.children, parts[len(parts)-1])
		d.modTime = time.Now()
	}
	return nil
}

// Rename moves oldname to newname atomically, replacing a file at newname
// (open handles of the replaced file keep its content). As os.Rename does
// on Unix, it refuses to replace a directory (EEXIST); a directory cannot
// move under itself (EINVAL) nor onto a file (ENOTDIR). Errors are
// *os.LinkError, as os.Rename's are.
func (m *FS) Rename(oldname, newname string) error {
	linkErr := func(err error) error { return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err} }
	m.mu.Lock()
	defer m.mu.Unlock()
	op, np := split(oldname), split(newname)
	if len(op) == 0 || len(np) == 0 {
		return linkErr(syscall.EBUSY)
	}
	od, err := m.dirOf(op)
	if err != nil {
		return linkErr(err)
	}
	n := od.children[op[len(op)-1]]
	if n == nil {
		return linkErr(syscall.ENOENT)
	}
	nd, err := m.dirOf(np)
	if err != nil {
		return linkErr(err)
	}
	target := nd.children[np[len(np)-1]]
	switch {
	case target == n:
		return nil // the same name, or two names of one node: nothing to do
	case target != nil && target.isDir():
		return linkErr(syscall.EEXIST)
	case n.isDir() && len(np) > len(op) && slices.Equal(np[:len(op)], op):
		return linkErr(syscall.EINVAL)
	case n.isDir() && target != nil:
		return linkErr(syscall.ENOTDIR)
	}
	delete(od.children, op[len(op)-1])
	nd.children[np[len(np)-1]] = n
	now := time.Now()
	od.modTime, nd.modTime = now, now
	return nil
}

// MkdirAll creates dir and any missing parents. An existing directory is no
// error; a file in the way is ENOTDIR.
func (m *FS) MkdirAll(dir string, perm os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.root
	for i, p := range split(dir) {
		c := d.children[p]
		if c == nil {
			c = newDir(perm)
			d.children[p] = c
			d.modTime = c.modTime
		} else if !c.isDir() {
			return &fs.PathError{Op: "mkdir", Path: "/" + strings.Join(split(dir)[:i+1], "/"), Err: syscall.ENOTDIR}
		}
		d = c
	}
	return nil
}

// ReadDir lists dir sorted by name. Each entry's Info is taken now.
func (m *FS) ReadDir(dir string) ([]fs.DirEntry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, err := m.lookup(dir)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	if !d.isDir() {
		return nil, &fs.PathError{Op: "readdirent", Path: dir, Err: syscall.ENOTDIR}
	}
	out := make([]fs.DirEntry, 0, len(d.children))
	for name, c := range d.children {
		out = append(out, fs.FileInfoToDirEntry(c.info(name)))
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// SyncDir succeeds for any existing name: memory has nothing to flush.
func (m *FS) SyncDir(dir string) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if _, err := m.lookup(dir); err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return nil
}

// info is n's fs.FileInfo as of now. m.mu held.
func (n *node) info(name string) fs.FileInfo {
	fi := fileInfo{name: name, mode: n.perm, modTime: n.modTime}
	if n.isDir() {
		fi.mode |= fs.ModeDir
	} else {
		n.file.mu.RLock()
		fi.size = n.file.size
		n.file.mu.RUnlock()
	}
	return fi
}

type fileInfo struct {
	name    string
	size    int64
	mode    fs.FileMode
	modTime time.Time
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return fi.size }
func (fi fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi fileInfo) ModTime() time.Time { return fi.modTime }
func (fi fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi fileInfo) Sys() any           { return nil }

// file is an open handle. Its errors follow osFile's: *fs.PathError with
// the errno pwrite(2), pread(2) or ftruncate(2) would give, and os.ErrClosed
// after Close.
type file struct {
	name        string
	in          *inode // nil for a directory
	dir         bool
	read, write bool
	closed      atomic.Bool
}

func (f *file) Name() string { return f.name }

func (f *file) err(op string, err error) error { return &fs.PathError{Op: op, Path: f.name, Err: err} }

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	switch {
	case f.closed.Load():
		return 0, f.err("write", os.ErrClosed)
	case !f.write:
		return 0, f.err("pwrite", syscall.EBADF)
	case off < 0:
		return 0, f.err("pwrite", syscall.EINVAL)
	}
	f.in.mu.Lock()
	f.in.writeAt(p, off)
	f.in.mu.Unlock()
	return len(p), nil
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	switch {
	case f.closed.Load():
		return 0, f.err("read", os.ErrClosed)
	case f.dir:
		return 0, f.err("pread", syscall.EISDIR)
	case !f.read:
		return 0, f.err("pread", syscall.EBADF)
	case off < 0:
		return 0, f.err("pread", syscall.EINVAL)
	case len(p) == 0:
		return 0, nil
	}
	f.in.mu.RLock()
	defer f.in.mu.RUnlock()
	if off >= f.in.size {
		return 0, io.EOF
	}
	if n := f.in.readAt(p, off); n < len(p) {
		return n, io.EOF
	}
	return len(p), nil
}

// Datasync has nothing to do but report a closed handle: memory is as
// durable as this file system gets.
func (f *file) Datasync() error {
	if f.closed.Load() {
		return f.err("sync", os.ErrClosed)
	}
	return nil
}

func (f *file) Truncate(size int64) error {
	switch {
	case f.closed.Load():
		return f.err("truncate", os.ErrClosed)
	case !f.write || size < 0:
		return f.err("truncate", syscall.EINVAL)
	}
	f.in.mu.Lock()
	f.in.truncate(size)
	f.in.mu.Unlock()
	return nil
}

func (f *file) Size() (int64, error) {
	switch {
	case f.closed.Load():
		return 0, f.err("stat", os.ErrClosed)
	case f.dir:
		return 0, nil
	}
	f.in.mu.RLock()
	defer f.in.mu.RUnlock()
	return f.in.size, nil
}

func (f *file) Close() error {
	if f.closed.Swap(true) {
		return f.err("close", os.ErrClosed)
	}
	return nil
}
