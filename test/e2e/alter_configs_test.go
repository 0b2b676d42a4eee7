package e2e

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// topicConfig returns a topic's config value and source as DescribeConfigs reports them.
func topicConfig(t *testing.T, adm *kadm.Client, topic, name string) (string, kmsg.ConfigSource) {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(ctxTimeout(t, opTimeout), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe %s: %v / %v", topic, err, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == name {
			return c.MaybeValue(), c.Source
		}
	}
	t.Fatalf("%s has no config %s", topic, name)
	return "", 0
}

// TestAlterTopicConfigs changes topic configs on a live broker with IncrementalAlterConfigs and
// AlterConfigs (kadm): the new values are reported, take effect on the next produce, survive a
// restart, and bad requests get INVALID_CONFIG / UNKNOWN_TOPIC_OR_PARTITION with a log line.
func TestAlterTopicConfigs(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	createTopic(t, adm, "tuned", 1, nil)
	cl := b.Client(t, kgo.DefaultProduceTopic("tuned"), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordRetries(0))
	big := &kgo.Record{Value: bytes.Repeat([]byte("b"), 20000)}
	produceSync(t, cl, big)

	// Incremental: SET max.message.bytes and retention.ms.
	res, err := adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "max.message.bytes", Value: strp("10000")},
		{Op: kadm.SetConfig, Name: "retention.ms", Value: strp("3600000")},
	}, "tuned")
	if err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("alter: %v / %+v", err, res)
	}
	if v, src := topicConfig(t, adm, "tuned", "max.message.bytes"); v != "10000" || src != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("max.message.bytes %q source %v", v, src)
	}
	// In effect at once: the same 20 kB batch is now too large.
	if err := cl.ProduceSync(ctxTimeout(t, opTimeout), &kgo.Record{Value: big.Value}).FirstErr(); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("produce over the new max.message.bytes: %v", err)
	}

	// Incremental DELETE: back to the default.
	res, err = adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{
		{Op: kadm.DeleteConfig, Name: "max.message.bytes"},
	}, "tuned")
	if err != nil || res[0].Err != nil {
		t.Fatalf("alter delete: %v / %v", err, res[0].Err)
	}
	if v, src := topicConfig(t, adm, "tuned", "max.message.bytes"); v != "1048588" || src != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("after DELETE: max.message.bytes %q source %v", v, src)
	}
	produceSync(t, cl, &kgo.Record{Value: big.Value})

	// Refusals: a bad value, an unknown config, APPEND, an unknown topic; nothing changes.
	for _, tc := range []struct {
		topic string
		ac    kadm.AlterConfig
		want  *kerr.Error
	}{
		{"tuned", kadm.AlterConfig{Op: kadm.SetConfig, Name: "retention.ms", Value: strp("soon")}, kerr.InvalidConfig},
		{"tuned", kadm.AlterConfig{Op: kadm.SetConfig, Name: "flush.everything", Value: strp("1")}, kerr.InvalidConfig},
		{"tuned", kadm.AlterConfig{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: strp("compact")}, kerr.InvalidConfig},
		{"missing", kadm.AlterConfig{Op: kadm.SetConfig, Name: "retention.ms", Value: strp("1")}, kerr.UnknownTopicOrPartition},
	} {
		res, err := adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{tc.ac}, tc.topic)
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(res[0].Err, tc.want) {
			t.Errorf("%s %v on %s: %v, want %v", tc.ac.Name, tc.ac.Op, tc.topic, res[0].Err, tc.want)
		}
	}
	if v, _ := topicConfig(t, adm, "tuned", "retention.ms"); v != "3600000" {
		t.Fatalf("retention.ms %q after refused changes", v)
	}
	b.waitLog(t, "incremental alter configs: refused", "refused IncrementalAlterConfigs")

	// Non-incremental AlterConfigs replaces all overrides: retention.ms returns to its default.
	sres, err := adm.AlterTopicConfigsState(ctxTimeout(t, opTimeout), []kadm.AlterConfig{
		{Name: "retention.bytes", Value: strp("1000000")},
	}, "tuned")
	if err != nil || sres[0].Err != nil {
		t.Fatalf("alter state: %v / %v", err, sres[0].Err)
	}
	b.Stop()
	b.Restart()
	adm = b.Admin(t)
	if v, _ := topicConfig(t, adm, "tuned", "retention.bytes"); v != "1000000" {
		t.Fatalf("after restart: retention.bytes %q", v)
	}
	if v, src := topicConfig(t, adm, "tuned", "retention.ms"); v != "604800000" || src != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("after restart: retention.ms %q source %v", v, src)
	}
}

