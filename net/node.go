package kafkanet

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/broker"
)

// Node is the broker node the Kafka APIs serve; package broker implements it. Each handler
// file uses only the small part it needs, and nothing here reaches the logs, the WAL or the
// metadata store except through it.
type Node interface {
	Cluster
	Topics
	Partitions
	Groups
	Transactions
}

var _ Node = (*broker.Broker)(nil)

// Cluster is what the node says about itself.
type Cluster interface {
	NodeID() int32
	Advertised() (host string, port int32)
	ClusterID() string
	ControllerID() int32
	Brokers() []broker.BrokerInfo
	AllBrokers() []broker.BrokerInfo
	PartitionInfo(t broker.Topic, partition int32) broker.PartitionInfo
	Settings() []broker.BrokerSetting
	NextProducerID() (int64, error)
	// BrokerHeartbeat takes a heartbeat of broker id at broker epoch epoch that came on
	// connection conn (Context.ConnID); BrokerDisconnected says that connection closed.
	BrokerHeartbeat(conn uint64, id int32, epoch int64, wantShutdown bool) (fenced, shouldShutdown bool, err error)
	BrokerDisconnected(conn uint64, id int32, epoch int64)
	AlterPartition(ctx context.Context, id int32, epoch int64, reqs []broker.ISRRequest) ([]broker.ISRResult, error)
	Quorum(ctx context.Context) (broker.Quorum, error)
	AddMember(ctx context.Context, id int32, raftAddr string, voter bool) error
	RemoveMember(ctx context.Context, id int32) error
}

// Topics is the topic lifecycle.
type Topics interface {
	Topics() []broker.Topic
	Topic(name string) (broker.Topic, bool)
	TopicByID(id [16]byte) (broker.Topic, bool)
	TopicOrCreate(name string, allowAuto bool) (broker.Topic, error)
	CreateTopic(r broker.CreateTopicRequest) (broker.Topic, error)
	DeleteTopic(name string) (broker.Topic, error)
	AlterTopicConfigs(name string, validateOnly bool, change func(overrides map[string]string) (map[string]string, error)) error
	CreatePartitions(name string, count int32, assignment [][]int32, validateOnly bool) error
}

// Partitions is appending to, reading from and trimming partitions.
type Partitions interface {
	Produce(topic string, partition int32, records []byte, acks int16, timeout time.Duration, done func(error)) (broker.AppendResult, error)
	Partition(topic string, partition int32, currentLeaderEpoch int32) (broker.Partition, error)
	DeleteRecords(topic string, partition int32, offset int64) (int64, error)
	DelayFetch(tps []broker.TopicPartition, maxWait time.Duration, ready func() bool, complete func(timedOut bool))
}

// Groups is the consumer-group coordinators: which broker coordinates a group, and the
// group APIs of the groups this node coordinates.
type Groups interface {
	CoordinatorFor(key string) (nodeID int32, host string, port int32, err error)
	HandleGroup(clientID, host string, log *slog.Logger, req kmsg.Request, respond func(kmsg.Response))
}

// Transactions is the transaction coordinators and the partition side of transactions.
type Transactions interface {
	TxnCoordinatorFor(transactionalID string) (nodeID int32, host string, port int32, err error)
	// HandleTxn hands InitProducerId (with a transactional id), AddPartitionsToTxn,
	// AddOffsetsToTxn, EndTxn, DescribeTransactions and ListTransactions to the coordinators.
	HandleTxn(log *slog.Logger, req kmsg.Request, respond func(kmsg.Response))
	WriteTxnMarkers(req *kmsg.WriteTxnMarkersRequest, respond func(kmsg.Response))
	// VerifyTxnProduce is KIP-890's check of a transactional produce to one partition.
	VerifyTxnProduce(transactionalID, topic string, partition int32, records []byte) error
	DescribeProducers(topic string, partition int32) ([]broker.ProducerState, error)
}
