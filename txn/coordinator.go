package txn

import (
	"errors"
	"math"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ReplyID identifies a waiting request to the caller; the coordinator only
// hands it back in an Output.
type ReplyID uint64

// BatchID names the records returned in one Ready; the caller reports
// the outcome of persisting them with Persisted.
type BatchID uint64

// Output is one response to write on the connection identified by Reply.
type Output struct {
	Reply    ReplyID
	Response kmsg.Response
}

// Record is one entry for the __transaction_state partition, Kafka's
// TxnMetadataKey / TxnMetadataValue (records.go). A nil Value is a
// tombstone.
type Record struct {
	Key, Value []byte
}

// TopicPartition names a partition a transaction wrote to.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Markers asks the caller to write a transaction's COMMIT or ABORT
// markers (WriteTxnMarkers) to every partition listed, with acks=all
// semantics, and then to call MarkersWritten.
type Markers struct {
	TransactionalID  string
	ProducerID       int64
	ProducerEpoch    int16
	Commit           bool
	CoordinatorEpoch int32
	Partitions       []TopicPartition
}

// Ready is what every call returns: responses to send now, records to
// persist (Batch non-zero; the caller reports Persisted in order) and
// marker writes to start.
type Ready struct {
	Send    []Output
	Records []Record
	Batch   BatchID
	Markers []Markers
}

// Empty reports whether there is nothing to do.
func (r Ready) Empty() bool { return len(r.Send) == 0 && len(r.Records) == 0 && len(r.Markers) == 0 }

// Config holds what the coordinator needs from its host. Zero durations
// take Kafka's defaults.
type Config struct {
	// MaxTimeout is transaction.max.timeout.ms (default 15 minutes): a
	// longer transaction.timeout.ms is refused with INVALID_TRANSACTION_TIMEOUT.
	MaxTimeout time.Duration
	// IDExpiration is transactional.id.expiration.ms (default 7 days): an
	// id idle that long (no transaction open) is forgotten (a tombstone).
	IDExpiration time.Duration
	// MarkerRetry is how long after a failed marker write it is tried again (default 100 ms).
	MarkerRetry time.Duration
	// CoordinatorEpoch is the leader epoch of the __transaction_state
	// partition this coordinator serves, written in the markers so a
	// partition can refuse those of a deposed coordinator.
	CoordinatorEpoch int32
	// NewProducerID hands out a producer id never used before.
	NewProducerID func() (int64, error)
	// PartitionExists says whether a partition may join a transaction.
	PartitionExists func(tp TopicPartition) bool
	// OffsetsPartition is the __consumer_offsets partition of a group
	// (AddOffsetsToTxn adds it to the transaction).
	OffsetsPartition func(group string) TopicPartition
}

func (c Config) withDefaults() Config {
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 15 * time.Minute
	}
	if c.IDExpiration == 0 {
		c.IDExpiration = 7 * 24 * time.Hour
	}
	if c.MarkerRetry == 0 {
		c.MarkerRetry = 100 * time.Millisecond
	}
	return c
}

// State is a transaction's state, numbered as Kafka's TransactionState.
type State int8

// The states (Kafka's TransactionState). PrepareEpochFence is never
// written by this coordinator.
const (
	Empty          State = 0
	Ongoing        State = 1
	PrepareCommit  State = 2
	PrepareAbort   State = 3
	CompleteCommit State = 4
	CompleteAbort  State = 5
	Dead           State = 6
)

func (s State) String() string { return kmsg.TransactionState(s).String() }

// meta is one transactional id's state.
type meta struct {
	id        string
	pid       int64
	epoch     int16
	lastEpoch int16 // the epoch before the last bump by the coordinator (a timeout abort), -1 when none
	timeout   time.Duration
	state     State
	parts     []TopicPartition // sorted
	start     time.Time        // the transaction's start (first partition added)
	updated   time.Time

	// ended are the EndTxn answers waiting for the transaction to complete (its markers written).
	ended        []func(code int16)
	writing      bool      // a write of this id is not persisted yet: other requests wait (CONCURRENT_TRANSACTIONS)
	markersOut   bool      // markers handed out, MarkersWritten not reported yet
	markersRetry time.Time // a failed marker write goes out again at this time
}

func (m *meta) has(tp TopicPartition) bool {
	_, ok := slices.BinarySearchFunc(m.parts, tp, cmpTP)
	return ok
}

