// Package meta owns cluster metadata: topics, their partitions and configs, the node's identity
// and the producer-id allocator. For now it is a single-node store persisted atomically in the
// data directory; it becomes a dragonboat Raft state machine when clustering lands, behind the
// same methods. It does no network I/O and knows nothing of partition logs.
package meta

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/ringtail/ringtail/vfs"
)

// Errors returned by the store; the network layer maps each to a Kafka error code.
var (
	ErrTopicExists       = errors.New("meta: topic already exists")         // TOPIC_ALREADY_EXISTS
	ErrUnknownTopic      = errors.New("meta: unknown topic")                // UNKNOWN_TOPIC_OR_PARTITION
	ErrInvalidTopic      = errors.New("meta: invalid topic name")           // INVALID_TOPIC_EXCEPTION
	ErrInvalidPartitions = errors.New("meta: invalid number of partitions") // INVALID_PARTITIONS
	ErrInvalidConfig     = errors.New("meta: invalid config")               // INVALID_CONFIG
	ErrInvalidRF         = errors.New("meta: invalid replication factor")   // INVALID_REPLICATION_FACTOR
)

// MaxPartitions bounds a topic's partition count so one request cannot exhaust file descriptors.
const MaxPartitions = 10000

// producerIDBlock is how many producer ids are reserved per durable write of the allocator.
const producerIDBlock = 1000

// Topic is one topic's metadata.
type Topic struct {
	Name       string            `json:"name"`
	ID         [16]byte          `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"` // overrides only
}

// state is what the store persists.
type state struct {
	ClusterID          string            `json:"cluster_id"`
	Topics             map[string]*Topic `json:"topics"`
	NextProducerIDFrom int64             `json:"next_producer_id_block"`
}

// Store holds the metadata of one node. It is safe for concurrent use.
type Store struct {
	path string

	mu             sync.Mutex
	st             state
	byID           map[[16]byte]*Topic
	nextProducerID int64 // next id to hand out; ids below st.NextProducerIDFrom are reserved durably
}

// Open loads the store from dir, creating it on first start.
func Open(dir string) (*Store, error) {
	// Durably, like every file in it: a new directory's entry lives in its parent.
	if err := vfs.MkdirAllDurable(vfs.OSFS{}, dir, 0o755); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	s := &Store{path: filepath.Join(dir, "meta.json"), byID: make(map[[16]byte]*Topic)}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.st = state{ClusterID: newClusterID(), Topics: make(map[string]*Topic)}
		if err := s.persistLocked(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("meta: reading %s: %w", s.path, err)
	default:
		if err := json.Unmarshal(b, &s.st); err != nil {
			return nil, fmt.Errorf("meta: %s is damaged: %w", s.path, err)
		}
		if s.st.Topics == nil {
			s.st.Topics = make(map[string]*Topic)
		}
	}
	for _, t := range s.st.Topics {
		s.byID[t.ID] = t
	}
	// Ids from a block reserved before a restart may have been handed out: start a new block.
	s.nextProducerID = s.st.NextProducerIDFrom
	return s, nil
}

// ClusterID is the cluster's stable identity.
func (s *Store) ClusterID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.ClusterID
}

