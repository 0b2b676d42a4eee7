package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/group"
	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/txn"
)

// TxnTopic is the internal topic holding the transaction coordinators' state (Kafka's
// __transaction_state), in Kafka's TxnMetadataKey/TxnMetadataValue records.
const TxnTopic = "__transaction_state"

// DefaultTxnTopicPartitions is Kafka's transaction.state.log.num.partitions.
const DefaultTxnTopicPartitions = 50

// txnTopicConfigs: one record per transactional id per state change; Kafka's default segment
// and message sizes do.
var txnTopicConfigs = map[string]string{"max.message.bytes": "1048588", "cleanup.policy": "compact"}

// txnHost hosts one transaction coordinator (a txnShard) per __transaction_state partition
// this node leads, as groupHost does for the groups: a transactional id belongs to the
// partition group.PartitionFor names (Kafka places both the same way), requests for ids of
// partitions not hosted here get NOT_COORDINATOR, for ids of a loading partition
// COORDINATOR_LOAD_IN_PROGRESS, and a coordinator moves with its partition's leadership
// (Load on becoming leader: replay, then serve; Unload on losing it).
type txnHost struct {
	shardHost[txnShard, *txnShard]
	b   *Broker
	log *slog.Logger
}

func (b *Broker) newTxnHost(t Topic) *txnHost {
	h := &txnHost{b: b, log: b.log.With("component", "transactions")}
	h.initShards(TxnTopic, t.Partitions)
	return h
}

// txnTopicPartitions is the partition count __transaction_state is created with.
func (b *Broker) txnTopicPartitions() int32 {
	if b.cfg.TxnTopicPartitions > 0 {
		return b.cfg.TxnTopicPartitions
	}
	return DefaultTxnTopicPartitions
}

// ensureTxnHost returns the transaction host, on a single node creating __transaction_state and
// loading every partition the first time a transactional producer looks for its coordinator
// (Kafka creates the topic then too: a node without transactional producers pays nothing).
// In a cluster the controller creates the topic (ensureTxnTopic) and reconcile loads the
// coordinators of the partitions this node leads (followTxns).
func (b *Broker) ensureTxnHost() (*txnHost, error) {
	if h := b.txns.Load(); h != nil {
		return h, nil
	}
	if b.cl != nil {
		return nil, fmt.Errorf("%w: %s does not exist yet", ErrCoordinatorNotAvailable, TxnTopic)
	}
	b.txnStartMu.Lock()
	defer b.txnStartMu.Unlock()
	if h := b.txns.Load(); h != nil {
		return h, nil
	}
	t, ok := b.meta.Topic(TxnTopic)
	if ok {
		b.recordCompactPolicy(TxnTopic)
	} else {
		var err error
		if t, err = b.createTopic(TxnTopic, b.txnTopicPartitions(), txnTopicConfigs, false); err != nil && !errors.Is(err, ErrTopicExists) {
			return nil, fmt.Errorf("%w: creating %s: %v", ErrCoordinatorNotAvailable, TxnTopic, err)
		}
		if t, ok = b.meta.Topic(TxnTopic); !ok {
			return nil, fmt.Errorf("%w: %s was not created", ErrCoordinatorNotAvailable, TxnTopic)
		}
	}
	h := b.newTxnHost(t)
	var waits []func() error
	for p := int32(0); p < t.Partitions; p++ {
		waits = append(waits, h.Load(p))
	}
	for _, wait := range waits {
		if err := wait(); err != nil {
			h.close()
			return nil, err
		}
	}
	b.txns.Store(h)
	return h, nil
}

// startTxns loads the transaction coordinators at start on a single node where
// __transaction_state exists (transactions were used before).
func (b *Broker) startTxns() error {
	if _, ok := b.meta.Topic(TxnTopic); !ok {
		return nil
	}
	_, err := b.ensureTxnHost()
	return err
}

// followTxns hosts the coordinators of the __transaction_state partitions this node leads.
// topicMu held (reconcile).
func (b *Broker) followTxns(st *meta.State) {
	t, ok := st.Topic(TxnTopic)
	if !ok {
		return
	}
	h := b.txns.Load()
	if h == nil {
		h = b.newTxnHost(t)
		b.txns.Store(h)
	}
	for p := int32(0); p < t.Partitions && p < h.partitions; p++ {
		if int(p) < len(t.Assignments) && t.Assignments[p].Leader == b.cfg.NodeID {
			if h.stale(p, t.Assignments[p].LeaderEpoch) {
				h.Unload(p) // and replay again, under the new coordinator epoch
			}
			h.Load(p)
		} else if h.shards[p].Load() != nil {
			h.Unload(p)
		}
	}
}

// ensureTxnTopic creates __transaction_state once enough brokers are live for its replication
// factor, as ensureOffsetsTopic. Run by the controller.
func (b *Broker) ensureTxnTopic() {
	b.ensureInternalTopic(TxnTopic, b.txnTopicPartitions(), txnTopicConfigs)
}

