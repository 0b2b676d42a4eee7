package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/group"
	"github.com/ringtail/ringtail/txn"
)

// KIP-890 part 1: before a partition leader appends a producer's first transactional batch of a
// transaction, it asks the transaction coordinator whether the partition is in that open
// transaction (AddPartitionsToTxn v4 VerifyOnly; a direct question when the coordinator is
// here). A batch of a transaction that was aborted meanwhile, or whose producer never added the
// partition, is refused with INVALID_TXN_STATE instead of hanging the partition's last stable
// offset. A verified (producer, partition) is remembered until its marker is written.

// ErrInvalidTxnState: a transactional batch for a partition that is not in its producer's
// open transaction (INVALID_TXN_STATE).
var ErrInvalidTxnState = errors.New("broker: the partition is not in the producer's open transaction")

// verifyTimeout bounds one verification round trip.
const verifyTimeout = 5 * time.Second

type verifiedKey struct {
	pid int64
	tp  TopicPartition
}

// verifiedTxns remembers the (producer, partition) pairs verified for the open transaction,
// with the epoch verified.
type verifiedTxns struct {
	mu sync.Mutex // leaf
	m  map[verifiedKey]int16
}

func (v *verifiedTxns) has(k verifiedKey, epoch int16) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[k]
	return ok && e == epoch
}

func (v *verifiedTxns) set(k verifiedKey, epoch int16) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = make(map[verifiedKey]int16)
	}
	v.m[k] = epoch
}

func (v *verifiedTxns) forget(k verifiedKey) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.m, k)
}

// VerifyTxnProduce checks, for a produce of transactional id txnID, that the transactional
// batches in records may be appended to topic/partition. nil for records of no transaction.
func (b *Broker) VerifyTxnProduce(txnID, topic string, partition int32, records []byte) error {
	if len(records) < batch.HeaderSize {
		return nil // the append refuses it
	}
	h, err := batch.ParseHeader(records)
	if err != nil || !h.IsTransactional() || h.ProducerID < 0 {
		return nil
	}
	tp := TopicPartition{Topic: topic, Partition: partition}
	k := verifiedKey{h.ProducerID, tp}
	if b.verified.has(k, h.ProducerEpoch) {
		return nil
	}
	code, err := b.verifyTxn(txnID, h.ProducerID, h.ProducerEpoch, tp)
	switch {
	case err != nil:
		// Retriable for the producer, as Kafka answers a verification it could not make.
		return fmt.Errorf("%w: verifying the transaction: %v", ErrNotEnoughReplicas, err)
	case code == kerr.InvalidTxnState.Code:
		return fmt.Errorf("%w: %s-%d, producer %d epoch %d", ErrInvalidTxnState, topic, partition, h.ProducerID, h.ProducerEpoch)
	case code == kerr.ProducerFenced.Code, code == kerr.InvalidProducerEpoch.Code:
		return fmt.Errorf("%w: producer %d epoch %d is fenced", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch)
	case code == kerr.InvalidProducerIDMapping.Code:
		return kerr.InvalidProducerIDMapping
	case code != 0:
		return fmt.Errorf("%w: verifying the transaction: %v", ErrNotEnoughReplicas, kerr.ErrorForCode(code))
	}
	b.verified.set(k, h.ProducerEpoch)
	return nil
}

// verifyTxn asks the coordinator of txnID whether tp is in the producer's open transaction.
func (b *Broker) verifyTxn(txnID string, pid int64, epoch int16, tp TopicPartition) (int16, error) {
	t, ok := b.meta.Topic(TxnTopic)
	if !ok {
		return kerr.CoordinatorNotAvailable.Code, nil
	}
	leader, host, port, err := b.leaderAddress(t, group.PartitionFor(txnID, t.Partitions))
	if err != nil {
		return 0, err
	}
	if leader == b.NodeID() {
		h := b.txns.Load()
		if h == nil {
			return kerr.CoordinatorLoadInProgress.Code, nil
		}
		s, code := h.shardFor(txnID)
		if code != 0 {
			return code, nil
		}
		ch := make(chan int16, 1)
		s.later(func(time.Time) {
			ch <- s.coord.Verify(txnID, pid, epoch, txn.TopicPartition{Topic: tp.Topic, Partition: tp.Partition})
		}, func() { ch <- codeNotCoordinator })
		select {
		case c := <-ch:
			return c, nil
		case <-time.After(verifyTimeout):
			return 0, fmt.Errorf("the coordinator did not answer in %v", verifyTimeout)
		}
	}
	cl := b.markerClients.get(leader, net.JoinHostPort(host, strconv.Itoa(int(port))), "ringtail-broker-"+strconv.Itoa(int(b.NodeID())))
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = 4
	tx := kmsg.NewAddPartitionsToTxnRequestTransaction()
	tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, tx.VerifyOnly = txnID, pid, epoch, true
	rt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
	rt.Topic, rt.Partitions = tp.Topic, []int32{tp.Partition}
	tx.Topics = append(tx.Topics, rt)
	req.Transactions = append(req.Transactions, tx)
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		return 0, err
	}
	r := resp.(*kmsg.AddPartitionsToTxnResponse)
	if r.ErrorCode != 0 {
		return r.ErrorCode, nil
	}
	for _, rtx := range r.Transactions {
		for _, t := range rtx.Topics {
			for _, p := range t.Partitions {
				return p.ErrorCode, nil
			}
		}
	}
	return kerr.UnknownServerError.Code, nil
}

// ProducerState is one producer a partition remembers (DescribeProducers).
type ProducerState = engine.ProducerInfo

// DescribeProducers lists the producers partition topic/partition, led here, remembers.
func (b *Broker) DescribeProducers(topic string, partition int32) ([]ProducerState, error) {
	part, err := b.Partition(topic, partition, -1)
	if err != nil {
		return nil, err
	}
	return part.p.Producers(), nil
}
