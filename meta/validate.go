package meta

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
)

// maxTopicNameLen is Kafka's limit: 249 characters, so that "<topic>-<partition>" fits a file name.
const maxTopicNameLen = 249

// ValidateTopicName applies Kafka's rules: 1..249 characters of [a-zA-Z0-9._-], not "." or "..".
func ValidateTopicName(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	if len(name) > maxTopicNameLen {
		return fmt.Errorf("%w: %d characters (at most %d)", ErrInvalidTopic, len(name), maxTopicNameLen)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: %q has character %q (allowed: a-z A-Z 0-9 . _ -)", ErrInvalidTopic, name, c)
		}
	}
	return nil
}

// TopicConfigDefaults are the topic configs Ringtail knows, with their broker defaults: every
// standard Kafka topic config (Kafka 3.x/4.x `TopicConfig`), so tools that copy a topic's configs
// from a Kafka cluster are not refused. Only these are accepted on CreateTopics and
// AlterConfigs, and DescribeConfigs reports them all; TopicConfigApplied says which take effect.
var TopicConfigDefaults = map[string]string{
	"max.message.bytes":      "1048588",
	"compression.type":       "producer",
	"message.timestamp.type": "CreateTime",
	"cleanup.policy":         "delete",
	"retention.ms":           "604800000",
	"retention.bytes":        "-1",
	"segment.ms":             "604800000",
	"min.insync.replicas":    "1",
	// unclean.leader.election.enable: a partition whose in-sync replicas are all gone may be
	// led by a live replica outside the ISR, losing what only the ISR had.
	"unclean.leader.election.enable": "false",
	// Compaction (cleanup.policy=compact, engine/cleaner*.go).
	"min.cleanable.dirty.ratio": "0.5",
	"min.compaction.lag.ms":     "0",
	"max.compaction.lag.ms":     maxLong,
	"delete.retention.ms":       "86400000",

	// Accepted, validated, stored and reported, but not (yet) applied: see TopicConfigApplied.
	"compression.gzip.level":                  "-1",
	"compression.lz4.level":                   "9",
	"compression.zstd.level":                  "3",
	"file.delete.delay.ms":                    "60000",
	"flush.messages":                          maxLong,
	"flush.ms":                                maxLong,
	"follower.replication.throttled.replicas": "",
	"leader.replication.throttled.replicas":   "",
	"index.interval.bytes":                    "4096",
	"local.retention.bytes":                   "-2",
	"local.retention.ms":                      "-2",
	"message.downconversion.enable":           "true",
	"message.format.version":                  "3.0-IV1",
	"message.timestamp.after.max.ms":          maxLong,
	"message.timestamp.before.max.ms":         maxLong,
	"message.timestamp.difference.max.ms":     maxLong,
	"preallocate":                             "false",
	"remote.storage.enable":                   "false",
	"remote.log.copy.disable":                 "false",
	"remote.log.delete.on.disable":            "false",
	"segment.bytes":                           "1073741824",
	"segment.index.bytes":                     "10485760",
	"segment.jitter.ms":                       "0",
}

// maxLong is Java's Long.MAX_VALUE, Kafka's default for "no limit" in several configs.
const maxLong = "9223372036854775807"

// TopicConfigApplied names the topic configs Ringtail acts on. The others in
// TopicConfigDefaults are kept so that a topic's configuration survives a round trip through
// Ringtail, and DescribeConfigs says of each that it is not applied. Why not, in short: flush
// settings are moot since every acknowledged batch is synced; segment size and indexes are the
// broker's (--segment-bytes); there is no tiered storage, no down-conversion (no message format
// below v2 is served) and no replication throttling; compression levels and preallocation are
// the codecs' and the WAL's own.
var TopicConfigApplied = map[string]bool{
	"max.message.bytes":              true,
	"compression.type":               true,
	"message.timestamp.type":         true,
	"cleanup.policy":                 true,
	"retention.ms":                   true,
	"retention.bytes":                true,
	"segment.ms":                     true,
	"min.insync.replicas":            true,
	"unclean.leader.election.enable": true,
	"min.cleanable.dirty.ratio":      true,
	"min.compaction.lag.ms":          true,
	"max.compaction.lag.ms":          true,
	"delete.retention.ms":            true,
}

