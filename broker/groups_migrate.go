package broker

import (
	"slices"
	"time"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/group"
)

// Records of the private encoding older Ringtail versions wrote to __consumer_offsets are read
// as Kafka's (group.Canonical names the same group or offset either way), but the log cleaner
// keys by bytes: a legacy record and a later record of its twin in Kafka's schemas are two keys
// to it, so the legacy one would stay, and once a later tombstone of the twin is cleaned away a
// replay would bring the legacy value back. So a shard that loaded such records rewrites them at
// the log end, once: under every legacy key a nil value (replay deletes what it names; the
// cleaner drops the legacy records it supersedes, and after delete.retention.ms itself), then
// the live value of what it names in Kafka's schema, which replay restores.

// migrationChunk* bound one batch of the rewrite, well inside the partition's 100 MiB
// max.message.bytes whatever the size of a group's metadata.
const (
	migrationChunkRecords = 10_000
	migrationChunkBytes   = 16 << 20
)

// migrationRecords returns the rewrite of settled records (in log order, transactions
// resolved): for each group or offset a legacy record names, the tombstones under each of its
// legacy keys and then its last value in Kafka's schema, unless deleted. Each group of them
// must land in one batch: a replay that met a tombstone but not the value would lose it.
func migrationRecords(records []group.Record) ([][]group.Record, error) {
	type named struct {
		legacyKeys []string
		last       group.Record // in Kafka's schema
	}
	byKey := map[string]*named{}
	var order []string
	for _, r := range records {
		c, legacy, err := group.Canonical(r)
		if err != nil {
			return nil, err
		}
		n := byKey[string(c.Key)]
		if n == nil {
			n = &named{}
			byKey[string(c.Key)] = n
			order = append(order, string(c.Key))
		}
		n.last = c
		if legacy && !slices.Contains(n.legacyKeys, string(r.Key)) {
			n.legacyKeys = append(n.legacyKeys, string(r.Key))
		}
	}
	var out [][]group.Record
	for _, k := range order {
		n := byKey[k]
		if len(n.legacyKeys) == 0 {
			continue
		}
		var g []group.Record
		for _, lk := range n.legacyKeys {
			g = append(g, group.Record{Key: []byte(lk)})
		}
		if n.last.Value != nil {
			g = append(g, n.last)
		}
		out = append(out, g)
	}
	return out, nil
}

// migrate appends the rewrite replay prepared. On the shard's goroutine, before it serves.
// A failure leaves the legacy records in place: the next load tries again.
func (s *groupShard) migrate() {
	groups := s.migration
	s.migration = nil
	for len(groups) > 0 {
		var chunk []batch.Record
		size := 0
		for len(groups) > 0 && (len(chunk) == 0 || len(chunk)+len(groups[0]) <= migrationChunkRecords && size+groupBytes(groups[0]) <= migrationChunkBytes) {
			for _, r := range groups[0] {
				chunk = append(chunk, batch.Record{OffsetDelta: int32(len(chunk)), Key: r.Key, Value: r.Value})
			}
			size += groupBytes(groups[0])
			groups = groups[1:]
		}
		ms := time.Now().UnixMilli()
		raw := batch.Build(batch.Header{FirstTimestamp: ms, MaxTimestamp: ms, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
			chunk, batch.CodecNone)
		n := len(chunk)
		if err := s.appendRaw(raw, func(err error) {
			if err != nil {
				s.log.Error("groups: rewriting records of the private encoding in Kafka's schemas failed; the next load tries again", "err", err)
				return
			}
			s.log.Info("groups: records of the private encoding rewritten in Kafka's schemas", "records", n)
		}); err != nil {
			s.log.Error("groups: rewriting records of the private encoding in Kafka's schemas failed; the next load tries again", "err", err)
			return
		}
	}
}

func groupBytes(g []group.Record) int {
	n := 0
	for _, r := range g {
		n += len(r.Key) + len(r.Value)
	}
	return n
}