// Load starts coordinating the transactional ids of partition p; wait returns once its replay
// is over. Loading a partition loaded or loading already does nothing.
func (h *txnHost) Load(p int32) (wait func() error) {
	return h.load(p, func() (*txnShard, error) {
		part := h.b.engine.Partition(TopicPartition{Topic: TxnTopic, Partition: p})
		if part == nil {
			return nil, fmt.Errorf("%w: %s-%d is not open", ErrUnknownTopic, TxnTopic, p)
		}
		return newTxnShard(h, p, part), nil
	})
}

// Unload stops coordinating partition p: what its coordinator holds is answered NOT_COORDINATOR.
func (h *txnHost) Unload(p int32) { h.unload(p) }

func (h *txnHost) close() { h.unloadAll() }

// shardFor returns the loaded shard of transactional id id, or the code to answer.
func (h *txnHost) shardFor(id string) (*txnShard, int16) {
	return h.shardOf(group.PartitionFor(id, h.partitions))
}

// TxnCoordinatorFor says which broker coordinates transactional id id (FindCoordinator key
// type 1): the leader of its __transaction_state partition.
func (b *Broker) TxnCoordinatorFor(id string) (nodeID int32, host string, port int32, err error) {
	if _, err := b.ensureTxnHost(); err != nil {
		return -1, "", -1, err
	}
	t, ok := b.meta.Topic(TxnTopic)
	if !ok {
		return -1, "", -1, fmt.Errorf("%w: %s does not exist", ErrCoordinatorNotAvailable, TxnTopic)
	}
	return b.leaderAddress(t, group.PartitionFor(id, t.Partitions))
}

// HandleTxn hands a request of a transaction API (InitProducerId with a transactional id,
// AddPartitionsToTxn, AddOffsetsToTxn, EndTxn) to the coordinator of its transactional id;
// respond is called once it answers. DescribeTransactions and ListTransactions ask every
// coordinator hosted here.
func (b *Broker) HandleTxn(log *slog.Logger, req kmsg.Request, respond func(kmsg.Response)) {
	h, err := b.ensureTxnHost()
	if err != nil {
		log.Warn("transactions: no coordinator", "err", err)
		respond(txnErrorResponse(req, kerr.CoordinatorNotAvailable.Code))
		return
	}
	switch r := req.(type) {
	case *kmsg.DescribeTransactionsRequest:
		h.describe(r, respond)
		return
	case *kmsg.ListTransactionsRequest:
		h.list(r, respond)
		return
	case *kmsg.AddPartitionsToTxnRequest:
		if r.Version >= 4 {
			h.addBatched(log, r, respond)
			return
		}
	}
	id := txnIDOf(req)
	s, code := h.shardFor(id)
	if code == 0 && s.submit(&txnRequest{log: log, req: req, respond: respond}) {
		return
	}
	if code == 0 {
		code = codeNotCoordinator
	}
	respond(txnErrorResponse(req, code))
}

// addBatched splits an AddPartitionsToTxn v4+ (from a broker, KIP-890) among the coordinators
// of its transactions and answers per transaction.
func (h *txnHost) addBatched(log *slog.Logger, req *kmsg.AddPartitionsToTxnRequest, respond func(kmsg.Response)) {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	resp.Transactions = make([]kmsg.AddPartitionsToTxnResponseTransaction, len(req.Transactions))
	g := &gather{left: 1, send: func() { respond(resp) }}
	for i, tx := range req.Transactions {
		sub := &kmsg.AddPartitionsToTxnRequest{Version: req.Version, Transactions: []kmsg.AddPartitionsToTxnRequestTransaction{tx}}
		place := func(part kmsg.Response) {
			g.mu.Lock()
			if pr, ok := part.(*kmsg.AddPartitionsToTxnResponse); ok && len(pr.Transactions) == 1 {
				resp.Transactions[i] = pr.Transactions[0]
			}
			g.mu.Unlock()
			g.done()
		}
		g.add()
		s, code := h.shardFor(tx.TransactionalID)
		if code == 0 && s.submit(&txnRequest{log: log, req: sub, respond: place}) {
			continue
		}
		if code == 0 {
			code = codeNotCoordinator
		}
		place(txnErrorResponse(sub, code))
	}
	g.done()
}

func (h *txnHost) describe(req *kmsg.DescribeTransactionsRequest, respond func(kmsg.Response)) {
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	g := &gather{left: 1, send: func() { respond(resp) }}
	for _, id := range req.TransactionalIDs {
		s, code := h.shardFor(id)
		if code != 0 {
			st := kmsg.NewDescribeTransactionsResponseTransactionState()
			st.TransactionalID, st.ErrorCode = id, code
			g.mu.Lock()
			resp.TransactionStates = append(resp.TransactionStates, st)
			g.mu.Unlock()
			continue
		}
		g.add()
		s.later(func(time.Time) {
			out := s.coord.DescribeTransactions([]string{id})
			g.mu.Lock()
			resp.TransactionStates = append(resp.TransactionStates, out...)
			g.mu.Unlock()
			g.done()
		}, func() {
			st := kmsg.NewDescribeTransactionsResponseTransactionState()
			st.TransactionalID, st.ErrorCode = id, codeNotCoordinator
			g.mu.Lock()
			resp.TransactionStates = append(resp.TransactionStates, st)
			g.mu.Unlock()
			g.done()
		})
	}
	g.done()
}

