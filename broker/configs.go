package broker

import (
	"strconv"
	"strings"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
)

// internalSegmentBytes is Kafka's segment size for its internal topics
// (offsets.topic.segment.bytes, transaction.state.log.segment.bytes: 100 MiB).
const internalSegmentBytes = 100 << 20

// partitionConfig translates a topic's configs (strings in the metadata store, validated when
// they were set) into the engine's typed settings, once per change: the append path never
// parses a string.
func partitionConfig(t Topic) engine.PartitionConfig {
	maxBytes, _ := strconv.ParseInt(t.Effective("max.message.bytes"), 10, 32)
	retentionMs, _ := strconv.ParseInt(t.Effective("retention.ms"), 10, 64)
	retentionBytes, _ := strconv.ParseInt(t.Effective("retention.bytes"), 10, 64)
	segmentMs, _ := strconv.ParseInt(t.Effective("segment.ms"), 10, 64)
	policy := t.Effective("cleanup.policy")
	cfg := engine.PartitionConfig{
		MaxMessageBytes: int32(maxBytes),
		LogAppendTime:   t.Effective("message.timestamp.type") == "LogAppendTime",
		SegmentMs:       segmentMs,
		// The broker's own topics hold state (group offsets) that must never age out.
		Retention: engine.Retention{
			Delete: !IsInternal(t.Name) && strings.Contains(policy, "delete"),
			Ms:     retentionMs,
			Bytes:  retentionBytes,
		},
	}
	// The internal topics are always compacted, whatever their stored cleanup.policy (topics
	// created by versions that compacted them on their own carry none), with Kafka's segment
	// size for them (offsets.topic.segment.bytes, transaction.state.log.segment.bytes) when the
	// broker's --segment-bytes is larger: the cleaner only rewrites sealed segments.
	if internal := IsInternal(t.Name); internal || strings.Contains(policy, "compact") {
		ratio, _ := strconv.ParseFloat(t.Effective("min.cleanable.dirty.ratio"), 64)
		minLag, _ := strconv.ParseInt(t.Effective("min.compaction.lag.ms"), 10, 64)
		maxLag, _ := strconv.ParseInt(t.Effective("max.compaction.lag.ms"), 10, 64)
		deleteRetention, _ := strconv.ParseInt(t.Effective("delete.retention.ms"), 10, 64)
		cfg.Compaction = engine.Compaction{Enabled: true, MinDirtyRatio: ratio, MinLagMs: minLag, MaxLagMs: maxLag,
			DeleteRetentionMs: deleteRetention}
		if internal {
			cfg.SegmentBytes = internalSegmentBytes
		}
	}
	switch c := t.Effective("compression.type"); c {
	case "producer":
	case "uncompressed":
		cfg.Recompress, cfg.Compression = true, batch.CodecNone
	default:
		cfg.Compression, cfg.Recompress = batch.ParseCodec(c)
	}
	return cfg
}
