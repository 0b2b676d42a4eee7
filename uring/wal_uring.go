package uring

import (
	"errors"
	"fmt"
	"log/slog"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uringDevice writes a cycle as one WRITE (WRITE_FIXED from the registered
// staging buffer) linked to one FSYNC(DATASYNC), on a descriptor opened with
// O_DIRECT when the file system accepts it.
type uringDevice struct {
	ring   *Ring
	direct bool
	fd     int
	fixed  *AlignedBuffers // registered staging buffer, nil when not registered
	log    *slog.Logger

	// shortOnce (tests) makes the next write ask the kernel for half the
	// bytes, as a short write would leave them.
	shortOnce bool
	resubmits int
}

func newUringDevice(dir string, log *slog.Logger) (*uringDevice, error) {
	direct, err := DirectIOSupported(dir)
	if err != nil {
		return nil, err
	}
	if !direct {
		log.Warn("uring: the wal directory refuses O_DIRECT; the wal writes through the page cache and relies on fdatasync alone", "dir", dir)
	}
	r, err := NewRing(8)
	if err != nil {
		return nil, err
	}
	return &uringDevice{ring: r, direct: direct, fd: -1, log: log}, nil
}

func (d *uringDevice) name() string { return "uring" }

// register tries to register the staging buffer for WRITE_FIXED.
func (d *uringDevice) register(b *AlignedBuffers) {
	if err := b.Register(d.ring); err != nil {
		if errors.Is(err, ErrRegisterRefused) {
			d.log.Warn("uring: wal buffer registration refused, using unregistered writes", "err", err)
		} else {
			d.log.Warn("uring: wal buffer registration failed, using unregistered writes", "err", err)
		}
		return
	}
	d.fixed = b
}

func (d *uringDevice) use(_ File, path string) error {
	flags := unix.O_RDWR | unix.O_CLOEXEC
	if d.direct {
		flags |= unix.O_DIRECT
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		return fmt.Errorf("uring: wal: open %s: %w", path, err)
	}
	if d.fd >= 0 {
		unix.Close(d.fd)
	}
	d.fd = fd
	return nil
}

// writeSync writes buf at off and fdatasyncs, resubmitting the remainder
// (and the sync the short write cancelled) until all of buf is durable.
func (d *uringDevice) writeSync(buf []byte, off int64) error {
	if d.direct {
		if err := CheckDirectIO(buf, off); err != nil {
			return err
		}
	}
	done := 0
	for {
		p := buf[done:]
		if d.shortOnce && len(p) >= 2*BlockSize {
			d.shortOnce = false
			p = p[:len(p)/2&^(BlockSize-1)]
		}
		if err := d.prepChain(p, off+int64(done)); err != nil {
			return err
		}
		var wres, sres int32
		if err := d.wait(2, func(u uint64, res int32) {
			if u == 0 {
				wres = res
			} else {
				sres = res
			}
		}); err != nil {
			return err
		}
		n, werr := WriteResult(wres, len(buf)-done)
		if werr != nil && !errors.Is(werr, ErrShortWrite) {
			return werr
		}
		done += n
		if werr != nil {
			if n == 0 {
				return werr
			}
			d.resubmits++
			continue // the linked sync completed with -ECANCELED
		}
		if sres < 0 {
			return ResultError(sres)
		}
		return nil
	}
}

func (d *uringDevice) prepChain(p []byte, off int64) error {
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
		if _, err := d.ring.Submit(want); err != nil && !errors.Is(err, ErrRingBusy) {
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
