package meta

import "fmt"

// Command is a change of the metadata, applied by Apply. A command carries everything Apply
// needs to decide (ids, placement, the epochs it expects), so applying it is deterministic.
// The types below are the only commands; each encodes as a tag byte and its fields:
//
//	InitCluster          1 | cluster id
//	CreateTopic          2 | name | id | configs | partitions
//	DeleteTopic          3 | name | id
//	SetTopicConfigs      4 | name | id | config epoch | configs
//	CreatePartitions     5 | name | id | expected count | partitions
//	AllocateProducerIDs      6 | count
//	RegisterBroker           7 | broker id | incarnation | listener | replication address | rack
//	FenceBroker              8 | broker id | broker epoch
//	UnfenceBroker            9 | broker id | broker epoch
//	BeginControlledShutdown 10 | broker id | broker epoch
//	UnregisterBroker        11 | broker id | broker epoch
//	ChangePartitions        12 | changes
//
// A string is a uvarint length and its bytes; an id 16 bytes; integers big-endian int32/int64
// (a broker id int32, a broker epoch int64); configs a uvarint count and (key, value) strings
// sorted by key; partitions a uvarint count and for each: replicas and ISR (a uvarint count and
// int32s each), then the leader; changes a uvarint count and for each: topic name, topic id,
// partition, expected partition epoch, leader (int32 each) and the ISR. A tag once used keeps
// its meaning: a command that changes shape gets a new tag.
type Command interface {
	tag() byte
	appendFields(b []byte) []byte
}

// InitCluster gives the cluster its id. It is accepted once; every later one is stale.
type InitCluster struct {
	ClusterID string
}

// CreateTopic creates a topic with the id and partition placement the proposer chose.
type CreateTopic struct {
	Name       string
	ID         [16]byte // non-zero, drawn by the proposer
	Configs    map[string]string
	Partitions []NewPartition
}

// NewPartition is the placement of a partition being created: its replicas, which of them are
// in sync, and the leader (one of the ISR). Its epochs start at 0.
type NewPartition struct {
	Replicas []int32
	ISR      []int32
	Leader   int32
}

// DeleteTopic deletes the topic Name if its id is still ID.
type DeleteTopic struct {
	Name string
	ID   [16]byte
}

// SetTopicConfigs replaces the config overrides of topic Name (id ID) if its config epoch is
// still ConfigEpoch, so that a read-modify-write of the configs cannot lose another's change.
type SetTopicConfigs struct {
	Name        string
	ID          [16]byte
	ConfigEpoch int32
	Configs     map[string]string
}

// CreatePartitions adds Partitions to topic Name (id ID) if it still has ExpectedCount
// partitions; the new ones are numbered from ExpectedCount. A repeated command finds more
// partitions than it expects and adds none.
type CreatePartitions struct {
	Name          string
	ID            [16]byte
	ExpectedCount int32
	Partitions    []NewPartition
}

// AllocateProducerIDs reserves Count producer ids; Result.ProducerID is the first. A repeated
// command reserves another block: ids are wasted, never handed out twice.
type AllocateProducerIDs struct {
	Count int64
}

// Result is what an applied command produced. The Raft adapter carries it back to the
// proposer, so it stays small.
type Result struct {
	// Topic: the topic as created or changed (CreateTopic, SetTopicConfigs, CreatePartitions), or
	// as it was (DeleteTopic).
	Topic Topic
	// ProducerID: the first id of the block (AllocateProducerIDs).
	ProducerID int64
	// BrokerEpoch: the broker epoch of the registration (RegisterBroker, also when it repeats
	// one applied before).
	BrokerEpoch int64
}

const (
	tagInitCluster byte = iota + 1
	tagCreateTopic
	tagDeleteTopic
	tagSetTopicConfigs
	tagCreatePartitions
	tagAllocateProducerIDs
	tagRegisterBroker
	tagFenceBroker
	tagUnfenceBroker
	tagBeginControlledShutdown
	tagUnregisterBroker
	tagChangePartitions
)

func (InitCluster) tag() byte         { return tagInitCluster }
func (CreateTopic) tag() byte         { return tagCreateTopic }
func (DeleteTopic) tag() byte         { return tagDeleteTopic }
func (SetTopicConfigs) tag() byte     { return tagSetTopicConfigs }
func (CreatePartitions) tag() byte    { return tagCreatePartitions }
func (AllocateProducerIDs) tag() byte { return tagAllocateProducerIDs }

