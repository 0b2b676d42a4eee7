//go:build linux

package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringtail/ringtail/uring"
	"golang.org/x/sys/unix"
)

// BenchmarkWAL measures acknowledged appends (durable: write + fdatasync)
// through both writers, by record size and number of concurrent appenders,
// each waiting for its append's completion before the next. Reports
// appends/s, p50/p99 commit latency and records per cycle.
func BenchmarkWAL(b *testing.B) {
	for _, mode := range walModes {
		for _, size := range []int{256, 4 << 10, 64 << 10} {
			for _, conc := range []int{1, 16, 128} {
				b.Run(fmt.Sprintf("%s/size=%d/appenders=%d", mode, size, conc), func(b *testing.B) {
					benchWAL(b, mode, size, conc)
				})
			}
		}
	}
}

func benchWAL(b *testing.B, mode string, size, conc int) {
	var w *Log
	var err error
	releasing := atomic.Bool{}
	opts := Options{Dir: b.TempDir(), IO: mode, Logger: quietLog(), NotifyBytes: 16 << 20}
	opts.Notify = func() {
		if releasing.CompareAndSwap(false, true) {
			go func() { w.Release(w.Committed()); releasing.Store(false) }()
		}
	}
	w, err = openWALMode(opts, Position{}, nil)
	if err != nil {
		b.Skip(err)
	}
	defer w.Close()
	data := make([]byte, size)
	lats := make([][]time.Duration, conc)
	var next atomic.Int64
	var wg sync.WaitGroup
	c0, r0 := w.Cycles(), w.Records()
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ch := make(chan error, 1)
			done := func(_ uint64, err error) { ch <- err }
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				w.Append(nil, data, done)
				if err := <-ch; err != nil {
					b.Error(err)
					return
				}
				lats[g] = append(lats[g], time.Since(t0))
			}
		}(g)
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/el.Seconds(), "appends/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(w.Records()-r0)/float64(w.Cycles()-c0), "records/cycle")
	}
}

// BenchmarkRawWriteSync4K is the floor a lone durable append is compared
// with: one 4 KiB pwrite + fdatasync at increasing offsets of a zero-filled
// (preallocated) file, queue depth 1, buffered and O_DIRECT; and, as
// "dsync", the WAL's own I/O without the WAL: one O_DIRECT pwritev2 flagged
// RWF_DSYNC, no fdatasync.
func BenchmarkRawWriteSync4K(b *testing.B) {
	for _, mode := range []string{"direct=false", "direct=true", "dsync"} {
		direct := mode != "direct=false"
		b.Run(mode, func(b *testing.B) {
			name := filepath.Join(b.TempDir(), "raw")
			const size = 64 << 20
			if err := os.WriteFile(name, make([]byte, size), 0o644); err != nil {
				b.Fatal(err)
			}
			flags := unix.O_RDWR | unix.O_CLOEXEC
			if direct {
				flags |= unix.O_DIRECT
			}
			fd, err := unix.Open(name, flags, 0)
			if err != nil {
				b.Skip(err)
			}
			defer unix.Close(fd)
			if err := unix.Fdatasync(fd); err != nil {
				b.Fatal(err)
			}
			bufs, err := uring.NewAlignedBuffers(1, uring.BlockSize)
			if err != nil {
				b.Fatal(err)
			}
			defer bufs.Close()
			buf := bufs.Slot(0)
			lats := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				at := int64(i*uring.BlockSize) % size
				if mode == "dsync" {
					if _, err := unix.Pwritev2(fd, [][]byte{buf}, at, unix.RWF_DSYNC); err != nil {
						b.Skip(err) // a kernel without RWF_DSYNC
					}
					lats = append(lats, time.Since(t0))
					continue
				}
				if _, err := unix.Pwrite(fd, buf, at); err != nil {
					b.Fatal(err)
				}
				if err := unix.Fdatasync(fd); err != nil {
					b.Fatal(err)
				}
				lats = append(lats, time.Since(t0))
			}
			b.StopTimer()
			sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
			b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
		})
	}
}
