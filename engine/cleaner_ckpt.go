package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ringtail/ringtail/vfs"
)

// The cleaner checkpoint (Kafka's cleaner-offset-checkpoint, kept per partition here): the
// cleaner's firstDirty, so that the first pass after a restart builds its key map from what was
// written since the last pass instead of from the whole log, and computes a true dirty ratio
// (without it every compacted partition looks wholly dirty after a restart and is cleaned
// again). The file, in the partition's directory, written whole with vfs.WriteFileAtomic
// after a pass that moved firstDirty:
//
//	0             version
//	4711 3        firstDirty, and the leader epoch of the batch before it (-1: none)
//
// A stale or missing file only costs work: firstDirty lower than the truth makes a pass read
// more. One higher than the truth would not be safe: records above the truth would count as
// cleaned without ever being in a key map, so a tombstone among them could be removed while an
// older value of its key below stays. Only a cut of the log (a truncation, a WAL replay of one,
// a reset) can put other batches below a firstDirty written before; each removes the file
// (durably) before it cuts anything when the file names an offset above the cut (cutLocked,
// resetLocked), and the pass writes the file holding startMu, which truncations hold. A file
// that nevertheless names an offset that is not a segment boundary of the recovered log, or
// whose epoch is not the epoch of the batch before that offset, is ignored (the log-matching
// property of leader epochs: a replica holding a batch of the same epoch at the same offset
// holds the same log below it).

const cleanerCheckpointFile = "cleaner-offset-checkpoint"

func (p *Partition) cleanerCheckpointPath() string {
	return filepath.Join(p.dir, cleanerCheckpointFile)
}

// readCleanerCheckpoint reads the file: (0, -1) when there is none. A file it cannot parse is
// ignored with a warning (it only costs work).
func (p *Partition) readCleanerCheckpoint() (firstDirty int64, epoch int32) {
	b, err := vfs.ReadFile(p.eng.fs, p.cleanerCheckpointPath())
	if errors.Is(err, os.ErrNotExist) {
		return 0, -1
	}
	if err == nil {
		firstDirty, epoch, err = parseCleanerCheckpoint(b)
	}
	if err != nil {
		p.eng.log.Warn("engine: ignoring the cleaner checkpoint; the next pass treats the whole log as dirty", "partition", p.name, "err", err)
		return 0, -1
	}
	return firstDirty, epoch
}

func parseCleanerCheckpoint(b []byte) (int64, int32, error) {
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "0" {
		return 0, 0, fmt.Errorf("engine: cleaner checkpoint: want version 0 and one entry, got %q", b)
	}
	f := strings.Fields(lines[1])
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("engine: cleaner checkpoint: bad entry %q", lines[1])
	}
	off, err1 := strconv.ParseInt(f[0], 10, 64)
	ep, err2 := strconv.ParseInt(f[1], 10, 32)
	if err1 != nil || err2 != nil || off < 0 || ep < -1 {
		return 0, 0, fmt.Errorf("engine: cleaner checkpoint: bad entry %q", lines[1])
	}
	return off, int32(ep), nil
}

func cleanerCheckpointContent(firstDirty int64, epoch int32) []byte {
	return fmt.Appendf(nil, "0\n%d %d\n", firstDirty, epoch)
}

// validCleanerCheckpointLocked reports whether a firstDirty read from the file may be trusted
// by the recovered log: a boundary between two sealed segments (or below the first one:
// retention deleted what it named) whose preceding batch has the epoch the file names. p.mu
// held, recovery finished.
func (p *Partition) validCleanerCheckpointLocked(firstDirty int64, epoch int32) bool {
	if firstDirty <= p.segments[0].base {
		return true // nothing left below it: every segment counts as dirty anyway
	}
	boundary := false
	for _, s := range p.segments[1:] {
		boundary = boundary || s.base == firstDirty
	}
	return boundary && p.epochs.epochAt(firstDirty-1) == epoch
}

// loadCleanerCheckpointLocked sets firstDirty from the file read when the partition opened,
// once recovery has rebuilt the log and its epochs. p.mu held.
func (p *Partition) loadCleanerCheckpointLocked() {
	fd, ep := p.cleaner.persisted, p.cleaner.persistedEpoch
	if fd == 0 {
		return
	}
	if !p.validCleanerCheckpointLocked(fd, ep) {
		p.eng.log.Info("engine: the cleaner checkpoint does not match the log; the next pass treats the whole log as dirty",
			"partition", p.name, "first_dirty", fd, "epoch", ep)
		return
	}
	p.cleaner.firstDirty = fd
}

// dropCleanerCheckpointLocked removes the file, durably, when it names an offset above end:
// the log is about to be cut at end (see the top of this file). p.mu held.
func (p *Partition) dropCleanerCheckpointLocked(end int64) error {
	if p.cleaner.persisted <= end {
		return nil
	}
	if err := p.eng.fs.Remove(p.cleanerCheckpointPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := p.eng.fs.SyncDir(p.dir); err != nil {
		return err
	}
	p.cleaner.persisted, p.cleaner.persistedEpoch = 0, -1
	return nil
}

// saveCleanerCheckpoint raises firstDirty to next after a pass planned when the log had been
// cut cuts times, unless it was cut since, and writes the file when it moved. It holds startMu,
// so no truncation runs between the value it takes and the file it writes.
func (p *Partition) saveCleanerCheckpoint(next int64, cuts uint64) error {
	p.startMu.Lock()
	defer p.startMu.Unlock()
	p.mu.Lock()
	if p.cleaner.cuts == cuts {
		p.cleaner.firstDirty = max(p.cleaner.firstDirty, next)
	}
	fd := p.cleaner.firstDirty
	ep := p.epochs.epochAt(fd - 1)
	write := !p.closed && fd > p.cleaner.persisted
	p.mu.Unlock()
	if !write {
		return nil
	}
	if err := vfs.WriteFileAtomic(p.eng.fs, p.cleanerCheckpointPath(), cleanerCheckpointContent(fd, ep)); err != nil {
		return err
	}
	p.mu.Lock()
	p.cleaner.persisted, p.cleaner.persistedEpoch = fd, ep
	p.mu.Unlock()
	return nil
}
