package broker

import (
	"fmt"
	"time"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/group"
)

// Compaction of __consumer_offsets, one partition at a time. The coordinator's records are
// keyed (a group's metadata, one committed offset) and replay keeps the last value of each key,
// a nil value deleting it. So once a partition holds many records, its shard's goroutine — the
// only writer of the partition — rewrites it: with no append of its own in flight (every record is durable and applied), it
// seals the active segment, reads the whole log, appends one batch holding the last non-nil
// value of every key, and once that batch is durable lets retention delete every segment
// before it (engine.Partition.TrimBefore). A restart at any point replays correctly: before the
// trim, old records followed by their own last values; after it, the last values alone.
// Keys deleted by a nil value are simply not rewritten. Records of the private encoding of
// older versions are rewritten in Kafka's schemas (group.Canonical), which migrates a data
// directory: a shard whose replay met any compacts right after loading.

// DefaultOffsetsCompactRecords is how many records a partition of __consumer_offsets takes
// between two of its compactions unless Config.OffsetsCompactRecords says otherwise.
const DefaultOffsetsCompactRecords = 100_000

// compactChunk* bound one batch of the rewrite, well inside the partition's 100 MiB
// max.message.bytes whatever the size of a group's metadata.
const (
	compactChunkRecords = 10_000
	compactChunkBytes   = 16 << 20
)

// maybeCompact compacts when enough records were appended, or records of the private
// encoding are to be rewritten, and none of ours is in flight. On the shard's goroutine.
func (s *groupShard) maybeCompact() {
	if (s.appended < s.compactEvery && s.legacy == 0) || s.inflight > 0 || s.coord.PendingTxnOffsets() {
		return
	}
	start := time.Now()
	n, err := s.compact()
	if err != nil {
		// Try again after as many records again: the log only grows meanwhile.
		s.log.Error("groups: compacting "+OffsetsTopic+" failed; it keeps growing until the next attempt", "err", err)
	} else {
		s.log.Info("groups: "+OffsetsTopic+" compacted", "records_before", s.appended, "live_records", n,
			"took", time.Since(start).Round(time.Millisecond))
	}
	s.appended = 0
	s.legacy = 0 // rewritten, or after a failure tried again with the next compaction
}

// compact rewrites the live records after the current log and returns how many.
func (s *groupShard) compact() (n int, err error) {
	if err := s.part.Roll(); err != nil {
		return 0, err
	}
	upTo := s.part.LogEndOffset()
	records, txns, err := readOffsetsLog(s.part, nil)
	if err != nil {
		return 0, err
	}
	records = settleTxns(records, txns)
	// In Kafka's schemas, so that a key of the private encoding and its Kafka twin count as one.
	for i, r := range records {
		if records[i], _, err = group.Canonical(r); err != nil {
			return 0, fmt.Errorf("record at position %d: %w", i, err)
		}
	}
	live := lastValues(records)
	if len(live) == 0 {
		s.part.TrimBefore(upTo)
		return 0, nil
	}
	var raw []byte
	ms := time.Now().UnixMilli()
	for len(live) > 0 {
		var recs []batch.Record
		size := 0
		for len(live) > 0 && len(recs) < compactChunkRecords && (len(recs) == 0 || size+len(live[0].Key)+len(live[0].Value) <= compactChunkBytes) {
			r := live[0]
			live = live[1:]
			recs = append(recs, batch.Record{OffsetDelta: int32(len(recs)), Key: r.Key, Value: r.Value})
			size += len(r.Key) + len(r.Value)
		}
		raw = append(raw, batch.Build(batch.Header{
			FirstTimestamp: ms, MaxTimestamp: ms, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		}, recs, batch.CodecNone)...)
		n += len(recs)
	}
	part := s.part
	landed := false // set below, on this goroutine, before the callback can run on it
	res, err := part.Append(raw, func(err error) {
		s.later(func(time.Time) {
			s.inflight--
			switch {
			case err != nil:
				s.log.Error("groups: the compacted "+OffsetsTopic+" records were not written; nothing is trimmed", "err", err)
			case !landed:
				s.log.Error("groups: the compacted " + OffsetsTopic + " records are not at the log end; nothing is trimmed")
			default:
				part.TrimBefore(upTo)
			}
		})
	})
	if err != nil {
		return 0, fmt.Errorf("appending the live records: %w", err)
	}
	s.inflight++
	// Only this shard appends here, so nothing can come between the read and the rewrite.
	landed = res.BaseOffset == upTo
	if !landed {
		return 0, fmt.Errorf("live records landed at offset %d, not at the log end %d", res.BaseOffset, upTo)
	}
	return n, nil
}

// lastValues keeps, in order of first appearance, the last value of every key whose last value
// is not nil.
func lastValues(records []group.Record) []group.Record {
	last := make(map[string]int, len(records))
	var order []string
	for i, r := range records {
		k := string(r.Key)
		if _, ok := last[k]; !ok {
			order = append(order, k)
		}
		last[k] = i
	}
	out := make([]group.Record, 0, len(order))
	for _, k := range order {
		if r := records[last[k]]; r.Value != nil {
			out = append(out, r)
		}
	}
	return out
}
