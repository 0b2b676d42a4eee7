package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// OSFS is the portable implementation of FS: plain pwrite(2), pread(2) and
// fdatasync(2) on files opened with os.OpenFile. It is what runs wherever
// io_uring is unavailable (for example under Docker's default seccomp
// profile).
//
// System calls go through (*os.File).SyscallConn so the runtime holds a
// reference on the descriptor for the duration of each call: a file closed
// concurrently makes the call fail with os.ErrClosed instead of touching
// whatever file later reuses the descriptor number.
type OSFS struct{}

var _ FS = OSFS{}

// OpenFile opens name with os.OpenFile.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f}, nil
}

// Remove removes a file or an empty directory.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// RemoveAll removes a path and everything under it.
func (OSFS) RemoveAll(name string) error { return os.RemoveAll(name) }

// Rename renames a file (atomically, within one file system).
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// MkdirAll creates a directory and its parents.
func (OSFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }

// ReadDir lists a directory sorted by name.
func (OSFS) ReadDir(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }

// SyncDir fsyncs a directory so the entries created or removed in it survive
// a power cut.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type osFile struct {
	f *os.File
}

// control runs fn on the descriptor. RawConn.Control fails only when the
// file is closed or closing, with internal/poll's "use of closed file",
// which os.ErrClosed does not match (os.File maps it for its own methods,
// not for RawConn): report os.ErrClosed as (*os.File).ReadAt would, so
// callers (the engine's reads racing a Close) can tell a closed file from a
// failing disk.
func (o *osFile) control(op string, fn func(fd uintptr)) error {
	rc, err := o.f.SyscallConn()
	if err != nil {
		return err
	}
	if err := rc.Control(fn); err != nil {
		return &fs.PathError{Op: op, Path: o.f.Name(), Err: os.ErrClosed}
	}
	return nil
}

func (o *osFile) Name() string { return o.f.Name() }

// Control implements Descriptor.
func (o *osFile) Control(fn func(fd uintptr)) error { return o.control("control", fn) }

func (o *osFile) WriteAt(p []byte, off int64) (int, error) {
	written := 0
	var werr error
	cerr := o.control("pwrite", func(fd uintptr) {
		for written < len(p) {
			n, err := unix.Pwrite(int(fd), p[written:], off+int64(written))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return
			}
			if n == 0 {
				werr = io.ErrShortWrite
				return
			}
			written += n
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	if werr != nil {
		return written, &fs.PathError{Op: "pwrite", Path: o.f.Name(), Err: werr}
	}
	return written, nil
}

// maxIOV is the most buffers one pwritev takes (UIO_MAXIOV).
const maxIOV = 1024

// WriteVAt implements VectorWriter with pwritev(2), resumed after a short write.
func (o *osFile) WriteVAt(bufs [][]byte, off int64) (int64, error) {
	var written int64
	var werr error
	cerr := o.control("pwritev", func(fd uintptr) {
		for len(bufs) > 0 {
			n, err := unix.Pwritev(int(fd), bufs[:min(len(bufs), maxIOV)], off+written)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return
			}
			if n == 0 {
				werr = io.ErrShortWrite
				return
			}
			written += int64(n)
			for n > 0 && len(bufs) > 0 {
				if n < len(bufs[0]) {
					bufs = append([][]byte{bufs[0][n:]}, bufs[1:]...)
					break
				}
				n -= len(bufs[0])
				bufs = bufs[1:]
			}
			for len(bufs) > 0 && len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	if werr != nil {
		return written, &fs.PathError{Op: "pwritev", Path: o.f.Name(), Err: werr}
	}
	return written, nil
}

func (o *osFile) ReadAt(p []byte, off int64) (int, error) {
	read := 0
	var rerr error
	cerr := o.control("pread", func(fd uintptr) {
		for read < len(p) {
			n, err := unix.Pread(int(fd), p[read:], off+int64(read))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				rerr = &fs.PathError{Op: "pread", Path: o.f.Name(), Err: err}
				return
			}
			if n == 0 {
				rerr = io.EOF
				return
			}
			read += n
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	return read, rerr
}

// StartWriteback asks the kernel to start writing the dirty pages of
// [off, off+n) without waiting for them (sync_file_range with
// SYNC_FILE_RANGE_WRITE): a later Datasync then has little left to flush.
// It makes nothing durable.
func (o *osFile) StartWriteback(off, n int64) error {
	var serr error
	cerr := o.control("sync_file_range", func(fd uintptr) {
		for {
			serr = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
			if serr != unix.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	if serr != nil {
		return &fs.PathError{Op: "sync_file_range", Path: o.f.Name(), Err: serr}
	}
	return nil
}

func (o *osFile) Datasync() error {
	var serr error
	cerr := o.control("fdatasync", func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	if serr != nil {
		return &fs.PathError{Op: "fdatasync", Path: o.f.Name(), Err: serr}
	}
	return nil
}

func (o *osFile) Truncate(size int64) error { return o.f.Truncate(size) }

func (o *osFile) Size() (int64, error) {
	st, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (o *osFile) Close() error {
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", o.f.Name(), err)
	}
	return nil
}
