package perf

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// RawSync is the disk's floor for a lone durable write: one 4 KiB pwrite + fdatasync at queue
// depth 1 into a preallocated, zero-filled file (so no sync has to commit file-system metadata),
// the way ../shared/PERF.md measures it. A lone acks=all produce cannot beat it. The bench
// measures half the samples just before the lone runs and half just after them: this disk's
// sync time drifts by half within minutes, more than the differences the figure is used for.
type RawSync struct {
	Samples     int     `json:"samples"`
	P50Us       float64 `json:"p50_us"`
	P99Us       float64 `json:"p99_us"`
	BeforeP50Us float64 `json:"before_p50_us,omitempty"` // the half measured before the lone runs
	AfterP50Us  float64 `json:"after_p50_us,omitempty"`  // and after them
}

// RawSyncAround is RawSync over samples taken in two halves, before and after, each sorted.
func RawSyncAround(before, after []time.Duration) RawSync {
	all := append(append([]time.Duration(nil), before...), after...)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := rawSyncOf(all)
	r.BeforeP50Us, r.AfterP50Us = us(before[len(before)/2]), us(after[len(after)/2])
	return r
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// rawSyncOf is the figure of sorted samples.
func rawSyncOf(lats []time.Duration) RawSync {
	n := len(lats)
	return RawSync{Samples: n, P50Us: us(lats[n/2]), P99Us: us(lats[n*99/100])}
}

// rawSyncSamples runs n write+fdatasync pairs in a file under dir and returns their latencies,
// sorted.
func rawSyncSamples(dir string, n int) ([]time.Duration, error) {
	const fileBytes = 16 << 20
	const block = 4096
	path := filepath.Join(dir, "raw-sync-probe")
	defer os.Remove(path)
	fd, err := openZeroFilled(path, fileBytes, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, block)
	lats := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := unix.Pwrite(fd, buf, int64(i*block)%fileBytes); err != nil {
			return nil, fmt.Errorf("pwrite: %w", err)
		}
		if err := unix.Fdatasync(fd); err != nil {
			return nil, fmt.Errorf("fdatasync: %w", err)
		}
		lats = append(lats, time.Since(t0))
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	return lats, nil
}

// openZeroFilled writes a file of size zero bytes at path, opens it read-write with the extra
// open flags and syncs it, so that the writes timed after it overwrite allocated blocks and no
// sync of theirs commits file-system metadata, and the zero-fill is charged to none of them.
func openZeroFilled(path string, size int, flags int) (int, error) {
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		return -1, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Fdatasync(fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