// TestStandardTopicConfigsAccepted creates a topic with configs Ringtail stores without applying
// (min.compaction.lag.ms was once refused as unknown), changes them with both alter APIs (kadm),
// and reads them back: DescribeConfigs reports each with its value and, for the stored-only ones
// (segment.bytes), documentation saying they are not applied; the compaction configs are applied. A value out of Kafka's range is still refused.
func TestStandardTopicConfigsAccepted(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	createTopic(t, adm, "kafkalike", 1, map[string]*string{
		"min.compaction.lag.ms":     strp("60000"),
		"segment.bytes":             strp("104857600"),
		"min.cleanable.dirty.ratio": strp("0.2"),
	})
	// kadm drops the documentation, so DescribeConfigs v4 goes out raw.
	cl := b.Client(t)
	describe := func(name string) kmsg.DescribeConfigsResponseResourceConfig {
		t.Helper()
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.IncludeDocumentation = true
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, "kafkalike"
		req.Resources = append(req.Resources, rr)
		resp, err := req.RequestWith(ctxTimeout(t, opTimeout), cl)
		if err != nil || len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != 0 {
			t.Fatalf("describe: %v / %+v", err, resp)
		}
		for _, c := range resp.Resources[0].Configs {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("no config %s", name)
		return kmsg.DescribeConfigsResponseResourceConfig{}
	}
	value := func(c kmsg.DescribeConfigsResponseResourceConfig) string {
		if c.Value == nil {
			return ""
		}
		return *c.Value
	}
	if c := describe("segment.bytes"); value(c) != "104857600" || c.Source != kmsg.ConfigSourceDynamicTopicConfig ||
		c.Documentation == nil || !strings.Contains(*c.Documentation, "not applied") {
		t.Fatalf("segment.bytes: %q %v doc %v", value(c), c.Source, c.Documentation)
	}
	// The compaction configs are applied (to cleanup.policy=compact topics: engine/cleaner*.go).
	for _, name := range []string{"min.compaction.lag.ms", "min.cleanable.dirty.ratio", "cleanup.policy"} {
		if c := describe(name); c.Documentation != nil {
			t.Fatalf("%s is applied but documented as %q", name, *c.Documentation)
		}
	}
	if c := describe("min.compaction.lag.ms"); value(c) != "60000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("min.compaction.lag.ms: %q %v", value(c), c.Source)
	}
	if c := describe("flush.ms"); value(c) != "9223372036854775807" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("flush.ms default: %q %v", value(c), c.Source)
	}
	if c := describe("retention.ms"); c.Documentation != nil {
		t.Fatalf("retention.ms is applied but documented as %q", *c.Documentation)
	}

	res, err := adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "max.compaction.lag.ms", Value: strp("86400000")},
		{Op: kadm.DeleteConfig, Name: "segment.bytes"},
	}, "kafkalike")
	if err != nil || res[0].Err != nil {
		t.Fatalf("incremental alter: %v / %+v", err, res)
	}
	if c := describe("max.compaction.lag.ms"); value(c) != "86400000" {
		t.Fatalf("max.compaction.lag.ms %q", value(c))
	}
	if c := describe("segment.bytes"); value(c) != "1073741824" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("segment.bytes after DELETE: %q %v", value(c), c.Source)
	}
	sres, err := adm.AlterTopicConfigsState(ctxTimeout(t, opTimeout), []kadm.AlterConfig{
		{Name: "delete.retention.ms", Value: strp("1000")},
	}, "kafkalike")
	if err != nil || sres[0].Err != nil {
		t.Fatalf("alter state: %v / %v", err, sres[0].Err)
	}
	if c := describe("delete.retention.ms"); value(c) != "1000" {
		t.Fatalf("delete.retention.ms %q", value(c))
	}
	if c := describe("min.compaction.lag.ms"); value(c) != "0" {
		t.Fatalf("min.compaction.lag.ms %q after AlterConfigs replaced the overrides", value(c))
	}
	res, err = adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "min.cleanable.dirty.ratio", Value: strp("2")},
	}, "kafkalike")
	if err != nil || !errors.Is(res[0].Err, kerr.InvalidConfig) {
		t.Fatalf("min.cleanable.dirty.ratio=2: %v / %v, want INVALID_CONFIG", err, res[0].Err)
	}
}
