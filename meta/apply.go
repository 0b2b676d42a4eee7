package meta

import (
	"encoding/base64"
	"fmt"
	"math"
	"slices"
)

// maxClusterIDLen bounds a cluster id (Kafka's are 22 characters).
const maxClusterIDLen = 255

// MaxProducerIDBlock bounds one AllocateProducerIDs.
const MaxProducerIDBlock = 1 << 20

// Apply applies cmd to s and returns its result, or leaves s unchanged and returns why cmd was
// rejected (wrapping one of the package's sentinel errors). It is deterministic: it reads
// nothing but s and cmd, so every replica applying the same commands reaches the same state
// and the same rejections. It keeps no reference to cmd's slices or maps.
//
// s must not be a state others read (the one a Log publishes): apply to a Clone.
func Apply(s *State, cmd Command) (Result, error) {
	if _, ok := cmd.(InitCluster); !ok && s.clusterID == "" {
		return Result{}, fmt.Errorf("%w: %T before InitCluster", ErrNotInitialized, cmd)
	}
	switch c := cmd.(type) {
	case InitCluster:
		return Result{}, applyInitCluster(s, c)
	case CreateTopic:
		return applyCreateTopic(s, c)
	case DeleteTopic:
		return applyDeleteTopic(s, c)
	case SetTopicConfigs:
		return applySetTopicConfigs(s, c)
	case CreatePartitions:
		return applyCreatePartitions(s, c)
	case AllocateProducerIDs:
		return applyAllocateProducerIDs(s, c)
	case RegisterBroker:
		return applyRegisterBroker(s, c)
	case FenceBroker:
		return Result{}, applyFenceBroker(s, c)
	case UnfenceBroker:
		return Result{}, applyUnfenceBroker(s, c)
	case BeginControlledShutdown:
		return Result{}, applyBeginControlledShutdown(s, c)
	case UnregisterBroker:
		return Result{}, applyUnregisterBroker(s, c)
	case ChangePartitions:
		return Result{}, applyChangePartitions(s, c)
	}
	return Result{}, fmt.Errorf("%w: unknown command type %T", ErrInvalidCommand, cmd)
}

func applyInitCluster(s *State, c InitCluster) error {
	if c.ClusterID == "" || len(c.ClusterID) > maxClusterIDLen {
		return fmt.Errorf("%w: cluster id must be 1..%d bytes, got %d", ErrInvalidCommand, maxClusterIDLen, len(c.ClusterID))
	}
	if s.clusterID == c.ClusterID {
		return &staleError{msg: fmt.Sprintf("the cluster is already initialized with id %q: this command was applied before", c.ClusterID)}
	}
	if s.clusterID != "" {
		return &staleError{msg: fmt.Sprintf("the cluster is already initialized with id %q, not %q", s.clusterID, c.ClusterID)}
	}
	s.clusterID = c.ClusterID
	return nil
}

func applyCreateTopic(s *State, c CreateTopic) (Result, error) {
	// Checked in the order today's clients have always seen: name, count, configs, existence.
	if err := ValidateTopicName(c.Name); err != nil {
		return Result{}, err
	}
	if n := len(c.Partitions); n < 1 || n > MaxPartitions {
		return Result{}, fmt.Errorf("%w: %d (must be 1..%d)", ErrInvalidPartitions, n, MaxPartitions)
	}
	if err := ValidateConfigs(c.Configs); err != nil {
		return Result{}, err
	}
	if c.ID == ([16]byte{}) {
		return Result{}, fmt.Errorf("%w: topic %q without an id", ErrInvalidCommand, c.Name)
	}
	if t, ok := s.topics[c.Name]; ok {
		if t.ID == c.ID {
			return Result{}, &staleError{kind: ErrTopicExists, msg: fmt.Sprintf("topic %q already exists with id %s: this command was applied before", c.Name, formatID(c.ID))}
		}
		return Result{}, fmt.Errorf("%w: %q", ErrTopicExists, c.Name)
	}
	if t, ok := s.byID[c.ID]; ok {
		return Result{}, fmt.Errorf("%w: id %s is topic %q's", ErrTopicExists, formatID(c.ID), t.Name)
	}
	as, err := newAssignments(c.Partitions, 0, 0)
	if err != nil {
		return Result{}, err
	}
	if err := checkPlacement(s, c.Partitions, 0); err != nil {
		return Result{}, err
	}
	t := &Topic{Name: c.Name, ID: c.ID, Configs: cloneConfigs(c.Configs)}
	t = t.withAssignments(as)
	s.put(t)
	return Result{Topic: t.view()}, nil
}

