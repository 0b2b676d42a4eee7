package uring

// This file holds the io_uring ABI (structs and constants from
// <linux/io_uring.h>, which golang.org/x/sys/unix does not define), the SQE
// preparation helpers and the errors of the binding. The Ring itself lives in
// ring_linux.go, the off-heap buffers in ring_buffers_linux.go.
//
// # Memory ordering
//
// The SQ and CQ rings are memory shared with the kernel, which runs
// concurrently on other CPUs. The rules this binding follows, all through
// sync/atomic (sequentially consistent in Go, so at least acquire/release):
//
//   - SQ tail (we produce): every SQE field and SQ array entry is written
//     with plain stores first, then the tail is published with one
//     atomic.StoreUint32. The kernel reads the tail with smp_load_acquire, so
//     it never sees a slot before its contents.
//   - SQ head (kernel consumes): read with atomic.LoadUint32 before deciding
//     whether a slot is free; a slot is reused only after the kernel moved
//     the head past it.
//   - CQ tail (kernel produces): read with atomic.LoadUint32; the CQEs below
//     it are then complete and may be read with plain loads.
//   - CQ head (we consume): each CQE is copied out first, then released with
//     atomic.StoreUint32 of the head, so the kernel never overwrites a CQE we
//     are still reading.
//
// No head or tail is ever read or written with a plain load or store, not
// even "for speed" and not even the ones only this process writes: the
// kernel reads them concurrently.
//
// # GC rules
//
// Addresses placed in an SQE (buffers, iovec arrays) are integers to the Go
// runtime: the GC neither sees them nor keeps their memory alive, and a
// goroutine stack that holds such a buffer may be moved. Hence:
//
//   - Memory the kernel reads or writes after Submit returns is off-heap:
//     AlignedBuffers for data and Iovecs for iovec arrays, both anonymous
//     mmaps that never move and are freed only by an explicit Close. The
//     Base pointers inside those iovecs point into AlignedBuffers too.
//   - A caller that must pass Go memory instead pins it with runtime.Pinner
//     and keeps it pinned and reachable until the operation's completion has
//     been reaped. The binding does not do this for the caller.
//   - user_data carries the caller's slot index (an integer), never a
//     pointer; a completion is matched to its request by that index.
//   - Memory handed to a synchronous system call (io_uring_register's probe
//     and iovec arguments) may be Go memory: the uintptr conversion happens
//     in the call expression, which keeps it alive and unmoved for the call.
//   - Ring.Close waits for every in-flight operation before it unmaps the
//     rings, so off-heap buffers may be closed after the ring is closed.
//
// A Ring is owned by one goroutine (the WAL writer); none of its methods are
// safe for concurrent use.

