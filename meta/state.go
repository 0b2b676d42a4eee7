package meta

import (
	"maps"
	"slices"
	"sort"
)

// MaxPartitions bounds a topic's partition count so one request cannot exhaust file descriptors.
const MaxPartitions = 10000

// MaxReplicas bounds a partition's replica set: far more than any replication factor in use,
// small enough that a command stays small.
const MaxReplicas = 64

// Topic is one topic's metadata, as read from a State.
//
// Configs is the reader's own copy. Assignments is shared with the State it was read from and
// must not be modified: the state never changes it (Apply builds new slices), so it can be read
// without locks and without copying a large topic on every request.
type Topic struct {
	Name        string
	ID          [16]byte
	Partitions  int32             // the partition count: len(Assignments)
	Configs     map[string]string // overrides only; Effective adds the defaults
	ConfigEpoch int32             // bumped by every SetTopicConfigs, which names the one it expects
	Assignments []PartitionAssignment
}

// PartitionAssignment is one partition's replicas and leadership; Assignments[i] is partition i.
// On one node: Replicas and ISR [node], Leader node, both epochs 0.
type PartitionAssignment struct {
	Replicas       []int32
	Leader         int32
	LeaderEpoch    int32 // bumped when the leader changes; fences requests of older leaders
	PartitionEpoch int32 // bumped on every change of the partition; compare-and-set for ISR changes
	ISR            []int32
}

// State is the cluster metadata. Only Apply and Restore change it.
//
// A *Topic held in a State is never modified once it is there: Apply replaces it with a new
// one. That makes Clone cheap (the maps are copied, the topics shared) and lets a Log publish
// a state that readers use without locks while the next command applies to a clone.
type State struct {
	clusterID      string
	topics         map[string]*Topic
	byID           map[[16]byte]*Topic
	nextProducerID int64 // the first producer id never allocated

	// brokers holds the registered brokers. While it is empty the state is a single node's:
	// no broker registers there, and placement and partition changes name any broker id.
	brokers map[int32]Broker
	// brokerEpoch is the last broker epoch handed out (0: none ever), so a new registration
	// gets a larger one than any before, of any broker.
	brokerEpoch int64
}

// NewState returns the empty state: no cluster id (InitCluster sets it), no topics, no brokers.
func NewState() *State {
	return &State{topics: make(map[string]*Topic), byID: make(map[[16]byte]*Topic), brokers: make(map[int32]Broker)}
}

// Clone returns a copy that Apply may change without affecting s.
func (s *State) Clone() *State {
	c := *s
	c.topics = maps.Clone(s.topics)
	c.byID = maps.Clone(s.byID)
	c.brokers = maps.Clone(s.brokers)
	return &c
}

// ClusterID is the cluster's stable identity ("" before InitCluster).
func (s *State) ClusterID() string { return s.clusterID }

// NextProducerID is the first producer id not yet allocated by AllocateProducerIDs.
func (s *State) NextProducerID() int64 { return s.nextProducerID }

// Topics returns every topic sorted by name.
func (s *State) Topics() []Topic {
	out := make([]Topic, 0, len(s.topics))
	for _, t := range s.topics {
		out = append(out, t.view())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Topic returns one topic by name.
func (s *State) Topic(name string) (Topic, bool) {
	t, ok := s.topics[name]
	if !ok {
		return Topic{}, false
	}
	return t.view(), true
}

// TopicByID returns one topic by its id.
func (s *State) TopicByID(id [16]byte) (Topic, bool) {
	t, ok := s.byID[id]
	if !ok {
		return Topic{}, false
	}
	return t.view(), true
}

// view is t as handed to a reader: its own Configs, the shared Assignments.
func (t *Topic) view() Topic {
	c := *t
	c.Configs = cloneConfigs(t.Configs)
	return c
}

// put adds or replaces a topic (a new *Topic, never one already in the state).
func (s *State) put(t *Topic) {
	if old, ok := s.topics[t.Name]; ok && old.ID != t.ID {
		delete(s.byID, old.ID)
	}
	s.topics[t.Name] = t
	s.byID[t.ID] = t
}

func (s *State) remove(t *Topic) {
	delete(s.topics, t.Name)
	delete(s.byID, t.ID)
}

// withAssignments returns a copy of t (configs shared: they are never modified in place) with
// the partitions given.
func (t *Topic) withAssignments(as []PartitionAssignment) *Topic {
	c := *t
	c.Assignments = as
	c.Partitions = int32(len(as))
	return &c
}

func cloneConfigs(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

func cloneAssignment(a PartitionAssignment) PartitionAssignment {
	a.Replicas = slices.Clone(a.Replicas)
	a.ISR = slices.Clone(a.ISR)
	return a
}
