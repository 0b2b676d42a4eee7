package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// enterFunc is io_uring_enter(2); a field so tests can inject EINTR, EAGAIN
// and EBUSY.
type enterFunc func(fd int, toSubmit, minComplete, flags uint32) (int, unix.Errno)

func sysEnter(fd int, toSubmit, minComplete, flags uint32) (int, unix.Errno) {
	// Syscall6, not RawSyscall6: a waiting enter blocks, and the runtime must
	// be told so it can hand the P to another thread.
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd),
		uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	return int(n), errno
}

// Ring is one io_uring instance: an SQ, a CQ and the SQE array, all mapped
// from the kernel. See the notes at the top of ring.go for its memory-ordering
// and GC rules. A Ring belongs to one goroutine.
//
// Bounds: at most SQEntries() SQEs are queued between Submits, and at most
// CQEntries() operations are queued or in flight together, so the CQ never
// overflows (GetSQE returns ErrRingFull instead). Every operation the
// binding prepares posts exactly one CQE.
type Ring struct {
	fd       int
	features uint32
	probe    *Probe
	enter    enterFunc

	sqMem  []byte // SQ ring mapping (also the CQ ring with FeatSingleMmap)
	cqMem  []byte // CQ ring mapping; nil with FeatSingleMmap
	sqeMem []byte // SQE array mapping

	sqHead    *uint32 // kernel writes, we read atomically
	sqTail    *uint32 // we write atomically, kernel reads
	sqDropped *uint32
	sqMask    uint32
	sqEntries uint32
	sqes      []SQE
	// sqeTail counts SQEs handed out by GetSQE; Submit publishes it to
	// *sqTail.
	sqeTail uint32

	cqHead     *uint32 // we write atomically, kernel reads
	cqTail     *uint32 // kernel writes, we read atomically
	cqOverflow *uint32
	cqMask     uint32
	cqEntries  uint32
	cqes       []cqe

	// inflight counts operations the kernel consumed whose CQE has not been
	// reaped yet.
	inflight uint32
	reaping  bool
	closed   bool
	// buffers is the set registered with IORING_REGISTER_BUFFERS, if any.
	buffers *AlignedBuffers
}

// NewRing sets up a ring with room for entries SQEs (rounded up to a power of
// two by the kernel; the CQ gets twice as many). It fails with an error
// wrapping ErrUnavailable when io_uring is refused (ENOSYS, EPERM), and with
// ErrUnsupportedOp when the kernel lacks WRITEV or FSYNC.
func NewRing(entries uint32) (*Ring, error) {
	if entries == 0 || entries > MaxRingEntries {
		return nil, fmt.Errorf("uring: ring entries %d out of range [1, %d]", entries, MaxRingEntries)
	}
	var p ioUringParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		if errno == unix.ENOSYS || errno == unix.EPERM {
			return nil, fmt.Errorf("%w: io_uring_setup: %s (%w)", ErrUnavailable, unix.ErrnoName(errno), errno)
		}
		if errno == unix.ENOMEM {
			// Kernels before 5.12, and rings created without
			// CAP_IPC_LOCK on some later ones, charge the rings to
			// RLIMIT_MEMLOCK.
			var lim unix.Rlimit
			_ = unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
			return nil, fmt.Errorf("uring: io_uring_setup(%d): %w (RLIMIT_MEMLOCK is %d bytes; raise LimitMEMLOCK in the systemd unit)",
				entries, errno, lim.Cur)
		}
		return nil, fmt.Errorf("uring: io_uring_setup(%d): %w", entries, errno)
	}
	r := &Ring{fd: int(fd), features: p.features, enter: sysEnter}
	if err := r.mapRings(&p); err != nil {
		r.unmap()
		unix.Close(r.fd)
		return nil, err
	}
	probe, err := r.loadProbe()
	if err != nil {
		r.unmap()
		unix.Close(r.fd)
		return nil, err
	}
	r.probe = probe
	for _, op := range []uint8{OpWritev, OpFsync} {
		if !probe.Supported(op) {
			r.unmap()
			unix.Close(r.fd)
			return nil, fmt.Errorf("%w: %s", ErrUnsupportedOp, OpName(op))
		}
	}
	return r, nil
}

func mmapRing(fd int, off int64, size uint32) ([]byte, error) {
	b, err := unix.Mmap(fd, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("uring: mmap ring region %#x (%d bytes): %w", off, size, err)
	}
	return b, nil
}

