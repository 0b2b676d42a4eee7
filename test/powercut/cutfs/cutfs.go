// Package cutfs is a FUSE file system for power-cut tests: it mirrors a
// backing directory, except that file data written through the mount is held
// in this process's memory until it is synced. Killing the process is the
// power cut: whatever was not synced is gone, and the backing directory holds
// exactly what was.
//
// What counts as a sync of a file: fsync(2) or fdatasync(2) on any of its
// descriptors (FUSE_FSYNC), and every write made with O_SYNC or O_DSYNC, on
// the descriptor or per write (RWF_DSYNC, also through io_uring): the kernel
// flags such FUSE writes with O_DSYNC, and they are synced before the write
// is answered. close(2) (FLUSH, RELEASE) and syncs of other files are not.
//
// What is held until a sync: the file's data and its size, whether changed
// by write, truncate (setattr size) or fallocate. Reads through the mount and
// getattr show the held state, for every descriptor of the file.
//
// What is not simulated: directory operations (create, mkdir, mknod,
// symlink, link, rename, unlink, rmdir) and the other attributes (mode,
// owner, times, xattrs) go straight to the backing directory, as on a file
// system whose metadata journal commits at once. So a power cut never loses
// a file's name, only its unsynced contents, and a directory fsync is a no-op
// in effect. Nor are torn states: unsynced data is lost whole, none of it
// reaches the backing file early as page-cache writeback would.
//
// HoldSyncs simulates a disk that stops completing flushes: syncs wait
// (until ReleaseSyncs, or the cut). What an application acknowledges while
// its syncs are held is exactly what it acknowledged without waiting for
// them.
//
// O_DIRECT opens are accepted; their writes are held like any other until
// synced. O_TMPFILE is refused (EOPNOTSUPP). The backing directory must be a
// single file system (state is keyed by backing inode number), and is used
// by no one but the mount while it is mounted.
package cutfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FS is a mounted cutfs. The embedded server unmounts it (Unmount) and
// waits for it to end (Wait).
type FS struct {
	*fuse.Server
	fsys *fileSystem
}

// Mount mounts a cutfs view of the directory backing at mountpoint and
// serves it until it is unmounted or the process dies. Mounting needs root
// (it calls mount(2) itself) or a fusermount helper; errors for which
// Refused is true mean FUSE is not available here.
func Mount(backing, mountpoint string) (*FS, error) {
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	lb, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, err
	}
	fsys := &fileSystem{inodes: map[uint64]*inode{}}
	root := &node{LoopbackNode: lb.(*fs.LoopbackNode), fsys: fsys}
	sec := time.Second
	nodeFS := fs.NewNodeFS(root, &fs.Options{EntryTimeout: &sec, AttrTimeout: &sec})
	srv, err := fuse.NewServer(dsyncWrites{nodeFS}, mountpoint, &fuse.MountOptions{
		FsName: "cutfs",
		Name:   "cutfs",
		// No fusermount needed as root; go-fuse falls back to it otherwise.
		DirectMount: true,
		// No WRITEBACK_CACHE (go-fuse asks for it only when told): every
		// write(2) reaches this process before it returns, so nothing
		// the application wrote can hide in the kernel's page cache.
	})
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, err
	}
	return &FS{Server: srv, fsys: fsys}, nil
}

// HoldSyncs makes every sync that starts from now on wait until
// ReleaseSyncs (or until the caller is interrupted, or the power cut).
func (x *FS) HoldSyncs() {
	x.fsys.holdMu.Lock()
	defer x.fsys.holdMu.Unlock()
	if x.fsys.hold == nil {
		x.fsys.hold, x.fsys.held, x.fsys.heldClosed = make(chan struct{}), make(chan struct{}), false
	}
}

// SyncHeld is closed once a sync is waiting on the current hold: from then
// on the data that sync was to make durable is certainly written and not
// durable, which a power-cut test wants to cut at, without guessing how
// long that takes. Call it after HoldSyncs.
func (x *FS) SyncHeld() <-chan struct{} {
	x.fsys.holdMu.Lock()
	defer x.fsys.holdMu.Unlock()
	return x.fsys.held
}