func cmpTP(a, b TopicPartition) int {
	switch {
	case a.Topic < b.Topic:
		return -1
	case a.Topic > b.Topic:
		return 1
	}
	return int(a.Partition) - int(b.Partition)
}

// Coordinator is the transaction coordinator of one __transaction_state
// partition: a pure state machine (time passed in, no goroutines, no I/O),
// driven by one caller at a time.
type Coordinator struct {
	cfg  Config
	txns map[string]*meta
	// fenced: a partition refused a marker as coming from an older coordinator epoch
	// (ErrFenced), so a newer coordinator holds this partition: this one sends nothing more.
	fenced bool

	out     Ready
	acts    []func(now time.Time, code int16)
	batch   BatchID
	pending map[BatchID][]func(now time.Time, code int16)
}

// New returns an empty coordinator; Replay the partition's records, then
// Loaded, before serving requests.
func New(cfg Config) *Coordinator {
	return &Coordinator{cfg: cfg.withDefaults(), txns: make(map[string]*meta), batch: 1,
		pending: make(map[BatchID][]func(time.Time, int16))}
}

// send queues a response.
func (c *Coordinator) send(reply ReplyID, resp kmsg.Response) {
	c.out.Send = append(c.out.Send, Output{Reply: reply, Response: resp})
}

// write persists next as m's new state: m takes it (and fn runs with code
// 0) once the record is durable; on a failure m stays as it was and fn
// runs with the error code. m takes no other write meanwhile.
func (c *Coordinator) write(m *meta, next meta, fn func(now time.Time, code int16)) {
	next.writing, next.markersOut, next.markersRetry = false, false, time.Time{}
	c.out.Records = append(c.out.Records, Record{Key: encodeKey(m.id), Value: encodeValue(&next)})
	m.writing = true
	c.acts = append(c.acts, func(now time.Time, code int16) {
		m.writing = false
		if code == 0 {
			*m = next
			if c.txns[m.id] != m {
				c.txns[m.id] = m
			}
		} else if m.state == Dead {
			delete(c.txns, m.id) // a new id whose first write failed
		}
		fn(now, code)
	})
}

// flush closes the current call and returns its Ready.
func (c *Coordinator) flush() Ready {
	r := c.out
	c.out = Ready{}
	if len(r.Records) > 0 {
		r.Batch = c.batch
		c.pending[c.batch] = c.acts
		c.acts = nil
		c.batch++
	}
	return r
}

// ErrFenced is the marker-write error (MarkersWritten) of a partition that refused a marker
// as coming from a coordinator older than the one that wrote the producer's last marker there
// (TRANSACTION_COORDINATOR_FENCED).
var ErrFenced = errors.New("txn: transaction coordinator fenced")

// Fenced reports whether a newer coordinator has overtaken this one (ErrFenced): its host
// should unload it, and answer its requests NOT_COORDINATOR meanwhile.
func (c *Coordinator) Fenced() bool { return c.fenced }

// Persisted reports the outcome of persisting batch b (in order).
func (c *Coordinator) Persisted(now time.Time, b BatchID, err error) Ready {
	acts, ok := c.pending[b]
	if ok {
		delete(c.pending, b)
		code := persistErrCode(err)
		for _, a := range acts {
			a(now, code)
		}
	}
	return c.flush()
}

// persistErrCode maps a failed write of the state log to what clients
// see, as Kafka's TransactionStateManager does: they find the coordinator
// again and retry.
func persistErrCode(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke {
		case kerr.UnknownTopicOrPartition, kerr.NotEnoughReplicas, kerr.NotEnoughReplicasAfterAppend, kerr.RequestTimedOut:
			return kerr.CoordinatorNotAvailable.Code
		}
	}
	return kerr.NotCoordinator.Code
}

// fenced is PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH for the request
// versions that predate it (Kafka's KafkaApis does the same).
func fenced(version, since int16) int16 {
	if version < since {
		return kerr.InvalidProducerEpoch.Code
	}
	return kerr.ProducerFenced.Code
}