func (r *Ring) mapRings(p *ioUringParams) error {
	sqSize := p.sqOff.array + p.sqEntries*4
	cqSize := p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(cqe{}))
	single := p.features&FeatSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.sqMem, err = mmapRing(r.fd, offSQRing, sqSize); err != nil {
		return err
	}
	cqMem := r.sqMem
	if !single {
		if r.cqMem, err = mmapRing(r.fd, offCQRing, cqSize); err != nil {
			return err
		}
		cqMem = r.cqMem
	}
	if r.sqeMem, err = mmapRing(r.fd, offSQEs, p.sqEntries*uint32(unsafe.Sizeof(SQE{}))); err != nil {
		return err
	}

	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = u32(r.sqMem, p.sqOff.head)
	r.sqTail = u32(r.sqMem, p.sqOff.tail)
	r.sqDropped = u32(r.sqMem, p.sqOff.dropped)
	r.sqMask = *u32(r.sqMem, p.sqOff.ringMask) // constant after setup
	r.sqEntries = p.sqEntries
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)

	r.cqHead = u32(cqMem, p.cqOff.head)
	r.cqTail = u32(cqMem, p.cqOff.tail)
	r.cqOverflow = u32(cqMem, p.cqOff.overflow)
	r.cqMask = *u32(cqMem, p.cqOff.ringMask)
	r.cqEntries = p.cqEntries
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&cqMem[p.cqOff.cqes])), p.cqEntries)

	// SQEs are handed out in tail order, so the SQ index array is the
	// identity, filled once. The kernel reads it only after a tail that we
	// publish atomically later.
	array := unsafe.Slice(u32(r.sqMem, p.sqOff.array), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.sqeTail = atomic.LoadUint32(r.sqTail)
	return nil
}

func (r *Ring) unmap() {
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.sqMem} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
	r.sqes, r.cqes = nil, nil
}

func (r *Ring) register(op uint32, arg unsafe.Pointer, nrArgs uint32) error {
	for {
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), uintptr(op),
			uintptr(arg), uintptr(nrArgs), 0, 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return errno
		}
	}
}

func (r *Ring) loadProbe() (*Probe, error) {
	var buf probeBuf // must be zeroed: the kernel refuses a dirty buffer
	if err := r.register(registerProbe, unsafe.Pointer(&buf), probeOps); err != nil {
		if err == unix.EINVAL {
			return nil, fmt.Errorf("%w: IORING_REGISTER_PROBE unsupported (kernel older than 5.6)", ErrUnsupportedOp)
		}
		return nil, fmt.Errorf("uring: IORING_REGISTER_PROBE: %w", err)
	}
	p := &Probe{lastOp: buf.hdr.lastOp}
	for i := 0; i < int(buf.hdr.opsLen) && i < probeOps; i++ {
		op := buf.ops[i]
		if op.flags&probeOpSupported != 0 {
			p.supported[op.op] = true
		}
	}
	return p, nil
}

// Probe returns the opcodes the kernel supports (queried once, at NewRing).
func (r *Ring) Probe() *Probe { return r.probe }

// Features returns io_uring_params.features (Feat* bits).
func (r *Ring) Features() uint32 { return r.features }

// SQEntries is the SQ size, CQEntries the CQ size.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }

// CQEntries is the CQ size: the bound on queued plus in-flight operations.
func (r *Ring) CQEntries() uint32 { return r.cqEntries }

// InFlight counts operations submitted to the kernel whose completion has
// not been reaped.
func (r *Ring) InFlight() uint32 { return r.inflight }

// Queued counts SQEs handed out by GetSQE that the kernel has not consumed.
func (r *Ring) Queued() uint32 { return r.sqeTail - atomic.LoadUint32(r.sqHead) }

// CQReady counts completions waiting to be reaped.
func (r *Ring) CQReady() uint32 {
	return atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead)
}

// Dropped counts SQEs the kernel dropped as invalid; Overflow counts CQEs it
// could not post. Both stay 0 when the binding's bounds hold.
func (r *Ring) Dropped() uint32  { return atomic.LoadUint32(r.sqDropped) }
func (r *Ring) Overflow() uint32 { return atomic.LoadUint32(r.cqOverflow) }

// GetSQE hands out the next zeroed SQE, or ErrRingFull when the SQ is full or
// one more operation could overflow the CQ. The SQE reaches the kernel at the
// next Submit.
func (r *Ring) GetSQE() (*SQE, error) {
	if r.closed {
		return nil, ErrRingClosed
	}
	queued := r.sqeTail - atomic.LoadUint32(r.sqHead)
	if queued >= r.sqEntries || r.inflight+queued >= r.cqEntries {
		return nil, ErrRingFull
	}
	e := &r.sqes[r.sqeTail&r.sqMask]
	*e = SQE{}
	r.sqeTail++
	return e, nil
}