// ReleaseSyncs lets held syncs, and later ones, go on.
func (x *FS) ReleaseSyncs() {
	x.fsys.holdMu.Lock()
	defer x.fsys.holdMu.Unlock()
	if x.fsys.hold != nil {
		close(x.fsys.hold)
		x.fsys.hold = nil
	}
}

// FailWrites makes every write to a file whose base name (as it was opened)
// matches the filepath.Match pattern match fail with errno, as a failing or
// full disk would, until HealWrites. The failed write changes nothing.
func (x *FS) FailWrites(errno syscall.Errno, match string) {
	x.fsys.faultMu.Lock()
	defer x.fsys.faultMu.Unlock()
	x.fsys.faultErrno, x.fsys.faultMatch = errno, match
}

// HealWrites ends FailWrites.
func (x *FS) HealWrites() { x.FailWrites(0, "") }

// Refused reports whether a Mount error means this machine or user cannot
// mount FUSE file systems (no /dev/fuse, no permission, no fusermount), as
// opposed to a bug.
func Refused(err error) bool {
	if _, serr := os.Stat("/dev/fuse"); serr != nil {
		return true
	}
	for _, e := range []error{unix.EPERM, unix.EACCES, unix.ENODEV, unix.ENXIO, exec.ErrNotFound} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// dsyncWrites makes a WRITE that the kernel flags O_DSYNC (or O_SYNC, which
// includes it) a write followed by an fsync of the file before it is
// answered. The kernel sets the flag from the descriptor's open flags and
// from RWF_DSYNC (also on io_uring writes). It also follows such a write
// with an FSYNC of its own (generic_write_sync) on every path seen so far,
// O_DIRECT through io_uring included; acting on the flag, which every DSYNC
// write carries, does not depend on that.
type dsyncWrites struct{ fuse.RawFileSystem }

func (d dsyncWrites) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	n, st := d.RawFileSystem.Write(cancel, in, data)
	return n, d.sync(cancel, in, st)
}

func (d dsyncWrites) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	n, st := d.RawFileSystem.Writev(cancel, in, data)
	return n, d.sync(cancel, in, st)
}

func (d dsyncWrites) sync(cancel <-chan struct{}, in *fuse.WriteIn, st fuse.Status) fuse.Status {
	if st != fuse.OK || in.Flags&syscall.O_DSYNC == 0 {
		return st
	}
	return d.RawFileSystem.Fsync(cancel, &fuse.FsyncIn{InHeader: in.InHeader, Fh: in.Fh, FsyncFlags: 1 /* FUSE_FSYNC_FDATASYNC */})
}

// fileSystem keeps the unsynced state of every file opened through the
// mount, by backing inode number. It outlives the kernel's interest in the
// file (its node may be forgotten while data is still held, as the page
// cache holds data after close), and is dropped when the file's last name is
// removed, before the backing file system can reuse the number.
type fileSystem struct {
	mu     sync.Mutex
	inodes map[uint64]*inode

	holdMu     sync.Mutex
	hold       chan struct{} // non-nil while syncs are held; closed to release them
	held       chan struct{} // closed once a sync waits on hold (SyncHeld)
	heldClosed bool

	faultMu    sync.Mutex
	faultErrno syscall.Errno // non-zero: writes to files matching faultMatch fail with it
	faultMatch string        // a filepath.Match pattern for a file's base name
}

// writeFault is the error a write to the file called name gets now (0: none).
func (f *fileSystem) writeFault(name string) syscall.Errno {
	f.faultMu.Lock()
	defer f.faultMu.Unlock()
	if f.faultErrno == 0 {
		return 0
	}
	if ok, _ := filepath.Match(f.faultMatch, name); !ok {
		return 0
	}
	return f.faultErrno
}

// waitSyncs returns when syncs are not held (any more), or EINTR when the
// request is interrupted first.
func (f *fileSystem) waitSyncs(ctx context.Context) syscall.Errno {
	f.holdMu.Lock()
	hold := f.hold
	if hold != nil && !f.heldClosed {
		close(f.held)
		f.heldClosed = true
	}
	f.holdMu.Unlock()
	if hold == nil {
		return 0
	}
	select {
	case <-hold:
		return 0
	case <-ctx.Done():
		return syscall.EINTR
	}
}

