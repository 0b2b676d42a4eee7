package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"unsafe"

	"github.com/ringtail/ringtail/uring"
	"github.com/ringtail/ringtail/vfs"
	"golang.org/x/sys/unix"
)

// uringDevice writes a cycle as one WRITE (WRITE_FIXED from the registered
// staging buffer) flagged RWF_DSYNC, on a descriptor opened with O_DIRECT
// when the file system accepts it: the write completes once its data is
// durable, as pwritev2(RWF_DSYNC) would. That is one operation per cycle
// instead of a WRITE linked to an FSYNC(DATASYNC), which waits for the
// write's completion and then for an io-wq worker to run the fdatasync; on
// a busy 2-core machine the extra hand-off cost ~20% of the cycle's latency
// (make bench, docs/benchmarks.md). A kernel that refuses the flag on the
// first cycle (EINVAL, EOPNOTSUPP) gets the linked chain instead, said once
// in the log.
type uringDevice struct {
	ring   *uring.Ring
	direct bool
	fd     int
	fixed  *uring.AlignedBuffers // registered staging buffer, nil when not registered
	log    *slog.Logger

	// chain: make writes durable with a linked FSYNC(DATASYNC) instead of
	// RWF_DSYNC. dsyncProven: a RWF_DSYNC write has succeeded, so a later
	// EINVAL is a real error, not the kernel refusing the flag.
	chain       bool
	dsyncProven bool
	// dsyncFlags is RWF_DSYNC; tests set a flag no kernel knows, to see the
	// refusal fall back to the chain.
	dsyncFlags uint32

	// shortOnce (tests) makes the next write ask the kernel for half the
	// bytes, as a short write would leave them.
	shortOnce bool
	resubmits int
}

func newUringDevice(dir string, log *slog.Logger) (*uringDevice, error) {
	direct, err := uring.DirectIOSupported(dir)
	if err != nil {
		return nil, err
	}
	if !direct {
		log.Warn("wal: the wal directory refuses O_DIRECT; the wal writes through the page cache and relies on fdatasync alone", "dir", dir)
	}
	r, err := uring.NewRing(8)
	if err != nil {
		return nil, err
	}
	return &uringDevice{ring: r, direct: direct, fd: -1, log: log, chain: forceSyncChain, dsyncFlags: unix.RWF_DSYNC}, nil
}

func (d *uringDevice) name() string { return "uring" }

// register tries to register the staging buffer for WRITE_FIXED.
func (d *uringDevice) register(b *uring.AlignedBuffers) {
	if err := b.Register(d.ring); err != nil {
		if errors.Is(err, uring.ErrRegisterRefused) {
			d.log.Warn("wal: buffer registration refused, using unregistered writes", "err", err)
		} else {
			d.log.Warn("wal: buffer registration failed, using unregistered writes", "err", err)
		}
		return
	}
	d.fixed = b
}

func (d *uringDevice) use(_ vfs.File, path string) error {
	flags := unix.O_RDWR | unix.O_CLOEXEC
	if d.direct {
		flags |= unix.O_DIRECT
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", path, err)
	}
	if d.fd >= 0 {
		unix.Close(d.fd)
	}
	d.fd = fd
	return nil
}

// forceSyncChain (tests) makes new devices use the write → fdatasync chain,
// so both ways of syncing run the same tests.
var forceSyncChain bool

// writeSync writes buf at off and makes it durable, resubmitting the
// remainder of a short write (and, in chain mode, the sync it cancelled)
// until all of buf is.
func (d *uringDevice) writeSync(buf []byte, off int64) error {
	if d.direct {
		if err := uring.CheckDirectIO(buf, off); err != nil {
			return err
		}
	}
	done := 0
	for {
		p := buf[done:]
		if d.shortOnce && len(p) >= 2*uring.BlockSize {
			d.shortOnce = false
			p = p[:len(p)/2&^(uring.BlockSize-1)]
		}
		if err := d.prepWrite(p, off+int64(done)); err != nil {
			return err
		}
		ops := 1
		if d.chain {
			ops = 2
		}
		var wres, sres int32
		if err := d.wait(ops, func(u uint64, res int32) {
			if u == 0 {
				wres = res
			} else {
				sres = res
			}
		}); err != nil {
			return err
		}
		if !d.chain && !d.dsyncProven {
			if wres == -int32(unix.EINVAL) || wres == -int32(unix.EOPNOTSUPP) {
				d.log.Warn("wal: the kernel refuses RWF_DSYNC on io_uring writes; the wal links each write to an fdatasync instead",
					"err", uring.ResultError(wres))
				d.chain = true
				continue
			}
			if wres >= 0 {
				d.dsyncProven = true
			}
		}
		n, werr := uring.WriteResult(wres, len(buf)-done)
		if werr != nil && !errors.Is(werr, uring.ErrShortWrite) {
			return werr
		}
		done += n
		if werr != nil {
			if n == 0 {
				return werr
			}
			// RWF_DSYNC made the written part durable; in chain mode the
			// linked sync completed with -ECANCELED and is resubmitted
			// with the remainder.
			d.resubmits++
			continue
		}
		if sres < 0 {
			return uring.ResultError(sres)
		}
		return nil
	}
}

// prepWrite queues the write of p at off: flagged RWF_DSYNC, or linked to
// an FSYNC(DATASYNC) in chain mode. The write's user data is 0, the sync's 1.
func (d *uringDevice) prepWrite(p []byte, off int64) error {
	e, err := d.ring.GetSQE()
	if err != nil {
		return err
	}
	if d.fixed != nil && inside(p, d.fixed.Slot(0)) {
		e.PrepWriteFixed(d.fd, p, uint64(off), 0)
	} else {
		e.PrepWrite(d.fd, p, uint64(off))
	}
	e.SetUserData(0)
	if !d.chain {
		e.SetRWFlags(d.dsyncFlags)
		return nil
	}
	e.SetLink()
	e, err = d.ring.GetSQE()
	if err != nil {
		return err
	}
	e.PrepFsync(d.fd, true)
	e.SetUserData(1)
	return nil
}

// wait submits and reaps n completions, retrying EAGAIN/EBUSY after reaping.
func (d *uringDevice) wait(n int, fn func(uint64, int32)) error {
	got := 0
	for got < n {
		want := uint32(n - got)
		if _, err := d.ring.Submit(want); err != nil && !errors.Is(err, uring.ErrRingBusy) {
			return err
		}
		got += d.ring.Reap(func(u uint64, res int32, _ uint32) { fn(u, res) })
	}
	return nil
}

func inside(p, slot []byte) bool {
	if len(p) == 0 {
		return false
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	s := uintptr(unsafe.Pointer(unsafe.SliceData(slot)))
	return a >= s && a+uintptr(len(p)) <= s+uintptr(len(slot))
}

func (d *uringDevice) close() error {
	err := d.ring.Close()
	if d.fd >= 0 {
		if cerr := unix.Close(d.fd); cerr != nil && err == nil {
			err = cerr
		}
		d.fd = -1
	}
	return err
}
