package uring

import (
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestRingABI checks the hand-written structs against <linux/io_uring.h>
// (sizes and offsets taken from offsetof on the kernel header).
func TestRingABI(t *testing.T) {
	var p ioUringParams
	var s SQE
	var c cqe
	var ph probeHeader
	var po probeOp
	checks := []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(io_uring_params)", unsafe.Sizeof(p), 120},
		{"sizeof(io_sqring_offsets)", unsafe.Sizeof(p.sqOff), 40},
		{"sizeof(io_cqring_offsets)", unsafe.Sizeof(p.cqOff), 40},
		{"sizeof(io_uring_sqe)", unsafe.Sizeof(s), 64},
		{"sizeof(io_uring_cqe)", unsafe.Sizeof(c), 16},
		{"sizeof(io_uring_probe)", unsafe.Sizeof(ph), 16},
		{"sizeof(io_uring_probe_op)", unsafe.Sizeof(po), 8},
		{"params.features", unsafe.Offsetof(p.features), 20},
		{"params.wq_fd", unsafe.Offsetof(p.wqFd), 24},
		{"params.sq_off", unsafe.Offsetof(p.sqOff), 40},
		{"params.cq_off", unsafe.Offsetof(p.cqOff), 80},
		{"sq_off.array", unsafe.Offsetof(p.sqOff.array), 24},
		{"sq_off.user_addr", unsafe.Offsetof(p.sqOff.userAddr), 32},
		{"cq_off.overflow", unsafe.Offsetof(p.cqOff.overflow), 16},
		{"cq_off.cqes", unsafe.Offsetof(p.cqOff.cqes), 20},
		{"cq_off.flags", unsafe.Offsetof(p.cqOff.flags), 24},
		{"cq_off.user_addr", unsafe.Offsetof(p.cqOff.userAddr), 32},
		{"sqe.fd", unsafe.Offsetof(s.fd), 4},
		{"sqe.off", unsafe.Offsetof(s.off), 8},
		{"sqe.addr", unsafe.Offsetof(s.addr), 16},
		{"sqe.len", unsafe.Offsetof(s.len), 24},
		{"sqe.fsync_flags", unsafe.Offsetof(s.opFlags), 28},
		{"sqe.user_data", unsafe.Offsetof(s.userData), 32},
		{"sqe.buf_index", unsafe.Offsetof(s.bufIndex), 40},
		{"sqe.personality", unsafe.Offsetof(s.personality), 42},
		{"sqe.splice_fd_in", unsafe.Offsetof(s.spliceFdIn), 44},
		{"sqe.addr3", unsafe.Offsetof(s.addr3), 48},
		{"cqe.res", unsafe.Offsetof(c.res), 8},
		{"cqe.flags", unsafe.Offsetof(c.flags), 12},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestSQEPrep(t *testing.T) {
	var e SQE
	e.PrepFallocate(7, 1, 4096, 1<<20)
	if e.opcode != OpFallocate || e.fd != 7 || e.off != 4096 || e.addr != 1<<20 || e.len != 1 {
		t.Errorf("fallocate SQE = %+v", e)
	}
	e = SQE{}
	e.PrepFsync(3, true)
	e.SetLink()
	e.SetUserData(9)
	if e.opcode != OpFsync || e.opFlags != FsyncDatasync || e.flags != SQEIOLink || e.userData != 9 {
		t.Errorf("fsync SQE = %+v", e)
	}
	e = SQE{}
	e.PrepWrite(3, nil, 0)
	if e.addr != 0 || e.len != 0 {
		t.Errorf("empty write SQE = %+v", e)
	}
}

func TestResultErrors(t *testing.T) {
	if ResultError(0) != nil || ResultError(4096) != nil {
		t.Fatal("non-negative res must be nil")
	}
	err := ResultError(-int32(unix.ECANCELED))
	var ce *CompletionError
	if !errors.As(err, &ce) || !ce.Canceled() || !errors.Is(err, unix.ECANCELED) {
		t.Fatalf("ResultError(-ECANCELED) = %v", err)
	}
	if got := err.Error(); got != "uring: completion failed: ECANCELED (operation canceled)" {
		t.Errorf("message %q", got)
	}
	if n, err := WriteResult(4096, 8192); n != 4096 || !errors.Is(err, ErrShortWrite) {
		t.Errorf("WriteResult short = %d, %v", n, err)
	}
	if n, err := WriteResult(8192, 8192); n != 8192 || err != nil {
		t.Errorf("WriteResult full = %d, %v", n, err)
	}
	if _, err := WriteResult(-int32(unix.ENOSPC), 8192); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("WriteResult ENOSPC = %v", err)
	}
	if s := FeatureString(FeatSingleMmap | FeatNoDrop | 1<<30); s != "SINGLE_MMAP|NODROP|bit30" {
		t.Errorf("FeatureString = %q", s)
	}
}
