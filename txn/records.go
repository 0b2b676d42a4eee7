package txn

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The records of __transaction_state are Kafka's: key TxnMetadataKey
// (version 0: the transactional id), value TxnMetadataValue (version 0:
// producer id, epoch, timeout, state, partitions, last update and start
// times), so the log reads like Kafka's. A tombstone forgets an id.
// The epoch a coordinator's abort fenced (meta.lastEpoch: a timeout, or an
// InitProducerId that found a transaction open) has no field of its own:
// the abort's record carries the bumped epoch, and Replay, which sees the
// Ongoing record before it, knows the epoch it fenced, so after a failover
// that producer may still bump with InitProducerId (KIP-360/588) instead of
// being fenced for good. This holds while the Ongoing record is still in
// __transaction_state: the log cleaner keeps only an id's last record, so
// once it cleaned the segment holding the Ongoing record (a sealed one) a
// failover loses the epoch, and that producer is fenced (PRODUCER_FENCED),
// as Kafka, which never keeps it, always does: safe, not recoverable.

func encodeKey(id string) []byte {
	k := kmsg.NewTxnMetadataKey()
	k.TransactionalID = id
	return k.AppendTo(nil)
}

func encodeValue(m *meta) []byte {
	v := kmsg.NewTxnMetadataValue()
	v.ProducerID, v.ProducerEpoch = m.pid, m.epoch
	v.TimeoutMillis = int32(m.timeout / time.Millisecond)
	v.State = kmsg.TransactionState(m.state)
	for _, tp := range m.parts {
		if n := len(v.Topics); n == 0 || v.Topics[n-1].Topic != tp.Topic {
			t := kmsg.NewTxnMetadataValueTopic()
			t.Topic = tp.Topic
			v.Topics = append(v.Topics, t)
		}
		t := &v.Topics[len(v.Topics)-1]
		t.Partitions = append(t.Partitions, tp.Partition)
	}
	v.LastUpdateTimestamp = m.updated.UnixMilli()
	v.StartTimestamp = -1
	if m.state == Ongoing || m.state == PrepareCommit || m.state == PrepareAbort {
		v.StartTimestamp = m.start.UnixMilli()
	}
	return v.AppendTo(nil)
}

// Replay applies one record of the partition, in log order, before Loaded.
func (c *Coordinator) Replay(key, value []byte) error {
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(key); err != nil {
		return fmt.Errorf("txn: bad key: %w", err)
	}
	if value == nil {
		delete(c.txns, k.TransactionalID)
		return nil
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(value); err != nil {
		return fmt.Errorf("txn: bad value of %q: %w", k.TransactionalID, err)
	}
	m := &meta{id: k.TransactionalID, pid: v.ProducerID, epoch: v.ProducerEpoch, lastEpoch: -1,
		timeout: time.Duration(v.TimeoutMillis) * time.Millisecond, state: State(v.State),
		updated: time.UnixMilli(v.LastUpdateTimestamp), start: time.UnixMilli(v.StartTimestamp)}
	for _, t := range v.Topics {
		for _, p := range t.Partitions {
			m.parts = append(m.parts, TopicPartition{t.Topic, p})
		}
	}
	slices.SortFunc(m.parts, cmpTP)
	if prev := c.txns[m.id]; prev != nil && prev.pid == m.pid {
		m.lastEpoch = replayedLastEpoch(prev, m)
	}
	if m.state == Dead {
		delete(c.txns, m.id)
		return nil
	}
	c.txns[m.id] = m
	return nil
}

// replayedLastEpoch is the epoch a coordinator's abort fenced, as prepare
// and abortWithBump set it in memory: an abort written at the epoch after
// the open transaction's bumped it; the abort's later records (its
// completion, written again after a failure) keep it; anything else clears
// it.
func replayedLastEpoch(prev, next *meta) int16 {
	aborting := func(s State) bool { return s == PrepareAbort || s == CompleteAbort }
	switch {
	case prev.state == Ongoing && next.state == PrepareAbort && next.epoch == prev.epoch+1:
		return prev.epoch
	case aborting(prev.state) && aborting(next.state) && next.epoch == prev.epoch:
		return prev.lastEpoch
	}
	return -1
}

// DescribeTransactions describes the ids this coordinator holds; others
// get TRANSACTIONAL_ID_NOT_FOUND (the caller answers NOT_COORDINATOR for
// ids of partitions it does not lead).
func (c *Coordinator) DescribeTransactions(ids []string) []kmsg.DescribeTransactionsResponseTransactionState {
	var out []kmsg.DescribeTransactionsResponseTransactionState
	for _, id := range ids {
		s := kmsg.NewDescribeTransactionsResponseTransactionState()
		s.TransactionalID = id
		m := c.txns[id]
		if m == nil || m.state == Dead {
			s.ErrorCode = kerr.TransactionalIDNotFound.Code
			out = append(out, s)
			continue
		}
		s.State, s.TimeoutMillis = m.state.String(), int32(m.timeout/time.Millisecond)
		s.ProducerID, s.ProducerEpoch, s.StartTimestamp = m.pid, m.epoch, -1
		if m.state == Ongoing || m.state == PrepareCommit || m.state == PrepareAbort {
			s.StartTimestamp = m.start.UnixMilli()
		}
		for _, tp := range m.parts {
			if n := len(s.Topics); n == 0 || s.Topics[n-1].Topic != tp.Topic {
				t := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				t.Topic = tp.Topic
				s.Topics = append(s.Topics, t)
			}
			t := &s.Topics[len(s.Topics)-1]
			t.Partitions = append(t.Partitions, tp.Partition)
		}
		out = append(out, s)
	}
	return out
}

// ListTransactions lists the ids matching the request's filters (state
// names, producer ids, open longer than DurationFilterMillis, id pattern).
func (c *Coordinator) ListTransactions(now time.Time, req *kmsg.ListTransactionsRequest) ([]kmsg.ListTransactionsResponseTransactionState, error) {
	var re *regexp.Regexp
	if req.TransactionalIDPattern != nil && *req.TransactionalIDPattern != "" {
		var err error
		if re, err = regexp.Compile(*req.TransactionalIDPattern); err != nil {
			return nil, err
		}
	}
	var out []kmsg.ListTransactionsResponseTransactionState
	for _, id := range c.sortedIDs() {
		m := c.txns[id]
		switch {
		case m.state == Dead:
			continue
		case len(req.StateFilters) > 0 && !slices.Contains(req.StateFilters, m.state.String()):
			continue
		case len(req.ProducerIDFilters) > 0 && !slices.Contains(req.ProducerIDFilters, m.pid):
			continue
		case req.DurationFilterMillis >= 0 && m.state == Ongoing && now.Sub(m.start) < time.Duration(req.DurationFilterMillis)*time.Millisecond:
			continue
		case req.DurationFilterMillis >= 0 && m.state != Ongoing:
			continue
		case re != nil && !re.MatchString(id):
			continue
		}
		s := kmsg.NewListTransactionsResponseTransactionState()
		s.TransactionalID, s.ProducerID, s.TransactionState = id, m.pid, m.state.String()
		out = append(out, s)
	}
	return out, nil
}
