package broker

import (
	"strconv"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
)

// partitionConfig translates a topic's configs (strings in the metadata store, validated when
// they were set) into the engine's typed settings, once per change: the append path never
// parses a string.
func partitionConfig(t Topic) engine.PartitionConfig {
	maxBytes, _ := strconv.ParseInt(t.Effective("max.message.bytes"), 10, 32)
	retentionMs, _ := strconv.ParseInt(t.Effective("retention.ms"), 10, 64)
	retentionBytes, _ := strconv.ParseInt(t.Effective("retention.bytes"), 10, 64)
	segmentMs, _ := strconv.ParseInt(t.Effective("segment.ms"), 10, 64)
	cfg := engine.PartitionConfig{
		MaxMessageBytes: int32(maxBytes),
		LogAppendTime:   t.Effective("message.timestamp.type") == "LogAppendTime",
		SegmentMs:       segmentMs,
		// The broker's own topics hold state (group offsets) that must never age out.
		Retention: engine.Retention{
			Delete: !IsInternal(t.Name) && t.Effective("cleanup.policy") == "delete",
			Ms:     retentionMs,
			Bytes:  retentionBytes,
		},
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