// InitProducerId gives a transactional id its producer id and a new
// epoch, fencing any producer of the older epoch: a new id gets a new
// producer id at epoch 0; an id whose transaction is open has it aborted
// first (the answer is CONCURRENT_TRANSACTIONS, the client retries); an
// exhausted epoch moves to a new producer id. With a producer id and
// epoch in the request (KIP-360, v3+), only the current holder (or the one
// a timeout abort fenced) may bump.
func (c *Coordinator) InitProducerId(now time.Time, reply ReplyID, req *kmsg.InitProducerIDRequest) Ready {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	answer := func(code int16) Ready {
		resp.ErrorCode = code
		c.send(reply, resp)
		return c.flush()
	}
	id := *req.TransactionalID
	timeout := time.Duration(req.TransactionTimeoutMillis) * time.Millisecond
	if id == "" {
		return answer(kerr.InvalidRequest.Code)
	}
	if timeout <= 0 || timeout > c.cfg.MaxTimeout {
		return answer(kerr.InvalidTransactionTimeout.Code)
	}
	m := c.txns[id]
	if m == nil {
		pid, err := c.cfg.NewProducerID()
		if err != nil {
			return answer(kerr.CoordinatorNotAvailable.Code)
		}
		m = &meta{id: id, state: Dead, lastEpoch: -1}
		c.txns[id] = m
		next := meta{id: id, pid: pid, epoch: 0, lastEpoch: -1, timeout: timeout, state: Empty, updated: now}
		c.write(m, next, func(_ time.Time, code int16) {
			if code == 0 {
				resp.ProducerID, resp.ProducerEpoch = m.pid, m.epoch
			}
			resp.ErrorCode = code
			c.send(reply, resp)
		})
		return c.flush()
	}
	if m.writing || m.markersOut || m.state == PrepareCommit || m.state == PrepareAbort {
		return answer(kerr.ConcurrentTransactions.Code)
	}
	if req.ProducerID >= 0 && req.ProducerEpoch >= 0 {
		switch {
		case req.ProducerID != m.pid:
			return answer(kerr.InvalidProducerIDMapping.Code)
		case req.ProducerEpoch != m.epoch && req.ProducerEpoch != m.lastEpoch:
			return answer(fenced(req.Version, 4))
		}
	}
	if m.state == Ongoing {
		// Abort what the old producer left open, fencing it; the client retries.
		c.abortWithBump(now, m)
		return answer(kerr.ConcurrentTransactions.Code)
	}
	next := *m
	next.timeout, next.updated, next.lastEpoch = timeout, now, -1
	next.state, next.parts = Empty, nil
	if m.epoch >= math.MaxInt16-1 {
		pid, err := c.cfg.NewProducerID()
		if err != nil {
			return answer(kerr.CoordinatorNotAvailable.Code)
		}
		next.pid, next.epoch = pid, 0
	} else {
		next.epoch = m.epoch + 1
	}
	c.write(m, next, func(_ time.Time, code int16) {
		if code == 0 {
			resp.ProducerID, resp.ProducerEpoch = m.pid, m.epoch
		}
		resp.ErrorCode = code
		c.send(reply, resp)
	})
	return c.flush()
}

// check is the common validation of a request naming a transactional
// id, producer id and epoch: 0 or the error code to answer.
func (c *Coordinator) check(id string, pid int64, epoch int16, version, fencedSince int16) (*meta, int16) {
	m := c.txns[id]
	switch {
	case m == nil || m.state == Dead || m.pid != pid:
		return nil, kerr.InvalidProducerIDMapping.Code
	case epoch != m.epoch:
		return nil, fenced(version, fencedSince)
	case m.writing || m.markersOut || m.state == PrepareCommit || m.state == PrepareAbort:
		return nil, kerr.ConcurrentTransactions.Code
	}
	return m, 0
}

// addPartitions adds tps to m's transaction (starting it when none is
// open), persisted before fn runs.
func (c *Coordinator) addPartitions(now time.Time, m *meta, tps []TopicPartition, fn func(code int16)) {
	next := *m
	next.parts = slices.Clone(m.parts)
	added := false
	for _, tp := range tps {
		if i, ok := slices.BinarySearchFunc(next.parts, tp, cmpTP); !ok {
			next.parts = slices.Insert(next.parts, i, tp)
			added = true
		}
	}
	if m.state == Ongoing && !added {
		fn(0)
		return
	}
	if m.state != Ongoing {
		next.start = now
	}
	next.state, next.updated = Ongoing, now
	c.write(m, next, func(_ time.Time, code int16) { fn(code) })
}

