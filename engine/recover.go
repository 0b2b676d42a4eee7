package engine

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs"
)

func dirPath(dataDir, name string) string { return filepath.Join(dataDir, name) }

// openPartition opens (creating if needed) and scans one partition; with
// finish it also completes recovery (Open finishes after the WAL replay).
func (e *Engine) openPartition(spec PartitionSpec, finish bool) (*Partition, error) {
	name := dirName(spec.TopicPartition)
	p := &Partition{
		eng: e, tp: spec.TopicPartition, name: name, dir: dirPath(e.cfg.DataDir, name),
		topicID: spec.TopicID, prod: producers{},
	}
	p.SetConfig(spec.Config)
	p.leaderEpoch.Store(spec.LeaderEpoch)
	p.followDurable = spec.FollowDurableEnd
	if err := p.prepareDir(); err != nil {
		return nil, fmt.Errorf("%w: partition %s: %v", ErrStorage, name, err)
	}
	// Before the WAL replay, whose cuts must see it (dropCleanerCheckpointLocked).
	p.cleaner.persisted, p.cleaner.persistedEpoch = p.readCleanerCheckpoint()
	st, err := p.scan(e.clean && !finish)
	e.recovery.add(st)
	if err == nil && finish {
		err = p.finishRecovery()
	}
	if err != nil {
		for _, s := range p.segments {
			s.file.Close()
		}
		return nil, fmt.Errorf("%w: recovering %s: %v", ErrStorage, name, err)
	}
	return p, nil
}

// metadataContent is partition.metadata in Kafka's format.
func metadataContent(id [16]byte) []byte {
	return []byte("version: 0\ntopic_id: " + base64.RawURLEncoding.EncodeToString(id[:]) + "\n")
}

