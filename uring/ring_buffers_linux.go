package uring

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmapAnon maps size bytes of zeroed anonymous memory: page-aligned, outside
// the Go heap, never moved, freed only by munmap.
func mmapAnon(size int) ([]byte, error) {
	return unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_POPULATE)
}

// AlignedBuffers is a fixed set of count buffers of size bytes each, in one
// anonymous mapping: every buffer starts on a BlockSize boundary and is never
// Go heap memory, so the kernel may read it while the GC runs. Slot i is
// registered buffer index i once Register succeeded.
type AlignedBuffers struct {
	mem   []byte
	size  int
	count int
	ring  *Ring // the ring the buffers are registered with, if any
}

// NewAlignedBuffers maps count buffers of size bytes. size must be a positive
// multiple of BlockSize no larger than MaxBufferSize, count at most
// MaxRegisteredBuffers.
func NewAlignedBuffers(count, size int) (*AlignedBuffers, error) {
	if count <= 0 || count > MaxRegisteredBuffers {
		return nil, fmt.Errorf("uring: buffer count %d out of range [1, %d]", count, MaxRegisteredBuffers)
	}
	if size <= 0 || size%BlockSize != 0 || size > MaxBufferSize {
		return nil, fmt.Errorf("uring: buffer size %d is not a multiple of %d in (0, %d]", size, BlockSize, MaxBufferSize)
	}
	mem, err := mmapAnon(count * size)
	if err != nil {
		return nil, fmt.Errorf("uring: mmap %d buffers of %d bytes: %w", count, size, err)
	}
	return &AlignedBuffers{mem: mem, size: size, count: count}, nil
}

// Count is the number of buffers, Size the bytes in each.
func (b *AlignedBuffers) Count() int { return b.count }

// Size is the bytes in each buffer.
func (b *AlignedBuffers) Size() int { return b.size }

// Slot returns buffer i (len = cap = Size()). The view is valid until Close.
func (b *AlignedBuffers) Slot(i int) []byte {
	if i < 0 || i >= b.count {
		panic(fmt.Sprintf("uring: buffer slot %d out of range [0, %d)", i, b.count))
	}
	return b.mem[i*b.size : (i+1)*b.size : (i+1)*b.size]
}

// Registered reports whether the buffers are registered with a ring.
func (b *AlignedBuffers) Registered() bool { return b.ring != nil }

// Register registers every slot with r (IORING_REGISTER_BUFFERS), so writes
// can use OpWriteFixed and skip the kernel's per-I/O page pinning. A ring
// holds one registered set. Registered memory counts against RLIMIT_MEMLOCK
// (unless CAP_IPC_LOCK): when the kernel refuses with ENOMEM or EPERM the
// error wraps ErrRegisterRefused and says why; the buffers remain usable with
// unregistered writes (PrepWriteSlot falls back by itself), and the caller
// logs the reason once.
func (b *AlignedBuffers) Register(r *Ring) error {
	if r.closed {
		return ErrRingClosed
	}
	if b.ring != nil || r.buffers != nil {
		return errors.New("uring: buffers already registered")
	}
	// The iovec array is read during the call only, so Go memory is fine.
	iov := make([]unix.Iovec, b.count)
	for i := range iov {
		iov[i].Base = &b.mem[i*b.size]
		iov[i].SetLen(b.size)
	}
	err := r.register(registerBuffers, unsafe.Pointer(&iov[0]), uint32(b.count))
	if err != nil {
		if err == unix.ENOMEM || err == unix.EPERM {
			var lim unix.Rlimit
			_ = unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
			return fmt.Errorf("%w: %d bytes with RLIMIT_MEMLOCK at %d bytes (raise LimitMEMLOCK in the systemd unit); "+
				"falling back to unregistered writes: %w", ErrRegisterRefused, len(b.mem), lim.Cur, err)
		}
		return fmt.Errorf("uring: IORING_REGISTER_BUFFERS: %w", err)
	}
	b.ring, r.buffers = r, b
	return nil
}

// Unregister undoes Register. It must not run while fixed writes from these
// buffers are in flight.
func (b *AlignedBuffers) Unregister() error {
	r := b.ring
	if r == nil {
		return nil
	}
	if err := r.register(unregisterBuffers, nil, 0); err != nil {
		return fmt.Errorf("uring: IORING_UNREGISTER_BUFFERS: %w", err)
	}
	b.ring, r.buffers = nil, nil
	return nil
}

