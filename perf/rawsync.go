package perf

import (
	"encoding/binary"
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
	w, err := OpenRawSyncWriter(filepath.Join(dir, "raw-sync-probe"))
	if err != nil {
		return nil, err
	}
	defer w.Close()
	lats := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := w.Sync(); err != nil {
			return nil, err
		}
		lats = append(lats, time.Since(t0))
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	return lats, nil
}

// RawSyncWriter does the raw sync's operation on demand: each Sync writes the next 4 KiB of a
// preallocated, zero-filled file and fdatasyncs it. A block starts with the count of Syncs so
// far (little-endian uint64), so what was written can be checked. Not safe for concurrent use.
type RawSyncWriter struct {
	path  string
	fd    int
	buf   []byte
	syncs uint64
}

const (
	rawSyncFileBytes = 16 << 20
	rawSyncBlock     = 4096
)

// OpenRawSyncWriter creates the file at path (removed again by Close).
func OpenRawSyncWriter(path string) (*RawSyncWriter, error) {
	fd, err := openZeroFilled(path, rawSyncFileBytes, 0)
	if err != nil {
		return nil, err
	}
	return &RawSyncWriter{path: path, fd: fd, buf: make([]byte, rawSyncBlock)}, nil
}

// Sync writes one block and makes it durable.
func (w *RawSyncWriter) Sync() error {
	off := int64(w.syncs*rawSyncBlock) % rawSyncFileBytes
	w.syncs++
	binary.LittleEndian.PutUint64(w.buf, w.syncs)
	if _, err := unix.Pwrite(w.fd, w.buf, off); err != nil {
		return fmt.Errorf("pwrite: %w", err)
	}
	if err := unix.Fdatasync(w.fd); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	return nil
}

// Close closes and removes the file.
func (w *RawSyncWriter) Close() error {
	err := unix.Close(w.fd)
	if rerr := os.Remove(w.path); err == nil {
		err = rerr
	}
	return err
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
