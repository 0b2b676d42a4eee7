package meta

import (
	"fmt"
	"maps"
	"math"
	"slices"
)

// PartitionRef names one partition, with the topic id a PartitionChange needs.
type PartitionRef struct {
	Topic     string
	TopicID   [16]byte
	Partition int32
}

// Partition returns one partition's replicas, leader, epochs and ISR. Its slices are shared
// with the state and must not be modified.
func (s *State) Partition(topic string, partition int32) (PartitionAssignment, bool) {
	t, ok := s.topics[topic]
	if !ok || partition < 0 || partition >= t.Partitions {
		return PartitionAssignment{}, false
	}
	return t.Assignments[partition], true
}

// PartitionsLedBy returns the partitions broker leads, sorted by topic and partition. It walks
// every partition (a State keeps no index by broker): a caller asking often keeps the answer
// per State, which never changes once published.
func (s *State) PartitionsLedBy(broker int32) []PartitionRef {
	return s.partitionsWhere(func(a PartitionAssignment) bool { return a.Leader == broker })
}

// PartitionsOn returns the partitions with a replica on broker, sorted by topic and partition
// (a walk of every partition, as PartitionsLedBy).
func (s *State) PartitionsOn(broker int32) []PartitionRef {
	return s.partitionsWhere(func(a PartitionAssignment) bool { return slices.Contains(a.Replicas, broker) })
}

func (s *State) partitionsWhere(match func(PartitionAssignment) bool) []PartitionRef {
	var out []PartitionRef
	for _, name := range slices.Sorted(maps.Keys(s.topics)) {
		t := s.topics[name]
		for i, a := range t.Assignments {
			if match(a) {
				out = append(out, PartitionRef{Topic: t.Name, TopicID: t.ID, Partition: int32(i)})
			}
		}
	}
	return out
}

// applyChangePartitions checks every change before it changes anything, so a command applies
// whole or not at all. Changed topics are copied once each (their assignments shared with the
// state they came from, the changed ones new), as Apply never modifies a *Topic in the state.
func applyChangePartitions(s *State, c ChangePartitions) error {
	if n := len(c.Changes); n < 1 || n > MaxPartitionChanges {
		return fmt.Errorf("%w: %d partition changes (must be 1..%d)", ErrInvalidCommand, n, MaxPartitionChanges)
	}
	changed := map[string]*Topic{}
	seen := map[PartitionRef]bool{}
	for _, ch := range c.Changes {
		t, err := lookup(s, ch.Topic, ch.TopicID)
		if err != nil {
			return err
		}
		ref := PartitionRef{Topic: ch.Topic, TopicID: ch.TopicID, Partition: ch.Partition}
		if seen[ref] {
			return fmt.Errorf("%w: %s-%d changes twice in one command", ErrInvalidCommand, ch.Topic, ch.Partition)
		}
		seen[ref] = true
		if ch.Partition < 0 || ch.Partition >= t.Partitions {
			return fmt.Errorf("%w: %q has no partition %d", ErrUnknownTopic, ch.Topic, ch.Partition)
		}
		old := t.Assignments[ch.Partition]
		a, err := changePartition(s, ch, old)
		if err != nil {
			return err
		}
		n := changed[ch.Topic]
		if n == nil {
			n = t.withAssignments(slices.Clone(t.Assignments))
			changed[ch.Topic] = n
		}
		n.Assignments[ch.Partition] = a
	}
	for _, n := range changed {
		s.put(n)
	}
	return nil
}

// changePartition checks one change against the partition as it is and returns the partition
// after it.
func changePartition(s *State, ch PartitionChange, old PartitionAssignment) (PartitionAssignment, error) {
	name := fmt.Sprintf("%s-%d", ch.Topic, ch.Partition)
	if old.PartitionEpoch != ch.ExpectedPartitionEpoch {
		return old, &staleError{msg: fmt.Sprintf("%s is at partition epoch %d, the command expects %d (it changed since)", name, old.PartitionEpoch, ch.ExpectedPartitionEpoch)}
	}
	if len(ch.ISR) == 0 {
		return old, fmt.Errorf("%w: %s: an empty ISR (a partition keeps its last in-sync replica)", ErrInvalidCommand, name)
	}
	if err := checkReplicaSet(ch.ISR); err != nil {
		return old, fmt.Errorf("%w: %s ISR %v: %v", ErrInvalidCommand, name, ch.ISR, err)
	}
	for _, b := range ch.ISR {
		if !slices.Contains(old.Replicas, b) {
			return old, fmt.Errorf("%w: %s ISR member %d is not a replica %v", ErrInvalidCommand, name, b, old.Replicas)
		}
	}
	if ch.Leader != NoLeader && !slices.Contains(ch.ISR, ch.Leader) {
		return old, fmt.Errorf("%w: %s leader %d is not in the ISR %v", ErrInvalidCommand, name, ch.Leader, ch.ISR)
	}
	if len(s.brokers) > 0 {
		// A broker taking a new place must be able to hold it; one keeping its place may be
		// fenced (a partition's last in-sync replica stays, leaderless, until it returns). A
		// leader is never fenced (FenceBroker waits for its leaderships to move), so a kept
		// leader needs no check.
		if ch.Leader != NoLeader && ch.Leader != old.Leader {
			if why := s.ineligible(ch.Leader); why != "" {
				return old, &staleError{msg: fmt.Sprintf("%s cannot be led by broker %d: %s", name, ch.Leader, why)}
			}
		}
		for _, b := range ch.ISR {
			if slices.Contains(old.ISR, b) {
				continue
			}
			if why := s.ineligible(b); why != "" {
				return old, &staleError{msg: fmt.Sprintf("%s cannot take broker %d into its ISR: %s", name, b, why)}
			}
		}
	}
	if old.PartitionEpoch == math.MaxInt32 || old.LeaderEpoch == math.MaxInt32 {
		return old, fmt.Errorf("%w: %s: epochs exhausted", ErrInvalidCommand, name)
	}
	a := PartitionAssignment{Replicas: old.Replicas, Leader: ch.Leader, LeaderEpoch: old.LeaderEpoch,
		PartitionEpoch: old.PartitionEpoch + 1, ISR: slices.Clone(ch.ISR)}
	if ch.Leader != old.Leader {
		a.LeaderEpoch++
	}
	return a, nil
}
