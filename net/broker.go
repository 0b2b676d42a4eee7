package kafkanet

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/meta"
)

// BrokerConfig holds the broker settings the Kafka APIs expose.
type BrokerConfig struct {
	NodeID            int32
	AdvertisedHost    string
	AdvertisedPort    int32
	AutoCreateTopics  bool  // auto.create.topics.enable
	DefaultPartitions int32 // num.partitions for auto-created topics
	MaxRequestBytes   int32 // socket.request.max.bytes (reported by DescribeConfigs)
	DataDir           string
	Durability        string
	WALIO             string // the WAL writer in use: uring+direct, uring or portable
	// OffsetsCompactRecords: once this many records were appended to __consumer_offsets since
	// it was last compacted, the group loop rewrites the live state and lets the rest go
	// (groups_compact.go). 0 means DefaultOffsetsCompactRecords.
	OffsetsCompactRecords int
}

// Broker implements the Kafka APIs of one node over the metadata store and the log engine.
type Broker struct {
	cfg    BrokerConfig
	meta   *meta.Store
	engine *engine.Engine
	log    *slog.Logger

	// topicMu serialises topic creation and deletion so the metadata store and the engine never
	// disagree about which partitions exist.
	topicMu sync.Mutex

	groups *groupLoop // set by Start
}

// NewBroker returns a broker serving the topics in store from eng.
func NewBroker(cfg BrokerConfig, store *meta.Store, eng *engine.Engine, log *slog.Logger) *Broker {
	return &Broker{cfg: cfg, meta: store, engine: eng, log: log}
}

// Start loads the state the APIs need before the first request: the group coordinator,
// replayed from __consumer_offsets.
func (b *Broker) Start() error { return b.startGroups() }

// Close stops the group coordinator's loop.
func (b *Broker) Close() {
	if b.groups != nil {
		b.groups.close()
	}
}

// Register adds every API the broker handles to reg, one file per API.
func (b *Broker) Register(reg *Registry) {
	reg.Register(API{Key: 18, MinVersion: 0, MaxVersion: 4, Handle: b.newApiVersionsHandler(reg)})
	reg.Register(API{Key: 3, MinVersion: 0, MaxVersion: 12, Handle: b.handleMetadata})
	reg.Register(API{Key: 19, MinVersion: 0, MaxVersion: 7, Handle: b.handleCreateTopics})
	reg.Register(API{Key: 20, MinVersion: 0, MaxVersion: 6, Handle: b.handleDeleteTopics})
	reg.Register(API{Key: 22, MinVersion: 0, MaxVersion: 4, Handle: b.handleInitProducerID})
	reg.Register(API{Key: 0, MinVersion: 3, MaxVersion: 11, Handle: b.handleProduce})
	reg.Register(API{Key: 1, MinVersion: 4, MaxVersion: 12, Handle: b.handleFetch})
	reg.Register(API{Key: 2, MinVersion: 1, MaxVersion: 7, Handle: b.handleListOffsets})
	reg.Register(API{Key: 32, MinVersion: 0, MaxVersion: 4, Handle: b.handleDescribeConfigs})
	reg.Register(API{Key: 33, MinVersion: 0, MaxVersion: 2, Handle: b.handleAlterConfigs})
	reg.Register(API{Key: 37, MinVersion: 0, MaxVersion: 3, Handle: b.handleCreatePartitions})
	reg.Register(API{Key: 21, MinVersion: 0, MaxVersion: 2, Handle: b.handleDeleteRecords})
	reg.Register(API{Key: 44, MinVersion: 0, MaxVersion: 1, Handle: b.handleIncrementalAlterConfigs})
	reg.Register(API{Key: 10, MinVersion: 0, MaxVersion: 6, Handle: b.handleFindCoordinator})
	reg.Register(API{Key: 11, MinVersion: 0, MaxVersion: 9, Handle: b.handleJoinGroup})
	reg.Register(API{Key: 14, MinVersion: 0, MaxVersion: 5, Handle: b.handleSyncGroup})
	reg.Register(API{Key: 12, MinVersion: 0, MaxVersion: 4, Handle: b.handleHeartbeat})
	reg.Register(API{Key: 13, MinVersion: 0, MaxVersion: 5, Handle: b.handleLeaveGroup})
	reg.Register(API{Key: 8, MinVersion: 0, MaxVersion: 9, Handle: b.handleOffsetCommit})
	reg.Register(API{Key: 9, MinVersion: 0, MaxVersion: 9, Handle: b.handleOffsetFetch})
	reg.Register(API{Key: 16, MinVersion: 0, MaxVersion: 5, Handle: b.handleListGroups})
	reg.Register(API{Key: 15, MinVersion: 0, MaxVersion: 6, Handle: b.handleDescribeGroups})
	reg.Register(API{Key: 42, MinVersion: 0, MaxVersion: 3, Handle: b.handleDeleteGroups})
	reg.Register(API{Key: 47, MinVersion: 0, MaxVersion: 0, Handle: b.handleOffsetDelete})
}

