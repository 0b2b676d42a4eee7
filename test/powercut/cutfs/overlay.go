package cutfs

import (
	"io"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// pageSize is the unit in which unsynced data is held. Any size works; the
// page cache's is the natural one.
const pageSize = 4096

// inode is what a file looks like through the mount, as a difference from
// its backing file: the data that was written, truncated or fallocated but not
// yet synced. There is one per backing inode, shared by every handle, as the
// page cache is shared by every descriptor of a file: the broker writes a
// segment through one descriptor and reads it through another.
//
// Invariants while dirty:
//   - keep <= size. Backing bytes [0, keep) show through wherever no page
//     covers them; everything from keep on reads as zeros (a truncate that
//     shrank the file hides the backing bytes past it, even if the file has
//     grown again since).
//   - pages hold whole pages of content. Bytes of a page at or past size are
//     zero, so growing the file exposes zeros, as it must.
//
// Every method expects mu held. fd is any descriptor of the backing file,
// opened read-write.
type inode struct {
	mu    sync.Mutex
	dirty bool
	size  int64
	keep  int64
	pages map[int64][]byte // page number → pageSize bytes
}

// begin starts an overlay on a clean file: it looks exactly like its backing
// file.
func (in *inode) begin(fd int) error {
	if in.dirty {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	in.dirty, in.size, in.keep, in.pages = true, st.Size, st.Size, map[int64][]byte{}
	return nil
}

// readAt reads what the mount shows: the backing bytes below keep, zeros
// past keep, and the pages over both, up to size.
func (in *inode) readAt(fd int, p []byte, off int64) (int, error) {
	if !in.dirty {
		return preadFull(fd, p, off)
	}
	if off >= in.size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), in.size-off)]
	clear(p)
	if off < in.keep {
		// A short read leaves zeros, which is what a backing file
		// shorter than keep would show (it cannot be: keep <= its size).
		if _, err := preadFull(fd, p[:min(int64(len(p)), in.keep-off)], off); err != nil {
			return 0, err
		}
	}
	end := off + int64(len(p))
	for pg := off / pageSize; pg*pageSize < end; pg++ {
		if b, ok := in.pages[pg]; ok {
			lo, hi := max(pg*pageSize, off), min((pg+1)*pageSize, end)
			copy(p[lo-off:hi-off], b[lo-pg*pageSize:])
		}
	}
	return len(p), nil
}

// page returns page pg of the overlay, creating it from what the mount shows
// there now unless the caller is about to overwrite all of it.
func (in *inode) page(fd int, pg int64, whole bool) ([]byte, error) {
	if b, ok := in.pages[pg]; ok {
		return b, nil
	}
	b := make([]byte, pageSize)
	if start := pg * pageSize; !whole && start < in.keep {
		if _, err := preadFull(fd, b[:min(pageSize, in.keep-start)], start); err != nil {
			return nil, err
		}
	}
	in.pages[pg] = b
	return b, nil
}

func (in *inode) writeAt(fd int, p []byte, off int64) error {
	if err := in.begin(fd); err != nil {
		return err
	}
	for len(p) > 0 {
		pg, o := off/pageSize, off%pageSize
		n := min(int64(len(p)), pageSize-o)
		b, err := in.page(fd, pg, n == pageSize)
		if err != nil {
			return err
		}
		copy(b[o:], p[:n])
		p, off = p[n:], off+n
	}
	in.size = max(in.size, off)
	return nil
}

func (in *inode) truncate(fd int, size int64) error {
	if err := in.begin(fd); err != nil {
		return err
	}
	if size < in.size {
		for pg := range in.pages {
			if pg*pageSize >= size {
				delete(in.pages, pg)
			}
		}
		if b, ok := in.pages[size/pageSize]; ok {
			clear(b[size%pageSize:])
		}
		in.keep = min(in.keep, size)
	}
	in.size = size
	return nil
}

// zero makes [off, end) read as zeros; the caller keeps end <= size.
func (in *inode) zero(fd int, off, end int64) error {
	for off < end {
		pg, o := off/pageSize, off%pageSize
		n := min(end-off, pageSize-o)
		if n == pageSize && pg*pageSize >= in.keep {
			delete(in.pages, pg) // a missing page past keep reads as zeros
		} else {
			b, err := in.page(fd, pg, n == pageSize)
			if err != nil {
				return err
			}
			clear(b[o : o+n])
		}
		off += n
	}
	return nil
}

// allocate is fallocate(2). Plain preallocation changes nothing visible but
// the size (unless FALLOC_FL_KEEP_SIZE); punching a hole or zeroing a range
// is a write of zeros. The kernel refuses other modes for FUSE before they
// get here.
func (in *inode) allocate(fd int, off, length int64, mode uint32) error {
	end := off + length
	keepSize := mode&unix.FALLOC_FL_KEEP_SIZE != 0
	switch mode &^ unix.FALLOC_FL_KEEP_SIZE {
	case 0:
		if keepSize {
			return nil
		}
		if err := in.begin(fd); err != nil {
			return err
		}
	case unix.FALLOC_FL_PUNCH_HOLE, unix.FALLOC_FL_ZERO_RANGE:
		if err := in.begin(fd); err != nil {
			return err
		}
		if err := in.zero(fd, off, min(end, in.size)); err != nil {
			return err
		}
	default:
		return unix.EOPNOTSUPP
	}
	if !keepSize {
		in.size = max(in.size, end)
	}
	return nil
}

// sync makes the backing file hold what the mount shows: cut it to keep
// (dropping the hidden bytes), write the pages, set the size. After that the
// overlay is empty. The backing file itself is not fsynced: the simulated
// power cut is the death of this process, which the backing file system
// survives, so its page cache is stable storage here and an fsync would only
// cost time.
func (in *inode) sync(fd int) error {
	if !in.dirty {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	cur := st.Size
	if in.keep < cur {
		if err := unix.Ftruncate(fd, in.keep); err != nil {
			return err
		}
		cur = in.keep
	}
	pgs := make([]int64, 0, len(in.pages))
	for pg := range in.pages {
		pgs = append(pgs, pg)
	}
	slices.Sort(pgs)
	for _, pg := range pgs {
		start := pg * pageSize
		if start >= in.size {
			continue // cannot happen: pages past size are dropped
		}
		b := in.pages[pg][:min(pageSize, in.size-start)]
		if err := pwriteFull(fd, b, start); err != nil {
			return err
		}
		cur = max(cur, start+int64(len(b)))
	}
	if cur != in.size {
		if err := unix.Ftruncate(fd, in.size); err != nil {
			return err
		}
	}
	in.dirty, in.pages = false, nil
	return nil
}

// preadFull reads until p is full or the file ends; a short count means EOF.
func preadFull(fd int, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			break
		}
		done += n
	}
	return done, nil
}

func pwriteFull(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}
