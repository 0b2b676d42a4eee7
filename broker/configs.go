package broker

import (
	"strconv"

	"github.com/ringtail/ringtail/engine"
)

// partitionConfig translates a topic's configs (strings in the metadata store, validated when
// they were set) into the engine's typed settings, once per change: the append path never
// parses a string.
func partitionConfig(t Topic) engine.PartitionConfig {
	maxBytes, _ := strconv.ParseInt(t.Effective("max.message.bytes"), 10, 32)
	compression := t.Effective("compression.type")
	if compression == "uncompressed" {
		compression = "none"
	}
	retentionMs, _ := strconv.ParseInt(t.Effective("retention.ms"), 10, 64)
	retentionBytes, _ := strconv.ParseInt(t.Effective("retention.bytes"), 10, 64)
	segmentMs, _ := strconv.ParseInt(t.Effective("segment.ms"), 10, 64)
	return engine.PartitionConfig{
		MaxMessageBytes:      int32(maxBytes),
		MessageTimestampType: t.Effective("message.timestamp.type"),
		CompressionType:      compression,
		SegmentMs:            segmentMs,
		// The broker's own topics hold state (group offsets) that must never age out.
		Retention: engine.Retention{
			Delete: !IsInternal(t.Name) && t.Effective("cleanup.policy") == "delete",
			Ms:     retentionMs,
			Bytes:  retentionBytes,
		},
	}
}
