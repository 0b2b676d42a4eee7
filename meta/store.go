package meta

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ringtail/ringtail/vfs"
)

// producerIDBlock is how many producer ids the Store allocates per command.
const producerIDBlock = 1000

// Config configures Open.
type Config struct {
	Dir    string // the metadata directory (data dir/meta)
	FS     vfs.FS // nil: vfs.OSFS
	NodeID int32  // this broker: where the Store places the partitions it creates
	Logger *slog.Logger
	// Log, when set, is the log to propose to instead of a LocalLog in Dir. The Store owns it
	// and closes it on Close.
	Log Log
}

// Store is the metadata as the broker uses it: reads from the Log's current state, writes as
// commands it builds (drawing ids with crypto/rand, placing replicas on this node) and proposes.
// It is safe for concurrent use.
type Store struct {
	log    Log
	nodeID int32

	// mu serializes the writes, so that a command built from the current state is proposed
	// before another one is built from the same state (no needless stale rejections among
	// this node's own requests); it also guards the producer-id block. Held across Propose:
	// lock order Store.mu, then LocalLog.mu.
	mu       sync.Mutex
	nextPID  int64 // the next producer id to hand out
	limitPID int64 // the end of the allocated block; a new block is needed at nextPID == limitPID
}

// Open opens the store: the Log of cfg (or a LocalLog in cfg.Dir), initializing the cluster on
// first start.
func Open(cfg Config) (*Store, error) {
	l := cfg.Log
	if l == nil {
		local, err := OpenLocalLog(LocalLogConfig{Dir: cfg.Dir, FS: cfg.FS, NodeID: cfg.NodeID, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		l = local
	}
	s := &Store{log: l, nodeID: cfg.NodeID}
	if l.State().ClusterID() == "" {
		// Another node may win the race to initialize a cluster: its id is as good as ours.
		_, err := l.Propose(context.Background(), InitCluster{ClusterID: newClusterID()})
		if err != nil && !errors.Is(err, ErrStaleCommand) {
			l.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close closes the Log.
func (s *Store) Close() error { return s.log.Close() }

// ClusterID is the cluster's stable identity.
func (s *Store) ClusterID() string { return s.log.State().ClusterID() }

// Watch returns the current state and a channel closed once a newer one is published (see
// Log.Watch).
func (s *Store) Watch() (*State, <-chan struct{}) { return s.log.Watch() }

// Topics returns every topic sorted by name.
func (s *Store) Topics() []Topic { return s.log.State().Topics() }

// Topic returns one topic by name.
func (s *Store) Topic(name string) (Topic, bool) { return s.log.State().Topic(name) }

// TopicByID returns one topic by its id.
func (s *Store) TopicByID(id [16]byte) (Topic, bool) { return s.log.State().TopicByID(id) }

// Brokers returns the registered brokers sorted by id (none on a single node).
func (s *Store) Brokers() []Broker { return s.log.State().Brokers() }

// Broker returns one registered broker.
func (s *Store) Broker(id int32) (Broker, bool) { return s.log.State().Broker(id) }

// propose proposes cmd, or with validateOnly applies it to a copy of the state and records
// nothing.
func (s *Store) propose(cmd Command, validateOnly bool) (Result, error) {
	if validateOnly {
		return Apply(s.log.State().Clone(), cmd)
	}
	return s.log.Propose(context.Background(), cmd)
}

// CreateTopic validates and durably records a new topic with its partitions on this node.
// validateOnly checks without recording.
func (s *Store) CreateTopic(name string, partitions int32, configs map[string]string, validateOnly bool) (Topic, error) {
	// Checked before the placement is built: the count sizes it.
	if err := ValidateTopicName(name); err != nil {
		return Topic{}, err
	}
	if partitions < 1 || partitions > MaxPartitions {
		return Topic{}, fmt.Errorf("%w: %d (must be 1..%d)", ErrInvalidPartitions, partitions, MaxPartitions)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.propose(CreateTopic{Name: name, ID: newTopicID(), Configs: configs, Partitions: localPlacement(s.nodeID, int(partitions))}, validateOnly)
	return res.Topic, err
}

// CreateTopicPlaced is CreateTopic with the replicas of each partition given (the first is the
// preferred leader, and each partition starts with every replica in its ISR): a cluster's
// placement, chosen by the caller (meta/controller.Placement).
func (s *Store) CreateTopicPlaced(name string, replicas [][]int32, configs map[string]string, validateOnly bool) (Topic, error) {
	if err := ValidateTopicName(name); err != nil {
		return Topic{}, err
	}
	if len(replicas) < 1 || len(replicas) > MaxPartitions {
		return Topic{}, fmt.Errorf("%w: %d (must be 1..%d)", ErrInvalidPartitions, len(replicas), MaxPartitions)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.propose(CreateTopic{Name: name, ID: newTopicID(), Configs: configs, Partitions: placed(replicas)}, validateOnly)
	return res.Topic, err
}

// AddPartitionsPlaced is SetPartitionCount with the replicas of each new partition given.
func (s *Store) AddPartitionsPlaced(name string, replicas [][]int32, validateOnly bool) (Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.Topic(name)
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	if len(replicas) < 1 || t.Partitions+int32(len(replicas)) > MaxPartitions {
		return Topic{}, fmt.Errorf("%w: %d new partitions for %q (%d now, at most %d)", ErrInvalidPartitions, len(replicas), name, t.Partitions, MaxPartitions)
	}
	cmd := CreatePartitions{Name: name, ID: t.ID, ExpectedCount: t.Partitions, Partitions: placed(replicas)}
	res, err := s.propose(cmd, validateOnly)
	return res.Topic, err
}

// placed turns replica lists into new partitions led by their first replica, every replica in
// sync (an empty partition has nothing to catch up on).
func placed(replicas [][]int32) []NewPartition {
	ps := make([]NewPartition, len(replicas))
	for i, r := range replicas {
		leader := NoLeader // refused by Apply: a partition needs a replica
		if len(r) > 0 {
			leader = r[0]
		}
		ps[i] = NewPartition{Replicas: r, ISR: r, Leader: leader}
	}
	return ps
}

// State is the metadata as last published.
func (s *Store) State() *State { return s.log.State() }

// Propose proposes one command (a broker registration, the controller's decisions) and
// returns what Apply made of it.
func (s *Store) Propose(ctx context.Context, cmd Command) (Result, error) {
	return s.log.Propose(ctx, cmd)
}

// SetTopicConfigs durably replaces a topic's config overrides with configs (keys absent fall
// back to the defaults) and returns the topic as it is now; with validateOnly it only checks.
func (s *Store) SetTopicConfigs(name string, configs map[string]string, validateOnly bool) (Topic, error) {
	// Configs first, then the topic, as clients have always seen it.
	if err := ValidateConfigs(configs); err != nil {
		return Topic{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.Topic(name)
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	res, err := s.propose(SetTopicConfigs{Name: name, ID: t.ID, ConfigEpoch: t.ConfigEpoch, Configs: configs}, validateOnly)
	return res.Topic, err
}

// SetPartitionCount durably raises a topic's partition count to count (Kafka never lowers one),
// placing the new partitions on this node, and returns the topic as it is now; with
// validateOnly it only checks.
func (s *Store) SetPartitionCount(name string, count int32, validateOnly bool) (Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.Topic(name)
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	if count <= t.Partitions {
		return Topic{}, fmt.Errorf("%w: topic %q has %d partitions; the count can only grow", ErrInvalidPartitions, name, t.Partitions)
	}
	if count > MaxPartitions {
		return Topic{}, fmt.Errorf("%w: %d (must be at most %d)", ErrInvalidPartitions, count, MaxPartitions)
	}
	cmd := CreatePartitions{Name: name, ID: t.ID, ExpectedCount: t.Partitions, Partitions: localPlacement(s.nodeID, int(count-t.Partitions))}
	res, err := s.propose(cmd, validateOnly)
	return res.Topic, err
}

// DeleteTopic durably removes a topic and returns what it was.
func (s *Store) DeleteTopic(name string) (Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.Topic(name)
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	res, err := s.propose(DeleteTopic{Name: name, ID: t.ID}, false)
	return res.Topic, err
}

// NextProducerID hands out a producer id never handed out before in this cluster, across
// restarts: ids come from blocks allocated by a command, durable before any id in them is
// used, and a restart starts a new block.
func (s *Store) NextProducerID() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nextPID == s.limitPID {
		res, err := s.log.Propose(context.Background(), AllocateProducerIDs{Count: producerIDBlock})
		if err != nil {
			return 0, err
		}
		s.nextPID, s.limitPID = res.ProducerID, res.ProducerID+producerIDBlock
	}
	id := s.nextPID
	s.nextPID++
	return id, nil
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
