package broker

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/group"
	"github.com/ringtail/ringtail/meta"
)

// DefaultOffsetsTopicPartitions is the partition count __consumer_offsets is created with
// unless Config.OffsetsTopicPartitions says otherwise: Kafka's offsets.topic.num.partitions.
// Kafka's 50 is kept although one node gains nothing from it: the count of an existing topic
// never changes (its groups would move), so a node that later joins a cluster can spread its
// coordinators only over the partitions it was created with. On one node it costs little
// (measured, docs/architecture.md "Consumer groups"): about 140 ms more at the first start
// (50 partition directories created durably), about 50 ms more at each restart (50 partitions
// recovered), under 1 MiB of memory, and 50 goroutines that sleep until their groups call.
const DefaultOffsetsTopicPartitions = 50

// groupHost hosts one group coordinator (a groupShard) per __consumer_offsets partition this
// node coordinates, and routes each group request to the coordinator of its group's partition
// (group.PartitionFor, as Kafka places groups). A group whose partition is not hosted here
// gets NOT_COORDINATOR, one whose partition is loading COORDINATOR_LOAD_IN_PROGRESS; requests
// that name several groups are split among the coordinators and answered per group;
// ListGroups asks every hosted coordinator.
//
// Partitions come and go while the node runs (in a cluster, as leadership of the offsets
// partitions moves): Load replays one and then serves it, Unload answers what its coordinator
// holds NOT_COORDINATOR and drops it. On one node every partition is loaded at start.
//
// Each shard has a goroutine of its own rather than one goroutine serving them all: replaying
// a partition of 100,000 records takes about 70 ms on a small machine, and a shared goroutine would hold every group of the node meanwhile;
// per partition it holds only that partition's groups. An idle shard is one goroutine asleep
// on its channels, and 64 clients committing without fsync ran at the same rate (within noise)
// against 50 shards as against one.
type groupHost struct {
	log         *slog.Logger
	eng         *engine.Engine
	purg        *Purgatory
	topics      group.Topics
	consumer    group.ConsumerTopics
	incarnation atomic.Uint64 // the last coordinator incarnation handed out
	// coordConfig is what each loaded coordinator is configured with (Incarnation and Topics
	// are set per load). Read by a shard when it replays; tests change it between loads.
	coordConfig group.Config

	// shards[p] is the coordinator of offsets partition p, nil when this node does not host
	// it (coord_shard.go).
	shardHost[groupShard, *groupShard]

	// beforeReplay, when set (tests), runs on a loading shard's goroutine before its replay.
	beforeReplay func(p int32)
	// appendCommitted appends a coordinator's records and calls done once they are committed
	// (in a cluster: below the high watermark, on every in-sync replica, as Kafka's
	// coordinator writes with acks=all); nil (tests) is the partition's own Append.
	appendCommitted func(p *engine.Partition, raw []byte, done func(error)) (engine.AppendResult, error)
}

// groupCommitTimeout bounds how long a coordinator's write waits for its in-sync replicas
// (Kafka's offsets.commit.timeout.ms).
const groupCommitTimeout = 5 * time.Second

// topicsView answers the coordinator's partition-existence questions (OffsetCommit,
// TxnOffsetCommit, OffsetFetch) from the published metadata, as Kafka's does: in a cluster the
// coordinator commits offsets for partitions it holds no replica of, so its own log (the
// engine) cannot say.
type topicsView struct{ meta *meta.Store }

func (t topicsView) PartitionExists(topic string, p int32) bool {
	tp, ok := t.meta.Topic(topic)
	return ok && p >= 0 && p < tp.Partitions
}

// consumerTopicsView names topics by id and counts their partitions, for the consumer
// protocol's server-side assignors, from the published metadata (no lock).
type consumerTopicsView struct{ meta *meta.Store }

func (v consumerTopicsView) TopicByName(name string) ([16]byte, int32, bool) {
	t, ok := v.meta.Topic(name)
	return t.ID, t.Partitions, ok
}

