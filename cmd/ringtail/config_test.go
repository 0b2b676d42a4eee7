package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ringtail.conf")
	if err := os.WriteFile(file, []byte("# a comment\ndata-dir = /from/file\nnode-id = 7\nnum-partitions = 4\nlisten = 127.0.0.1:1111, 127.0.0.1:2222\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RINGTAIL_NODE_ID": "8", "RINGTAIL_NUM_PARTITIONS": "5"}
	cfg, err := loadConfig([]string{"--config", file, "--num-partitions", "6"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from/file" {
		t.Errorf("data-dir from file: %q", cfg.DataDir)
	}
	if cfg.NodeID != 8 {
		t.Errorf("node-id: env should beat file, got %d", cfg.NodeID)
	}
	if cfg.NumPartitions != 6 {
		t.Errorf("num-partitions: flag should beat env, got %d", cfg.NumPartitions)
	}
	if want := []string{"127.0.0.1:1111", "127.0.0.1:2222"}; !reflect.DeepEqual(cfg.Listen, want) {
		t.Errorf("listen: %v, want %v", cfg.Listen, want)
	}
	if cfg.Durability != "fsync" || !cfg.AutoCreateTopics {
		t.Errorf("defaults: durability %q auto-create %v", cfg.Durability, cfg.AutoCreateTopics)
	}
}

func TestConfigRepeatedListenFlag(t *testing.T) {
	cfg, err := loadConfig([]string{"--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:1", "127.0.0.1:2"}; !reflect.DeepEqual(cfg.Listen, want) {
		t.Fatalf("listen: %v", cfg.Listen)
	}
}

func TestConfigRefusesBadValues(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(file, []byte("no-such-key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--durability", "maybe"},
		{"--node-id", "-1"},
		{"--listen", "nonsense"},
		{"--num-partitions", "0"},
		{"--offsets-topic-partitions", "0"},
		{"--offsets-topic-partitions", "many"},
		{"--config", file},
		{"extra-arg"},
	} {
		if _, err := loadConfig(args, func(string) string { return "" }); err == nil {
			t.Errorf("loadConfig(%v) accepted bad input", args)
		}
	}
}

func TestConfigOffsetsTopicPartitions(t *testing.T) {
	cfg, err := loadConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OffsetsPartitions != 50 {
		t.Errorf("default offsets-topic-partitions: %d, want Kafka's 50", cfg.OffsetsPartitions)
	}
	file := filepath.Join(t.TempDir(), "ringtail.conf")
	if err := os.WriteFile(file, []byte("offsets-topic-partitions = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = loadConfig([]string{"--config", file}, func(string) string { return "" })
	if err != nil || cfg.OffsetsPartitions != 3 {
		t.Fatalf("from the file: %d, %v; want 3", cfg.OffsetsPartitions, err)
	}
	env := map[string]string{"RINGTAIL_OFFSETS_TOPIC_PARTITIONS": "7"}
	cfg, err = loadConfig([]string{"--config", file}, func(k string) string { return env[k] })
	if err != nil || cfg.OffsetsPartitions != 7 {
		t.Fatalf("from the environment: %d, %v; want 7", cfg.OffsetsPartitions, err)
	}
	cfg, err = loadConfig([]string{"--config", file, "--offsets-topic-partitions", "9"}, func(k string) string { return env[k] })
	if err != nil || cfg.OffsetsPartitions != 9 {
		t.Fatalf("from the flag: %d, %v; want 9", cfg.OffsetsPartitions, err)
	}
}

func TestConfigFailureDetection(t *testing.T) {
	cluster := []string{"--node-id", "1", "--peers", "1@127.0.0.1:9192"}
	load := func(args ...string) (*config, error) {
		return loadConfig(append(slices.Clone(cluster), args...), func(string) string { return "" })
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SessionTimeout != 9*time.Second || cfg.HeartbeatInterval != 500*time.Millisecond || cfg.DisconnectGrace != time.Second {
		t.Errorf("defaults: session %v, heartbeat %v, disconnect grace %v; want 9s, 500ms, 1s", cfg.SessionTimeout, cfg.HeartbeatInterval, cfg.DisconnectGrace)
	}
	if cfg, err := load("--disconnect-grace", "0", "--heartbeat-interval", "2s"); err != nil || cfg.DisconnectGrace != 0 || disconnectGrace(cfg.DisconnectGrace) >= 0 {
		t.Errorf("--disconnect-grace 0 (off): %+v, %v", cfg, err)
	}
	for _, args := range [][]string{
		{"--heartbeat-interval", "50ms"},
		{"--heartbeat-interval", "4s"},                                   // more than a third of the session
		{"--heartbeat-interval", "1s"},                                   // the grace is less than two intervals
		{"--disconnect-grace", "10s"},                                    // more than the session
		{"--disconnect-grace", "-1s"},                                    // negative
		{"--session-timeout", "3s", "--heartbeat-interval", "1100ms"},    // more than a third of the session
		{"--disconnect-grace", "800ms", "--heartbeat-interval", "500ms"}, // less than two intervals
	} {
		if _, err := load(args...); err == nil {
			t.Errorf("loadConfig(%v) accepted bad input", args)
		}
	}
	if _, err := load("--heartbeat-interval", "1s", "--disconnect-grace", "2s"); err != nil {
		t.Errorf("a 1 s heartbeat with a 2 s grace: %v", err)
	}
}

func TestConfigGroupConsumer(t *testing.T) {
	noEnv := func(string) string { return "" }
	cfg, err := loadConfig(nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	// Kafka's defaults.
	if cfg.GroupConsumerSessionTimeout != 45*time.Second || cfg.GroupConsumerHeartbeatInterval != 5*time.Second ||
		cfg.GroupConsumerMaxSize != 0 || !slices.Equal(cfg.GroupConsumerAssignors, []string{"uniform", "range"}) {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, err = loadConfig([]string{"--group-consumer-session-timeout", "50s", "--group-consumer-heartbeat-interval", "10s",
		"--group-consumer-max-size", "8", "--group-consumer-assignors", "org.apache.kafka.coordinator.group.assignor.RangeAssignor, uniform"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GroupConsumerSessionTimeout != 50*time.Second || cfg.GroupConsumerHeartbeatInterval != 10*time.Second ||
		cfg.GroupConsumerMaxSize != 8 || !slices.Equal(cfg.GroupConsumerAssignors, []string{"range", "uniform"}) {
		t.Errorf("set: %+v", cfg)
	}
	for _, args := range [][]string{
		{"--group-consumer-session-timeout", "30s"},                                                     // below the min
		{"--group-consumer-session-timeout", "61s"},                                                     // above the max
		{"--group-consumer-heartbeat-interval", "4s"},                                                   // below the min
		{"--group-consumer-heartbeat-interval", "16s"},                                                  // above the max
		{"--group-consumer-max-heartbeat-interval", "2m", "--group-consumer-heartbeat-interval", "45s"}, // not less than the session
		{"--group-consumer-session-timeout", "0s"},
		{"--group-consumer-max-size", "-1"},
		{"--group-consumer-assignors", "sticky"},
		{"--group-consumer-assignors", "uniform,"},
	} {
		if _, err := loadConfig(args, noEnv); err == nil {
			t.Errorf("loadConfig(%v) accepted bad input", args)
		}
	}
}
