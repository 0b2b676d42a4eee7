package meta

import (
	"fmt"
	"maps"
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

// TopicConfigDefaults are the topic configs Ringtail knows, with their broker defaults. Only these
// are accepted on CreateTopics and reported by DescribeConfigs.
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
		if v != "delete" {
			return bad("only delete is supported")
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
	case "unclean.leader.election.enable":
		if v != "true" && v != "false" {
			return bad("must be true or false")
		}
	}
	return nil
}

// Effective returns the value of config k for topic t: its override, else the default.
func (t Topic) Effective(k string) string {
	if v, ok := t.Configs[k]; ok {
		return v
	}
	return TopicConfigDefaults[k]
}