// Submit publishes the SQEs handed out since the last Submit and asks the
// kernel to consume them; with waitNr > 0 it also waits until at least waitNr
// completions are ready to reap (counting those already ready). It returns
// how many SQEs the kernel consumed.
//
// EINTR is retried. EAGAIN and EBUSY return an error wrapping ErrRingBusy and
// the errno: the entries not consumed stay queued, and the caller reaps
// completions (Reap) and calls Submit again. Waiting for more completions
// than operations in flight returns ErrWaitTooMany instead of blocking
// forever.
func (r *Ring) Submit(waitNr uint32) (int, error) {
	if r.closed {
		return 0, ErrRingClosed
	}
	// Release: the SQE stores above become visible before the tail.
	atomic.StoreUint32(r.sqTail, r.sqeTail)
	submitted := 0
	for {
		toSubmit := r.sqeTail - atomic.LoadUint32(r.sqHead)
		if waitNr > r.inflight+toSubmit {
			return submitted, fmt.Errorf("%w: waiting for %d, %d in flight and %d queued",
				ErrWaitTooMany, waitNr, r.inflight, toSubmit)
		}
		ready := r.CQReady()
		if toSubmit == 0 && ready >= waitNr {
			return submitted, nil
		}
		var flags, minComplete uint32
		if waitNr > ready {
			flags, minComplete = enterGetEvents, waitNr
		}
		n, errno := r.enter(r.fd, toSubmit, minComplete, flags)
		if n > 0 {
			submitted += n
			r.inflight += uint32(n)
		}
		switch errno {
		case 0:
		case unix.EINTR:
			// A signal (the Go runtime preempts with SIGURG) interrupted
			// the wait; nothing was consumed by this call.
			continue
		case unix.EAGAIN, unix.EBUSY:
			return submitted, fmt.Errorf("%w: io_uring_enter: %s (%w)", ErrRingBusy, unix.ErrnoName(errno), errno)
		default:
			return submitted, fmt.Errorf("uring: io_uring_enter: %w", errno)
		}
		if n == 0 && toSubmit > 0 && flags == 0 {
			// Without waiting, the kernel consumes at least the entry it
			// fails on; consuming none would make us spin.
			return submitted, fmt.Errorf("uring: io_uring_enter consumed none of %d entries", toSubmit)
		}
		// Loop: the kernel stops early at an entry it fails at submission
		// (posting a CQE for it), and returns without waiting in that case.
	}
}

// Reap hands every ready completion to fn, in CQ order, and returns how many
// it handed. Each CQE is copied and released (atomic head store) before fn
// runs, so fn may Submit; it must not call Reap.
func (r *Ring) Reap(fn func(userData uint64, res int32, flags uint32)) int {
	if r.reaping {
		panic("uring: Reap called from a Reap callback")
	}
	r.reaping = true
	defer func() { r.reaping = false }()
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail) // acquire: CQEs below tail are complete
	n := 0
	for ; head != tail; head++ {
		c := r.cqes[head&r.cqMask]
		atomic.StoreUint32(r.cqHead, head+1) // release the slot to the kernel
		r.inflight--
		n++
		fn(c.userData, c.res, c.flags)
	}
	return n
}

// PeekCQE returns the oldest ready completion without releasing it.
func (r *Ring) PeekCQE() (CQE, bool) {
	head := atomic.LoadUint32(r.cqHead)
	if head == atomic.LoadUint32(r.cqTail) {
		return CQE{}, false
	}
	c := r.cqes[head&r.cqMask]
	return CQE{UserData: c.userData, Res: c.res, Flags: c.flags}, true
}

// SeenCQE releases the completion PeekCQE returned.
func (r *Ring) SeenCQE() {
	head := atomic.LoadUint32(r.cqHead)
	if head == atomic.LoadUint32(r.cqTail) {
		panic("uring: SeenCQE without a ready completion")
	}
	atomic.StoreUint32(r.cqHead, head+1)
	r.inflight--
}

// WaitCQE submits what is queued, waits for one completion and releases it.
func (r *Ring) WaitCQE() (CQE, error) {
	if _, err := r.Submit(1); err != nil {
		return CQE{}, err
	}
	c, ok := r.PeekCQE()
	if !ok {
		return CQE{}, errors.New("uring: no completion after waiting")
	}
	r.SeenCQE()
	return c, nil
}

// Close waits for every in-flight operation (discarding its completion: reap
// first to see them), drops queued but unsubmitted SQEs, unmaps the rings and
// closes the ring descriptor, which also unregisters buffers. Waiting matters:
// the kernel tears a ring down asynchronously, and buffers freed after Close
// must not still be in use.
func (r *Ring) Close() error {
	if r.closed {
		return nil
	}
	var err error
	for r.inflight > 0 {
		if r.CQReady() == 0 {
			_, errno := r.enter(r.fd, 0, 1, enterGetEvents)
			if errno != 0 && errno != unix.EINTR {
				err = fmt.Errorf("uring: close: waiting for %d in-flight operations: %w", r.inflight, errno)
				break
			}
		}
		r.Reap(func(uint64, int32, uint32) {})
	}
	r.closed = true
	if r.buffers != nil {
		r.buffers.ring = nil
		r.buffers = nil
	}
	r.unmap()
	if cerr := unix.Close(r.fd); cerr != nil && err == nil {
		err = fmt.Errorf("uring: close ring fd: %w", cerr)
	}
	return err
}