import (
	"errors"
	"fmt"
	"math"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opcodes (enum io_uring_op). Only those the WAL needs are listed.
const (
	OpNop        uint8 = 0
	OpReadv      uint8 = 1
	OpWritev     uint8 = 2
	OpFsync      uint8 = 3
	OpReadFixed  uint8 = 4
	OpWriteFixed uint8 = 5
	OpFallocate  uint8 = 17
	OpRead       uint8 = 22
	OpWrite      uint8 = 23
)

// SQE flags (IOSQE_*).
const (
	SQEFixedFile uint8 = 1 << 0
	SQEIODrain   uint8 = 1 << 1
	// SQEIOLink links this SQE to the next one: the next starts only after
	// this one completed successfully. An error or a short read/write breaks
	// the chain and every later linked SQE completes with -ECANCELED.
	SQEIOLink     uint8 = 1 << 2
	SQEIOHardlink uint8 = 1 << 3
	SQEAsync      uint8 = 1 << 4
)

// FsyncDatasync (IORING_FSYNC_DATASYNC) makes OpFsync an fdatasync.
const FsyncDatasync uint32 = 1 << 0

// io_uring_enter flags.
const (
	enterGetEvents uint32 = 1 << 0
)

// Features reported by io_uring_setup in io_uring_params.features.
const (
	FeatSingleMmap     uint32 = 1 << 0
	FeatNoDrop         uint32 = 1 << 1
	FeatSubmitStable   uint32 = 1 << 2
	FeatRWCurPos       uint32 = 1 << 3
	FeatCurPersonality uint32 = 1 << 4
	FeatFastPoll       uint32 = 1 << 5
	FeatPoll32Bits     uint32 = 1 << 6
	FeatSQPollNonfixed uint32 = 1 << 7
	FeatExtArg         uint32 = 1 << 8
	FeatNativeWorkers  uint32 = 1 << 9
	FeatRsrcTags       uint32 = 1 << 10
	FeatCQESkip        uint32 = 1 << 11
	FeatLinkedFile     uint32 = 1 << 12
)

var featureNames = [...]string{
	"SINGLE_MMAP", "NODROP", "SUBMIT_STABLE", "RW_CUR_POS", "CUR_PERSONALITY",
	"FAST_POLL", "POLL_32BITS", "SQPOLL_NONFIXED", "EXT_ARG", "NATIVE_WORKERS",
	"RSRC_TAGS", "CQE_SKIP", "LINKED_FILE", "REG_REG_RING", "RECVSEND_BUNDLE",
	"MIN_TIMEOUT", "RW_ATTR", "NO_IOWAIT",
}

// FeatureString names the feature bits in f, e.g. "SINGLE_MMAP|NODROP".
func FeatureString(f uint32) string {
	s := ""
	for i := 0; i < 32; i++ {
		if f&(1<<i) == 0 {
			continue
		}
		if s != "" {
			s += "|"
		}
		if i < len(featureNames) {
			s += featureNames[i]
		} else {
			s += fmt.Sprintf("bit%d", i)
		}
	}
	return s
}

// io_uring_register opcodes.
const (
	registerBuffers   uint32 = 0
	unregisterBuffers uint32 = 1
	registerProbe     uint32 = 8
)

// mmap offsets of the three shared regions.
const (
	offSQRing int64 = 0
	offCQRing int64 = 0x8000000
	offSQEs   int64 = 0x10000000
)

// Limits, stated so every queue has a bound.
const (
	// MaxRingEntries is the kernel's IORING_MAX_ENTRIES.
	MaxRingEntries = 32768
	// MaxRegisteredBuffers is the kernel's limit on buffers registered with
	// one ring (IORING_MAX_REG_BUFFERS).
	MaxRegisteredBuffers = 1 << 14
	// MaxBufferSize is the kernel's limit on one registered buffer (1 GiB).
	MaxBufferSize = 1 << 30
	// BlockSize is the direct I/O alignment Ringtail uses everywhere: buffer
	// address, length and file offset are multiples of it.
	BlockSize = 4096
)

// ioSQRingOffsets is struct io_sqring_offsets (40 bytes).
type ioSQRingOffsets struct {
	head        uint32
	tail        uint32
	ringMask    uint32
	ringEntries uint32
	flags       uint32
	dropped     uint32
	array       uint32
	resv1       uint32
	userAddr    uint64
}

// ioCQRingOffsets is struct io_cqring_offsets (40 bytes).
type ioCQRingOffsets struct {
	head        uint32
	tail        uint32
	ringMask    uint32
	ringEntries uint32
	overflow    uint32
	cqes        uint32
	flags       uint32
	resv1       uint32
	userAddr    uint64
}

// ioUringParams is struct io_uring_params (120 bytes).
type ioUringParams struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        ioSQRingOffsets
	cqOff        ioCQRingOffsets
}

// SQE is struct io_uring_sqe (64 bytes), a submission queue entry. It lives in
// memory shared with the kernel; obtain one from Ring.GetSQE (which zeroes
// it), fill it with one Prep method and optionally SetUserData / SetLink, and
// hand it to the kernel with Ring.Submit. Do not keep the pointer after
// Submit.
type SQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64 // also addr2
	addr        uint64 // also splice_off_in
	len         uint32
	opFlags     uint32 // rw_flags, fsync_flags, ...
	userData    uint64
	bufIndex    uint16 // also buf_group
	personality uint16
	spliceFdIn  int32 // also file_index
	addr3       uint64
	pad2        uint64
}

// cqe is struct io_uring_cqe (16 bytes) as it sits in the CQ ring.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Probe structures for IORING_REGISTER_PROBE.
type probeHeader struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
}

type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16
	resv2 uint32
}

const probeOpSupported uint16 = 1 << 0

// probeOps is how many opcode slots we ask the kernel about (it clamps to
// IORING_OP_LAST).
const probeOps = 256

type probeBuf struct {
	hdr probeHeader
	ops [probeOps]probeOp
}

// Probe tells which opcodes the running kernel supports.
type Probe struct {
	lastOp    uint8
	supported [probeOps]bool
}

// Supported reports whether the kernel supports opcode op.
func (p *Probe) Supported(op uint8) bool { return p.supported[op] }

// LastOp is the highest opcode the kernel knows.
func (p *Probe) LastOp() uint8 { return p.lastOp }