// ValidateConfigs refuses unknown topic configs and values out of range. Keys are checked in
// sorted order, so with several bad ones every caller (and every replica applying a command)
// reports the same one.
func ValidateConfigs(configs map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(configs)) {
		if _, ok := TopicConfigDefaults[k]; !ok {
			return fmt.Errorf("%w: unknown topic config %q", ErrInvalidConfig, k)
		}
		if err := validateConfig(k, configs[k]); err != nil {
			return err
		}
	}
	return nil
}

func validateConfig(k, v string) error {
	bad := func(why string) error { return fmt.Errorf("%w: %s=%q: %s", ErrInvalidConfig, k, v, why) }
	// atLeast checks an integer of bits bits that must be at least least.
	atLeast := func(bits int, least int64) error {
		if n, err := strconv.ParseInt(v, 10, bits); err != nil || n < least {
			return bad(fmt.Sprintf("must be a %d-bit integer of at least %d", bits, least))
		}
		return nil
	}
	switch k {
	case "max.message.bytes":
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return bad("must be a positive 32-bit integer")
		}
	case "compression.type":
		switch v {
		case "producer", "uncompressed", "gzip", "snappy", "lz4", "zstd":
		default:
			return bad("must be producer, uncompressed, gzip, snappy, lz4 or zstd")
		}
	case "message.timestamp.type":
		if v != "CreateTime" && v != "LogAppendTime" {
			return bad("must be CreateTime or LogAppendTime")
		}
	case "cleanup.policy":
		switch v {
		case "delete", "compact", "compact,delete", "delete,compact":
		default:
			return bad("must be delete, compact or compact,delete")
		}
	case "retention.ms", "retention.bytes":
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < -1 {
			return bad("must be an integer, -1 for no limit")
		}
	case "segment.ms":
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 1 {
			return bad("must be a positive integer (milliseconds)")
		}
	case "min.insync.replicas":
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return bad("must be a positive integer")
		}
	case "unclean.leader.election.enable", "message.downconversion.enable", "preallocate",
		"remote.storage.enable", "remote.log.copy.disable", "remote.log.delete.on.disable":
		if v != "true" && v != "false" {
			return bad("must be true or false")
		}
	// Kafka's ranges for the configs that are stored only.
	case "compression.gzip.level":
		if n, err := strconv.Atoi(v); err != nil || (n != -1 && (n < 1 || n > 9)) {
			return bad("must be -1 or 1..9")
		}
	case "compression.lz4.level":
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 17 {
			return bad("must be 1..17")
		}
	case "compression.zstd.level":
		if n, err := strconv.Atoi(v); err != nil || n < -131072 || n > 22 {
			return bad("must be -131072..22")
		}
	case "delete.retention.ms", "file.delete.delay.ms", "max.compaction.lag.ms",
		"message.timestamp.after.max.ms", "message.timestamp.before.max.ms",
		"message.timestamp.difference.max.ms", "min.compaction.lag.ms", "segment.jitter.ms":
		return atLeast(64, 0)
	case "flush.messages", "flush.ms":
		return atLeast(64, 1)
	case "local.retention.bytes", "local.retention.ms":
		return atLeast(64, -2)
	case "index.interval.bytes":
		return atLeast(32, 0)
	case "segment.bytes":
		return atLeast(32, 1<<20) // Kafka's floor: 1 MiB (LegacyRecord.RECORD_OVERHEAD_V0 aside)
	case "segment.index.bytes":
		return atLeast(32, 4)
	case "min.cleanable.dirty.ratio":
		if f, err := strconv.ParseFloat(v, 64); err != nil || f < 0 || f > 1 {
			return bad("must be a number between 0 and 1")
		}
	case "follower.replication.throttled.replicas", "leader.replication.throttled.replicas":
		// Kafka's form: "", "*", or partition:broker pairs separated by commas.
		if v != "" && v != "*" && !throttledReplicas.MatchString(v) {
			return bad(`must be "", "*" or a list of partition:broker pairs`)
		}
	case "message.format.version":
		// Accepted for compatibility; Kafka 3.0+ ignores it too (it always writes v2).
		if v == "" {
			return bad("must be a Kafka version such as 3.0-IV1")
		}
	}
	return nil
}

// throttledReplicas is Kafka's ThrottledReplicaListValidator pattern.
var throttledReplicas = regexp.MustCompile(`^\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*$`)

// Effective returns the value of config k for topic t: its override, else the default.
func (t Topic) Effective(k string) string {
	if v, ok := t.Configs[k]; ok {
		return v
	}
	return TopicConfigDefaults[k]
}