// Topics returns every topic sorted by name (copies).
func (s *Store) Topics() []Topic {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Topic, 0, len(s.st.Topics))
	for _, t := range s.st.Topics {
		out = append(out, copyTopic(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Topic returns one topic by name.
func (s *Store) Topic(name string) (Topic, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.st.Topics[name]
	if !ok {
		return Topic{}, false
	}
	return copyTopic(t), true
}

// TopicByID returns one topic by its id.
func (s *Store) TopicByID(id [16]byte) (Topic, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byID[id]
	if !ok {
		return Topic{}, false
	}
	return copyTopic(t), true
}

// CreateTopic validates and durably records a new topic. validateOnly checks without recording.
func (s *Store) CreateTopic(name string, partitions int32, configs map[string]string, validateOnly bool) (Topic, error) {
	if err := ValidateTopicName(name); err != nil {
		return Topic{}, err
	}
	if partitions < 1 || partitions > MaxPartitions {
		return Topic{}, fmt.Errorf("%w: %d (must be 1..%d)", ErrInvalidPartitions, partitions, MaxPartitions)
	}
	if err := ValidateConfigs(configs); err != nil {
		return Topic{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.st.Topics[name]; ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrTopicExists, name)
	}
	t := &Topic{Name: name, ID: newTopicID(), Partitions: partitions, Configs: cloneConfigs(configs)}
	if validateOnly {
		return *t, nil
	}
	s.st.Topics[name] = t
	s.byID[t.ID] = t
	if err := s.persistLocked(); err != nil {
		delete(s.st.Topics, name)
		delete(s.byID, t.ID)
		return Topic{}, err
	}
	return copyTopic(t), nil
}

// SetTopicConfigs durably replaces a topic's config overrides with configs (keys absent fall
// back to the defaults) and returns the topic as it is now; with validateOnly it only checks.
func (s *Store) SetTopicConfigs(name string, configs map[string]string, validateOnly bool) (Topic, error) {
	if err := ValidateConfigs(configs); err != nil {
		return Topic{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.st.Topics[name]
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	if validateOnly {
		c := copyTopic(t)
		c.Configs = cloneConfigs(configs)
		return c, nil
	}
	old := t.Configs
	t.Configs = cloneConfigs(configs)
	if err := s.persistLocked(); err != nil {
		t.Configs = old
		return Topic{}, err
	}
	return copyTopic(t), nil
}

// SetPartitionCount durably raises a topic's partition count to count (Kafka never lowers one)
// and returns the topic as it is now; with validateOnly it only checks.
func (s *Store) SetPartitionCount(name string, count int32, validateOnly bool) (Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.st.Topics[name]
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	if count <= t.Partitions {
		return Topic{}, fmt.Errorf("%w: topic %q has %d partitions; the count can only grow", ErrInvalidPartitions, name, t.Partitions)
	}
	if count > MaxPartitions {
		return Topic{}, fmt.Errorf("%w: %d (must be at most %d)", ErrInvalidPartitions, count, MaxPartitions)
	}
	if validateOnly {
		c := copyTopic(t)
		c.Partitions = count
		return c, nil
	}
	old := t.Partitions
	t.Partitions = count
	if err := s.persistLocked(); err != nil {
		t.Partitions = old
		return Topic{}, err
	}
	return copyTopic(t), nil
}

// DeleteTopic durably removes a topic and returns what it was.
func (s *Store) DeleteTopic(name string) (Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.st.Topics[name]
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	delete(s.st.Topics, name)
	delete(s.byID, t.ID)
	if err := s.persistLocked(); err != nil {
		s.st.Topics[name] = t
		s.byID[t.ID] = t
		return Topic{}, err
	}
	return *t, nil
}

// NextProducerID hands out a producer id never handed out before by this store, across
// restarts: ids are reserved in blocks, and a block is persisted before any id in it is used.
func (s *Store) NextProducerID() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nextProducerID >= s.st.NextProducerIDFrom {
		s.st.NextProducerIDFrom = s.nextProducerID + producerIDBlock
		if err := s.persistLocked(); err != nil {
			s.st.NextProducerIDFrom = s.nextProducerID
			return 0, err
		}
	}
	id := s.nextProducerID
	s.nextProducerID++
	return id, nil
}

// persistLocked writes the state to a temporary file, syncs it and renames it into place, then
// syncs the directory, so a crash leaves either the old or the new state. s.mu must be held.
func (s *Store) persistLocked() error {
	b, err := json.MarshalIndent(&s.st, "", "  ")
	if err != nil {
		return fmt.Errorf("meta: encoding: %w", err)
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("meta: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("meta: syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	d, err := os.Open(filepath.Dir(s.path))
	if err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("meta: syncing directory: %w", err)
	}
	return nil
}

func copyTopic(t *Topic) Topic {
	c := *t
	c.Configs = cloneConfigs(t.Configs)
	return c
}

func cloneConfigs(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func newTopicID() [16]byte {
	var id [16]byte
	for id == ([16]byte{}) { // the zero UUID means "no id" on the wire
		if _, err := rand.Read(id[:]); err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
	}
	return id
}

func newClusterID() string {
	id := newTopicID()
	return base64.RawURLEncoding.EncodeToString(id[:])
}
