package broker

import (
	"errors"
	"fmt"
	"maps"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/controller"
)

// Topic is a topic's metadata as the node reports it (a copy; changing it changes nothing).
type Topic = meta.Topic

// TopicPartition names one partition.
type TopicPartition = engine.TopicPartition

// TopicConfigDefaults are the topic configs Ringtail knows, with their broker defaults.
var TopicConfigDefaults = meta.TopicConfigDefaults

// TopicConfigApplied names the topic configs Ringtail acts on; the rest are stored only.
var TopicConfigApplied = meta.TopicConfigApplied

// MaxPartitions bounds a topic's partition count.
const MaxPartitions = meta.MaxPartitions

// OffsetsTopic is the internal topic holding committed offsets and group metadata: the
// coordinator's records, appended through the same log and durability path as any produce.
const OffsetsTopic = "__consumer_offsets"

// offsetsTopicConfigs lets one coordinator batch hold a large group's metadata; the topic is
// compacted by the log cleaner, as Kafka's (whatever the topic says: partitionConfig).
var offsetsTopicConfigs = map[string]string{"max.message.bytes": "104857600", "cleanup.policy": "compact"}

// IsInternal reports whether topic is one the broker writes itself; clients may read it but
// not produce to it, delete it, change its partitions or move its start.
func IsInternal(topic string) bool { return topic == OffsetsTopic || topic == TxnTopic }

// Topics returns every topic sorted by name.
func (b *Broker) Topics() []Topic { return b.meta.Topics() }

// Topic returns one topic by name.
func (b *Broker) Topic(name string) (Topic, bool) { return b.meta.Topic(name) }

// TopicByID returns one topic by its id.
func (b *Broker) TopicByID(id [16]byte) (Topic, bool) { return b.meta.TopicByID(id) }

// CreateTopicRequest is one topic of a CreateTopics request.
type CreateTopicRequest struct {
	Name string
	// Partitions and ReplicationFactor: -1 means the broker default. With Assignment (one
	// replica list per partition) both must be -1.
	Partitions        int32
	ReplicationFactor int16
	Assignment        [][]int32
	Configs           map[string]string // overrides; a key absent means the default
	ValidateOnly      bool
}

// CreateTopic checks and creates a topic: the metadata store first, then its partition logs.
// A crash between the two is repaired at start (the engine creates what the store lists). In a
// cluster the replicas are placed over the live brokers (meta/controller.Placement) or where
// the request assigns them, and each node opens its partitions as it follows the metadata.
func (b *Broker) CreateTopic(r CreateTopicRequest) (Topic, error) {
	partitions := r.Partitions
	if len(r.Assignment) > 0 {
		if partitions != -1 || r.ReplicationFactor != -1 {
			return Topic{}, fmt.Errorf("%w: replica assignment given with a partition count or replication factor", ErrInvalidRequest)
		}
		if b.cl == nil {
			for p, replicas := range r.Assignment {
				if len(replicas) != 1 || replicas[0] != b.cfg.NodeID {
					return Topic{}, fmt.Errorf("%w: partition %d assigned to brokers %v; this cluster has only broker %d", ErrInvalidRF, p, replicas, b.cfg.NodeID)
				}
			}
		}
		partitions = int32(len(r.Assignment))
	}
	if partitions == -1 {
		partitions = b.cfg.DefaultPartitions
	}
	if b.cl != nil {
		return b.createPlaced(r.Name, partitions, r.ReplicationFactor, r.Assignment, r.Configs, r.ValidateOnly)
	}
	if r.ReplicationFactor != -1 && r.ReplicationFactor != 1 {
		return Topic{}, fmt.Errorf("%w: %d larger than the 1 available broker", ErrInvalidRF, r.ReplicationFactor)
	}
	return b.createTopic(r.Name, partitions, r.Configs, r.ValidateOnly)
}