// opNames names the opcodes the binding uses, for messages.
var opNames = map[uint8]string{
	OpNop: "NOP", OpReadv: "READV", OpWritev: "WRITEV", OpFsync: "FSYNC",
	OpReadFixed: "READ_FIXED", OpWriteFixed: "WRITE_FIXED",
	OpFallocate: "FALLOCATE", OpRead: "READ", OpWrite: "WRITE",
}

// OpName names an opcode the binding uses ("op<n>" for the others).
func OpName(op uint8) string {
	if s, ok := opNames[op]; ok {
		return s
	}
	return fmt.Sprintf("op%d", op)
}

// Errors. Every error the binding returns wraps one of these or a
// syscall.Errno, so callers decide with errors.Is.
var (
	// ErrUnavailable: io_uring_setup failed with ENOSYS (kernel without
	// io_uring) or EPERM (seccomp, as in Docker's default profile, or the
	// kernel.io_uring_disabled sysctl). Use the portable writer.
	ErrUnavailable = errors.New("uring: io_uring unavailable")
	// ErrUnsupportedOp: the kernel lacks an opcode the WAL requires.
	ErrUnsupportedOp = errors.New("uring: kernel lacks a required io_uring opcode")
	// ErrRingFull: no SQE can be handed out, either because the SQ is full of
	// unsubmitted entries or because in-flight plus queued operations would
	// exceed the CQ (which must never overflow). Submit, reap completions
	// (Submit(1) + Reap waits for at least one), then retry.
	ErrRingFull = errors.New("uring: ring full: submit and reap completions, then retry")
	// ErrRingBusy: io_uring_enter returned EAGAIN (kernel out of request
	// memory) or EBUSY (completions backed up). The entries not yet consumed
	// stay queued; reap completions, then call Submit again. The error also
	// matches the errno with errors.Is.
	ErrRingBusy = errors.New("uring: kernel busy: reap completions, then submit again")
	// ErrWaitTooMany: Submit was asked to wait for more completions than
	// there are operations in flight, which would block forever.
	ErrWaitTooMany = errors.New("uring: waiting for more completions than are in flight")
	// ErrRingClosed: the ring was closed.
	ErrRingClosed = errors.New("uring: ring closed")
	// ErrShortWrite: a write completed with fewer bytes than asked; the
	// caller resubmits the remainder (and whatever was linked after it,
	// which completed with -ECANCELED).
	ErrShortWrite = errors.New("uring: short write")
	// ErrUnaligned: a direct I/O buffer address, length or file offset is
	// not a multiple of BlockSize.
	ErrUnaligned = errors.New("uring: not aligned for direct I/O")
	// ErrRegisterRefused: IORING_REGISTER_BUFFERS was refused with ENOMEM or
	// EPERM, usually RLIMIT_MEMLOCK. Write with unregistered buffers
	// (OpWrite) instead and say so in the log.
	ErrRegisterRefused = errors.New("uring: buffer registration refused")
)

// CompletionError is a failed completion: the CQE's negative res as an
// errno. errors.Is(err, unix.ECANCELED) tells a request cancelled because an
// earlier request in its link chain failed.
type CompletionError struct {
	Errno syscall.Errno
}

func (e *CompletionError) Error() string {
	name := unix.ErrnoName(e.Errno)
	if name == "" {
		name = fmt.Sprintf("errno %d", int(e.Errno))
	}
	return "uring: completion failed: " + name + " (" + e.Errno.Error() + ")"
}

func (e *CompletionError) Unwrap() error { return e.Errno }

// Canceled reports whether the request was cancelled because an earlier
// request of its link chain failed or was short.
func (e *CompletionError) Canceled() bool { return e.Errno == unix.ECANCELED }

// ResultError maps a CQE result to an error: nil when res >= 0, a
// *CompletionError otherwise.
func ResultError(res int32) error {
	if res >= 0 {
		return nil
	}
	return &CompletionError{Errno: syscall.Errno(-res)}
}

// ShortWriteError is a write that moved fewer bytes than asked.
type ShortWriteError struct {
	Written, Want int
}

func (e *ShortWriteError) Error() string {
	return fmt.Sprintf("uring: short write: %d of %d bytes", e.Written, e.Want)
}

// Is makes errors.Is(err, ErrShortWrite) true.
func (e *ShortWriteError) Is(target error) bool { return target == ErrShortWrite }