func (h *txnHost) list(req *kmsg.ListTransactionsRequest, respond func(kmsg.Response)) {
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	g := &gather{left: 1, send: func() { respond(resp) }}
	for p := range h.shards {
		s := h.shards[p].Load()
		if s == nil {
			continue
		}
		if !s.isLoaded() {
			g.mu.Lock()
			resp.ErrorCode = codeLoading
			g.mu.Unlock()
			continue
		}
		g.add()
		s.later(func(now time.Time) {
			out, err := s.coord.ListTransactions(now, req)
			g.mu.Lock()
			if err != nil {
				resp.ErrorCode = kerr.InvalidRequest.Code
			}
			resp.TransactionStates = append(resp.TransactionStates, out...)
			g.mu.Unlock()
			g.done()
		}, g.done)
	}
	g.done()
}

// txnIDOf is the transactional id a coordinator request names.
func txnIDOf(req kmsg.Request) string {
	switch r := req.(type) {
	case *kmsg.InitProducerIDRequest:
		if r.TransactionalID != nil {
			return *r.TransactionalID
		}
	case *kmsg.AddPartitionsToTxnRequest:
		if r.Version >= 4 && len(r.Transactions) > 0 {
			return r.Transactions[0].TransactionalID
		}
		return r.TransactionalID
	case *kmsg.AddOffsetsToTxnRequest:
		return r.TransactionalID
	case *kmsg.EndTxnRequest:
		return r.TransactionalID
	}
	return ""
}

// txnErrorResponse answers a transaction request with code throughout.
func txnErrorResponse(req kmsg.Request, code int16) kmsg.Response {
	resp := req.ResponseKind()
	switch r := resp.(type) {
	case *kmsg.InitProducerIDResponse:
		r.ErrorCode, r.ProducerID, r.ProducerEpoch = code, -1, -1
	case *kmsg.AddOffsetsToTxnResponse:
		r.ErrorCode = code
	case *kmsg.EndTxnResponse:
		r.ErrorCode = code
	case *kmsg.ListTransactionsResponse:
		r.ErrorCode = code
	case *kmsg.DescribeTransactionsResponse:
		for _, id := range req.(*kmsg.DescribeTransactionsRequest).TransactionalIDs {
			st := kmsg.NewDescribeTransactionsResponseTransactionState()
			st.TransactionalID, st.ErrorCode = id, code
			r.TransactionStates = append(r.TransactionStates, st)
		}
	case *kmsg.AddPartitionsToTxnResponse:
		q := req.(*kmsg.AddPartitionsToTxnRequest)
		if q.Version >= 4 {
			r.ErrorCode = code
			for _, tx := range q.Transactions {
				rtx := kmsg.NewAddPartitionsToTxnResponseTransaction()
				rtx.TransactionalID = tx.TransactionalID
				for _, t := range tx.Topics {
					rt := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
					rt.Topic = t.Topic
					for _, p := range t.Partitions {
						rp := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
						rp.Partition, rp.ErrorCode = p, code
						rt.Partitions = append(rt.Partitions, rp)
					}
					rtx.Topics = append(rtx.Topics, rt)
				}
				r.Transactions = append(r.Transactions, rtx)
			}
			break
		}
		for _, t := range q.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
		}
	}
	return resp
}

// txnCoordConfig is what a loaded coordinator is configured with.
func (h *txnHost) txnCoordConfig(coordinatorEpoch int32) txn.Config {
	b := h.b
	return txn.Config{
		CoordinatorEpoch: coordinatorEpoch,
		IDExpiration:     b.cfg.TxnIDExpiration,
		NewProducerID:    b.NextProducerID,
		PartitionExists: func(tp txn.TopicPartition) bool {
			return topicsView{b.meta}.PartitionExists(tp.Topic, tp.Partition)
		},
		OffsetsPartition: func(g string) txn.TopicPartition {
			n := int32(DefaultOffsetsTopicPartitions)
			if t, ok := b.meta.Topic(OffsetsTopic); ok {
				n = t.Partitions
			}
			return txn.TopicPartition{Topic: OffsetsTopic, Partition: group.PartitionFor(g, n)}
		},
	}
}

// leaderAddress is the broker leading partition p of t and its Kafka listener.
func (b *Broker) leaderAddress(t Topic, p int32) (int32, string, int32, error) {
	leader := b.offsetsLeader(t, p)
	if leader == b.cfg.NodeID {
		return leader, b.cfg.AdvertisedHost, b.cfg.AdvertisedPort, nil
	}
	if leader < 0 {
		return -1, "", -1, fmt.Errorf("%w: %s-%d has no leader", ErrCoordinatorNotAvailable, t.Name, p)
	}
	return b.brokerAddress(leader)
}

// engineOf is the open partition tp of the engine, nil when not here.
func (b *Broker) engineOf(tp TopicPartition) *engine.Partition { return b.engine.Partition(tp) }
