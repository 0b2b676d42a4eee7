//go:build linux

package uring

import (
	"fmt"
	"sync"
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

// BenchmarkRingWriteDsync measures the same durable 4 KiB overwrite as
// BenchmarkRingWriteFsync, made durable by RWF_DSYNC on the write itself (one
// operation instead of a write → fdatasync chain), through the ring and
// through pwritev2(2); and, with several lanes (each its own ring, writing
// its own blocks of the one file) how many durable writes the device
// completes at once.
func BenchmarkRingWriteDsync(b *testing.B) {
	const blocks = 256
	setup := func(b *testing.B, lanes int) (int, *AlignedBuffers) {
		fd, _ := openTestFile(b, true)
		bufs := newTestBuffers(b, lanes, BlockSize)
		for l := 0; l < lanes; l++ {
			fill(bufs.Slot(l), byte(l))
		}
		for i := 0; i < blocks*lanes; i++ {
			if _, err := unix.Pwrite(fd, bufs.Slot(0), int64(i*BlockSize)); err != nil {
				b.Fatal(err)
			}
		}
		if err := unix.Fdatasync(fd); err != nil {
			b.Fatal(err)
		}
		return fd, bufs
	}
	ringLane := func(b *testing.B, fd int, bufs *AlignedBuffers, lane, n int, dsync bool) {
		r, err := NewRing(8)
		if err != nil {
			b.Error(err)
			return
		}
		defer r.Close()
		for i := 0; i < n; i++ {
			off := uint64((lane*blocks + i%blocks) * BlockSize)
			e, err := r.GetSQE()
			if err != nil {
				b.Error(err)
				return
			}
			e.PrepWrite(fd, bufs.Slot(lane), off)
			want := uint32(1)
			if dsync {
				e.SetRWFlags(unix.RWF_DSYNC)
			} else {
				e.SetLink()
				if e, err = r.GetSQE(); err != nil {
					b.Error(err)
					return
				}
				e.PrepFsync(fd, true)
				want = 2
			}
			if _, err := r.Submit(want); err != nil {
				b.Error(err)
				return
			}
			var failed error
			got := uint32(0)
			for got < want {
				got += uint32(r.Reap(func(u uint64, res int32, _ uint32) {
					if err := ResultError(res); err != nil && failed == nil {
						failed = err
					}
				}))
				if got < want {
					if _, err := r.Submit(want - got); err != nil {
						b.Error(err)
						return
					}
				}
			}
			if failed != nil {
				b.Error(failed)
				return
			}
		}
	}
	for _, lanes := range []int{1, 2, 4} {
		for _, dsync := range []bool{false, true} {
			name := fmt.Sprintf("ring-lanes%d-fsync", lanes)
			if dsync {
				name = fmt.Sprintf("ring-lanes%d-dsync", lanes)
			}
			b.Run(name, func(b *testing.B) {
				fd, bufs := setup(b, lanes)
				b.SetBytes(BlockSize)
				b.ResetTimer()
				var wg sync.WaitGroup
				for l := 0; l < lanes; l++ {
					wg.Add(1)
					go func(l int) {
						defer wg.Done()
						ringLane(b, fd, bufs, l, (b.N+lanes-1)/lanes, dsync)
					}(l)
				}
				wg.Wait()
			})
		}
	}
	b.Run("pwritev2-dsync", func(b *testing.B) {
		fd, bufs := setup(b, 1)
		iov := [][]byte{bufs.Slot(0)}
		b.SetBytes(BlockSize)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := unix.Pwritev2(fd, iov, int64(i%blocks*BlockSize), unix.RWF_DSYNC); err != nil {
				b.Fatal(err)
			}
		}
	})
}