// AddPartitionsToTxn adds partitions to transactions: v0–v3 from a
// producer (one transaction), v4+ from a broker (several, each
// possibly VerifyOnly: KIP-890's check that a partition is already in the
// open transaction before a transactional produce is taken).
func (c *Coordinator) AddPartitionsToTxn(now time.Time, reply ReplyID, req *kmsg.AddPartitionsToTxnRequest) Ready {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if req.Version < 4 {
		tx := kmsg.NewAddPartitionsToTxnRequestTransaction()
		tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch = req.TransactionalID, req.ProducerID, req.ProducerEpoch
		for _, t := range req.Topics {
			tt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
			tt.Topic, tt.Partitions = t.Topic, t.Partitions
			tx.Topics = append(tx.Topics, tt)
		}
		c.addOne(now, req.Version, tx, func(codes map[TopicPartition]int16) {
			for _, t := range req.Topics {
				rt := kmsg.NewAddPartitionsToTxnResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
					rp.Partition, rp.ErrorCode = p, codes[TopicPartition{t.Topic, p}]
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			c.send(reply, resp)
		})
		return c.flush()
	}
	left := len(req.Transactions)
	resp.Transactions = make([]kmsg.AddPartitionsToTxnResponseTransaction, len(req.Transactions))
	if left == 0 {
		c.send(reply, resp)
		return c.flush()
	}
	for i, tx := range req.Transactions {
		c.addOne(now, req.Version, tx, func(codes map[TopicPartition]int16) {
			rtx := kmsg.NewAddPartitionsToTxnResponseTransaction()
			rtx.TransactionalID = tx.TransactionalID
			for _, t := range tx.Topics {
				rt := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
					rp.Partition, rp.ErrorCode = p, codes[TopicPartition{t.Topic, p}]
					rt.Partitions = append(rt.Partitions, rp)
				}
				rtx.Topics = append(rtx.Topics, rt)
			}
			resp.Transactions[i] = rtx
			if left--; left == 0 {
				c.send(reply, resp)
			}
		})
	}
	return c.flush()
}

// addOne handles one transaction of an AddPartitionsToTxn; done gets a
// code per partition.
func (c *Coordinator) addOne(now time.Time, version int16, tx kmsg.AddPartitionsToTxnRequestTransaction, done func(map[TopicPartition]int16)) {
	var tps []TopicPartition
	for _, t := range tx.Topics {
		for _, p := range t.Partitions {
			tps = append(tps, TopicPartition{t.Topic, p})
		}
	}
	all := func(code int16) {
		codes := make(map[TopicPartition]int16, len(tps))
		for _, tp := range tps {
			codes[tp] = code
		}
		done(codes)
	}
	if tx.VerifyOnly {
		m := c.txns[tx.TransactionalID]
		codes := make(map[TopicPartition]int16, len(tps))
		for _, tp := range tps {
			switch {
			case m == nil || m.pid != tx.ProducerID:
				codes[tp] = kerr.InvalidProducerIDMapping.Code
			case m.epoch != tx.ProducerEpoch:
				codes[tp] = kerr.ProducerFenced.Code
			case m.state != Ongoing || !m.has(tp):
				codes[tp] = kerr.InvalidTxnState.Code
			}
		}
		done(codes)
		return
	}
	m, code := c.check(tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, version, 2)
	if code != 0 {
		all(code)
		return
	}
	unknown := false
	codes := make(map[TopicPartition]int16, len(tps))
	for _, tp := range tps {
		if c.cfg.PartitionExists != nil && !c.cfg.PartitionExists(tp) {
			codes[tp] = kerr.UnknownTopicOrPartition.Code
			unknown = true
		}
	}
	if unknown {
		for _, tp := range tps {
			if codes[tp] == 0 {
				codes[tp] = kerr.OperationNotAttempted.Code
			}
		}
		done(codes)
		return
	}
	c.addPartitions(now, m, tps, all)
}

// AddOffsetsToTxn adds the group's __consumer_offsets partition to the
// transaction, so EndTxn's markers reach the group coordinator.
func (c *Coordinator) AddOffsetsToTxn(now time.Time, reply ReplyID, req *kmsg.AddOffsetsToTxnRequest) Ready {
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	m, code := c.check(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Version, 2)
	if code != 0 {
		resp.ErrorCode = code
		c.send(reply, resp)
		return c.flush()
	}
	c.addPartitions(now, m, []TopicPartition{c.cfg.OffsetsPartition(req.Group)}, func(code int16) {
		resp.ErrorCode = code
		c.send(reply, resp)
	})
	return c.flush()
}

