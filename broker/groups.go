package broker

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/group"
)

// groupHost hosts the pure group coordinator (package group): it drives it: every call into it happens on one goroutine,
// fed by a queue that never blocks its producers (request handlers and the engine's
// durability callbacks, which must not wait on each other). It routes the coordinator's
// responses to the connections waiting for them, appends its records to __consumer_offsets
// and reports their durability back, and fires its deadlines.
type groupHost struct {
	coord *group.Coordinator
	log   *slog.Logger
	part  *engine.Partition // __consumer_offsets partition 0

	mu      sync.Mutex
	events  []func(now time.Time)
	wake    chan struct{}
	stopped chan struct{}
	stop    chan struct{}

	// Owned by the loop goroutine.
	nextReply uint64
	replies   map[group.ReplyID]func(kmsg.Response)

	// Compaction (groups_compact.go), owned by the loop goroutine: records appended since the
	// last compaction, appends whose durability has not been processed yet, and the threshold.
	appended     int
	inflight     int
	compactEvery int
}

// topicsView answers the coordinator's partition-existence questions from the engine.
type topicsView struct{ eng *engine.Engine }

func (t topicsView) PartitionExists(topic string, p int32) bool {
	return t.eng.Partition(engine.TopicPartition{Topic: topic, Partition: p}) != nil
}

// startGroups creates __consumer_offsets if needed, replays it into a new coordinator and
// starts the loop.
func (b *Broker) startGroups() error {
	if _, err := b.topicOrCreateInternal(); err != nil {
		return fmt.Errorf("creating %s: %w", OffsetsTopic, err)
	}
	part := b.engine.Partition(TopicPartition{Topic: OffsetsTopic, Partition: 0})
	if part == nil {
		return fmt.Errorf("%s partition 0 is not open", OffsetsTopic)
	}
	coord := group.New(group.Config{
		Incarnation: uint64(time.Now().UnixNano()),
		Topics:      topicsView{b.engine},
	})
	start := time.Now()
	records, err := readOffsetsLog(part)
	if err != nil {
		return err
	}
	if err := coord.Replay(time.Now(), records); err != nil {
		return fmt.Errorf("replaying %s: %w", OffsetsTopic, err)
	}
	b.log.Info("group coordinator loaded", "records", len(records), "took", time.Since(start).Round(time.Millisecond))
	every := b.cfg.OffsetsCompactRecords
	if every <= 0 {
		every = DefaultOffsetsCompactRecords
	}
	g := &groupHost{
		coord:        coord,
		log:          b.log.With("component", "groups"),
		part:         part,
		wake:         make(chan struct{}, 1),
		stop:         make(chan struct{}),
		stopped:      make(chan struct{}),
		replies:      make(map[group.ReplyID]func(kmsg.Response)),
		appended:     len(records),
		compactEvery: every,
	}
	b.groups = g
	go g.run()
	g.enqueue(func(time.Time) { g.maybeCompact() }) // a long log from before the restart
	return nil
}

func (b *Broker) topicOrCreateInternal() (bool, error) {
	if _, ok := b.meta.Topic(OffsetsTopic); ok {
		return false, nil
	}
	_, err := b.createTopic(OffsetsTopic, 1, offsetsTopicConfigs, false)
	return true, err
}

// readOffsetsLog reads every record of the offsets partition, in order.
func readOffsetsLog(part *engine.Partition) ([]group.Record, error) {
	var out []group.Record
	for off := part.LogStartOffset(); off < part.HighWatermark(); {
		res, err := part.Read(off, 1<<20, true)
		if err != nil {
			return nil, fmt.Errorf("reading %s at %d: %w", OffsetsTopic, off, err)
		}
		if len(res.Records) == 0 {
			break
		}
		batches, err := batch.Split(res.Records)
		if err != nil {
			return nil, fmt.Errorf("reading %s at %d: %w", OffsetsTopic, off, err)
		}
		for _, raw := range batches {
			h, err := batch.ParseHeader(raw)
			if err != nil {
				return nil, err
			}
			recs, err := batch.Records(raw)
			if err != nil {
				return nil, fmt.Errorf("decoding %s batch at %d: %w", OffsetsTopic, h.BaseOffset, err)
			}
			for _, r := range recs {
				if h.BaseOffset+int64(r.OffsetDelta) < off {
					continue // before the requested offset in the first batch
				}
				out = append(out, group.Record{Key: r.Key, Value: r.Value})
			}
			off = h.LastOffset() + 1
		}
	}
	return out, nil
}

// close stops the loop; parked requests are dropped with their connections.
func (g *groupHost) close() {
	close(g.stop)
	<-g.stopped
}

