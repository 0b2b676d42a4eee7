package perf

import (
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Config describes one run. The zero value is not useful; start from DefaultConfig.
type Config struct {
	Mode              string        `json:"mode"` // produce, consume, e2e, txn
	Brokers           []string      `json:"brokers"`
	Topic             string        `json:"topic"`
	Partitions        int32         `json:"partitions"`
	CreateTopic       bool          `json:"create_topic"`
	ReplicationFactor int16         `json:"replication_factor"`
	Size              int           `json:"record_bytes"`
	Duration          time.Duration `json:"-"`
	Warmup            time.Duration `json:"-"`
	Count             int64         `json:"count,omitempty"` // stop after this many measured messages (0: use Duration)
	Acks              string        `json:"acks"`            // 0, 1, all
	Compression       string        `json:"compression"`     // none, gzip, snappy, lz4, zstd
	Keys              string        `json:"keys"`            // none, random, sequential
	Concurrency       int           `json:"concurrency"`     // closed loop: producers each waiting for its ack
	Clients           int           `json:"clients"`         // franz-go clients (connections) shared by the producers
	Pipeline          bool          `json:"pipeline"`        // pipelined batching instead of one record per producer
	Linger            time.Duration `json:"-"`
	BatchBytes        int32         `json:"batch_bytes"`
	MaxInflight       int           `json:"max_inflight"`
	Idempotent        bool          `json:"idempotent"`
	Retries           int           `json:"retries"`        // produce retries per record (-1: unlimited)
	MaxBuffered       int           `json:"max_buffered"`   // records buffered per client before Produce blocks
	Rate              float64       `json:"rate,omitempty"` // open loop: offered msg/s (0: closed loop)
	Group             string        `json:"group,omitempty"`
	// Prefill: a consume run first produces this many records, spread round robin over the
	// partitions (pipelined, acks=all), and then reads them all (the consume-1000 workload).
	Prefill    int64 `json:"prefill,omitempty"`
	BrokerPID  int   `json:"broker_pid,omitempty"`
	BrokerPIDs []int `json:"broker_pids,omitempty"` // several broker processes (a cluster): their CPU is summed
	// TopicConfigs are set on the topic when the run creates it (e.g. min.insync.replicas).
	TopicConfigs map[string]string `json:"topic_configs,omitempty"`
	// Pinned: the bench runs the broker on the last CPU and the client on the others (a
	// workload named <name>-pinned), instead of letting them share every CPU.
	Pinned bool `json:"pinned,omitempty"`

	// Human-readable copies of the durations for the JSON output.
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`
	LingerMs  float64 `json:"linger_ms"`
}

// DefaultConfig is the seed workload: 128 closed-loop producers of 256-byte records, acks=all,
// 6 partitions, 30 s after a 5 s warm-up.
func DefaultConfig() Config {
	return Config{
		Mode:              "produce",
		Brokers:           []string{"127.0.0.1:9092"},
		Topic:             "perf",
		Partitions:        6,
		ReplicationFactor: 1,
		Size:              256,
		Duration:          30 * time.Second,
		Warmup:            5 * time.Second,
		Acks:              "all",
		Compression:       "none",
		Keys:              "none",
		Concurrency:       128,
		Clients:           1,
		BatchBytes:        64 << 10,
		MaxInflight:       5,
	}
}

// Validate checks the configuration and fills the derived fields.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("no --brokers")
	}
	if c.Topic == "" {
		return fmt.Errorf("no --topic")
	}
	if c.Size < 8 && c.Mode == "e2e" {
		return fmt.Errorf("e2e needs -s >= 8 to carry the timestamp")
	}
	if c.Size < 0 {
		return fmt.Errorf("negative -s")
	}
	if c.Duration <= 0 && c.Count <= 0 && c.Mode != "consume" {
		return fmt.Errorf("need -d or -n")
	}
	if _, err := c.acks(); err != nil {
		return err
	}
	if _, err := c.codec(); err != nil {
		return err
	}
	switch c.Keys {
	case "none", "random", "sequential":
	default:
		return fmt.Errorf("--keys must be none, random or sequential")
	}
	if c.Concurrency < 1 {
		c.Concurrency = 1
	}
	if c.Clients < 1 {
		c.Clients = 1
	}
	if c.MaxInflight < 1 {
		c.MaxInflight = 1
	}
	if c.Linger > 0 {
		c.Pipeline = true
	}
	c.DurationS, c.WarmupS, c.LingerMs = c.Duration.Seconds(), c.Warmup.Seconds(), float64(c.Linger)/float64(time.Millisecond)
	return nil
}

// brokerPIDs are the broker processes whose CPU the run reports, summed.
func (c *Config) brokerPIDs() []int {
	if len(c.BrokerPIDs) > 0 {
		return c.BrokerPIDs
	}
	if c.BrokerPID > 0 {
		return []int{c.BrokerPID}
	}
	return nil
}

// Workload names the shape of the run for the report.
func (c *Config) Workload() string {
	switch {
	case c.Mode == "consume" && c.Group != "":
		return "consume-group"
	case c.Mode != "produce":
		return c.Mode
	case c.Rate > 0:
		return "open-loop"
	case c.Pipeline:
		return "pipelined"
	}
	return "closed-loop"
}

func (c *Config) acks() (kgo.Acks, error) {
	switch c.Acks {
	case "0":
		return kgo.NoAck(), nil
	case "1":
		return kgo.LeaderAck(), nil
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	}
	return kgo.Acks{}, fmt.Errorf("--acks must be 0, 1 or all")
}

func (c *Config) codec() (kgo.CompressionCodec, error) {
	switch strings.ToLower(c.Compression) {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("--compression must be none, gzip, snappy, lz4 or zstd")
}

// producerOpts builds the franz-go options for one producing client.
func (c *Config) producerOpts() []kgo.Opt {
	acks, _ := c.acks()
	codec, _ := c.codec()
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerBatchMaxBytes(c.BatchBytes),
		kgo.ProducerLinger(c.Linger), // 0 for the closed loop: send as soon as a record is there
		kgo.ProduceRequestTimeout(30 * time.Second),
		kgo.MetadataMinAge(time.Second),
	}
	if c.Retries >= 0 {
		opts = append(opts, kgo.RecordRetries(c.Retries)) // by default a failure is reported, not hidden by a retry
	}
	if c.MaxBuffered > 0 {
		opts = append(opts, kgo.MaxBufferedRecords(c.MaxBuffered))
	}
	if c.Acks != "all" || !c.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(c.MaxInflight))
	}
	if c.Keys != "none" {
		// keyed records are hashed to partitions the way Kafka's default partitioner does
		opts = append(opts, kgo.RecordPartitioner(kgo.UniformBytesPartitioner(int(c.BatchBytes), true, true, nil)))
	}
	return opts
}