// EndTxn commits or aborts the open transaction: PrepareCommit or
// PrepareAbort is persisted, the markers go out (Ready.Markers), and once
// MarkersWritten reports them the transaction completes and the producer is
// answered. (Kafka answers after the prepare; its producer's next request
// then meets CONCURRENT_TRANSACTIONS and backs off, which cost franz-go
// about 14 ms per transaction here. The answer is the same, and durable
// either way.) A retry of a completed end gets NONE.
func (c *Coordinator) EndTxn(now time.Time, reply ReplyID, req *kmsg.EndTxnRequest) Ready {
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	answer := func(code int16) Ready {
		resp.ErrorCode = code
		c.send(reply, resp)
		return c.flush()
	}
	m := c.txns[req.TransactionalID]
	if m == nil || m.state == Dead || m.pid != req.ProducerID {
		return answer(kerr.InvalidProducerIDMapping.Code)
	}
	if req.ProducerEpoch != m.epoch {
		// The producer's abort of a transaction the coordinator aborted
		// on timeout (with an epoch bump) is that abort's retry.
		if !req.Commit && req.ProducerEpoch == m.lastEpoch && (m.state == PrepareAbort || m.state == CompleteAbort) {
			if m.state == PrepareAbort {
				return answer(kerr.ConcurrentTransactions.Code)
			}
			return answer(0)
		}
		return answer(fenced(req.Version, 2))
	}
	if m.writing {
		return answer(kerr.ConcurrentTransactions.Code)
	}
	switch m.state {
	case Ongoing:
	case CompleteCommit, CompleteAbort:
		if req.Commit == (m.state == CompleteCommit) {
			return answer(0)
		}
		return answer(kerr.InvalidTxnState.Code)
	case PrepareCommit, PrepareAbort:
		if req.Commit == (m.state == PrepareCommit) {
			return answer(kerr.ConcurrentTransactions.Code)
		}
		return answer(kerr.InvalidTxnState.Code)
	default:
		return answer(kerr.InvalidTxnState.Code)
	}
	answer2 := func(code int16) {
		resp.ErrorCode = code
		c.send(reply, resp)
	}
	c.prepare(now, m, m.epoch, req.Commit, func(code int16) {
		if code != 0 {
			answer2(code)
			return
		}
		m.ended = append(m.ended, answer2)
	})
	return c.flush()
}

// prepare persists PrepareCommit/PrepareAbort at epoch, then hands out
// the markers. fn (may be nil) runs once the write's fate is known.
func (c *Coordinator) prepare(now time.Time, m *meta, epoch int16, commit bool, fn func(code int16)) {
	next := *m
	next.state, next.updated, next.epoch = PrepareAbort, now, epoch
	if commit {
		next.state = PrepareCommit
	}
	if epoch != m.epoch {
		next.lastEpoch = m.epoch
	}
	c.write(m, next, func(now time.Time, code int16) {
		if code == 0 {
			c.sendMarkers(m)
		}
		if fn != nil {
			fn(code)
		}
	})
}

// abortWithBump aborts m's open transaction at the next epoch, fencing
// its producer (a timeout, or a new producer of the same id).
func (c *Coordinator) abortWithBump(now time.Time, m *meta) {
	epoch := m.epoch + 1
	if m.epoch >= math.MaxInt16-1 {
		epoch = m.epoch // the producer must take a new id at its InitProducerId anyway
	}
	c.prepare(now, m, epoch, false, nil)
}

// sendMarkers hands out m's markers, unless this coordinator was fenced.
func (c *Coordinator) sendMarkers(m *meta) {
	if c.fenced {
		return
	}
	m.markersOut, m.markersRetry = true, time.Time{}
	c.out.Markers = append(c.out.Markers, Markers{TransactionalID: m.id, ProducerID: m.pid, ProducerEpoch: m.epoch,
		Commit: m.state == PrepareCommit, CoordinatorEpoch: c.cfg.CoordinatorEpoch, Partitions: slices.Clone(m.parts)})
}

