package engine

import (
	"path/filepath"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/wal"
)

// The replay policy. Open scans the segments first; then the WAL is replayed
// from the checkpoint, in sequence order, on top of what the segments hold.
// The segments may hold more than the records before a given one say (a
// checkpoint syncs segments after the position it records), or bytes the
// WAL never acknowledged (an append rolled back after its segment write
// reached the disk). Per record:
//
// Data (base offset b, batches ending at e):
//   - unknown partition (deleted, or another topic id): skipped;
//   - e <= the first segment's base: skipped (retention deleted it after a
//     checkpoint made it durable);
//   - b == log end: appended (rolling as usual);
//   - b < log end and the log holds the same bytes there: written again (the
//     kernel may hold pages it failed to write back), nothing else;
//   - b < log end, other bytes, and a batch of the log starts at b: the later
//     record wins: the log is cut back to b and the record appended;
//   - otherwise (b > log end: a gap; or b inside a batch): replay stops for
//     the partition at that offset.
//
// Truncation (new log end t):
//   - the log is cut back before the batch holding t when it is longer;
//   - a replay stopped at an offset >= t resumes: everything from the stop
//     on was cut by this truncation anyway.

// openWAL recovers the WAL into the opened partitions and starts the
// writer. e.parts holds every partition of the specs.
func (e *Engine) openWAL() (int, error) {
	from, _, err := e.readCheckpoint()
	if err != nil {
		return 0, err
	}
	byKey := make(map[walKey]*Partition, len(e.parts))
	for _, p := range e.parts {
		byKey[walKey{p.topicID, p.tp.Partition}] = p
	}
	replayed, skipped := 0, 0
	replay := func(seq uint64, payload []byte) error {
		r, derr := decodeWALPayload(payload)
		if derr != nil && len(payload) < payloadHeaderSize {
			e.log.Error("engine: wal record too short, skipped", "seq", seq, "bytes", len(payload))
			return nil
		}
		p := byKey[r.key]
		if p == nil {
			skipped++
			return nil
		}
		var applied bool
		var err error
		switch {
		case derr != nil:
			p.stopReplay(seq, r.offset, "wal record holds neither batches nor a truncation", derr)
		case r.truncate:
			applied, err = p.replayTruncation(seq, r.offset)
		case r.reset:
			applied, err = p.replayReset(seq, r.offset)
		default:
			applied, err = p.replay(seq, r.offset, r.batches)
		}
		if applied {
			replayed++
		}
		return err
	}
	w, err := wal.Open(wal.Options{
		Dir:         filepath.Join(e.cfg.DataDir, walDirName),
		FS:          e.fs,
		IO:          e.cfg.WALIO,
		FileBytes:   e.cfg.WALFileBytes,
		Logger:      e.log,
		NotifyBytes: e.cfg.CheckpointBytes,
		Notify:      e.ckpt.request,
		InFlight:    e.cfg.WALInFlight,
		OnCycle:     e.cfg.OnWALCycle,
	}, from, replay)
	if err != nil {
		return replayed, err
	}
	e.wal = w
	if skipped > 0 {
		e.log.Info("engine: wal records of partitions no longer here skipped", "records", skipped)
	}
	return replayed, nil
}

// stopReplay stops the WAL replay of the partition at offset at.
func (p *Partition) stopReplay(seq uint64, at int64, why string, err error) {
	p.eng.log.Error("engine: "+why+"; replay stops for the partition", "partition", p.name, "seq", seq, "offset", at, "log_end", p.logEnd, "err", err)
	p.replayStopped, p.replayStopAt = true, at
}

