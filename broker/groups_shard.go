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
	"github.com/ringtail/ringtail/group"
)

// groupShard is the coordinator of one __consumer_offsets partition: the pure coordinator
// (package group) driven by one goroutine of its own, fed by a queue that never blocks its
// producers (request handlers and the engine's durability callbacks, which must not wait on
// each other). It first replays its partition (loading: its groups' requests are answered
// COORDINATOR_LOAD_IN_PROGRESS by the host without reaching it), then serves: it routes the
// coordinator's responses to the connections waiting for them, appends its records to its
// partition and reports their durability back, and fires its deadlines. It is the only writer
// of its partition, which the engine's log cleaner compacts (cleanup.policy=compact, as
// Kafka's): replay keeps the last value of each key, and the cleaner keeps exactly that.
type groupShard struct {
	shardCore[*groupRequest] // queue, goroutine and load state (coord_shard.go)
	h                        *groupHost

	// Owned by the shard's goroutine, and by shutdown once that goroutine is gone.
	coord     *group.Coordinator
	replayed  int // records read at load
	nextReply uint64
	replies   map[group.ReplyID]*groupRequest

	// migration: records replay found in the private encoding of older versions, to be
	// rewritten in Kafka's schemas once loaded (groups_migrate.go); nil when none.
	migration [][]group.Record
}

// groupRequest is one request waiting for a coordinator's answer; it is kept until answered,
// so that an Unload can answer it NOT_COORDINATOR.
type groupRequest struct {
	client  group.Client
	log     *slog.Logger
	req     kmsg.Request
	respond func(kmsg.Response)
}

// errUnloaded ends a replay interrupted by Unload.
var errUnloaded = errors.New("broker: the offsets partition was unloaded")

func newGroupShard(h *groupHost, p int32, part *engine.Partition) *groupShard {
	s := &groupShard{h: h, replies: make(map[group.ReplyID]*groupRequest)}
	s.init(p, part, h.log.With("offsets_partition", p))
	return s
}

// run replays the partition, then serves it until Unload. On the shard's goroutine.
func (s *groupShard) run() {
	defer close(s.stopped)
	start := time.Now()
	// loadDone marks the shard loaded before ready closes: whoever waited for the load finds it
	// taking requests (a request right after the wait could get COORDINATOR_LOAD_IN_PROGRESS
	// otherwise; TestOffsetsTopicKeepsItsPartitionCount did under -race).
	s.loadDone(s.replay())
	if s.loadErr != nil {
		if !errors.Is(s.loadErr, errUnloaded) {
			s.log.Error("groups: loading the offsets partition failed; its groups answer NOT_COORDINATOR", "err", s.loadErr)
		}
		// Nothing was queued: the host answers for a shard that is not loaded.
		s.h.shards[s.partition].CompareAndSwap(s, nil)
		return
	}
	s.log.Debug("groups: offsets partition loaded", "records", s.replayed, "took", time.Since(start).Round(time.Millisecond))
	s.migrate() // a log written in the private encoding of older versions
	s.serve()
}

// replay builds the coordinator from the partition's records.
func (s *groupShard) replay() error {
	if hook := s.h.beforeReplay; hook != nil {
		hook(s.partition)
	}
	if err := s.awaitCommitted(); err != nil {
		return err
	}
	records, txns, err := readOffsetsLog(s.part, s.stop)
	if err != nil {
		return err
	}
	cfg := s.h.coordConfig
	// Fresh per load: ids minted after an Unload and a Load never equal replayed ones.
	cfg.Incarnation = s.h.incarnation.Add(1)
	cfg.Topics = s.h.topics
	cfg.ConsumerTopics = s.h.consumer
	coord := group.New(cfg)
	if err := coord.ReplayTxn(time.Now(), records, txns); err != nil {
		return fmt.Errorf("replaying %s-%d: %w", OffsetsTopic, s.partition, err)
	}
	select {
	case <-s.stop: // however far the replay got: this shard will never serve
		return errUnloaded
	default:
	}
	s.coord, s.replayed = coord, len(records)
	if n := coord.LegacyRecords(); n > 0 {
		if s.migration, err = migrationRecords(settleTxns(records, txns)); err != nil {
			return fmt.Errorf("replaying %s-%d: %w", OffsetsTopic, s.partition, err)
		}
		s.log.Info("groups: "+OffsetsTopic+" holds records of the private encoding of older versions; they are rewritten in Kafka's schemas",
			"partition", s.partition, "records", n)
	}
	return nil
}