func (f *fileSystem) get(ino uint64) *inode {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.inodes[ino]
	if in == nil {
		in = &inode{}
		f.inodes[ino] = in
	}
	return in
}

func (f *fileSystem) peek(ino uint64) *inode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inodes[ino]
}

// removed is called after a name of the backing file st was removed or
// replaced. Open handles keep their *inode; a file reusing the number gets a
// new one.
func (f *fileSystem) removed(st *syscall.Stat_t) {
	if st.Nlink > 1 {
		return
	}
	f.mu.Lock()
	delete(f.inodes, st.Ino)
	f.mu.Unlock()
}

// fixAttr corrects attributes taken from the backing file (by restat) for
// the state held in memory. With state, it stats again under the state's
// lock, so that no sync runs in between and the backing size seen is not a
// half-synced one.
func (f *fileSystem) fixAttr(out *fuse.Attr, restat func(*syscall.Stat_t) error) syscall.Errno {
	in := f.peek(out.Ino)
	if in == nil {
		return fs.OK
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var st syscall.Stat_t
	if err := restat(&st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	in.fix(out)
	return fs.OK
}

// fix sets the size in out to the held one; in.mu is held.
func (in *inode) fix(out *fuse.Attr) {
	if in.dirty {
		out.Size = uint64(in.size)
		out.Blocks = (out.Size + 511) / 512
	}
}

// node is a loopback node whose regular files go through the overlay. The
// embedded LoopbackNode does the directory operations.
type node struct {
	*fs.LoopbackNode
	fsys *fileSystem
}

// WrapChild makes every node the loopback creates (lookup, create, mkdir,
// ...) one of ours.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), fsys: n.fsys}
}

// path is the backing path of the node, or of its child name.
func (n *node) path(name ...string) string {
	return filepath.Join(append([]string{n.RootData.Path, n.Path(nil)}, name...)...)
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == 0 {
		errno = n.fsys.fixAttr(&out.Attr, func(st *syscall.Stat_t) error { return syscall.Lstat(n.path(name), st) })
	}
	return ch, errno
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return h.Getattr(ctx, out)
	}
	errno := n.LoopbackNode.Getattr(ctx, nil, out)
	if errno == 0 {
		errno = n.fsys.fixAttr(&out.Attr, func(st *syscall.Stat_t) error { return syscall.Lstat(n.path(), st) })
	}
	return errno
}

// Statx is refused so that the kernel falls back to Getattr for good
// (FUSE_STATX answered ENOSYS is not asked again), which knows the held size.
func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return syscall.ENOSYS
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	h, _ := f.(*handle)
	if h == nil {
		if _, ok := in.GetSize(); !ok {
			errno := n.LoopbackNode.Setattr(ctx, nil, in, out)
			if errno == 0 {
				errno = n.fsys.fixAttr(&out.Attr, func(st *syscall.Stat_t) error { return syscall.Lstat(n.path(), st) })
			}
			return errno
		}
		// truncate(2) by name: go through a handle of our own.
		var errno syscall.Errno
		if h, errno = n.fsys.open(n.path()); errno != 0 {
			return errno
		}
		defer h.Release(ctx)
	}
	return h.Setattr(ctx, in, out)
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h, errno := n.fsys.open(n.path())
	if errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		if errno := h.truncate(); errno != 0 {
			h.Release(ctx)
			return nil, 0, errno
		}
	}
	return h, 0, 0
}

// Create lets the loopback create the file (a directory operation, so it
// reaches the backing directory at once) and its node, then serves the open
// with a handle of ours.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ch, lf, _, errno := n.LoopbackNode.Create(ctx, name, syscall.O_RDWR|flags&syscall.O_EXCL, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	lf.(fs.FileReleaser).Release(ctx)
	h, errno := n.fsys.open(n.path(name))
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		errno = h.truncate()
	}
	if errno == 0 {
		var attr fuse.AttrOut
		errno = h.Getattr(ctx, &attr)
		out.Attr = attr.Attr
	}
	if errno != 0 {
		h.Release(ctx)
		return nil, nil, 0, errno
	}
	return ch, h, 0, 0
}