// MarkersWritten reports the markers of id handed out by a Ready: with
// err nil they are durable on every partition and the transaction
// completes; with ErrFenced the coordinator stops (Fenced: its successor
// completes the transaction); otherwise they go out again after
// Config.MarkerRetry.
func (c *Coordinator) MarkersWritten(now time.Time, id string, err error) Ready {
	m := c.txns[id]
	if m == nil || !m.markersOut {
		return c.flush()
	}
	m.markersOut = false
	if errors.Is(err, ErrFenced) {
		c.fenced = true
		return c.flush()
	}
	if err != nil {
		m.markersRetry = now.Add(c.cfg.MarkerRetry)
		return c.flush()
	}
	ended := m.ended
	m.ended = nil
	next := *m
	next.state, next.updated, next.parts = CompleteAbort, now, nil
	if m.state == PrepareCommit {
		next.state = CompleteCommit
	}
	c.write(m, next, func(now time.Time, code int16) {
		if code != 0 {
			// The markers are written; writing the completion again is harmless.
			m.markersRetry = now.Add(c.cfg.MarkerRetry)
		}
		// The outcome is decided and in every partition: the producer may go on.
		for _, answer := range ended {
			answer(0)
		}
	})
	return c.flush()
}

// Tick aborts transactions open past their timeout (bumping the epoch,
// which fences the producer), retries failed marker writes and forgets
// idle transactional ids. It returns the work that makes.
func (c *Coordinator) Tick(now time.Time) Ready {
	if c.fenced {
		return c.flush()
	}
	for _, id := range c.sortedIDs() {
		m := c.txns[id]
		if m.writing || m.markersOut {
			continue
		}
		switch {
		case m.state == Ongoing && !now.Before(m.start.Add(m.timeout)):
			c.abortWithBump(now, m)
		case (m.state == PrepareCommit || m.state == PrepareAbort) && !now.Before(m.markersRetry):
			c.sendMarkers(m)
		case (m.state == Empty || m.state == CompleteCommit || m.state == CompleteAbort) && !now.Before(m.updated.Add(c.cfg.IDExpiration)):
			c.out.Records = append(c.out.Records, Record{Key: encodeKey(id)})
			m.writing = true
			c.acts = append(c.acts, func(_ time.Time, code int16) {
				m.writing = false
				if code == 0 {
					delete(c.txns, m.id)
				}
			})
		}
	}
	return c.flush()
}

// NextDeadline is the earliest time Tick has work, if any.
func (c *Coordinator) NextDeadline() (time.Time, bool) {
	if c.fenced {
		return time.Time{}, false
	}
	var at time.Time
	found := false
	for _, m := range c.txns {
		var t time.Time
		switch m.state {
		case Ongoing:
			t = m.start.Add(m.timeout)
		case PrepareCommit, PrepareAbort:
			if m.markersOut || m.writing {
				continue
			}
			t = m.markersRetry
		case Empty, CompleteCommit, CompleteAbort:
			t = m.updated.Add(c.cfg.IDExpiration)
		default:
			continue
		}
		if !found || t.Before(at) {
			at, found = t, true
		}
	}
	return at, found
}

func (c *Coordinator) sortedIDs() []string {
	ids := make([]string, 0, len(c.txns))
	for id := range c.txns {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Loaded ends a replay: transactions replayed in PrepareCommit or
// PrepareAbort get their markers (again; a marker written twice is
// harmless: the second finds no open transaction).
func (c *Coordinator) Loaded() Ready {
	for _, id := range c.sortedIDs() {
		if m := c.txns[id]; m.state == PrepareCommit || m.state == PrepareAbort {
			c.sendMarkers(m)
		}
	}
	return c.flush()
}

// Owns reports whether the coordinator holds transactional id id.
func (c *Coordinator) Owns(id string) bool { return c.txns[id] != nil }

// Verify answers KIP-890's question for a produce: is tp part of the open
// transaction of producer pid at epoch? 0, or the error code for the
// produce (INVALID_TXN_STATE when not; a fenced epoch as such).
func (c *Coordinator) Verify(id string, pid int64, epoch int16, tp TopicPartition) int16 {
	m := c.txns[id]
	switch {
	case m == nil || m.pid != pid:
		return kerr.InvalidProducerIDMapping.Code
	case epoch < m.epoch:
		return kerr.InvalidProducerEpoch.Code
	case m.state != Ongoing || !m.has(tp):
		return kerr.InvalidTxnState.Code
	}
	return 0
}
