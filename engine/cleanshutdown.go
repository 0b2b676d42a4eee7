package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/ringtail/ringtail/vfs"
)

// The clean-shutdown marker. Close, once its last checkpoint has synced
// every segment and recorded the WAL position after the last record, writes
// for every partition the active segment's index files (synced) and a
// producer snapshot at the log end, then, last, <data>/clean-shutdown: the
// checkpoint's position under its own magic ("RCLN"), written to a
// temporary file, synced and renamed. Open reads it and removes it, durably,
// before it writes anything else, so it vouches only for files as Close left
// them: a start after a clean stop loads every segment's index files and
// each partition's producer state from the snapshot at its log end, reads no
// batch headers beyond the index files' checks, and finds nothing in the
// WAL after the checkpoint; a start after a crash (no marker, or one that
// does not name the checkpoint's position) recovers as before: the active
// segment validated batch by batch, the producer state from the newest
// snapshot that verifies and the headers after it, the WAL replayed from the
// checkpoint.

const (
	cleanShutdownFile  = "clean-shutdown"
	cleanShutdownMagic = 0x4e4c4352 // "RCLN"
)

func (e *Engine) cleanShutdownPath() string { return filepath.Join(e.cfg.DataDir, cleanShutdownFile) }

// takeCleanShutdown reports whether the last Close left a marker matching
// the WAL checkpoint, and removes the marker (syncing the directory), so it
// never vouches for files this process changes.
func (e *Engine) takeCleanShutdown() (bool, error) {
	path := e.cleanShutdownPath()
	b, err := vfs.ReadFile(e.fs, path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	pos, ok, cerr := e.readCheckpoint()
	clean := cerr == nil && ok && bytes.Equal(b, encodePosition(cleanShutdownMagic, pos))
	if !clean {
		e.log.Warn("engine: the clean shutdown marker does not match the wal checkpoint; recovering as after a crash", "checkpoint_err", cerr)
	}
	if err := e.fs.Remove(path); err != nil {
		return false, err
	}
	if err := e.fs.SyncDir(e.cfg.DataDir); err != nil {
		return false, err
	}
	return clean, nil
}

// writeCleanShutdown writes, after Close's last checkpoint succeeded, what
// lets the next start skip the scans: per partition the active segment's
// index files and a producer snapshot at the log end, then the marker.
// Any partition that is not wholly durable (a failed append left its log
// end above its durable end) means no marker.
func (e *Engine) writeCleanShutdown(parts []*Partition) error {
	pos, ok, err := e.readCheckpoint()
	if err != nil || !ok {
		return fmt.Errorf("reading the wal checkpoint back: ok %v, %v", ok, err)
	}
	type job struct {
		p             *Partition
		snap          *prodSnapshot
		active        int64
		idx, tix, txi []byte
	}
	jobs := make([]job, 0, len(parts))
	for _, p := range parts {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			continue
		}
		if p.logEnd != p.durableEnd || len(p.pending) > 0 || p.cutFailed || p.truncating {
			p.mu.Unlock()
			return fmt.Errorf("%s: log end %d, durable end %d, %d appends pending", p.name, p.logEnd, p.durableEnd, len(p.pending))
		}
		a := p.active()
		idx, tix := a.indexFileBytes()
		jobs = append(jobs, job{p: p, snap: p.snapshotLocked(), active: a.base, idx: idx, tix: tix, txi: a.txnIndexBytes()})
		p.mu.Unlock()
	}
	// Concurrently, as the checkpoint's syncs: each file's sync costs a journal commit.
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fsys := e.fs
			if err := vfs.WriteFileSynced(fsys, segmentName(j.p.dir, j.active, indexSuffix), j.idx); err != nil {
				errs[i] = err
				return
			}
			if err := vfs.WriteFileSynced(fsys, segmentName(j.p.dir, j.active, timeIndexSuffix), j.tix); err != nil {
				errs[i] = err
				return
			}
			if err := vfs.WriteFileSynced(fsys, segmentName(j.p.dir, j.active, txnIndexSuffix), j.txi); err != nil {
				errs[i] = err
				return
			}
			// The rename's directory sync also makes the index files' names durable.
			if err := j.p.writeSnapshot(j.snap); err != nil {
				errs[i] = err
				return
			}
			j.p.snapshotWritten(j.snap.offset)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return vfs.WriteFileAtomic(e.fs, e.cleanShutdownPath(), encodePosition(cleanShutdownMagic, pos))
}

// logRecovery writes the line saying which way recovery went (a systemd
// test asserts on "recovery: clean shutdown, replay skipped") and what it
// read.
func (e *Engine) logRecovery(replayed int) {
	r := e.recovery
	args := []any{"segments_from_index", r.fromIndex, "segments_validated", r.validated, "validated_bytes", r.validBytes,
		"segments_index_rebuilt", r.rebuilt, "header_bytes_read", r.headerBytes, "producer_snapshots_used", r.snapshots,
		"wal_records_replayed", replayed}
	if e.clean {
		if replayed > 0 {
			e.log.Warn("engine: wal records after a clean shutdown's checkpoint were replayed", "records", replayed)
		}
		e.log.Info("recovery: clean shutdown, replay skipped", args...)
		return
	}
	e.log.Info("recovery: no clean shutdown marker, wal replayed from the checkpoint", args...)
}
