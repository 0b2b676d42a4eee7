//go:build linux

package uring

import (
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkRingWriteFsync compares one 4 KiB write followed by fdatasync
// through the ring (a linked write → fdatasync chain, one io_uring_enter)
// with pwrite(2) + fdatasync(2). Both use the same O_DIRECT file (buffered
// when the file system refuses O_DIRECT), overwriting a written 1 MiB region
// so neither pays for extending the file.
func BenchmarkRingWriteFsync(b *testing.B) {
	const blocks = 256
	setup := func(b *testing.B) (int, *AlignedBuffers) {
		fd, _ := openTestFile(b, true)
		bufs := newTestBuffers(b, 1, BlockSize)
		fill(bufs.Slot(0), 1)
		for i := 0; i < blocks; i++ {
			if _, err := unix.Pwrite(fd, bufs.Slot(0), int64(i*BlockSize)); err != nil {
				b.Fatal(err)
			}
		}
		if err := unix.Fdatasync(fd); err != nil {
			b.Fatal(err)
		}
		return fd, bufs
	}

	b.Run("ring", func(b *testing.B) {
		fd, bufs := setup(b)
		r := newTestRing(b, 8)
		if err := bufs.Register(r); err != nil {
			b.Logf("unregistered writes: %v", err)
		}
		b.SetBytes(BlockSize)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			e, err := r.GetSQE()
			if err != nil {
				b.Fatal(err)
			}
			bufs.PrepWriteSlot(e, fd, 0, BlockSize, uint64(i%blocks*BlockSize))
			e.SetLink()
			e.SetUserData(0)
			if e, err = r.GetSQE(); err != nil {
				b.Fatal(err)
			}
			e.PrepFsync(fd, true)
			e.SetUserData(1)
			if _, err := r.Submit(2); err != nil {
				b.Fatal(err)
			}
			var failed error
			r.Reap(func(u uint64, res int32, _ uint32) {
				if err := ResultError(res); err != nil && failed == nil {
					failed = err
				}
			})
			if failed != nil {
				b.Fatal(failed)
			}
		}
	})

	b.Run("pwrite", func(b *testing.B) {
		fd, bufs := setup(b)
		b.SetBytes(BlockSize)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := unix.Pwrite(fd, bufs.Slot(0), int64(i%blocks*BlockSize)); err != nil {
				b.Fatal(err)
			}
			if err := unix.Fdatasync(fd); err != nil {
				b.Fatal(err)
			}
		}
	})
}