// WriteResult interprets the completion of a write of want bytes: the bytes
// written and nil, a *CompletionError, or a *ShortWriteError together with
// the bytes that did get written (the caller resubmits from there).
func WriteResult(res int32, want int) (int, error) {
	if res < 0 {
		return 0, ResultError(res)
	}
	if int(res) < want {
		return int(res), &ShortWriteError{Written: int(res), Want: want}
	}
	return int(res), nil
}

// CheckDirectIO returns an error wrapping ErrUnaligned unless b's address,
// its length and off are all multiples of BlockSize. The ring itself does not
// know whether a descriptor was opened with O_DIRECT, so the WAL calls this
// before every direct write: the kernel's answer would be a bare EINVAL.
func CheckDirectIO(b []byte, off int64) error {
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if addr%BlockSize != 0 || len(b)%BlockSize != 0 || off%BlockSize != 0 {
		return fmt.Errorf("%w: address %#x, length %d, offset %d (need multiples of %d)",
			ErrUnaligned, addr, len(b), off, BlockSize)
	}
	return nil
}

// bufAddr is the address of b's first byte, 0 for an empty b.
func bufAddr(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

func checkLen(n int) uint32 {
	if n < 0 || n > math.MaxUint32 {
		panic(fmt.Sprintf("uring: length %d does not fit an SQE", n))
	}
	return uint32(n)
}

func (e *SQE) prepRW(op uint8, fd int, addr uint64, n uint32, off uint64) {
	e.opcode = op
	e.fd = int32(fd)
	e.addr = addr
	e.len = n
	e.off = off
}

// PrepNop prepares a no-op; it completes with res 0.
func (e *SQE) PrepNop() { e.opcode = OpNop; e.fd = -1 }

// PrepWrite prepares pwrite(fd, b, off). b must be off-heap (AlignedBuffers)
// or pinned until the completion is reaped; see the GC rules above.
func (e *SQE) PrepWrite(fd int, b []byte, off uint64) {
	e.prepRW(OpWrite, fd, bufAddr(b), checkLen(len(b)), off)
}

// PrepRead prepares pread(fd, b, off). b follows PrepWrite's rules.
func (e *SQE) PrepRead(fd int, b []byte, off uint64) {
	e.prepRW(OpRead, fd, bufAddr(b), checkLen(len(b)), off)
}

// PrepWritev prepares pwritev(fd, iov, off). iov and the memory its entries
// point to must be off-heap (Iovecs, AlignedBuffers) or pinned until the
// completion is reaped.
func (e *SQE) PrepWritev(fd int, iov []unix.Iovec, off uint64) {
	var addr uint64
	if len(iov) > 0 {
		addr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(iov))))
	}
	e.prepRW(OpWritev, fd, addr, checkLen(len(iov)), off)
}

// PrepWriteFixed prepares a write from registered buffer bufIndex; b must lie
// inside that buffer (AlignedBuffers.Slot(bufIndex)[:n]), or the completion
// is -EFAULT.
func (e *SQE) PrepWriteFixed(fd int, b []byte, off uint64, bufIndex uint16) {
	e.prepRW(OpWriteFixed, fd, bufAddr(b), checkLen(len(b)), off)
	e.bufIndex = bufIndex
}

// PrepFsync prepares fsync(fd), or fdatasync(fd) when datasync is set.
func (e *SQE) PrepFsync(fd int, datasync bool) {
	e.prepRW(OpFsync, fd, 0, 0, 0)
	if datasync {
		e.opFlags = FsyncDatasync
	}
}

// PrepFallocate prepares fallocate(fd, mode, off, length).
func (e *SQE) PrepFallocate(fd int, mode uint32, off, length uint64) {
	// The kernel reads the length from addr and the mode from len.
	e.prepRW(OpFallocate, fd, length, mode, off)
}

// SetRWFlags sets the RWF_* flags of a read or write (the rw_flags field
// preadv2/pwritev2 take), e.g. unix.RWF_DSYNC: the write completes only
// once its data is durable, as if fdatasync followed it.
func (e *SQE) SetRWFlags(f uint32) { e.opFlags = f }

// SetUserData sets the value the completion carries back: the caller's slot
// index, never a pointer.
func (e *SQE) SetUserData(u uint64) { e.userData = u }

// SetLink links this SQE to the next one (SQEIOLink).
func (e *SQE) SetLink() { e.flags |= SQEIOLink }

// SetFlags ORs IOSQE flags into the SQE.
func (e *SQE) SetFlags(f uint8) { e.flags |= f }

// CQE is a completion copied out of the CQ ring.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Err is ResultError(c.Res).
func (c CQE) Err() error { return ResultError(c.Res) }