// awaitCommitted waits until everything in the partition is below its high watermark, which
// is as far as reads go. Appends of an earlier coordinator of this partition (before an Unload)
// may still be on their way to the disk; replaying without them would leave this coordinator
// ignorant of records that a later replay or compaction would find.
func (s *groupShard) awaitCommitted() error { return awaitCommitted(s.h.purg, s.part, s.stop) }

// awaitCommitted waits until everything in part is below its high watermark, or stop closes
// (errUnloaded).
func awaitCommitted(purg *Purgatory, part *engine.Partition, stop <-chan struct{}) error {
	end := part.LogEndOffset()
	tp := part.TopicPartition()
	for part.HighWatermark() < end {
		done := make(chan struct{})
		// The timeout only bounds one park: the loop checks again and parks anew.
		purg.Park(NewDelayed([]TopicPartition{tp}, time.Minute, true,
			func() bool { return part.HighWatermark() >= end },
			func(bool) { close(done) }))
		select {
		case <-done:
		case <-stop:
			return errUnloaded
		}
	}
	return nil
}

// readOffsetsLog reads every record of an offsets partition below its high watermark, in
// order. A close of stop (nil: never) ends it with errUnloaded. txns is nil unless the log
// holds transactions; then txns[i] says what out[i] is in one (nil: nothing), markers included
// (txn_offsets.go in package group).
func readOffsetsLog(part *engine.Partition, stop <-chan struct{}) (out []group.Record, txns []*group.TxnInfo, err error) {
	tp := part.TopicPartition()
	for off := part.LogStartOffset(); off < part.HighWatermark(); {
		select {
		case <-stop:
			return nil, nil, errUnloaded
		default:
		}
		res, err := part.Read(off, 1<<20, true)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s-%d at %d: %w", tp.Topic, tp.Partition, off, err)
		}
		if len(res.Records) == 0 {
			break
		}
		batches, err := batch.Split(res.Records)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s-%d at %d: %w", tp.Topic, tp.Partition, off, err)
		}
		for _, raw := range batches {
			h, err := batch.ParseHeader(raw)
			if err != nil {
				return nil, nil, err
			}
			recs, err := batch.Records(raw)
			if err != nil {
				return nil, nil, fmt.Errorf("decoding %s-%d batch at %d: %w", tp.Topic, tp.Partition, h.BaseOffset, err)
			}
			for _, r := range recs {
				if h.BaseOffset+int64(r.OffsetDelta) < off {
					continue // before the requested offset in the first batch
				}
				ti := txnInfoOf(h, r)
				if ti != nil && txns == nil {
					txns = make([]*group.TxnInfo, len(out), len(out)+1)
				}
				if txns != nil {
					txns = append(txns, ti)
				}
				out = append(out, group.Record{Key: r.Key, Value: r.Value})
			}
			off = h.LastOffset() + 1
		}
	}
	return out, txns, nil
}

// later schedules fn on the shard's goroutine; dropped once the shard is being unloaded. It
// never blocks.
func (s *groupShard) later(fn func(now time.Time)) { s.enqueue(shardEvent[*groupRequest]{fn: fn}) }