// isInternal reports whether topic is one the broker writes itself; clients may read it but
// not produce to it or delete it.
func isInternal(topic string) bool { return topic == OffsetsTopic }

// PartitionSpecs lists the partitions of topics, as the engine must open them.
func PartitionSpecs(topics []meta.Topic) []engine.PartitionSpec {
	var specs []engine.PartitionSpec
	for _, t := range topics {
		cfg := partitionConfig(t)
		for p := int32(0); p < t.Partitions; p++ {
			specs = append(specs, engine.PartitionSpec{
				TopicPartition: engine.TopicPartition{Topic: t.Name, Partition: p},
				TopicID:        t.ID,
				Config:         cfg,
			})
		}
	}
	return specs
}

// partitionConfig translates a topic's configs (validated when set) into the engine's typed
// settings, once per topic change rather than per append.
func partitionConfig(t meta.Topic) engine.PartitionConfig {
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
			Delete: !isInternal(t.Name) && t.Effective("cleanup.policy") == "delete",
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

// createTopic records a topic in the metadata store, then creates its partition logs. A crash
// between the two is repaired at start: the engine creates the partitions the store lists.
func (b *Broker) createTopic(name string, partitions int32, configs map[string]string, validateOnly bool) (meta.Topic, error) {
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	t, err := b.meta.CreateTopic(name, partitions, configs, validateOnly)
	if err != nil || validateOnly {
		return t, err
	}
	for _, spec := range PartitionSpecs([]meta.Topic{t}) {
		if _, err := b.engine.CreatePartition(spec); err != nil {
			return t, fmt.Errorf("creating partition %s-%d: %w", spec.Topic, spec.Partition, err)
		}
	}
	b.log.Info("topic created", "topic", name, "partitions", partitions, "configs", configs)
	return t, nil
}

// deleteTopic removes a topic from the metadata store, then its partition logs; a crash between
// the two is repaired at start, when the engine removes partitions the store does not list.
func (b *Broker) deleteTopic(name string) (meta.Topic, error) {
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	t, err := b.meta.DeleteTopic(name)
	if err != nil {
		return t, err
	}
	var firstErr error
	for p := int32(0); p < t.Partitions; p++ {
		if err := b.engine.DeletePartition(engine.TopicPartition{Topic: name, Partition: p}); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	b.log.Info("topic deleted", "topic", name)
	return t, firstErr
}

// topicForWrite returns the topic, creating it when auto-creation allows; used by Produce and
// Metadata.
func (b *Broker) topicOrCreate(name string, allowAuto bool) (meta.Topic, error) {
	if t, ok := b.meta.Topic(name); ok {
		return t, nil
	}
	if err := meta.ValidateTopicName(name); err != nil {
		return meta.Topic{}, err
	}
	if !allowAuto || !b.cfg.AutoCreateTopics {
		return meta.Topic{}, fmt.Errorf("%w: %q", meta.ErrUnknownTopic, name)
	}
	t, err := b.createTopic(name, b.cfg.DefaultPartitions, nil, false)
	if errors.Is(err, meta.ErrTopicExists) { // created concurrently by another request
		if t, ok := b.meta.Topic(name); ok {
			return t, nil
		}
	}
	return t, err
}

// partition returns the open partition log, or nil.
func (b *Broker) partition(topic string, p int32) *engine.Partition {
	return b.engine.Partition(engine.TopicPartition{Topic: topic, Partition: p})
}
