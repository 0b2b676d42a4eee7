package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ringtail/ringtail/internal/invariants"
	"github.com/ringtail/ringtail/vfs"
)

// Leader epochs (Kafka's LeaderEpochFileCache, KIP-101/279). Every batch a
// leader appends carries the partition's leader epoch in its
// partitionLeaderEpoch field (not covered by the CRC). Each partition keeps
// the epochs its log holds with the offset each one starts at, so that a
// follower can ask where an epoch ended (EndOffsetForEpoch) and truncate to
// the leader's history instead of to its own high watermark.
//
// The cache is derived from the log: recovery rebuilds it from the batch
// headers it reads anyway, then truncates it to the log start. The
// checkpoint file, written whole with vfs.WriteFileAtomic when it changed
// (by a checkpoint pass, a TruncateTo, the end of recovery), keeps Kafka's
// text format:
//
//	0                 version
//	2                 number of entries
//	0 0               epoch start-offset, oldest first
//	3 4711

const epochCheckpointFile = "leader-epoch-checkpoint"

// epochEntry: the batches of epoch start at offset start.
type epochEntry struct {
	epoch int32
	start int64
}

// epochCache is a partition's epoch → start-offset list, epochs and start
// offsets strictly increasing. Guarded by the partition's mu.
type epochCache struct {
	entries []epochEntry
	dirty   bool // changed since the checkpoint file was last written
}

// observe records that a batch of epoch starts at offset: a new entry when
// epoch is newer than the latest. Batches without an epoch (-1, written
// before epochs were stamped) and older epochs add nothing, as in Kafka.
func (c *epochCache) observe(epoch int32, offset int64) {
	if epoch < 0 {
		return
	}
	if n := len(c.entries); n > 0 && epoch <= c.entries[n-1].epoch {
		return
	}
	c.entries = append(c.entries, epochEntry{epoch, offset})
	c.dirty = true
	c.check()
}

// latest returns the newest epoch in the log, -1 when none.
func (c *epochCache) latest() int32 {
	if len(c.entries) == 0 {
		return -1
	}
	return c.entries[len(c.entries)-1].epoch
}

// epochAt returns the epoch of the batch holding offset, -1 when the cache knows none.
func (c *epochCache) epochAt(offset int64) int32 {
	epoch := int32(-1)
	for _, x := range c.entries {
		if x.start > offset {
			break
		}
		epoch = x.epoch
	}
	return epoch
}

// truncateFromEnd forgets the epochs that start at or after end (the log
// was cut back to end).
func (c *epochCache) truncateFromEnd(end int64) {
	n := len(c.entries)
	for n > 0 && c.entries[n-1].start >= end {
		n--
	}
	if n != len(c.entries) {
		c.entries = c.entries[:n]
		c.dirty = true
	}
}

// truncateFromStart drops the epochs wholly below start (the log start
// moved); the epoch holding start now starts there.
func (c *epochCache) truncateFromStart(start int64) {
	i := 0
	for i < len(c.entries) && c.entries[i].start <= start {
		i++
	}
	if i == 0 || (i == 1 && c.entries[0].start == start) {
		return
	}
	last := c.entries[i-1]
	last.start = start
	c.entries = append([]epochEntry{last}, c.entries[i:]...)
	c.dirty = true
	c.check()
}

// endOffsetFor answers OffsetForLeaderEpoch for epoch: the largest epoch
// <= epoch the log knows and the offset where it ends (the start of the
// next epoch, or logEnd for the latest); (-1, -1) when epoch is undefined or
// newer than current. current, the partition's leader epoch, counts as an
// epoch starting at logEnd when no batch of it was appended yet, as Kafka's
// leader has it in its cache from the moment it is elected. An epoch older
// than every cached one answers itself and the start of the first cached
// epoch (Kafka: the data before it is gone).
func (c *epochCache) endOffsetFor(epoch, current int32, logEnd int64) (int32, int64) {
	entries := c.entries
	if current >= 0 && current > c.latest() {
		entries = append(entries[:len(entries):len(entries)], epochEntry{current, logEnd})
	}
	if epoch < 0 || len(entries) == 0 {
		return -1, -1
	}
	if entries[len(entries)-1].epoch == epoch {
		return epoch, logEnd
	}
	higher := len(entries)
	for i, e := range entries {
		if e.epoch > epoch {
			higher = i
			break
		}
	}
	switch {
	case higher == len(entries):
		return -1, -1
	case higher == 0:
		return epoch, entries[0].start
	default:
		return entries[higher-1].epoch, entries[higher].start
	}
}