// replay applies one WAL data record to the log during recovery. It
// reports whether the log changed.
func (p *Partition) replay(seq uint64, base int64, data []byte) (bool, error) {
	if p.replayStopped {
		return false, nil
	}
	raw, err := batch.Split(data)
	if err != nil || len(raw) == 0 {
		p.stopReplay(seq, base, "wal record does not hold record batches", err)
		return false, nil
	}
	hs := make([]batch.Header, len(raw))
	for i, b := range raw {
		if hs[i], err = batch.ParseHeader(b); err != nil {
			p.stopReplay(seq, base, "bad batch in a wal record", err)
			return false, nil
		}
	}
	if hs[0].BaseOffset != base {
		p.stopReplay(seq, base, "wal record's batches do not start at its offset", nil)
		return false, nil
	}
	end := hs[len(hs)-1].LastOffset() + 1
	switch {
	case end <= p.segments[0].base:
		return false, nil
	case base > p.logEnd:
		p.stopReplay(seq, p.logEnd, "wal record starts beyond the log end (a gap)", nil)
		return false, nil
	case base < p.logEnd:
		seg, pos, same, err := p.logHolds(base, end, data)
		if err != nil {
			return false, err
		}
		if same {
			// The bytes read back may be pages the kernel holds but failed
			// to write (a writeback error marks them clean, and a later
			// fdatasync skips them): write them again, so that the sync
			// at the end of recovery really puts them on disk.
			if _, err := seg.file.WriteAt(data, pos); err != nil {
				return false, err
			}
			seg.indexed = false
			return false, nil
		}
		// A later record for the same offsets wins: the log holds bytes of
		// an append that was rolled back (and whose sync of the segment beat
		// the truncation to disk), or of a future the rest of the WAL
		// replays again.
		_, _, at, err := p.batchStart(base)
		if err != nil {
			return false, err
		}
		if !at {
			p.stopReplay(seq, base, "wal record overlaps the log but not at a batch start", nil)
			return false, nil
		}
		p.eng.log.Warn("engine: wal record replaces log bytes", "partition", p.name, "offset", base)
		if err := p.cutForReplay(base); err != nil {
			return false, err
		}
	}
	if _, err := p.writeLocked(data, hs, 0); err != nil {
		return false, err
	}
	// data is the replay's buffer: written now, not kept.
	if err := p.active().flush(nil); err != nil {
		return false, err
	}
	return true, nil
}

// replayTruncation applies a truncation record: the log is cut back to end.
func (p *Partition) replayTruncation(seq uint64, end int64) (bool, error) {
	if p.replayStopped {
		if end > p.replayStopAt {
			return false, nil
		}
		p.eng.log.Info("engine: a truncation record cuts off what stopped the replay; replay resumes", "partition", p.name, "seq", seq, "offset", end)
		p.replayStopped = false
	}
	if end >= p.logEnd {
		return false, nil
	}
	if end < p.segments[0].base {
		// Retention deleted the segment holding end, so a checkpoint had
		// already made the cut durable.
		return false, nil
	}
	return true, p.cutForReplay(end)
}

// cutForReplay cuts the log back before the batch holding off.
func (p *Partition) cutForReplay(off int64) error {
	pl, err := p.planCutLocked(off)
	if err != nil {
		return err
	}
	return p.cutLocked(pl)
}

// logHolds reports whether the log's bytes for [base, end) are data, and
// where they are.
func (p *Partition) logHolds(base, end int64, data []byte) (*segment, int64, bool, error) {
	if end > p.logEnd {
		return nil, 0, false, nil
	}
	seg, pos, ok, err := p.batchStart(base)
	if err != nil || !ok {
		return nil, 0, false, err
	}
	if pos+int64(len(data)) > seg.size {
		return nil, 0, false, nil
	}
	buf := make([]byte, len(data))
	if _, err := seg.file.ReadAt(buf, pos); err != nil {
		return nil, 0, false, err
	}
	return seg, pos, string(buf) == string(data), nil
}

// batchStart finds the segment and position of the batch whose base offset
// is exactly off.
func (p *Partition) batchStart(off int64) (*segment, int64, bool, error) {
	var seg *segment
	for _, s := range p.segments {
		if s.base <= off && off < s.end {
			seg = s
		}
	}
	if seg == nil {
		return nil, 0, false, nil
	}
	hr := newHeaderReader(seg.file)
	for pos := seg.lookup(off); pos < seg.size; {
		h, err := hr.header(pos, seg.size)
		if err != nil {
			return nil, 0, false, err
		}
		if h.BaseOffset == off {
			return seg, pos, true, nil
		}
		if h.BaseOffset > off {
			break
		}
		pos += int64(h.Size())
	}
	return nil, 0, false, nil
}