// enqueue schedules fn on the loop goroutine. It never blocks.
func (g *groupHost) enqueue(fn func(now time.Time)) {
	g.mu.Lock()
	g.events = append(g.events, fn)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// HandleGroup hands a request of a group API (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
// OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete) to the
// group coordinator; respond is called when it answers (which, for JoinGroup and SyncGroup,
// waits for the rebalance). clientID and host identify the member's client; log carries the
// request's context.
func (b *Broker) HandleGroup(clientID, host string, log *slog.Logger, req kmsg.Request, respond func(kmsg.Response)) {
	if b.groups == nil {
		respond(coordinatorNotAvailable(req))
		return
	}
	b.groups.handle(group.Client{ID: clientID, Host: host}, log, req, respond)
}

func (g *groupHost) handle(cl group.Client, log *slog.Logger, req kmsg.Request, respond func(kmsg.Response)) {
	g.enqueue(func(now time.Time) {
		g.nextReply++
		id := group.ReplyID(g.nextReply)
		g.replies[id] = respond
		ready, ok := g.coord.Handle(now, id, cl, req)
		if !ok {
			delete(g.replies, id)
			log.Error("groups: request type not handled by the coordinator", "key", req.Key())
			respond(nil)
			return
		}
		g.process(now, ready)
	})
}

func (g *groupHost) run() {
	defer close(g.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		g.mu.Lock()
		events := g.events
		g.events = nil
		g.mu.Unlock()
		for _, fn := range events {
			fn(time.Now())
		}
		if len(events) > 0 {
			continue // more may have arrived while these ran
		}
		wait := time.Hour
		if at, ok := g.coord.NextDeadline(); ok {
			wait = time.Until(at)
		}
		if wait <= 0 {
			g.process(time.Now(), g.coord.Tick(time.Now()))
			continue
		}
		timer.Reset(wait)
		select {
		case <-g.wake:
		case <-timer.C:
			g.process(time.Now(), g.coord.Tick(time.Now()))
		case <-g.stop:
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// process sends the responses in ready and persists its records; on the loop goroutine.
func (g *groupHost) process(now time.Time, ready group.Ready) {
	for _, out := range ready.Send {
		respond, ok := g.replies[out.Reply]
		if !ok {
			g.log.Error("groups: response for an unknown request", "reply", out.Reply)
			continue
		}
		delete(g.replies, out.Reply)
		respond(out.Response)
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
	raw := batch.Build(batch.Header{
		FirstTimestamp: ms,
		MaxTimestamp:   ms,
		ProducerID:     -1,
		ProducerEpoch:  -1,
		BaseSequence:   -1,
	}, recs, batch.CodecNone)
	_, err := g.part.Append(raw, func(err error) {
		g.enqueue(func(now time.Time) {
			g.inflight--
			g.process(now, g.coord.Persisted(now, id, err))
			g.maybeCompact()
		})
	})
	if err != nil {
		g.log.Error("groups: persisting coordinator records", "records", len(recs), "err", err)
		g.process(now, g.coord.Persisted(now, id, err))
		return
	}
	g.inflight++
	g.appended += len(recs)
}

// coordinatorNotAvailable answers a group request on a node that hosts no coordinator.
func coordinatorNotAvailable(req kmsg.Request) kmsg.Response {
	code := kerr.CoordinatorNotAvailable.Code
	resp := req.ResponseKind()
	switch r := resp.(type) {
	case *kmsg.JoinGroupResponse:
		r.ErrorCode = code
	case *kmsg.SyncGroupResponse:
		r.ErrorCode = code
	case *kmsg.HeartbeatResponse:
		r.ErrorCode = code
	case *kmsg.LeaveGroupResponse:
		r.ErrorCode = code
	case *kmsg.ListGroupsResponse:
		r.ErrorCode = code
	case *kmsg.OffsetDeleteResponse:
		r.ErrorCode = code
	case *kmsg.OffsetFetchResponse:
		r.ErrorCode = code
		for _, g := range req.(*kmsg.OffsetFetchRequest).Groups {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, code
			r.Groups = append(r.Groups, rg)
		}
	case *kmsg.OffsetCommitResponse:
		for _, t := range req.(*kmsg.OffsetCommitRequest).Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			r.Topics = append(r.Topics, rt)
		}
	case *kmsg.DescribeGroupsResponse:
		for _, g := range req.(*kmsg.DescribeGroupsRequest).Groups {
			rg := kmsg.NewDescribeGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code
			r.Groups = append(r.Groups, rg)
		}
	case *kmsg.DeleteGroupsResponse:
		for _, g := range req.(*kmsg.DeleteGroupsRequest).Groups {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code
			r.Groups = append(r.Groups, rg)
		}
	}
	return resp
}
