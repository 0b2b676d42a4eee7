package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/ringtail/ringtail/vfs"
)

// DeleteRecords (KIP-107): a partition's log start offset can be moved forward to any offset up
// to the high watermark. Reads, ListOffsets and retention then treat the records below it as
// gone; whole segments below it are deleted by retention passes (TrimBefore), and the new log
// start is persisted in the partition directory (logStartFile, written whole, synced, renamed)
// before DeleteRecordsBefore returns, so it holds across restarts even while the segment that
// holds it is still on disk.

const logStartFile = "log-start-offset"

// DeleteRecordsBefore makes offset (-1: the high watermark) the log start offset and returns the
// log start offset now in effect. An offset beyond the high watermark is ErrOffsetOutOfRange;
// one at or below the current log start changes nothing.
func (p *Partition) DeleteRecordsBefore(offset int64) (int64, error) {
	p.startMu.Lock() // one persisted update at a time, without holding p.mu across the fsyncs
	defer p.startMu.Unlock()
	p.mu.Lock()
	if p.closed || p.closing {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	hw := p.hw.Load()
	if offset == -1 {
		offset = hw
	}
	start := p.logStart
	p.mu.Unlock()
	if offset < 0 || offset > hw {
		return start, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, offset, start, hw)
	}
	if offset <= start {
		return start, nil
	}
	if err := p.writeLogStart(offset); err != nil {
		p.logStorageError("persist the log start offset", err)
		return start, fmt.Errorf("%w: %s: %v", ErrStorage, p.name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if offset > p.logStart {
		p.logStart = offset
	}
	if offset > p.trimBelow {
		p.trimBelow = offset
		p.eng.ckpt.request()
	}
	p.epochs.truncateFromStart(p.logStart)
	p.eng.log.Info("engine: records deleted", "partition", p.name, "log_start", p.logStart)
	return p.logStart, nil
}

// writeLogStart persists offset as the log start: 8 bytes and their CRC-32C.
func (p *Partition) writeLogStart(offset int64) error {
	b := make([]byte, 12)
	binary.LittleEndian.PutUint64(b, uint64(offset))
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	return vfs.WriteFileAtomic(p.eng.fs, filepath.Join(p.dir, logStartFile), b)
}

// readLogStart returns the persisted log start, 0 when there is none. A damaged file is an
// error: guessing could serve deleted records or hide live ones.
func (p *Partition) readLogStart() (int64, error) {
	b, err := vfs.ReadFile(p.eng.fs, filepath.Join(p.dir, logStartFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 12 || crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return 0, fmt.Errorf("%s: %d bytes, checksum mismatch or wrong size", logStartFile, len(b))
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}