func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// CopyFileRange is refused, so the kernel copies through read and write
// (the loopback's would copy backing data, missing what is held).
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut, length, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.EOPNOTSUPP
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	var st syscall.Stat_t
	serr := syscall.Lstat(n.path(name), &st)
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 && serr == nil {
		n.fsys.removed(&st)
	}
	return errno
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	var src, dst syscall.Stat_t
	replaced := false
	if np, ok := newParent.(*node); ok && flags&fs.RENAME_EXCHANGE == 0 {
		replaced = syscall.Lstat(np.path(newName), &dst) == nil &&
			syscall.Lstat(n.path(name), &src) == nil && src.Ino != dst.Ino
	}
	errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	if errno == 0 && replaced {
		n.fsys.removed(&dst)
	}
	return errno
}

// open opens the backing file read-write whatever the caller asked for: a
// sync through a read-only descriptor must still write the held data.
// O_DIRECT, O_SYNC, O_APPEND and O_TRUNC are the kernel's business (it sets
// the write offsets and flags each write) or the overlay's, never the
// backing descriptor's.
func (f *fileSystem) open(path string) (*handle, syscall.Errno) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fs.ToErrno(err)
	}
	return &handle{fd: fd, in: f.get(st.Ino), fsys: f, name: filepath.Base(path)}, 0
}

// handle is one open of a file: a backing descriptor and the file's shared
// state. go-fuse lets in-flight operations finish before Release, so fd
// stays valid while they run.
type handle struct {
	fd   int
	in   *inode
	fsys *fileSystem
	name string // base name when opened, for FailWrites
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	n, err := h.in.readAt(h.fd, dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := h.fsys.writeFault(h.name); errno != 0 {
		return 0, errno
	}
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	if err := h.in.writeAt(h.fd, data, off); err != nil {
		return 0, fs.ToErrno(err)
	}
	return uint32(len(data)), 0
}

// Fsync is the one way held data reaches the backing file.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if errno := h.fsys.waitSyncs(ctx); errno != 0 {
		return errno
	}
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	return fs.ToErrno(h.in.sync(h.fd))
}

func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	return fs.ToErrno(h.in.allocate(h.fd, int64(off), int64(size), mode))
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	return h.getattrLocked(out)
}

func (h *handle) getattrLocked(out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(h.fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	h.in.fix(&out.Attr)
	return 0
}

// Setattr holds a size change like a write; mode, owner and times go to the
// backing file at once (through a loopback file on a duplicate descriptor).
func (h *handle) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	if size, ok := in.GetSize(); ok {
		if err := h.in.truncate(h.fd, int64(size)); err != nil {
			return fs.ToErrno(err)
		}
	}
	rest := *in
	rest.Valid &^= fuse.FATTR_SIZE
	dup, err := unix.FcntlInt(uintptr(h.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	lf := fs.NewLoopbackFile(dup)
	errno := lf.(fs.FileSetattrer).Setattr(ctx, &rest, out)
	lf.(fs.FileReleaser).Release(ctx)
	if errno != 0 {
		return errno
	}
	return h.getattrLocked(out)
}

func (h *handle) truncate() syscall.Errno {
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	return fs.ToErrno(h.in.truncate(h.fd, 0))
}

// Release closes the backing descriptor and nothing else: closing a file
// syncs nothing, its held data stays held.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	return fs.ToErrno(unix.Close(h.fd))
}

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileFsyncer   = (*handle)(nil)
	_ fs.FileAllocater = (*handle)(nil)
	_ fs.FileGetattrer = (*handle)(nil)
	_ fs.FileSetattrer = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)

	_ fs.NodeWrapChilder    = (*node)(nil)
	_ fs.NodeStatxer        = (*node)(nil)
	_ fs.NodeTmpfiler       = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
)
