package group

import (
	"container/heap"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ReplyID identifies a waiting request to the caller (typically a
// connection and its request sequence number). The coordinator never
// interprets it; it only hands it back in an Output.
type ReplyID uint64

// BatchID names the records returned in one Ready. The caller reports the
// outcome of persisting them with Persisted.
type BatchID uint64

// Client describes the connection a request came from; it is shown by
// DescribeGroups and used to build member ids.
type Client struct {
	ID   string // client.id from the request header
	Host string // "/" + remote address, as Kafka shows it
}

// Output is one response to write on the connection identified by Reply.
type Output struct {
	Reply    ReplyID
	Response kmsg.Response
}

// Record is one entry for the __consumer_offsets partition. A nil Value is
// a tombstone. See doc.go for the encoding.
type Record struct {
	Key, Value []byte
}

// Ready is what every call returns: responses to send right away, and
// records to persist. When Records is non-empty, Batch is non-zero and the
// caller must eventually call Persisted(now, Batch, err) after the records
// are durable (or failed to be); responses that depend on the write are
// held inside the coordinator and come out of that call.
type Ready struct {
	Send    []Output
	Records []Record
	Batch   BatchID
	// Txn, when set, makes Records a transactional batch of that producer (TxnOffsetCommit).
	Txn *TxnBatch
}

// Empty reports whether there is nothing to do.
func (r Ready) Empty() bool { return len(r.Send) == 0 && len(r.Records) == 0 }

// Topics answers whether a partition exists, for UNKNOWN_TOPIC_OR_PARTITION.
type Topics interface {
	PartitionExists(topic string, partition int32) bool
}

// Config holds the broker settings the coordinator obeys. Zero fields take
// Kafka's defaults (see withDefaults).
type Config struct {
	InitialRebalanceDelay time.Duration // group.initial.rebalance.delay.ms, default 3s; negative means 0
	MinSessionTimeout     time.Duration // group.min.session.timeout.ms, default 6s
	MaxSessionTimeout     time.Duration // group.max.session.timeout.ms, default 30m
	OffsetsRetention      time.Duration // offsets.retention.minutes, default 7 days
	MaxMetadataBytes      int           // offset.metadata.max.bytes, default 4096
	// Incarnation is mixed into generated member ids so that ids minted
	// after a restart never collide with replayed ones. Pass something that
	// differs per process start (e.g. the start time in nanoseconds).
	Incarnation uint64
	// Topics, when set, is asked whether committed/deleted partitions exist.
	Topics Topics
	// ConsumerTopics, needed by ConsumerGroupHeartbeat, names topics by id and counts their
	// partitions for the server-side assignors.
	ConsumerTopics            ConsumerTopics
	ConsumerSessionTimeout    time.Duration // group.consumer.session.timeout.ms, default 45s
	ConsumerHeartbeatInterval time.Duration // group.consumer.heartbeat.interval.ms, default 5s
	// ConsumerMaxSize is group.consumer.max.size: a consumer group with this many members
	// refuses another with GROUP_MAX_SIZE_REACHED. 0: no limit (Kafka's default is
	// Integer.MAX_VALUE).
	ConsumerMaxSize int
	// ConsumerAssignors is group.consumer.assignors: the server assignors members may name,
	// the first one the default of a group whose members name none. nil: uniform, range.
	ConsumerAssignors []string
}

func (c Config) withDefaults() Config {
	if c.InitialRebalanceDelay == 0 {
		c.InitialRebalanceDelay = 3 * time.Second
	}
	if c.InitialRebalanceDelay < 0 {
		c.InitialRebalanceDelay = 0
	}
	if c.MinSessionTimeout == 0 {
		c.MinSessionTimeout = 6 * time.Second
	}
	if c.MaxSessionTimeout == 0 {
		c.MaxSessionTimeout = 30 * time.Minute
	}
	if c.OffsetsRetention == 0 {
		c.OffsetsRetention = 7 * 24 * time.Hour
	}
	if c.ConsumerSessionTimeout == 0 {
		c.ConsumerSessionTimeout = defaultConsumerSession
	}
	if c.ConsumerHeartbeatInterval == 0 {
		c.ConsumerHeartbeatInterval = defaultConsumerHeartbeat
	}
	if len(c.ConsumerAssignors) == 0 {
		c.ConsumerAssignors = []string{AssignorUniform, AssignorRange}
	}
	if c.MaxMetadataBytes == 0 {
		c.MaxMetadataBytes = 4096
	}
	return c
}

// Coordinator is the consumer-group coordinator for every group this
// broker owns. It is not safe for concurrent use: the caller serializes
// calls (one goroutine, or a mutex).
type Coordinator struct {
	cfg    Config
	groups map[string]*group
	// cgroups are the groups of the consumer protocol (consumer.go); a group id names a
	// classic group or a consumer group, never both at once.
	cgroups map[string]*consumerGroup
	timers  timerHeap
	seq     uint64 // timer arm order, for deterministic ties
	idSeq   uint64 // member id counter

	// The Ready being built by the current call.
	out     Ready
	acts    []func(now time.Time, code int16)
	batch   BatchID // id the current call's records will get
	pending map[BatchID][]func(now time.Time, code int16)

	// txnOffsets are the transactional offsets waiting for their transaction's marker, by
	// producer id (txn_offsets.go).
	txnOffsets map[int64]txnOffsets

	touched uint64 // timers popped by Tick, for tests and metrics
	legacy  int    // records of the private encoding seen by Replay
}

// New returns an empty coordinator. Call Replay before serving requests
// when there is a __consumer_offsets log to load.
func New(cfg Config) *Coordinator {
	return &Coordinator{
		cfg:     cfg.withDefaults(),
		groups:  make(map[string]*group),
		cgroups: make(map[string]*consumerGroup),
		batch:   1,
		pending: make(map[BatchID][]func(time.Time, int16)),
	}
}

// TimersFired returns how many timer entries Tick has examined in total.
// Each is an expired deadline; Tick never looks at live ones.
func (c *Coordinator) TimersFired() uint64 { return c.touched }

// NextDeadline returns the earliest time at which Tick has work to do.
func (c *Coordinator) NextDeadline() (time.Time, bool) {
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	return c.timers[0].at, true
}

// Tick fires every deadline at or before now: session expiry, join and
// sync phase timeouts, the initial rebalance delay and offset retention.
// Its cost is proportional to the number of expired deadlines.
func (c *Coordinator) Tick(now time.Time) Ready {
	for len(c.timers) > 0 && !c.timers[0].at.After(now) {
		t := heap.Pop(&c.timers).(*timer)
		c.touched++
		c.fire(now, t)
	}
	return c.flush()
}

// Persisted reports the outcome of persisting batch b: err nil means every
// record of the batch is durable. Batches must be reported in the order
// they were returned (the log is ordered). It returns the responses that
// waited for the write and any follow-up work.
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

// persistErrCode maps a failed append to the code clients see, as Kafka's
// GroupMetadataManager does: retriable coordinator errors make clients
// look up the coordinator again and retry.
func persistErrCode(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke {
		case kerr.UnknownTopicOrPartition, kerr.NotEnoughReplicas, kerr.NotEnoughReplicasAfterAppend, kerr.RequestTimedOut:
			return kerr.CoordinatorNotAvailable.Code
		case kerr.NotLeaderForPartition, kerr.KafkaStorageError:
			return kerr.NotCoordinator.Code
		case kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidFetchSize:
			return kerr.InvalidCommitOffsetSize.Code
		}
		return kerr.UnknownServerError.Code
	}
	return kerr.NotCoordinator.Code
}

// Handle dispatches a decoded request to its method. ok is false for
// request types the coordinator does not handle.
func (c *Coordinator) Handle(now time.Time, reply ReplyID, cl Client, req kmsg.Request) (r Ready, ok bool) {
	switch req := req.(type) {
	case *kmsg.JoinGroupRequest:
		return c.JoinGroup(now, reply, cl, req), true
	case *kmsg.SyncGroupRequest:
		return c.SyncGroup(now, reply, req), true
	case *kmsg.HeartbeatRequest:
		return c.Heartbeat(now, reply, req), true
	case *kmsg.LeaveGroupRequest:
		return c.LeaveGroup(now, reply, req), true
	case *kmsg.OffsetCommitRequest:
		return c.OffsetCommit(now, reply, req), true
	case *kmsg.OffsetFetchRequest:
		return c.OffsetFetch(now, reply, req), true
	case *kmsg.ListGroupsRequest:
		return c.ListGroups(now, reply, req), true
	case *kmsg.DescribeGroupsRequest:
		return c.DescribeGroups(now, reply, req), true
	case *kmsg.DeleteGroupsRequest:
		return c.DeleteGroups(now, reply, req), true
	case *kmsg.OffsetDeleteRequest:
		return c.OffsetDelete(now, reply, req), true
	case *kmsg.TxnOffsetCommitRequest:
		return c.TxnOffsetCommit(now, reply, req), true
	case *kmsg.ConsumerGroupHeartbeatRequest:
		return c.ConsumerGroupHeartbeat(now, reply, cl, req), true
	case *kmsg.ConsumerGroupDescribeRequest:
		return c.ConsumerGroupDescribe(now, reply, req), true
	}
	return Ready{}, false
}

// send queues a response to go out with the current Ready.
func (c *Coordinator) send(reply ReplyID, resp kmsg.Response) {
	c.out.Send = append(c.out.Send, Output{Reply: reply, Response: resp})
}

// persist queues a record in the current batch and returns the batch id.
func (c *Coordinator) persist(r Record) BatchID {
	c.out.Records = append(c.out.Records, r)
	return c.batch
}

// afterPersist runs fn once the current batch's fate is known.
func (c *Coordinator) afterPersist(fn func(now time.Time, code int16)) {
	c.acts = append(c.acts, fn)
}

// flush closes the current call and returns its Ready.
func (c *Coordinator) flush() Ready {
	if len(c.out.Records) == 0 && len(c.acts) > 0 {
		// Nothing was written: nothing to wait for. (Callers avoid this,
		// but it must never strand a response.)
		acts := c.acts
		c.acts = nil
		for _, a := range acts {
			a(time.Time{}, 0)
		}
	}
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

func (c *Coordinator) newMemberID(clientID string) string {
	c.idSeq++
	return fmt.Sprintf("%s-%x-%d", clientID, c.cfg.Incarnation, c.idSeq)
}

// ---- timers ----

type timerKind uint8

const (
	timerSession   timerKind = iota + 1 // member heartbeat deadline
	timerPending                        // MEMBER_ID_REQUIRED id not yet used
	timerJoin                           // end of the join phase / initial delay
	timerSync                           // members that never sent SyncGroup
	timerRetention                      // offset expiry of an Empty group

	timerConsumerSession // consumer protocol: member heartbeat deadline
	timerConsumerRevoke  // consumer protocol: revocation not acknowledged in the rebalance timeout
)

type timer struct {
	at   time.Time
	seq  uint64
	idx  int // position in the heap, -1 when disarmed
	kind timerKind
	g    *group
	m    *member
	id   string // pending member id

	cg *consumerGroup // consumer protocol timers
	cm *consumerMember
}

func newTimer(kind timerKind, g *group) *timer { return &timer{idx: -1, kind: kind, g: g} }

type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

func (c *Coordinator) arm(t *timer, at time.Time) {
	c.seq++
	t.seq = c.seq
	t.at = at
	if t.idx >= 0 {
		heap.Fix(&c.timers, t.idx)
		return
	}
	heap.Push(&c.timers, t)
}

func (c *Coordinator) disarm(t *timer) {
	if t != nil && t.idx >= 0 {
		heap.Remove(&c.timers, t.idx)
	}
}

func (c *Coordinator) fire(now time.Time, t *timer) {
	if t.cm != nil {
		c.fireConsumer(t)
		return
	}
	g := t.g
	if c.groups[g.name] != g {
		return // group deleted; stale timer
	}
	switch t.kind {
	case timerSession:
		c.sessionExpired(now, g, t.m)
	case timerPending:
		delete(g.pendingIDs, t.id)
		switch g.state {
		case PreparingRebalance:
			c.maybeCompleteJoin(now, g)
		case Empty:
			c.dropIfUnused(g)
			if c.groups[g.name] == g && g.retentionTimer.idx < 0 {
				c.armRetention(now, g) // eventually expire a leftover Empty group
			}
		}
	case timerJoin:
		c.completeJoin(now, g)
	case timerSync:
		c.syncExpired(now, g)
	case timerRetention:
		c.expireOffsets(now, g)
	}
}