// shutdown stops the shard (interrupting a replay) and answers every request it holds, queued
// or parked in the coordinator, NOT_COORDINATOR: their clients look the coordinator up again.
// Appends in flight complete in the log, and their reports are dropped. Not on the shard's
// goroutine.
func (s *groupShard) shutdown() {
	for _, ev := range s.halt() {
		if ev.fn == nil {
			ev.req.respond(groupErrorResponse(ev.req.req, codeNotCoordinator))
		}
	}
	for id, r := range s.replies {
		delete(s.replies, id)
		r.respond(groupErrorResponse(r.req, codeNotCoordinator))
	}
}

// serve runs the queue and the deadlines until shutdown.
func (s *groupShard) serve() {
	s.shardCore.serve(s.handle, s.coord.NextDeadline, func(now time.Time) { s.process(now, s.coord.Tick(now)) })
}

// handle hands one request to the coordinator. On the shard's goroutine.
func (s *groupShard) handle(now time.Time, r *groupRequest) {
	s.nextReply++
	id := group.ReplyID(s.nextReply)
	s.replies[id] = r
	ready, ok := s.coord.Handle(now, id, r.client, r.req)
	if !ok {
		delete(s.replies, id)
		r.log.Error("groups: request type not handled by the coordinator", "key", r.req.Key())
		r.respond(nil)
		return
	}
	s.process(now, ready)
}

// logHeartbeatError says why a ConsumerGroupHeartbeat was refused: a warning for a request
// that can never succeed as sent, debug for the fencing and membership answers clients expect
// in their normal course.
func logHeartbeatError(log *slog.Logger, hb *kmsg.ConsumerGroupHeartbeatResponse) {
	msg := ""
	if hb.ErrorMessage != nil {
		msg = *hb.ErrorMessage
	}
	switch hb.ErrorCode {
	case kerr.InvalidRequest.Code, kerr.UnsupportedAssignor.Code, kerr.InvalidRegularExpression.Code, kerr.GroupIDNotFound.Code:
		log.Warn("groups: ConsumerGroupHeartbeat refused", "error", kerr.ErrorForCode(hb.ErrorCode), "why", msg)
	default:
		log.Debug("groups: ConsumerGroupHeartbeat answered with an error", "error", kerr.ErrorForCode(hb.ErrorCode), "why", msg)
	}
}

// process sends the responses in ready and persists its records. On the shard's goroutine.
func (s *groupShard) process(now time.Time, ready group.Ready) {
	for _, out := range ready.Send {
		r, ok := s.replies[out.Reply]
		if !ok {
			s.log.Error("groups: response for an unknown request", "reply", out.Reply)
			continue
		}
		delete(s.replies, out.Reply)
		if hb, ok := out.Response.(*kmsg.ConsumerGroupHeartbeatResponse); ok && hb.ErrorCode != 0 {
			logHeartbeatError(r.log, hb)
		}
		r.respond(out.Response)
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
	h := batch.Header{
		FirstTimestamp: ms,
		MaxTimestamp:   ms,
		ProducerID:     -1,
		ProducerEpoch:  -1,
		BaseSequence:   -1,
	}
	if ready.Txn != nil {
		// TxnOffsetCommit: a transactional batch of the producer, settled by its marker.
		h.Attributes, h.ProducerID, h.ProducerEpoch = 0x10, ready.Txn.ProducerID, ready.Txn.ProducerEpoch
	}
	raw := batch.Build(h, recs, batch.CodecNone)
	err := s.appendRaw(raw, func(err error) {
		s.later(func(now time.Time) {
			s.process(now, s.coord.Persisted(now, id, err))
		})
	})
	if err != nil {
		s.log.Error("groups: persisting coordinator records", "records", len(recs), "err", err)
		s.process(now, s.coord.Persisted(now, id, err))
		return
	}
}

// appendRaw appends the shard's batches to its partition: committed (acks=all) in a cluster.
func (s *groupShard) appendRaw(raw []byte, done func(error)) error {
	var err error
	if s.h.appendCommitted != nil {
		_, err = s.h.appendCommitted(s.part, raw, done)
	} else {
		_, err = s.part.Append(raw, done)
	}
	return err
}