// PrepWriteSlot prepares a write of the first n bytes of slot i at off: a
// WRITE_FIXED when the buffers are registered with the ring, a plain WRITE
// otherwise.
func (b *AlignedBuffers) PrepWriteSlot(e *SQE, fd int, i, n int, off uint64) {
	if n < 0 || n > b.size {
		panic(fmt.Sprintf("uring: write of %d bytes from a %d-byte buffer", n, b.size))
	}
	p := b.Slot(i)[:n]
	if b.ring != nil {
		e.PrepWriteFixed(fd, p, off, uint16(i))
		return
	}
	e.PrepWrite(fd, p, off)
}

// Close unregisters (if needed) and unmaps the buffers. Call it only when no
// operation using them is in flight (after the ring's Close, for instance).
func (b *AlignedBuffers) Close() error {
	if b.mem == nil {
		return nil
	}
	var err error
	if b.ring != nil {
		err = b.Unregister()
	}
	if merr := unix.Munmap(b.mem); merr != nil && err == nil {
		err = fmt.Errorf("uring: munmap buffers: %w", merr)
	}
	b.mem = nil
	return err
}

// Iovecs is an off-heap array of iovecs for OpWritev: slots groups of perSlot
// entries, so each in-flight writev owns the group of its slot index. The
// kernel may read an iovec array after Submit returns on kernels without
// FeatSubmitStable, and the GC would not keep a Go array alive for it.
// The Base of every entry must point to off-heap memory too.
type Iovecs struct {
	mem     []byte
	slots   int
	perSlot int
}

// NewIovecs maps slots × perSlot iovecs. perSlot is at most IOV_MAX (1024).
func NewIovecs(slots, perSlot int) (*Iovecs, error) {
	if slots <= 0 || perSlot <= 0 || perSlot > 1024 {
		return nil, fmt.Errorf("uring: iovec slots %d × %d out of range", slots, perSlot)
	}
	size := slots * perSlot * int(unsafe.Sizeof(unix.Iovec{}))
	size = (size + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	mem, err := mmapAnon(size)
	if err != nil {
		return nil, fmt.Errorf("uring: mmap iovecs: %w", err)
	}
	return &Iovecs{mem: mem, slots: slots, perSlot: perSlot}, nil
}

// Slot returns the perSlot iovecs of slot i.
func (v *Iovecs) Slot(i int) []unix.Iovec {
	if i < 0 || i >= v.slots {
		panic(fmt.Sprintf("uring: iovec slot %d out of range [0, %d)", i, v.slots))
	}
	all := unsafe.Slice((*unix.Iovec)(unsafe.Pointer(&v.mem[0])), v.slots*v.perSlot)
	return all[i*v.perSlot : (i+1)*v.perSlot : (i+1)*v.perSlot]
}

// Close unmaps the iovecs; no writev using them may be in flight.
func (v *Iovecs) Close() error {
	if v.mem == nil {
		return nil
	}
	err := unix.Munmap(v.mem)
	v.mem = nil
	return err
}

var probeSeq atomic.Uint64

// DirectIOSupported reports whether files in dir accept O_DIRECT: it creates a
// temporary file with O_DIRECT, writes one aligned BlockSize block to it and
// removes it. A file system that refuses (EINVAL at open or at the write, as
// tmpfs did before Linux 6.6) yields false and a nil error; the WAL then
// opens its files without O_DIRECT, relies on fdatasync alone, and says so in
// the log. Other failures (permissions, ENOSPC) are returned. Acceptance says
// nothing about durability: a current tmpfs accepts O_DIRECT and keeps
// nothing across a reboot.
func DirectIOSupported(dir string) (bool, error) {
	name := filepath.Join(dir, ".ringtail-odirect-probe-"+strconv.Itoa(os.Getpid())+"-"+
		strconv.FormatUint(probeSeq.Add(1), 10))
	fd, err := unix.Open(name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if err == unix.EINVAL {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("uring: probe O_DIRECT in %s: %w", dir, err)
	}
	defer func() {
		unix.Close(fd)
		unix.Unlink(name)
	}()
	buf, err := mmapAnon(BlockSize)
	if err != nil {
		return false, fmt.Errorf("uring: probe O_DIRECT: %w", err)
	}
	defer unix.Munmap(buf)
	for {
		n, err := unix.Pwrite(fd, buf, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EINVAL:
			return false, nil
		case err != nil:
			return false, fmt.Errorf("uring: probe O_DIRECT write in %s: %w", dir, err)
		case n != BlockSize:
			return false, fmt.Errorf("uring: probe O_DIRECT write in %s: %d of %d bytes", dir, n, BlockSize)
		}
		return true, nil
	}
}