// newAssignments checks the placement of partitions being created and returns their
// assignments. rf is the replication factor the topic already has (0: none yet); first is the
// number of the first partition, for messages.
func newAssignments(ps []NewPartition, rf int, first int32) ([]PartitionAssignment, error) {
	as := make([]PartitionAssignment, len(ps))
	for i, p := range ps {
		n := first + int32(i)
		if len(p.Replicas) == 0 || len(p.Replicas) > MaxReplicas {
			return nil, fmt.Errorf("%w: partition %d has %d replicas (must be 1..%d)", ErrInvalidRF, n, len(p.Replicas), MaxReplicas)
		}
		if rf == 0 {
			rf = len(p.Replicas)
		}
		if len(p.Replicas) != rf {
			return nil, fmt.Errorf("%w: partition %d has %d replicas, the others %d", ErrInvalidRF, n, len(p.Replicas), rf)
		}
		if err := checkReplicaSet(p.Replicas); err != nil {
			return nil, fmt.Errorf("%w: partition %d replicas %v: %v", ErrInvalidRF, n, p.Replicas, err)
		}
		if err := checkReplicaSet(p.ISR); err != nil {
			return nil, fmt.Errorf("%w: partition %d ISR %v: %v", ErrInvalidRF, n, p.ISR, err)
		}
		if len(p.ISR) == 0 {
			return nil, fmt.Errorf("%w: partition %d has an empty ISR", ErrInvalidRF, n)
		}
		for _, b := range p.ISR {
			if !slices.Contains(p.Replicas, b) {
				return nil, fmt.Errorf("%w: partition %d ISR member %d is not a replica %v", ErrInvalidRF, n, b, p.Replicas)
			}
		}
		if !slices.Contains(p.ISR, p.Leader) {
			return nil, fmt.Errorf("%w: partition %d leader %d is not in the ISR %v", ErrInvalidRF, n, p.Leader, p.ISR)
		}
		as[i] = cloneAssignment(PartitionAssignment{Replicas: p.Replicas, Leader: p.Leader, ISR: p.ISR})
	}
	return as, nil
}

// checkReplicaSet refuses negative broker ids and repeats.
func checkReplicaSet(ids []int32) error {
	for i, b := range ids {
		if b < 0 {
			return fmt.Errorf("broker id %d is negative", b)
		}
		if slices.Contains(ids[:i], b) {
			return fmt.Errorf("broker %d appears twice", b)
		}
	}
	return nil
}

// lookup finds topic name and checks it still has id; a topic deleted and re-created since
// the command was built has another id, and the command is stale.
func lookup(s *State, name string, id [16]byte) (*Topic, error) {
	t, ok := s.topics[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	if t.ID != id {
		return nil, &staleError{kind: ErrUnknownTopic, msg: fmt.Sprintf("topic %q has id %s, the command names %s (deleted and re-created since)", name, formatID(t.ID), formatID(id))}
	}
	return t, nil
}

func applyDeleteTopic(s *State, c DeleteTopic) (Result, error) {
	t, err := lookup(s, c.Name, c.ID)
	if err != nil {
		return Result{}, err
	}
	s.remove(t)
	return Result{Topic: t.view()}, nil
}

func applySetTopicConfigs(s *State, c SetTopicConfigs) (Result, error) {
	if err := ValidateConfigs(c.Configs); err != nil {
		return Result{}, err
	}
	t, err := lookup(s, c.Name, c.ID)
	if err != nil {
		return Result{}, err
	}
	if t.ConfigEpoch != c.ConfigEpoch {
		return Result{}, &staleError{msg: fmt.Sprintf("topic %q is at config epoch %d, the command expects %d (its configs changed since)", c.Name, t.ConfigEpoch, c.ConfigEpoch)}
	}
	if t.ConfigEpoch == math.MaxInt32 {
		return Result{}, fmt.Errorf("%w: topic %q: config epoch exhausted", ErrInvalidConfig, c.Name)
	}
	n := *t
	n.Configs = cloneConfigs(c.Configs)
	n.ConfigEpoch++
	s.put(&n)
	return Result{Topic: n.view()}, nil
}

func applyCreatePartitions(s *State, c CreatePartitions) (Result, error) {
	t, err := lookup(s, c.Name, c.ID)
	if err != nil {
		return Result{}, err
	}
	if t.Partitions != c.ExpectedCount {
		return Result{}, &staleError{kind: ErrInvalidPartitions, msg: fmt.Sprintf("topic %q has %d partitions, the command expects %d (partitions were added since)", c.Name, t.Partitions, c.ExpectedCount)}
	}
	if len(c.Partitions) == 0 {
		return Result{}, fmt.Errorf("%w: topic %q has %d partitions; the count can only grow", ErrInvalidPartitions, c.Name, t.Partitions)
	}
	if total := int(t.Partitions) + len(c.Partitions); total > MaxPartitions {
		return Result{}, fmt.Errorf("%w: %d (must be at most %d)", ErrInvalidPartitions, total, MaxPartitions)
	}
	added, err := newAssignments(c.Partitions, len(t.Assignments[0].Replicas), t.Partitions)
	if err != nil {
		return Result{}, err
	}
	if err := checkPlacement(s, c.Partitions, t.Partitions); err != nil {
		return Result{}, err
	}
	n := t.withAssignments(append(slices.Clip(t.Assignments), added...))
	s.put(n)
	return Result{Topic: n.view()}, nil
}

func applyAllocateProducerIDs(s *State, c AllocateProducerIDs) (Result, error) {
	if c.Count < 1 || c.Count > MaxProducerIDBlock {
		return Result{}, fmt.Errorf("%w: producer id count %d (must be 1..%d)", ErrInvalidCommand, c.Count, MaxProducerIDBlock)
	}
	if s.nextProducerID > math.MaxInt64-c.Count {
		return Result{}, fmt.Errorf("%w: producer ids exhausted at %d", ErrInvalidCommand, s.nextProducerID)
	}
	first := s.nextProducerID
	s.nextProducerID += c.Count
	return Result{ProducerID: first}, nil
}

// formatID writes a topic id the way Kafka's tools show one (URL-safe base64, no padding).
func formatID(id [16]byte) string { return base64.RawURLEncoding.EncodeToString(id[:]) }