// TopicNames lists the topics a regex subscription may match: not the internal ones, as in
// Kafka.
func (v consumerTopicsView) TopicNames() []string {
	var out []string
	for _, t := range v.meta.Topics() {
		if !IsInternal(t.Name) {
			out = append(out, t.Name)
		}
	}
	return out
}

// startGroups creates __consumer_offsets if needed and loads every partition this node leads
// (on one node: all of them), waiting until each is replayed, as the node answers no group
// request before its state is back.
func (b *Broker) startGroups() error {
	want := b.cfg.OffsetsTopicPartitions
	if want <= 0 {
		want = DefaultOffsetsTopicPartitions
	}
	t, created, err := b.offsetsTopic(want)
	if err != nil {
		return fmt.Errorf("creating %s: %w", OffsetsTopic, err)
	}
	if !created {
		b.recordCompactPolicy(OffsetsTopic)
	}
	if !created && t.Partitions != want {
		// Moving groups between partitions would strand their records in the old ones.
		b.log.Info(OffsetsTopic+" keeps the partition count it was created with: the count of an existing topic never changes by config",
			"partitions", t.Partitions, "offsets_topic_partitions_setting", want)
	}
	h := b.newGroupHost(t)
	b.groups.Store(h)
	start := time.Now()
	var waits []func() error
	for p := int32(0); p < t.Partitions; p++ {
		if b.offsetsLeader(t, p) == b.cfg.NodeID {
			waits = append(waits, h.Load(p))
		}
	}
	for _, wait := range waits {
		if err := wait(); err != nil {
			h.close()
			return err
		}
	}
	records := 0
	for p := range h.shards {
		if s := h.shards[p].Load(); s != nil {
			records += s.replayed
		}
	}
	b.log.Info("group coordinators loaded", "offsets_partitions", t.Partitions, "loaded", len(waits),
		"records", records, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// newGroupHost returns a group host for the partitions of t (__consumer_offsets) that loads
// none of them yet.
func (b *Broker) newGroupHost(t Topic) *groupHost {
	h := &groupHost{
		log:         b.log.With("component", "groups"),
		eng:         b.engine,
		purg:        b.purg,
		topics:      topicsView{b.meta},
		consumer:    consumerTopicsView{b.meta},
		coordConfig: b.cfg.Groups,
		appendCommitted: func(p *engine.Partition, raw []byte, done func(error)) (engine.AppendResult, error) {
			return b.appendCommitted(p, raw, groupCommitTimeout, done)
		},
	}
	h.initShards(OffsetsTopic, t.Partitions)
	h.incarnation.Store(uint64(time.Now().UnixNano()))
	return h
}

// offsetsTopic returns __consumer_offsets, creating it with partitions partitions when it does
// not exist.
func (b *Broker) offsetsTopic(partitions int32) (t Topic, created bool, err error) {
	if t, ok := b.meta.Topic(OffsetsTopic); ok {
		return t, false, nil
	}
	t, err = b.createTopic(OffsetsTopic, partitions, offsetsTopicConfigs, false)
	return t, err == nil, err
}

// offsetsLeader is the broker leading partition p of the offsets topic t. A node whose
// metadata has no registered brokers is a single node and leads every partition, as Metadata
// reports; in a cluster the partition's assignment says.
func (b *Broker) offsetsLeader(t Topic, p int32) int32 {
	if len(b.meta.Brokers()) == 0 {
		return b.cfg.NodeID
	}
	if int(p) >= len(t.Assignments) {
		return -1
	}
	return t.Assignments[p].Leader
}

// CoordinatorFor says which broker coordinates group key (FindCoordinator): the leader of the
// key's __consumer_offsets partition, on one node this node. ErrCoordinatorNotAvailable when
// the partition has no leader, or its leader no known address.
func (b *Broker) CoordinatorFor(key string) (nodeID int32, host string, port int32, err error) {
	t, ok := b.meta.Topic(OffsetsTopic)
	if !ok {
		return -1, "", -1, fmt.Errorf("%w: %s does not exist", ErrCoordinatorNotAvailable, OffsetsTopic)
	}
	return b.leaderAddress(t, group.PartitionFor(key, t.Partitions))
}

// brokerAddress is the Kafka listener of broker id, as registered.
func (b *Broker) brokerAddress(id int32) (int32, string, int32, error) {
	br, ok := b.meta.Broker(id)
	if !ok {
		return -1, "", -1, fmt.Errorf("%w: broker %d is not registered", ErrCoordinatorNotAvailable, id)
	}
	h, portStr, err := net.SplitHostPort(br.Listener)
	n, perr := strconv.ParseInt(portStr, 10, 32)
	if err != nil || perr != nil {
		return -1, "", -1, fmt.Errorf("%w: broker %d has no usable listener %q", ErrCoordinatorNotAvailable, id, br.Listener)
	}
	return id, h, int32(n), nil
}

// Load starts coordinating the groups of offsets partition p: a shard replays the partition
// on its own goroutine, answering COORDINATOR_LOAD_IN_PROGRESS for its groups meanwhile, and
// then serves them. It returns at once; wait blocks until the replay is over and returns its
// error (after which the partition's groups answer NOT_COORDINATOR). Loading a partition that
// is loaded or loading already does nothing.
func (h *groupHost) Load(p int32) (wait func() error) {
	return h.load(p, func() (*groupShard, error) {
		part := h.eng.Partition(TopicPartition{Topic: OffsetsTopic, Partition: p})
		if part == nil {
			return nil, fmt.Errorf("%w: %s-%d is not open", ErrUnknownTopic, OffsetsTopic, p)
		}
		return newGroupShard(h, p, part), nil
	})
}

// Unload stops coordinating the groups of offsets partition p: requests for them answer
// NOT_COORDINATOR from now on, and so do those its coordinator holds (queued, waiting for a
// rebalance or for a write); a replay in progress is abandoned. It returns once the shard's
// goroutine is gone. Unloading a partition that is not hosted does nothing.
func (h *groupHost) Unload(p int32) { h.unload(p) }

// close unloads every partition: parked requests are answered NOT_COORDINATOR.
func (h *groupHost) close() { h.unloadAll() }

func (h *groupHost) shardFor(id string) (*groupShard, int16) {
	return h.shardOf(group.PartitionFor(id, h.partitions))
}

// HandleGroup hands a request of a group API (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
// OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete) to the
// coordinator of its group; respond is called once it answers (which, for JoinGroup and
// SyncGroup, waits for the rebalance). clientID and host identify the member's client; log
// carries the request's context. respond may run on any goroutine.
func (b *Broker) HandleGroup(clientID, host string, log *slog.Logger, req kmsg.Request, respond func(kmsg.Response)) {
	g := b.groups.Load()
	if g == nil {
		respond(groupErrorResponse(req, codeCoordinatorNotAvailable)) // __consumer_offsets is not there yet
		return
	}
	g.handle(group.Client{ID: clientID, Host: host}, log, req, respond)
}

func (h *groupHost) handle(cl group.Client, log *slog.Logger, req kmsg.Request, respond func(kmsg.Response)) {
	if lr, ok := req.(*kmsg.ListGroupsRequest); ok {
		h.listGroups(cl, log, lr, respond)
		return
	}
	names, multi := requestGroups(req)
	switch {
	case multi:
		h.perGroup(cl, log, req, names, respond)
		return
	case names == nil:
		log.Error("groups: request type not handled by the coordinator", "key", req.Key())
		respond(nil)
		return
	}
	s, code := h.shardFor(names[0])
	if code == 0 && s.submit(&groupRequest{client: cl, log: log, req: req, respond: respond}) {
		return
	}
	if code == 0 {
		code = codeNotCoordinator // unloaded since shardFor
	}
	respond(groupErrorResponse(req, code))
}

// gather counts the answers a request split among coordinators waits for, and sends the
// whole answer after the last. It starts holding one count for the caller, released by its
// last call to done, so answers that arrive while parts are still being handed out cannot
// finish it early.
type gather struct {
	mu   sync.Mutex // a leaf: held while placing an answer, never while responding
	left int
	send func()
}

func (g *gather) add() {
	g.mu.Lock()
	g.left++
	g.mu.Unlock()
}

func (g *gather) done() {
	g.mu.Lock()
	g.left--
	last := g.left == 0
	g.mu.Unlock()
	if last {
		g.send()
	}
}

// listGroups answers ListGroups as Kafka does: the groups of every coordinator this node
// hosts, with COORDINATOR_LOAD_IN_PROGRESS (and the groups of the others) while one is loading.
func (h *groupHost) listGroups(cl group.Client, log *slog.Logger, req *kmsg.ListGroupsRequest, respond func(kmsg.Response)) {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	g := &gather{left: 1}
	g.send = func() {
		slices.SortFunc(resp.Groups, func(a, b kmsg.ListGroupsResponseGroup) int { return strings.Compare(a.Group, b.Group) })
		respond(resp)
	}
	for p := range h.shards {
		s := h.shards[p].Load()
		switch {
		case s == nil:
			continue
		case !s.isLoaded():
			g.mu.Lock()
			resp.ErrorCode = codeLoading
			g.mu.Unlock()
			continue
		}
		g.add()
		r := &groupRequest{client: cl, log: log, req: req, respond: func(part kmsg.Response) {
			// An error here is NOT_COORDINATOR from an Unload: those groups are no longer ours.
			if lr, ok := part.(*kmsg.ListGroupsResponse); ok && lr.ErrorCode == 0 {
				g.mu.Lock()
				resp.Groups = append(resp.Groups, lr.Groups...)
				g.mu.Unlock()
			}
			g.done()
		}}
		if !s.submit(r) {
			g.done()
		}
	}
	g.done()
}

// perGroup answers a request naming several groups (DescribeGroups, DeleteGroups, OffsetFetch
// v8+) as Kafka does: each group's coordinator answers for it, and a group whose partition is
// not hosted here, or is loading, gets NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS in its
// own entry. The groups of one coordinator go to it as one request.
func (h *groupHost) perGroup(cl group.Client, log *slog.Logger, req kmsg.Request, names []string, respond func(kmsg.Response)) {
	// Every entry is overwritten below; one that were not would show an error, never a
	// success that did not happen.
	resp := groupErrorResponse(req, codeUnknownServerError)
	var shards []*groupShard
	byShard := make(map[*groupShard][]int)
	var unhosted, loading []int
	for i, name := range names {
		s, code := h.shardFor(name)
		switch code {
		case codeNotCoordinator:
			unhosted = append(unhosted, i)
		case codeLoading:
			loading = append(loading, i)
		default:
			if byShard[s] == nil {
				shards = append(shards, s)
			}
			byShard[s] = append(byShard[s], i)
		}
	}
	g := &gather{left: 1, send: func() { respond(resp) }}
	answer := func(idx []int, part kmsg.Response) {
		g.mu.Lock()
		placeGroups(resp, idx, part)
		g.mu.Unlock()
	}
	for _, fail := range []struct {
		idx  []int
		code int16
	}{{unhosted, codeNotCoordinator}, {loading, codeLoading}} {
		if len(fail.idx) > 0 {
			answer(fail.idx, groupErrorResponse(subRequest(req, fail.idx), fail.code))
		}
	}
	for _, s := range shards {
		idx := byShard[s]
		sub := subRequest(req, idx)
		g.add()
		r := &groupRequest{client: cl, log: log, req: sub, respond: func(part kmsg.Response) {
			answer(idx, part)
			g.done()
		}}
		if !s.submit(r) {
			r.respond(groupErrorResponse(sub, codeNotCoordinator))
		}
	}
	g.done()
}
