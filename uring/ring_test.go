//go:build linux

package uring

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// newTestRing skips only when the kernel refuses io_uring itself.
func newTestRing(t testing.TB, entries uint32) *Ring {
	t.Helper()
	r, err := NewRing(entries)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("io_uring_setup refused (ENOSYS: no io_uring in this kernel, or EPERM: seccomp such as "+
			"Docker's default profile, or kernel.io_uring_disabled): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func newTestBuffers(t testing.TB, count, size int) *AlignedBuffers {
	t.Helper()
	b, err := NewAlignedBuffers(count, size)
	if err != nil {
		t.Fatal(err)
	}
	// Registered t.Cleanup runs after the ring's (LIFO when created later),
	// so buffers outlive the ring.
	t.Cleanup(func() { b.Close() })
	return b
}

// openTestFile opens a new file in t.TempDir(), with O_DIRECT when direct is
// set (skipping when the file system refuses O_DIRECT).
func openTestFile(t testing.TB, direct bool) (int, string) {
	t.Helper()
	dir := t.TempDir()
	flags := unix.O_CREAT | unix.O_RDWR | unix.O_CLOEXEC
	if direct {
		ok, err := DirectIOSupported(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Skipf("file system of %s refuses O_DIRECT", dir)
		}
		flags |= unix.O_DIRECT
	}
	name := filepath.Join(dir, "f")
	fd, err := unix.Open(name, flags, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, name
}

func getSQE(t testing.TB, r *Ring) *SQE {
	t.Helper()
	e, err := r.GetSQE()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// submitAndReap submits what is queued, waits for n completions and returns
// them in arrival order.
func submitAndReap(t testing.TB, r *Ring, n int) []CQE {
	t.Helper()
	var got []CQE
	for len(got) < n {
		if _, err := r.Submit(1); err != nil {
			t.Fatal(err)
		}
		r.Reap(func(u uint64, res int32, flags uint32) {
			got = append(got, CQE{UserData: u, Res: res, Flags: flags})
		})
	}
	if len(got) != n {
		t.Fatalf("got %d completions, want %d: %+v", len(got), n, got)
	}
	return got
}

func fill(b []byte, seed byte) {
	for i := range b {
		b[i] = seed + byte(i*7)
	}
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRingSetupAndProbe(t *testing.T) {
	r := newTestRing(t, 8)
	t.Logf("kernel features %#x: %s", r.Features(), FeatureString(r.Features()))
	t.Logf("SQ %d entries, CQ %d entries, last opcode %d", r.SQEntries(), r.CQEntries(), r.Probe().LastOp())
	if r.SQEntries() != 8 || r.CQEntries() != 16 {
		t.Errorf("entries SQ %d CQ %d, want 8/16", r.SQEntries(), r.CQEntries())
	}
	for _, op := range []uint8{OpNop, OpWrite, OpWritev, OpWriteFixed, OpFsync, OpFallocate, OpRead} {
		if !r.Probe().Supported(op) {
			t.Errorf("kernel lacks %s", OpName(op))
		}
	}
	if _, err := NewRing(0); err == nil {
		t.Error("NewRing(0) succeeded")
	}
}

func TestRingNop(t *testing.T) {
	r := newTestRing(t, 4)
	e := getSQE(t, r)
	e.PrepNop()
	e.SetUserData(42)
	c, err := r.WaitCQE()
	if err != nil {
		t.Fatal(err)
	}
	if c.UserData != 42 || c.Res != 0 || r.InFlight() != 0 {
		t.Fatalf("nop completion %+v, in flight %d", c, r.InFlight())
	}
}

func TestRingWriteAndRead(t *testing.T) {
	r := newTestRing(t, 4)
	bufs := newTestBuffers(t, 2, BlockSize)
	fd, name := openTestFile(t, true)
	fill(bufs.Slot(0), 1)
	if err := CheckDirectIO(bufs.Slot(0), BlockSize); err != nil {
		t.Fatal(err)
	}
	e := getSQE(t, r)
	e.PrepWrite(fd, bufs.Slot(0), BlockSize)
	e.SetUserData(1)
	c := submitAndReap(t, r, 1)[0]
	if n, err := WriteResult(c.Res, BlockSize); err != nil || n != BlockSize || c.UserData != 1 {
		t.Fatalf("write completion %+v: %v", c, err)
	}
	data := readFile(t, name)
	if len(data) != 2*BlockSize || !bytes.Equal(data[BlockSize:], bufs.Slot(0)) {
		t.Fatalf("file holds %d bytes, not what was written", len(data))
	}

	e = getSQE(t, r)
	e.PrepRead(fd, bufs.Slot(1), BlockSize)
	c = submitAndReap(t, r, 1)[0]
	if c.Res != BlockSize || !bytes.Equal(bufs.Slot(1), bufs.Slot(0)) {
		t.Fatalf("read back %+v differs", c)
	}
}

func TestRingWritev(t *testing.T) {
	r := newTestRing(t, 4)
	bufs := newTestBuffers(t, 3, BlockSize)
	iovs, err := NewIovecs(2, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer iovs.Close()
	fd, name := openTestFile(t, true)
	iov := iovs.Slot(1)[:3]
	var want []byte
	for i := range iov {
		fill(bufs.Slot(i), byte(10*i))
		iov[i].Base = &bufs.Slot(i)[0]
		iov[i].SetLen(BlockSize)
		want = append(want, bufs.Slot(i)...)
	}
	e := getSQE(t, r)
	e.PrepWritev(fd, iov, 0)
	e.SetUserData(1)
	c := submitAndReap(t, r, 1)[0]
	if _, err := WriteResult(c.Res, 3*BlockSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, name), want) {
		t.Fatal("writev content differs")
	}
}

func TestRingWriteFixed(t *testing.T) {
	r := newTestRing(t, 4)
	bufs := newTestBuffers(t, 4, 2*BlockSize)
	if err := bufs.Register(r); err != nil {
		if errors.Is(err, ErrRegisterRefused) {
			t.Skipf("registration refused: %v", err)
		}
		t.Fatal(err)
	}
	if err := bufs.Register(r); err == nil {
		t.Fatal("second registration succeeded")
	}
	fd, name := openTestFile(t, true)
	fill(bufs.Slot(2), 3)
	e := getSQE(t, r)
	bufs.PrepWriteSlot(e, fd, 2, 2*BlockSize, 0)
	if e.opcode != OpWriteFixed || e.bufIndex != 2 {
		t.Fatalf("PrepWriteSlot on registered buffers made %s index %d", OpName(e.opcode), e.bufIndex)
	}
	e.SetUserData(2)

	// A fixed write whose address is outside its registered buffer fails.
	e = getSQE(t, r)
	e.PrepWriteFixed(fd, bufs.Slot(1), 0, 0)
	e.SetUserData(3)

	for _, c := range submitAndReap(t, r, 2) {
		switch c.UserData {
		case 2:
			if _, err := WriteResult(c.Res, 2*BlockSize); err != nil {
				t.Fatal(err)
			}
		case 3:
			if !errors.Is(c.Err(), unix.EFAULT) {
				t.Fatalf("fixed write outside its buffer: %v, want EFAULT", c.Err())
			}
		}
	}
	if !bytes.Equal(readFile(t, name), bufs.Slot(2)) {
		t.Fatal("write_fixed content differs")
	}
	if err := bufs.Unregister(); err != nil {
		t.Fatal(err)
	}
	e = getSQE(t, r)
	bufs.PrepWriteSlot(e, fd, 2, BlockSize, 0)
	if e.opcode != OpWrite {
		t.Fatalf("PrepWriteSlot on unregistered buffers made %s", OpName(e.opcode))
	}
	if c := submitAndReap(t, r, 1)[0]; c.Res != BlockSize {
		t.Fatalf("fallback write: %+v", c)
	}
}

// TestRegisterRefused lowers RLIMIT_MEMLOCK to provoke the refusal. A ring
// created by a thread with CAP_IPC_LOCK is exempt from the limit, so when
// this thread has the capability the test drops it from its effective set
// (capabilities are per thread) around NewRing and Register, and raises it
// again afterwards.
func TestRegisterRefused(t *testing.T) {
	runtime.LockOSThread()
	restored := true
	defer func() {
		if restored {
			runtime.UnlockOSThread()
		} // else the thread dies with this goroutine
	}()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	const ipcLock = uint32(1) << unix.CAP_IPC_LOCK
	if caps[0].Effective&ipcLock != 0 {
		dropped := caps
		dropped[0].Effective &^= ipcLock
		if err := unix.Capset(&hdr, &dropped[0]); err != nil {
			t.Skipf("cannot drop CAP_IPC_LOCK from this thread: %v", err)
		}
		restored = false
		defer func() {
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			if err := unix.Capset(&hdr, &caps[0]); err != nil {
				t.Errorf("restore capabilities: %v", err)
				return
			}
			restored = true
		}()
	}
	// The ring's own memory may count against the limit too: create it first.
	r := newTestRing(t, 4)
	bufs := newTestBuffers(t, 4, 64*BlockSize)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
		t.Fatal(err)
	}
	low := unix.Rlimit{Cur: BlockSize, Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &low); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old)
	err := bufs.Register(r)
	if err == nil {
		t.Skip("registration ignored a 4 KiB RLIMIT_MEMLOCK; refusal path not exercised")
	}
	if !errors.Is(err, ErrRegisterRefused) || !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("Register under a low RLIMIT_MEMLOCK: %v", err)
	}
	t.Logf("refused as expected: %v", err)
	if bufs.Registered() {
		t.Fatal("refused buffers report registered")
	}
	// The fallback: the same buffers through plain writes.
	fd, _ := openTestFile(t, true)
	e := getSQE(t, r)
	bufs.PrepWriteSlot(e, fd, 1, BlockSize, 0)
	if e.opcode != OpWrite {
		t.Fatalf("fallback prepared %s", OpName(e.opcode))
	}
	if c := submitAndReap(t, r, 1)[0]; c.Res != BlockSize {
		t.Fatalf("fallback write: %v", c.Err())
	}
}

func TestRingFsyncAndFallocate(t *testing.T) {
	r := newTestRing(t, 8)
	fd, name := openTestFile(t, true)

	e := getSQE(t, r)
	e.PrepFallocate(fd, 0, 0, 1<<20)
	e.SetUserData(1)
	e = getSQE(t, r)
	e.PrepFallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 1<<20, 1<<20)
	e.SetUserData(2)
	e = getSQE(t, r)
	e.PrepFsync(fd, true)
	e.SetUserData(3)
	e = getSQE(t, r)
	e.PrepFsync(fd, false)
	e.SetUserData(4)
	e = getSQE(t, r)
	e.PrepFsync(-1, true)
	e.SetUserData(5)
	for _, c := range submitAndReap(t, r, 5) {
		if c.UserData == 5 {
			if !errors.Is(c.Err(), unix.EBADF) {
				t.Errorf("fsync of a bad fd: %v, want EBADF", c.Err())
			}
			continue
		}
		if c.Res != 0 {
			t.Errorf("op %d: %v", c.UserData, c.Err())
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 1<<20 || st.Blocks*512 < 2<<20 {
		t.Fatalf("after fallocate size %d, %d bytes allocated; want 1 MiB, ≥ 2 MiB", st.Size, st.Blocks*512)
	}
}

// TestRingLinkedChain: write → fdatasync with IOSQE_IO_LINK; when the write
// fails the sync completes with -ECANCELED.
func TestRingLinkedChain(t *testing.T) {
	r := newTestRing(t, 8)
	bufs := newTestBuffers(t, 2, 2*BlockSize)
	fd, name := openTestFile(t, true)
	fill(bufs.Slot(0), 5)

	chain := func(fd int, b []byte, off uint64) (write, sync CQE) {
		t.Helper()
		e := getSQE(t, r)
		e.PrepWrite(fd, b, off)
		e.SetLink()
		e.SetUserData(0)
		e = getSQE(t, r)
		e.PrepFsync(fd, true)
		e.SetUserData(1)
		cs := submitAndReap(t, r, 2)
		if cs[0].UserData != 0 || cs[1].UserData != 1 {
			t.Fatalf("linked completions out of chain order: %+v", cs)
		}
		return cs[0], cs[1]
	}

	w, s := chain(fd, bufs.Slot(0)[:BlockSize], 0)
	if w.Res != BlockSize || s.Res != 0 {
		t.Fatalf("good chain: write %v, sync %v", w.Err(), s.Err())
	}

	// Unaligned O_DIRECT write: EINVAL, and the sync is cancelled.
	w, s = chain(fd, bufs.Slot(0)[1:BlockSize+1], BlockSize)
	if !errors.Is(w.Err(), unix.EINVAL) {
		t.Errorf("unaligned direct write: %v, want EINVAL", w.Err())
	}
	var ce *CompletionError
	if !errors.As(s.Err(), &ce) || !ce.Canceled() {
		t.Errorf("sync after failed write: %v, want ECANCELED", s.Err())
	}
	if err := CheckDirectIO(bufs.Slot(0)[1:BlockSize+1], BlockSize); !errors.Is(err, ErrUnaligned) {
		t.Errorf("CheckDirectIO on an unaligned buffer: %v", err)
	}

	// Bad descriptor.
	w, s = chain(-1, bufs.Slot(0)[:BlockSize], 0)
	if !errors.Is(w.Err(), unix.EBADF) || !errors.Is(s.Err(), unix.ECANCELED) {
		t.Errorf("bad fd chain: write %v, sync %v", w.Err(), s.Err())
	}
	if n := len(readFile(t, name)); n != BlockSize {
		t.Errorf("file has %d bytes after failed chains, want %d", n, BlockSize)
	}
}

// TestRingShortWrite provokes a short write with RLIMIT_FSIZE (the kernel
// truncates a write that crosses the limit), checks that it breaks the link
// chain, and resubmits the remainder once the limit is lifted. The Go runtime
// ignores SIGXFSZ, which the kernel sends only for writes at the limit.
func TestRingShortWrite(t *testing.T) {
	r := newTestRing(t, 4)
	bufs := newTestBuffers(t, 1, 2*BlockSize)
	fd, name := openTestFile(t, false)
	fill(bufs.Slot(0), 9)

	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	low := unix.Rlimit{Cur: BlockSize, Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &low); err != nil {
		t.Fatal(err)
	}
	e := getSQE(t, r)
	e.PrepWrite(fd, bufs.Slot(0), 0)
	e.SetLink()
	e.SetUserData(0)
	e = getSQE(t, r)
	e.PrepFsync(fd, true)
	e.SetUserData(1)
	cs := submitAndReap(t, r, 2)
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	n, err := WriteResult(cs[0].Res, 2*BlockSize)
	var sw *ShortWriteError
	if !errors.As(err, &sw) || n != BlockSize || sw.Written != BlockSize || sw.Want != 2*BlockSize {
		t.Fatalf("write across RLIMIT_FSIZE: n=%d err=%v, want a short write of %d", n, err, BlockSize)
	}
	if !errors.Is(cs[1].Err(), unix.ECANCELED) {
		t.Fatalf("sync linked after a short write: %v, want ECANCELED", cs[1].Err())
	}

	// Resubmit the remainder, and the sync.
	e = getSQE(t, r)
	e.PrepWrite(fd, bufs.Slot(0)[n:], uint64(n))
	e.SetLink()
	e = getSQE(t, r)
	e.PrepFsync(fd, true)
	cs = submitAndReap(t, r, 2)
	if cs[0].Res != BlockSize || cs[1].Res != 0 {
		t.Fatalf("remainder: write %d, sync %v", cs[0].Res, cs[1].Err())
	}
	if !bytes.Equal(readFile(t, name), bufs.Slot(0)) {
		t.Fatal("content after resubmission differs")
	}
}

func TestRingFullThenDrain(t *testing.T) {
	r := newTestRing(t, 4) // SQ 4, CQ 8
	for i := 0; i < 4; i++ {
		getSQE(t, r).PrepNop()
	}
	if _, err := r.GetSQE(); !errors.Is(err, ErrRingFull) {
		t.Fatalf("5th SQE on a 4-entry SQ: %v, want ErrRingFull", err)
	}
	if n, err := r.Submit(0); n != 4 || err != nil {
		t.Fatalf("Submit = %d, %v", n, err)
	}
	for i := 0; i < 4; i++ {
		getSQE(t, r).PrepNop()
	}
	// 4 in flight + 4 queued fill the 8-entry CQ.
	if _, err := r.GetSQE(); !errors.Is(err, ErrRingFull) {
		t.Fatalf("SQE beyond CQ capacity: %v, want ErrRingFull", err)
	}
	if _, err := r.Submit(8); err != nil {
		t.Fatal(err)
	}
	if n := r.Reap(func(uint64, int32, uint32) {}); n != 8 {
		t.Fatalf("reaped %d, want 8", n)
	}
	getSQE(t, r).PrepNop()
	submitAndReap(t, r, 1)
	if r.Dropped() != 0 || r.Overflow() != 0 {
		t.Fatalf("dropped %d, overflow %d", r.Dropped(), r.Overflow())
	}
}

// TestRingManyOutOfOrder submits a mix of slow and fast operations and
// matches every completion to its request by user_data.
func TestRingManyOutOfOrder(t *testing.T) {
	const n = 48
	r := newTestRing(t, 64)
	bufs := newTestBuffers(t, n, BlockSize)
	fd, name := openTestFile(t, true)
	type want struct {
		res  int32
		seen bool
	}
	wants := make([]want, n)
	for i := 0; i < n; i++ {
		e := getSQE(t, r)
		switch {
		case i%8 == 7:
			e.PrepFsync(fd, true)
		case i%3 == 2:
			e.PrepNop()
		default:
			fill(bufs.Slot(i), byte(i))
			e.PrepWrite(fd, bufs.Slot(i), uint64(i*BlockSize))
			wants[i].res = BlockSize
		}
		e.SetUserData(uint64(i))
	}
	order := make([]uint64, 0, n)
	for _, c := range submitAndReap(t, r, n) {
		if c.UserData >= n || wants[c.UserData].seen {
			t.Fatalf("unexpected or repeated user_data %d", c.UserData)
		}
		wants[c.UserData].seen = true
		if c.Res != wants[c.UserData].res {
			t.Errorf("slot %d: res %d (%v), want %d", c.UserData, c.Res, c.Err(), wants[c.UserData].res)
		}
		order = append(order, c.UserData)
	}
	inOrder := true
	for i := range order {
		if order[i] != uint64(i) {
			inOrder = false
		}
	}
	t.Logf("completions arrived in submission order: %v", inOrder)
	data := readFile(t, name)
	for i := 0; i < n; i++ {
		if wants[i].res == BlockSize && !bytes.Equal(data[i*BlockSize:(i+1)*BlockSize], bufs.Slot(i)) {
			t.Errorf("block %d differs", i)
		}
	}
}

// TestRingSubmitErrors injects EINTR, EAGAIN and EBUSY into io_uring_enter.
func TestRingSubmitErrors(t *testing.T) {
	r := newTestRing(t, 4)
	var script []unix.Errno
	calls := 0
	r.enter = func(fd int, toSubmit, minComplete, flags uint32) (int, unix.Errno) {
		calls++
		if len(script) > 0 {
			errno := script[0]
			script = script[1:]
			return 0, errno
		}
		return sysEnter(fd, toSubmit, minComplete, flags)
	}

	getSQE(t, r).PrepNop()
	script = []unix.Errno{unix.EINTR, unix.EINTR}
	if n, err := r.Submit(1); n != 1 || err != nil || calls != 3 {
		t.Fatalf("Submit through two EINTRs = %d, %v after %d calls", n, err, calls)
	}
	r.Reap(func(uint64, int32, uint32) {})

	for _, errno := range []unix.Errno{unix.EBUSY, unix.EAGAIN} {
		getSQE(t, r).PrepNop()
		script = []unix.Errno{errno}
		n, err := r.Submit(0)
		if n != 0 || !errors.Is(err, ErrRingBusy) || !errors.Is(err, errno) {
			t.Fatalf("Submit on %s = %d, %v; want ErrRingBusy", unix.ErrnoName(errno), n, err)
		}
		if r.Queued() != 1 {
			t.Fatalf("queued %d after a busy Submit, want 1", r.Queued())
		}
		// The caller reaps (nothing here) and submits again.
		submitAndReap(t, r, 1)
	}

	if _, err := r.Submit(1); !errors.Is(err, ErrWaitTooMany) {
		t.Fatalf("Submit(1) with nothing in flight: %v, want ErrWaitTooMany", err)
	}
}

func TestRingCloseWaitsForInFlight(t *testing.T) {
	r, err := NewRing(4)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("io_uring_setup refused (ENOSYS/EPERM): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	bufs := newTestBuffers(t, 1, BlockSize)
	fd, _ := openTestFile(t, true)
	e := getSQE(t, r)
	e.PrepWrite(fd, bufs.Slot(0), 0)
	e = getSQE(t, r)
	e.PrepFsync(fd, true)
	if _, err := r.Submit(0); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r.InFlight() != 0 {
		t.Fatalf("%d in flight after Close", r.InFlight())
	}
	if _, err := r.GetSQE(); !errors.Is(err, ErrRingClosed) {
		t.Fatalf("GetSQE after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDirectIOSupported(t *testing.T) {
	ok, err := DirectIOSupported(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("O_DIRECT on the test dir: %v", ok)
	if _, err := os.Stat("/dev/shm"); err == nil {
		ok, err := DirectIOSupported("/dev/shm")
		t.Logf("O_DIRECT on /dev/shm (tmpfs): %v, %v", ok, err)
	}
	if _, err := DirectIOSupported(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("probe of a missing directory succeeded")
	}
}