// prepareDir makes sure the directory exists and belongs to this topic id;
// a directory left by an earlier topic of the same name is replaced.
func (p *Partition) prepareDir() error {
	fsys := p.eng.fs
	metaPath := filepath.Join(p.dir, metadataFile)
	old, err := vfs.ReadFile(fsys, metaPath)
	switch {
	case err == nil && bytes.Equal(old, metadataContent(p.topicID)):
		return nil
	case err == nil:
		p.eng.log.Warn("engine: partition directory belongs to another topic id, replacing it", "partition", p.name, "metadata", strings.TrimSpace(string(old)))
		if err := fsys.RemoveAll(p.dir); err != nil {
			return err
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := fsys.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	if err := vfs.WriteFileSynced(fsys, metaPath, metadataContent(p.topicID)); err != nil {
		return err
	}
	if err := fsys.SyncDir(p.dir); err != nil {
		return err
	}
	return fsys.SyncDir(p.eng.cfg.DataDir)
}

// errTorn marks a problem in the log's bytes (as opposed to an I/O error):
// recovery cuts the log there.
var errTorn = errors.New("engine: torn or corrupt batch")

// recoveryStats counts what opening the partitions read, for the
// engine's recovery line.
type recoveryStats struct {
	fromIndex   int   // segments whose .index/.timeindex files verified and were used
	rebuilt     int   // segments whose index files did not verify: validated, files rewritten
	validated   int   // segments read batch by batch, CRC included
	headerBytes int64 // log bytes whose batch headers were read (rebuilt segments, producer state)
	validBytes  int64 // log bytes validated
	snapshots   int   // partitions whose producer state came from a snapshot
}

func (a *recoveryStats) add(b recoveryStats) {
	a.fromIndex += b.fromIndex
	a.rebuilt += b.rebuilt
	a.validated += b.validated
	a.headerBytes += b.headerBytes
	a.validBytes += b.validBytes
	a.snapshots += b.snapshots
}

// scan opens the segments, checks them and rebuilds the in-memory
// indexes, the producer state and the epoch cache.
//
// Sealed segments whose .index and .timeindex files exist were durable
// before those files were written: the files are loaded and verified
// (segment.loadIndexFiles) instead of reading the segment's headers, and a
// segment whose files do not verify is validated batch by batch and its
// files rewritten. The others (from the first sealed segment without index
// files on, and always the active segment) are validated batch by batch,
// CRC included — except, after a clean shutdown (clean), an active segment
// whose index files Close wrote: it is whole and durable, and loaded like
// a sealed one. The log is cut at the first batch that fails, and every
// later segment is removed. The producer state and the epoch cache come
// from the newest producer snapshot that verifies, and the headers after it
// (snapshot.go).
func (p *Partition) scan(clean bool) (recoveryStats, error) {
	var st recoveryStats
	fsys := p.eng.fs
	ents, err := fsys.ReadDir(p.dir)
	if err != nil {
		return st, err
	}
	have := make(map[string]bool, len(ents))
	var bases, snaps []int64
	for _, ent := range ents {
		if stray, err := removeStrayCleaned(fsys, p.dir, ent.Name()); stray {
			if err != nil {
				return st, err
			}
			p.eng.log.Info("engine: removed a cleaned segment a crash left before its swap", "partition", p.name, "file", ent.Name())
			continue
		}
		have[ent.Name()] = true
		if base, ok := parseSegmentName(ent.Name()); ok {
			bases = append(bases, base)
		}
		if off, ok := parseSnapshotName(ent.Name()); ok {
			snaps = append(snaps, off)
		}
	}
	hasIndex := func(b int64) bool {
		return have[filepath.Base(segmentName("", b, indexSuffix))] && have[filepath.Base(segmentName("", b, timeIndexSuffix))]
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	validateFrom := len(bases) - 1
	if clean && len(bases) > 0 && hasIndex(bases[len(bases)-1]) {
		validateFrom = len(bases)
	}
	for i, b := range bases {
		if !hasIndex(b) {
			validateFrom = min(validateFrom, i)
			break
		}
	}
	lastHadIndex := len(bases) > 0 && hasIndex(bases[len(bases)-1])
	if len(bases) == 0 {
		bases = []int64{0}
		validateFrom = 0
	}

	var cut error
	var cutAt int
	for i, base := range bases {
		seg, err := newSegment(fsys, p.dir, base)
		if err != nil {
			return st, err
		}
		p.segments = append(p.segments, seg)
		if i > 0 && base != p.segments[i-1].end {
			cut, cutAt = fmt.Errorf("%w: segment %s starts at %d, previous ends at %d", errTorn, seg.path, base, p.segments[i-1].end), i
			break
		}
		size, err := seg.file.Size()
		if err != nil {
			return st, err
		}
		var pos int64
		rebuilt := false
		if i < validateFrom {
			if err = seg.loadIndexFiles(fsys, p.dir, size); err == nil {
				st.fromIndex++
				pos = size
				if terr := seg.loadTxnIndex(fsys, p.dir); terr != nil && !errors.Is(terr, os.ErrNotExist) {
					p.eng.log.Warn("engine: transaction index not used; rebuilt from the log", "partition", p.name, "err", terr)
				}
			} else if errors.Is(err, errBadIndex) {
				// Validated, not only its headers read: files that do not match
				// their segment say nothing about its bytes either.
				p.eng.log.Warn("engine: index files do not verify; validating the segment and rewriting them", "partition", p.name, "err", err)
				seg.reset()
				pos, err = p.scanSegment(seg, size, true)
				st.rebuilt++
				st.validBytes += pos
				rebuilt = true
			}
		} else {
			pos, err = p.scanSegment(seg, size, true)
			st.validated++
			st.validBytes += pos
		}
		if errors.Is(err, errTorn) {
			p.eng.log.Warn("engine: truncating log at the last valid batch", "partition", p.name, "segment", seg.path,
				"position", pos, "offset", seg.end, "dropped_bytes", size-pos, "reason", err)
			if err := seg.file.Truncate(pos); err != nil {
				return st, err
			}
			cutAt = i + 1
			cut = err
			break
		}
		if err != nil {
			return st, err
		}
		seg.indexed = i < validateFrom && !rebuilt
	}
	if cut != nil {
		if cutAt < len(p.segments) && cutAt > 0 && p.segments[cutAt] != nil {
			p.eng.log.Warn("engine: dropping segments after a broken log", "partition", p.name, "from", p.segments[cutAt].path, "reason", cut)
		}
		for _, s := range p.segments[cutAt:] {
			p.removeSegmentFiles(s)
		}
		p.segments = p.segments[:cutAt]
		for _, b := range bases[cutAt:] {
			_ = fsys.Remove(segmentName(p.dir, b, logSuffix))
		}
	}
	// The active segment has no index files: they would go stale as it
	// grows. Their removal is made durable now: were they to come back
	// after a crash, once the segment is sealed and longer, they would
	// name it durable.
	last := p.active()
	last.indexed = false
	if err := p.removeIndexFiles(last.base); err != nil {
		return st, err
	}
	if lastHadIndex {
		if err := fsys.SyncDir(p.dir); err != nil {
			return st, err
		}
	}

	active := p.active()
	p.logStart = p.segments[0].base
	p.logEnd = active.end
	walked, fromSnap, err := p.loadProducerState(snaps)
	p.rebuildOngoingLocked() // the snapshot's ongoing transactions, and the walk's
	st.headerBytes += walked
	if fromSnap {
		st.snapshots++
	}
	return st, err
}

// finishRecovery makes everything recovered (scanned and replayed from the
// WAL) durable, so the durable end starts at the log end, and queues the
// OnDurable call that tells the owner so. The high watermark starts at the
// log start: only SetHighWatermark raises it.
func (p *Partition) finishRecovery() error {
	fsys := p.eng.fs
	if err := p.writeMissingTxnIndexes(); err != nil {
		return err
	}
	for i, s := range p.segments {
		if s.indexed {
			continue
		}
		if err := s.file.Datasync(); err != nil {
			return err
		}
		if i < len(p.segments)-1 {
			if err := s.writeIndexFiles(fsys, p.dir); err != nil {
				return err
			}
			s.indexed = true
		}
	}
	if err := fsys.SyncDir(p.dir); err != nil {
		return err
	}
	p.dirDirty, p.unsynced = false, nil
	active := p.active()
	p.logStart = p.segments[0].base
	persisted, err := p.readLogStart()
	if err != nil {
		return err
	}
	// DeleteRecords moved the start past the first segment's base; never past the log end (a
	// cut tail can have taken the records it named).
	if persisted > p.logStart {
		p.logStart = min(persisted, active.end)
		p.trimBelow = p.logStart
	}
	p.epochs.truncateFromStart(p.logStart)
	if err := p.recoverEpochs(); err != nil {
		return err
	}
	p.logEnd, p.durableEnd = active.end, active.end
	p.durableMark = active.mark()
	p.durableProd = p.prod.clone()
	// Nothing is readable yet: the read limit is the first segment's start
	// even when the log start lies inside it.
	first := p.segments[0]
	p.hw.Store(p.logStart)
	p.hwMark = segMark{seg: first, end: first.base, maxTs: -1, maxTsOffset: -1}
	if p.followDurable {
		p.hw.Store(p.durableEnd)
		p.hwMark = p.durableMark
	}
	p.checkOffsetsLocked("recovery")
	p.loadCleanerCheckpointLocked()
	p.durableLocked(p.durableEnd)
	return nil
}

// scanSegment reads every batch header of seg (and with validate the whole
// batch), feeding its in-memory indexes. It returns the
// position after the last good batch, and an error wrapping errTorn if the
// bytes after it are not a valid batch.
func (p *Partition) scanSegment(seg *segment, size int64, validate bool) (int64, error) {
	hr := newHeaderReader(seg.file)
	var buf []byte
	pos := int64(0)
	for pos < size {
		h, err := hr.header(pos, size)
		if err != nil {
			if errors.Is(err, batch.ErrCorrupt) || errors.Is(err, batch.ErrUnsupportedMagic) || errors.Is(err, batch.ErrTooLarge) || errors.Is(err, batch.ErrDecompressedTooLarge) {
				return pos, fmt.Errorf("%w: %v", errTorn, err)
			}
			return pos, err
		}
		switch {
		case pos+int64(h.Size()) > size:
			return pos, fmt.Errorf("%w: batch of %d bytes at %d, file has %d", errTorn, h.Size(), pos, size)
		case h.BaseOffset != seg.end:
			return pos, fmt.Errorf("%w: batch base offset %d, expected %d", errTorn, h.BaseOffset, seg.end)
		case h.Magic != 2:
			return pos, fmt.Errorf("%w: magic %d", errTorn, h.Magic)
		case h.LastOffsetDelta < 0:
			return pos, fmt.Errorf("%w: negative last offset delta %d", errTorn, h.LastOffsetDelta)
		}
		if validate {
			if cap(buf) < h.Size() {
				buf = make([]byte, h.Size())
			}
			buf = buf[:h.Size()]
			if _, err := seg.file.ReadAt(buf, pos); err != nil {
				return pos, err
			}
			// ValidateStored: a compacted segment's batches may skip offsets (cleaner*.go).
			if err := batch.ValidateStored(buf); err != nil {
				return pos, fmt.Errorf("%w: %v", errTorn, err)
			}
		}
		seg.observe(h, pos, p.eng.cfg.IndexIntervalBytes)
		pos += int64(h.Size())
	}
	return pos, nil
}