// check panics, in invariant builds, unless epochs and start offsets strictly increase.
func (c *epochCache) check() {
	if !invariants.Enabled {
		return
	}
	for i := 1; i < len(c.entries); i++ {
		if a, b := c.entries[i-1], c.entries[i]; b.epoch <= a.epoch || b.start <= a.start {
			panic(fmt.Sprintf("engine: leader epoch cache not monotonic: %v", c.entries))
		}
	}
}

// encode is the checkpoint file's content.
func (c *epochCache) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "0\n%d\n", len(c.entries))
	for _, e := range c.entries {
		fmt.Fprintf(&b, "%d %d\n", e.epoch, e.start)
	}
	return b.Bytes()
}

// parseEpochCheckpoint reads the checkpoint file's content.
func parseEpochCheckpoint(b []byte) ([]epochEntry, error) {
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) < 2 || lines[0] != "0" {
		return nil, fmt.Errorf("%s: unknown version or too short", epochCheckpointFile)
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n != len(lines)-2 {
		return nil, fmt.Errorf("%s: count %q does not match %d lines", epochCheckpointFile, lines[1], len(lines)-2)
	}
	out := make([]epochEntry, 0, n)
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("%s: bad line %q", epochCheckpointFile, l)
		}
		ep, err1 := strconv.ParseInt(f[0], 10, 32)
		off, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: bad line %q", epochCheckpointFile, l)
		}
		out = append(out, epochEntry{int32(ep), off})
	}
	return out, nil
}

// LeaderEpoch returns the partition's leader epoch: what a leader append
// stamps on its batches.
func (p *Partition) LeaderEpoch() int32 { return p.leaderEpoch.Load() }

// SetLeaderEpoch raises the partition's leader epoch to epoch; an older
// epoch changes nothing (epochs never go back).
func (p *Partition) SetLeaderEpoch(epoch int32) {
	p.mu.Lock()
	if epoch > p.leaderEpoch.Load() {
		p.leaderEpoch.Store(epoch)
	}
	p.mu.Unlock()
}

// EndOffsetForEpoch answers Kafka's OffsetForLeaderEpoch for this log: the
// largest epoch <= epoch that the log holds and the offset after its last
// batch (the start of the next epoch; the log end for the latest), or
// (-1, -1) when epoch is undefined or newer than the partition's.
func (p *Partition) EndOffsetForEpoch(epoch int32) (foundEpoch int32, endOffset int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epochs.endOffsetFor(epoch, p.leaderEpoch.Load(), p.logEnd)
}

// epochPath is the partition's leader-epoch-checkpoint file.
func (p *Partition) epochPath() string { return filepath.Join(p.dir, epochCheckpointFile) }

// recoverEpochs compares the checkpoint file with the cache rebuilt from
// the log and rewrites the file when they differ. The log wins: the file
// may lag it (it is written after the fact).
func (p *Partition) recoverEpochs() error {
	want := p.epochs.encode()
	old, err := vfs.ReadFile(p.eng.fs, p.epochPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
		if len(p.epochs.entries) == 0 {
			p.epochs.dirty = false
			return nil
		}
	case err != nil:
		return err
	case bytes.Equal(old, want):
		p.epochs.dirty = false
		return nil
	default:
		if _, perr := parseEpochCheckpoint(old); perr != nil {
			p.eng.log.Warn("engine: leader epoch checkpoint unreadable, rewritten from the log", "partition", p.name, "err", perr)
		}
	}
	if err := vfs.WriteFileAtomic(p.eng.fs, p.epochPath(), want); err != nil {
		return err
	}
	p.epochs.dirty = false
	return nil
}

// writeEpochsIfDirty writes the checkpoint file when the cache changed
// since the last write. p.startMu held (one writer of the file at a time),
// p.mu not held: the write syncs.
func (p *Partition) writeEpochsIfDirty() error {
	p.mu.Lock()
	if p.closed || !p.epochs.dirty {
		p.mu.Unlock()
		return nil
	}
	b := p.epochs.encode()
	p.epochs.dirty = false
	p.mu.Unlock()
	if err := vfs.WriteFileAtomic(p.eng.fs, p.epochPath(), b); err != nil {
		p.mu.Lock()
		p.epochs.dirty = true
		p.mu.Unlock()
		return err
	}
	return nil
}