// createPlaced creates a topic in a cluster. rf -1 means the default, 1 (Kafka's
// default.replication.factor).
func (b *Broker) createPlaced(name string, partitions int32, rf int16, assignment [][]int32, configs map[string]string, validateOnly bool) (Topic, error) {
	if err := meta.ValidateTopicName(name); err != nil {
		return Topic{}, err
	}
	if partitions < 1 || partitions > MaxPartitions {
		return Topic{}, fmt.Errorf("%w: %d (must be 1..%d)", ErrInvalidPartitions, partitions, MaxPartitions)
	}
	if !validateOnly {
		if err := b.checkController(); err != nil {
			return Topic{}, err
		}
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	replicas := assignment
	if replicas == nil {
		if rf == -1 {
			rf = 1
		}
		if rf < 1 {
			return Topic{}, fmt.Errorf("%w: %d", ErrInvalidRF, rf)
		}
		var err error
		if replicas, err = controller.Placement(b.meta.State(), int(partitions), int(rf), nil); err != nil {
			return Topic{}, err
		}
	}
	t, err := b.meta.CreateTopicPlaced(name, replicas, configs, validateOnly)
	if err != nil || validateOnly {
		return t, b.metadataError(err)
	}
	b.reconcileLocked(b.meta.State())
	b.log.Info("topic created", "topic", name, "partitions", partitions, "replicas", replicas, "configs", configs)
	return t, nil
}

func (b *Broker) createTopic(name string, partitions int32, configs map[string]string, validateOnly bool) (Topic, error) {
	if b.cl != nil {
		return b.createPlaced(name, partitions, -1, nil, configs, validateOnly)
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	t, err := b.meta.CreateTopic(name, partitions, configs, validateOnly)
	if err != nil || validateOnly {
		return t, err
	}
	for _, spec := range PartitionSpecs([]Topic{t}) {
		if _, err := b.engine.CreatePartition(spec); err != nil {
			return t, fmt.Errorf("creating partition %s-%d: %w", spec.Topic, spec.Partition, err)
		}
	}
	b.log.Info("topic created", "topic", name, "partitions", partitions, "configs", configs)
	return t, nil
}

// DeleteTopic removes a topic from the metadata store, then its partition logs; a crash between
// the two is repaired at start, when the engine removes partitions the store does not list.
// Internal topics cannot be deleted.
func (b *Broker) DeleteTopic(name string) (Topic, error) {
	if IsInternal(name) {
		return Topic{}, fmt.Errorf("%w: %s is internal and cannot be deleted", ErrInvalidTopic, name)
	}
	if err := b.checkController(); err != nil {
		return Topic{}, err
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	t, err := b.meta.DeleteTopic(name)
	if err != nil {
		return t, b.metadataError(err)
	}
	if b.cl != nil {
		b.reconcileLocked(b.meta.State())
		b.log.Info("topic deleted", "topic", name)
		return t, nil
	}
	var firstErr error
	for p := int32(0); p < t.Partitions; p++ {
		if err := b.engine.DeletePartition(TopicPartition{Topic: name, Partition: p}); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	b.purg.NotifyTopic(name, t.Partitions) // parked fetches of its partitions answer now
	b.log.Info("topic deleted", "topic", name)
	return t, firstErr
}

// TopicOrCreate returns the topic, creating it with the default partition count when allowAuto
// and the broker's auto.create.topics.enable both allow it (Produce and Metadata).
func (b *Broker) TopicOrCreate(name string, allowAuto bool) (Topic, error) {
	if t, ok := b.meta.Topic(name); ok {
		return t, nil
	}
	if err := meta.ValidateTopicName(name); err != nil {
		return Topic{}, err
	}
	if !allowAuto || !b.cfg.AutoCreateTopics {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	t, err := b.createTopic(name, b.cfg.DefaultPartitions, nil, false)
	if errors.Is(err, ErrTopicExists) { // created concurrently by another request
		if t, ok := b.meta.Topic(name); ok {
			return t, nil
		}
	}
	return t, err
}

// recordCompactPolicy stores cleanup.policy=compact for internal topic name when its configs
// say otherwise: topics created by versions that compacted them on their own carry no policy,
// so DescribeConfigs reported Kafka's default, delete, for a topic the cleaner compacts
// (partitionConfig compacts the internal topics whatever is stored). Run where the metadata
// may be changed: on one node at start, in a cluster by the controller.
func (b *Broker) recordCompactPolicy(name string) {
	t, ok := b.meta.Topic(name)
	if !ok || t.Configs["cleanup.policy"] == "compact" {
		return
	}
	err := b.AlterTopicConfigs(name, false, func(o map[string]string) (map[string]string, error) {
		next := maps.Clone(o)
		if next == nil {
			next = map[string]string{}
		}
		next["cleanup.policy"] = "compact"
		return next, nil
	})
	if err != nil {
		// The controller's loop tries again every round: say it once per topic.
		if _, said := b.policyWarned.LoadOrStore(name, true); !said {
			b.log.Warn("recording cleanup.policy=compact for an internal topic created by an older version failed; trying again", "topic", name, "err", err)
		}
		return
	}
	b.log.Info("recorded cleanup.policy=compact for an internal topic created by an older version (it was compacted already)", "topic", name)
}

// AlterTopicConfigs applies change to the config overrides of topic name in the metadata store
// and then to its open partitions, under topicMu so a concurrent create or delete cannot
// interleave. With validateOnly nothing changes.
func (b *Broker) AlterTopicConfigs(name string, validateOnly bool, change func(overrides map[string]string) (map[string]string, error)) error {
	if !validateOnly {
		if err := b.checkController(); err != nil {
			return err
		}
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	t, ok := b.meta.Topic(name)
	if !ok {
		return fmt.Errorf("%w: unknown topic %q", ErrUnknownTopic, name)
	}
	next, err := change(t.Configs)
	if err != nil {
		return err
	}
	t, err = b.meta.SetTopicConfigs(name, next, validateOnly)
	if err != nil || validateOnly {
		return b.metadataError(err)
	}
	cfg := partitionConfig(t)
	for _, spec := range PartitionSpecs([]Topic{t}) {
		if p := b.engine.Partition(spec.TopicPartition); p != nil {
			p.SetConfig(cfg)
		}
	}
	return nil
}

// CreatePartitions grows topic name to count partitions, durably in the metadata store, then
// creates the new partition logs. assignment (nil: the broker places them) lists the replicas
// of each new partition. Counts never shrink; internal topics keep their layout.
func (b *Broker) CreatePartitions(name string, count int32, assignment [][]int32, validateOnly bool) error {
	if IsInternal(name) {
		return fmt.Errorf("%w: %s is internal; its partitions are the broker's", ErrInvalidRequest, name)
	}
	if b.cl == nil {
		for _, replicas := range assignment {
			if len(replicas) != 1 || replicas[0] != b.cfg.NodeID {
				return fmt.Errorf("%w: new partition assigned to brokers %v; this cluster has only broker %d",
					ErrInvalidReplicaAssignment, replicas, b.cfg.NodeID)
			}
		}
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	old, ok := b.meta.Topic(name)
	if !ok {
		return fmt.Errorf("%w: unknown topic %q", ErrUnknownTopic, name)
	}
	if assignment != nil && int32(len(assignment)) != count-old.Partitions {
		return fmt.Errorf("%w: %d assignments for %d new partitions", ErrInvalidReplicaAssignment,
			len(assignment), count-old.Partitions)
	}
	if b.cl != nil {
		if !validateOnly {
			if err := b.checkController(); err != nil {
				return err
			}
		}
		return b.addPartitionsPlaced(old, count, assignment, validateOnly)
	}
	t, err := b.meta.SetPartitionCount(name, count, validateOnly)
	if err != nil || validateOnly {
		return err
	}
	// A crash between the store and the engine is repaired at start: the engine creates the
	// partitions the store lists, as after CreateTopic.
	for _, spec := range PartitionSpecs([]Topic{t}) {
		if spec.Partition < old.Partitions {
			continue
		}
		if _, err := b.engine.CreatePartition(spec); err != nil {
			return fmt.Errorf("creating partition %s-%d: %w", spec.Topic, spec.Partition, err)
		}
	}
	return nil
}

// PartitionSpecs lists the partitions of topics, as the engine must open them.
func PartitionSpecs(topics []Topic) []engine.PartitionSpec {
	var specs []engine.PartitionSpec
	for _, t := range topics {
		cfg := partitionConfig(t)
		for p := int32(0); p < t.Partitions; p++ {
			spec := engine.PartitionSpec{
				TopicPartition: TopicPartition{Topic: t.Name, Partition: p},
				TopicID:        t.ID,
				Config:         cfg,
				// One node: this node is the only in-sync replica, so a record is committed
				// once it is durable here, and the engine moves the high watermark itself.
				FollowDurableEnd: true,
			}
			if int(p) < len(t.Assignments) {
				spec.LeaderEpoch = t.Assignments[p].LeaderEpoch
			}
			specs = append(specs, spec)
		}
	}
	return specs
}

// addPartitionsPlaced grows a topic in a cluster: the new partitions go where assignment says
// or where Placement puts them, with the topic's replication factor. topicMu held.
func (b *Broker) addPartitionsPlaced(old Topic, count int32, assignment [][]int32, validateOnly bool) error {
	if count <= old.Partitions {
		return fmt.Errorf("%w: topic %q has %d partitions; the count can only grow", ErrInvalidPartitions, old.Name, old.Partitions)
	}
	replicas := assignment
	if replicas == nil {
		rf := 1
		existing := make([][]int32, len(old.Assignments))
		for i, a := range old.Assignments {
			existing[i] = a.Replicas
		}
		if len(existing) > 0 {
			rf = len(existing[0])
		}
		var err error
		if replicas, err = controller.Placement(b.meta.State(), int(count-old.Partitions), rf, existing); err != nil {
			return err
		}
	}
	if _, err := b.meta.AddPartitionsPlaced(old.Name, replicas, validateOnly); err != nil || validateOnly {
		return b.metadataError(err)
	}
	b.reconcileLocked(b.meta.State())
	return nil
}
