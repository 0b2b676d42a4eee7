package perf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// SyncLoad is the device traffic of a broker that makes its appends durable one group commit
// at a time, without the broker: Bytes-sized writes flagged RWF_DSYNC, one at a time, at most
// Rate a second, into a preallocated, zero-filled file (O_DIRECT where the file system takes
// it, else buffered writes each followed by fdatasync). Run beside an in-memory broker
// (kfake-peer --sync-load-dir) it measures what doing a durable broker's I/O costs the
// machine apart from anything the broker does with it: on a VM where every request to the
// disk exits to the host, that cost is not only the device's time (docs/benchmarks.md,
// 2026-12-03 14:00 entry).
type SyncLoad struct {
	Dir   string
	Bytes int     // per write; a multiple of 4 KiB
	Rate  float64 // writes per second; 0 or less: back to back
}

// SyncLoadStats is what a SyncLoad did.
type SyncLoadStats struct {
	Mode   string        // "direct+dsync" or "buffered+fdatasync"
	Writes int64         // durable writes completed
	Busy   time.Duration // time spent in them
	Loop   time.Duration // from the first write to the end
	Slow   int64         // writes that took over SlowWrite
}

// SlowWrite is the latency above which SyncLoadStats counts a write as stalled: ten times what
// a 16 KiB durable write takes on the slowest disk these benchmarks ran on.
const SlowWrite = 3 * time.Millisecond

func (s SyncLoadStats) String() string {
	mean := time.Duration(0)
	if s.Writes > 0 {
		mean = s.Busy / time.Duration(s.Writes)
	}
	return fmt.Sprintf("sync load (%s): %d writes, mean %v, %d over %v", s.Mode, s.Writes, mean.Round(time.Microsecond), s.Slow, SlowWrite)
}

const syncLoadFileBytes = 16 << 20

// Check reports a load that cannot run as asked.
func (s SyncLoad) Check() error {
	if s.Bytes <= 0 || s.Bytes%4096 != 0 || s.Bytes > syncLoadFileBytes {
		return fmt.Errorf("sync load: %d bytes per write: want a multiple of 4096 up to %d", s.Bytes, syncLoadFileBytes)
	}
	return nil
}

// Run writes until ctx ends and reports what it did; an error means the load could not run.
func (s SyncLoad) Run(ctx context.Context) (st SyncLoadStats, err error) {
	if err := s.Check(); err != nil {
		return SyncLoadStats{}, err
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return SyncLoadStats{}, err
	}
	path := filepath.Join(s.Dir, "sync-load")
	defer os.Remove(path)
	// Overwrites of allocated blocks, as the WAL's preallocated files.
	st.Mode = "direct+dsync"
	fd, err := openZeroFilled(path, syncLoadFileBytes, unix.O_DIRECT)
	if errors.Is(err, unix.EINVAL) {
		st.Mode = "buffered+fdatasync"
		fd, err = openZeroFilled(path, syncLoadFileBytes, 0)
	}
	if err != nil {
		return SyncLoadStats{}, err
	}
	defer unix.Close(fd)
	// Page-aligned, as O_DIRECT needs; not zeros, so the file shows what was written.
	buf, err := unix.Mmap(-1, 0, s.Bytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return SyncLoadStats{}, err
	}
	defer unix.Munmap(buf)
	for i := range buf {
		buf[i] = 0xa5
	}
	var interval time.Duration
	if s.Rate > 0 {
		interval = time.Duration(float64(time.Second) / s.Rate)
	}
	next := time.Now()
	defer func(start time.Time) { st.Loop = time.Since(start) }(next)
	off := int64(0)
	for ctx.Err() == nil {
		t0 := time.Now()
		if st.Mode == "direct+dsync" {
			_, err = unix.Pwritev2(fd, [][]byte{buf}, off, unix.RWF_DSYNC)
		} else if _, err = unix.Pwrite(fd, buf, off); err == nil {
			err = unix.Fdatasync(fd)
		}
		if err != nil {
			return st, fmt.Errorf("sync load: write at %d: %w", off, err)
		}
		d := time.Since(t0)
		st.Writes++
		st.Busy += d
		if d > SlowWrite {
			st.Slow++
		}
		off = (off + int64(s.Bytes)) % (syncLoadFileBytes / int64(s.Bytes) * int64(s.Bytes))
		if interval == 0 {
			continue
		}
		// A sleep overshoots by up to a millisecond under load; the writes after it catch up
		// back to back, so the rate holds on average. A stall of a second is not made up.
		next = next.Add(interval)
		if wait := time.Until(next); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		} else if wait < -time.Second {
			next = time.Now()
		}
	}
	return st, nil
}
