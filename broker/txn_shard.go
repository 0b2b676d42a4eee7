package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/txn"
)

// txnShard is the transaction coordinator of one __transaction_state partition: the pure
// coordinator (package txn) driven by one goroutine of its own, fed by a queue that never
// blocks, as groupShard is for groups. It replays its partition, then serves: it routes the
// coordinator's responses, appends its records (committed, as acks=all) and reports their
// fate back, writes the markers the coordinator asks for (txn_markers.go) and reports them,
// and fires the coordinator's deadlines (transaction timeouts, marker retries).
type txnShard struct {
	shardCore[*txnRequest]
	h *txnHost

	// Owned by the shard's goroutine, and by shutdown once it is gone.
	coord     *txn.Coordinator
	nextReply uint64
	replies   map[txn.ReplyID]*txnRequest
}

// txnRequest is one request waiting for the coordinator's answer.
type txnRequest struct {
	log     *slog.Logger
	req     kmsg.Request
	respond func(kmsg.Response)
}

func newTxnShard(h *txnHost, p int32, part *engine.Partition) *txnShard {
	s := &txnShard{h: h, replies: make(map[txn.ReplyID]*txnRequest)}
	s.init(p, part, h.log.With("txn_partition", p))
	return s
}

func (s *txnShard) run() {
	defer close(s.stopped)
	start := time.Now()
	n, err := s.replay()
	s.loadDone(err)
	if err != nil {
		if !errors.Is(err, errUnloaded) {
			s.log.Error("transactions: loading the state partition failed; its ids answer NOT_COORDINATOR", "err", err)
		}
		s.h.shards[s.partition].CompareAndSwap(s, nil)
		return
	}
	s.log.Debug("transactions: state partition loaded", "records", n, "took", time.Since(start).Round(time.Millisecond))
	s.process(time.Now(), s.coord.Loaded())
	s.serve()
}

// replay builds the coordinator from the partition's records (as groupShard.replay: after
// everything appended by an earlier coordinator of the partition is committed).
func (s *txnShard) replay() (int, error) {
	if err := awaitCommitted(s.h.b.purg, s.part, s.stop); err != nil {
		return 0, err
	}
	records, _, err := readOffsetsLog(s.part, s.stop)
	if err != nil {
		return 0, err
	}
	coord := txn.New(s.h.txnCoordConfig(s.epoch))
	for i, r := range records {
		if err := coord.Replay(r.Key, r.Value); err != nil {
			return 0, fmt.Errorf("replaying %s-%d record %d: %w", TxnTopic, s.partition, i, err)
		}
	}
	s.coord = coord
	return len(records), nil
}

// later runs fn on the shard's goroutine; if the shard is unloaded first, dropped (may be nil)
// runs instead, on the caller's or the unloader's goroutine.
func (s *txnShard) later(fn func(now time.Time), dropped func()) {
	if !s.enqueue(shardEvent[*txnRequest]{fn: fn, dropped: dropped}) && dropped != nil {
		dropped()
	}
}

// shutdown stops the shard and answers what it holds NOT_COORDINATOR. Not on its goroutine.
func (s *txnShard) shutdown() {
	for _, ev := range s.halt() {
		switch {
		case ev.fn == nil:
			ev.req.respond(txnErrorResponse(ev.req.req, codeNotCoordinator))
		case ev.dropped != nil:
			ev.dropped()
		}
	}
	for id, r := range s.replies {
		delete(s.replies, id)
		r.respond(txnErrorResponse(r.req, codeNotCoordinator))
	}
}

func (s *txnShard) serve() {
	s.shardCore.serve(s.handle, s.coord.NextDeadline, func(now time.Time) { s.process(now, s.coord.Tick(now)) })
}

func (s *txnShard) handle(now time.Time, r *txnRequest) {
	if s.coord.Fenced() {
		// A newer coordinator of this partition exists; this node has not heard yet.
		r.respond(txnErrorResponse(r.req, codeNotCoordinator))
		return
	}
	s.nextReply++
	id := txn.ReplyID(s.nextReply)
	s.replies[id] = r
	var ready txn.Ready
	switch req := r.req.(type) {
	case *kmsg.InitProducerIDRequest:
		ready = s.coord.InitProducerId(now, id, req)
	case *kmsg.AddPartitionsToTxnRequest:
		ready = s.coord.AddPartitionsToTxn(now, id, req)
	case *kmsg.AddOffsetsToTxnRequest:
		ready = s.coord.AddOffsetsToTxn(now, id, req)
	case *kmsg.EndTxnRequest:
		ready = s.coord.EndTxn(now, id, req)
	default:
		delete(s.replies, id)
		r.log.Error("transactions: request type not handled by the coordinator", "key", r.req.Key())
		r.respond(nil)
		return
	}
	s.process(now, ready)
}

// process sends the responses, persists the records (committed before the coordinator hears
// of it) and starts the marker writes. On the shard's goroutine.
func (s *txnShard) process(now time.Time, ready txn.Ready) {
	for _, out := range ready.Send {
		r, ok := s.replies[out.Reply]
		if !ok {
			s.log.Error("transactions: response for an unknown request", "reply", out.Reply)
			continue
		}
		delete(s.replies, out.Reply)
		r.respond(out.Response)
	}
	for _, m := range ready.Markers {
		written := func(err error) {
			if errors.Is(err, engine.ErrCoordinatorFenced) || errors.Is(err, kerr.TransactionCoordinatorFenced) {
				err = fmt.Errorf("%w: %v", txn.ErrFenced, err)
			}
			switch {
			case errors.Is(err, txn.ErrFenced):
				s.log.Warn("transactions: a newer coordinator of the partition exists; this one sends no more markers", "transactional_id", m.TransactionalID, "coordinator_epoch", s.epoch, "err", err)
			case err != nil:
				s.log.Warn("transactions: writing markers failed; retried", "transactional_id", m.TransactionalID, "err", err)
			}
			s.later(func(now time.Time) { s.process(now, s.coord.MarkersWritten(now, m.TransactionalID, err)) }, nil)
		}
		if e := s.part.LeaderEpoch(); e != s.epoch {
			// The partition has a newer leadership than this coordinator's (this node follows
			// it, or leads it again and loads a new coordinator): its markers are not ours to
			// write any more.
			written(fmt.Errorf("%w: %s-%d is at leader epoch %d, this coordinator's is %d", txn.ErrFenced, TxnTopic, s.partition, e, s.epoch))
			continue
		}
		s.h.b.writeMarkers(s.log, m, written)
	}
	if ready.Batch == 0 {
		return
	}
	id := ready.Batch
	recs := make([]batch.Record, len(ready.Records))
	for i, r := range ready.Records {
		recs[i] = batch.Record{OffsetDelta: int32(i), Key: r.Key, Value: r.Value}
	}
	ms := now.UnixMilli()
	raw := batch.Build(batch.Header{FirstTimestamp: ms, MaxTimestamp: ms, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		recs, batch.CodecNone)
	_, err := s.h.b.appendCommitted(s.part, raw, groupCommitTimeout, func(err error) {
		s.later(func(now time.Time) { s.process(now, s.coord.Persisted(now, id, err)) }, nil)
	})
	if err != nil {
		s.log.Error("transactions: persisting coordinator records", "records", len(recs), "err", err)
		s.process(now, s.coord.Persisted(now, id, err))
	}
}
