package broker

import (
	"testing"

	"github.com/ringtail/ringtail/engine"
)

// TestInternalTopicsCompact: the internal topics are compacted with Kafka's defaults and never
// lose records to retention, also when created by a version that stored no cleanup.policy for
// them or when an operator sets delete; a user topic compacts only when it says so.
func TestInternalTopicsCompact(t *testing.T) {
	for _, tc := range []struct {
		topic   Topic
		compact bool
		segment int64
	}{
		{Topic{Name: OffsetsTopic}, true, internalSegmentBytes},
		{Topic{Name: TxnTopic, Configs: map[string]string{"cleanup.policy": "delete"}}, true, internalSegmentBytes},
		{Topic{Name: OffsetsTopic, Configs: offsetsTopicConfigs}, true, internalSegmentBytes},
		{Topic{Name: "user"}, false, 0},
		{Topic{Name: "user", Configs: map[string]string{"cleanup.policy": "compact,delete"}}, true, 0},
	} {
		cfg := partitionConfig(tc.topic)
		if cfg.Compaction.Enabled != tc.compact || cfg.SegmentBytes != tc.segment {
			t.Errorf("%s %v: compaction %+v, segment bytes %d; want compaction %v, segment bytes %d",
				tc.topic.Name, tc.topic.Configs, cfg.Compaction, cfg.SegmentBytes, tc.compact, tc.segment)
		}
		if IsInternal(tc.topic.Name) {
			if cfg.Retention.Delete {
				t.Errorf("%s %v: retention deletes", tc.topic.Name, tc.topic.Configs)
			}
			if want := engine.DefaultCompaction; cfg.Compaction != want {
				t.Errorf("%s: compaction %+v, want Kafka's defaults %+v", tc.topic.Name, cfg.Compaction, want)
			}
		}
	}
}