func (c InitCluster) appendFields(b []byte) []byte { return appendString(b, c.ClusterID) }

func (c CreateTopic) appendFields(b []byte) []byte {
	b = appendString(b, c.Name)
	b = append(b, c.ID[:]...)
	b = appendConfigs(b, c.Configs)
	return appendNewPartitions(b, c.Partitions)
}

func (c DeleteTopic) appendFields(b []byte) []byte {
	b = appendString(b, c.Name)
	return append(b, c.ID[:]...)
}

func (c SetTopicConfigs) appendFields(b []byte) []byte {
	b = appendString(b, c.Name)
	b = append(b, c.ID[:]...)
	b = appendInt32(b, c.ConfigEpoch)
	return appendConfigs(b, c.Configs)
}

func (c CreatePartitions) appendFields(b []byte) []byte {
	b = appendString(b, c.Name)
	b = append(b, c.ID[:]...)
	b = appendInt32(b, c.ExpectedCount)
	return appendNewPartitions(b, c.Partitions)
}

func (c AllocateProducerIDs) appendFields(b []byte) []byte { return appendInt64(b, c.Count) }

func appendNewPartitions(b []byte, ps []NewPartition) []byte {
	b = appendCount(b, len(ps))
	for _, p := range ps {
		b = appendInt32s(b, p.Replicas)
		b = appendInt32s(b, p.ISR)
		b = appendInt32(b, p.Leader)
	}
	return b
}

// EncodeCommand returns cmd's encoding: its tag byte, then its fields.
func EncodeCommand(cmd Command) []byte {
	return cmd.appendFields([]byte{cmd.tag()})
}

// DecodeCommand decodes an EncodeCommand encoding. Unknown tags, short input and bytes left
// over are errors (ErrInvalidCommand): a command this version cannot read must not be skipped.
func DecodeCommand(b []byte) (Command, error) {
	r := &reader{b: b}
	var cmd Command
	switch tag := r.u8(); tag {
	case tagInitCluster:
		cmd = InitCluster{ClusterID: r.string()}
	case tagCreateTopic:
		c := CreateTopic{Name: r.string(), ID: r.id()}
		c.Configs = r.configs()
		c.Partitions = readNewPartitions(r)
		cmd = c
	case tagDeleteTopic:
		cmd = DeleteTopic{Name: r.string(), ID: r.id()}
	case tagSetTopicConfigs:
		c := SetTopicConfigs{Name: r.string(), ID: r.id(), ConfigEpoch: r.int32()}
		c.Configs = r.configs()
		cmd = c
	case tagCreatePartitions:
		c := CreatePartitions{Name: r.string(), ID: r.id(), ExpectedCount: r.int32()}
		c.Partitions = readNewPartitions(r)
		cmd = c
	case tagAllocateProducerIDs:
		cmd = AllocateProducerIDs{Count: r.int64()}
	case tagRegisterBroker:
		cmd = RegisterBroker{ID: r.int32(), Incarnation: r.id(), Listener: r.string(), ReplicationAddr: r.string(), Rack: r.string()}
	case tagFenceBroker:
		cmd = FenceBroker{ID: r.int32(), Epoch: r.int64()}
	case tagUnfenceBroker:
		cmd = UnfenceBroker{ID: r.int32(), Epoch: r.int64()}
	case tagBeginControlledShutdown:
		cmd = BeginControlledShutdown{ID: r.int32(), Epoch: r.int64()}
	case tagUnregisterBroker:
		cmd = UnregisterBroker{ID: r.int32(), Epoch: r.int64()}
	case tagChangePartitions:
		cmd = ChangePartitions{Changes: readPartitionChanges(r)}
	default:
		if r.err == nil {
			return nil, fmt.Errorf("%w: unknown command tag %d", ErrInvalidCommand, tag)
		}
	}
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("%w: decoding %T: %v", ErrInvalidCommand, cmd, err)
	}
	return cmd, nil
}

func readNewPartitions(r *reader) []NewPartition {
	n := r.count(6) // two empty lists and a leader
	if n == 0 {
		return nil
	}
	ps := make([]NewPartition, n)
	for i := range ps {
		ps[i] = NewPartition{Replicas: r.int32s(), ISR: r.int32s(), Leader: r.int32()}
	}
	return ps
}
