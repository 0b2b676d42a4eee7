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
// the way ../shared/PERF.md measures it. A lone acks=all produce cannot beat it.
type RawSync struct {
	Samples int     `json:"samples"`
	P50Us   float64 `json:"p50_us"`
	P99Us   float64 `json:"p99_us"`
}

// MeasureRawSync runs n write+fdatasync pairs in a file under dir and returns their latency.
func MeasureRawSync(dir string, n int) (RawSync, error) {
	const fileBytes = 16 << 20
	const block = 4096
	path := filepath.Join(dir, "raw-sync-probe")
	defer os.Remove(path)
	if err := os.WriteFile(path, make([]byte, fileBytes), 0o644); err != nil {
		return RawSync{}, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return RawSync{}, err
	}
	defer unix.Close(fd)
	if err := unix.Fdatasync(fd); err != nil { // the zero-fill itself must not be charged to the first sample
		return RawSync{}, err
	}
	buf := make([]byte, block)
	lats := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := unix.Pwrite(fd, buf, int64(i*block)%fileBytes); err != nil {
			return RawSync{}, fmt.Errorf("pwrite: %w", err)
		}
		if err := unix.Fdatasync(fd); err != nil {
			return RawSync{}, fmt.Errorf("fdatasync: %w", err)
		}
		lats = append(lats, time.Since(t0))
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return RawSync{Samples: n, P50Us: us(lats[n/2]), P99Us: us(lats[n*99/100])}, nil
}
