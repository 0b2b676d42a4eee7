package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/internal/kclient"
	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/controller"
	"github.com/ringtail/ringtail/meta/raftlog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A node in a cluster (ClusterConfig set): the metadata is a Raft log over every node
// (meta/raftlog); the node registers itself with a fresh incarnation and gets a broker epoch;
// it heartbeats to the controller, which is whichever node leads the Raft log; it follows the
// committed metadata (no polling) and opens, closes and re-epochs its partition logs to match;
// it serves a partition only where the metadata makes it the leader, and copies the others
// from their leaders (replication.go): a leader's high watermark is what its in-sync replicas
// hold durably.

// ClusterConfig makes a node a member of a cluster.
type ClusterConfig struct {
	// RaftAddr is host:port of this node's Raft traffic; it may not change once the node has
	// started.
	RaftAddr string
	// Peers maps the node id of each first voter to its Raft address; the same on every node.
	Peers map[uint64]string
	// ReplicationAddr is where followers will fetch from this node (the replication issue);
	// recorded in the metadata now.
	ReplicationAddr string
	// Rack spreads replicas over racks when set.
	Rack string
	// Join: this node is not one of Peers but was added to the running cluster (AddMember);
	// NonVoting: it was added as a non-voting member.
	Join, NonVoting bool
	// SessionTimeout: a broker not heard from for this long is fenced; default 9 s.
	SessionTimeout time.Duration
	// HeartbeatInterval: how often a broker tells the controller it is alive; default
	// DefaultHeartbeatInterval. A new controller waits three intervals to hear from a broker
	// before fencing it.
	HeartbeatInterval time.Duration
	// DisconnectGrace: a broker whose heartbeat connection to the controller closed is fenced
	// this long after, unless it heartbeats again; default 1 s, negative: only the session
	// counts (controller.Config.DisconnectGrace).
	DisconnectGrace time.Duration
	// ShutdownTimeout bounds a controlled shutdown: moving this node's leaderships away
	// before it stops; default 30 s.
	ShutdownTimeout time.Duration
	// ReplicaLagMax: a follower that has not caught up for this long leaves the ISR
	// (replica.lag.time.max.ms); default 10 s.
	ReplicaLagMax time.Duration
}

// DefaultHeartbeatInterval is how often a broker heartbeats to the controller by default. A
// new controller waits three intervals (1.5 s) to hear from a broker before fencing it, and a
// live broker whose heartbeat connection broke is heard from again within an interval, well
// inside the controller's DisconnectGrace (1 s). A heartbeat is a small request answered from
// memory: two a second per broker cost nothing worth counting.
const DefaultHeartbeatInterval = 500 * time.Millisecond

// ErrNotLeaderOrFollower: this node does not lead the partition (NOT_LEADER_OR_FOLLOWER).
var ErrNotLeaderOrFollower = errors.New("broker: not the leader of this partition")

// ErrNotController: this node is not the controller (NOT_CONTROLLER).
var ErrNotController = errors.New("broker: not the controller")

// Leader epoch checks of a request against the partition's current leader epoch.
var (
	ErrFencedLeaderEpoch  = errors.New("broker: the request's leader epoch is older than the partition's") // FENCED_LEADER_EPOCH
	ErrUnknownLeaderEpoch = errors.New("broker: the request's leader epoch is newer than the partition's") // UNKNOWN_LEADER_EPOCH
)

// NotLeaderError says who leads instead, for the responses that carry the current leader.
type NotLeaderError struct {
	Topic       string
	Partition   int32
	Leader      int32 // meta.NoLeader when the partition has none
	LeaderEpoch int32
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("%v: %s-%d is led by broker %d at leader epoch %d", ErrNotLeaderOrFollower, e.Topic, e.Partition, e.Leader, e.LeaderEpoch)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeaderOrFollower }

// routes is what the request paths need of the committed metadata, rebuilt once per published
// state: per partition, its leader and leader epoch.
type routes struct {
	state  *meta.State
	leader map[TopicPartition]route
}

type route struct {
	leader, epoch int32
}

// cluster is a node's cluster membership; nil on a single node.
type cluster struct {
	cfg         ClusterConfig
	raft        *raftlog.Log
	incarnation [16]byte
	epoch       atomic.Int64 // this broker's epoch; 0 until registered
	routes      atomic.Pointer[routes]
	hb          *kclient.Client // heartbeats to the controller
	isrClient   *kclient.Client // AlterPartition to the controller (isr.go)
	isr         *isrSender

	// ctrlMu guards ctrl, non-nil while this node leads the Raft log (is the controller).
	ctrlMu sync.Mutex
	ctrl   *controller.Controller

	// reconciled is the metadata state followMetadata last applied, applies counts its
	// passes: the metadata follower's progress for the watchdog (MetadataProgress).
	reconciled atomic.Pointer[meta.State]
	applies    atomic.Uint64
	// isrChanges counts the ISR changes of partitions this node leads, whoever made them (its
	// AlterPartition, or the controller fencing a follower): ISRChanges.
	isrChanges atomic.Uint64

	stop chan struct{}
	wg   sync.WaitGroup
}

func (c *ClusterConfig) withDefaults() {
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = controller.DefaultSessionTimeout
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.DisconnectGrace == 0 {
		c.DisconnectGrace = controller.DefaultDisconnectGrace
	}
}

// openRaft opens this node's Raft log and waits until the metadata cluster has a quorum (a
// node that comes up before the others waits for them; ctx ends the wait).
func (b *Broker) openRaft(ctx context.Context) (*raftlog.Log, error) {
	cc := b.cfg.Cluster
	if b.cfg.NodeID < 1 {
		return nil, fmt.Errorf("cluster: --node-id must be 1 or more (Raft reserves 0), not %d", b.cfg.NodeID)
	}
	rl, err := raftlog.Open(raftlog.Config{
		Dir:            filepath.Join(b.cfg.DataDir, "raft"),
		ReplicaID:      uint64(b.cfg.NodeID),
		RaftAddress:    cc.RaftAddr,
		InitialMembers: cc.Peers,
		Join:           cc.Join,
		NonVoting:      cc.NonVoting,
		Logger:         b.log,
	})
	if err != nil {
		return nil, err
	}
	waitingSince := time.Now()
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := rl.SyncState(sctx)
		cancel()
		if err == nil {
			return rl, nil
		}
		if ctx.Err() != nil {
			rl.Close()
			return nil, fmt.Errorf("cluster: waiting for a quorum of the metadata cluster: %w", ctx.Err())
		}
		b.log.Warn("cluster: waiting for a quorum of the metadata cluster", "peers", raftlog.FormatPeers(cc.Peers),
			"waiting", time.Since(waitingSince).Round(time.Second), "err", err)
	}
}

// startCluster registers this node and starts following the metadata, heartbeating and, while
// this node leads the Raft log, the controller.
func (b *Broker) startCluster(ctx context.Context, rl *raftlog.Log) error {
	cc := b.cfg.Cluster
	c := &cluster{cfg: *cc, raft: rl, stop: make(chan struct{})}
	if _, err := rand.Read(c.incarnation[:]); err != nil {
		return err
	}
	c.hb = kclient.New("", "ringtail-broker-"+strconv.Itoa(int(b.cfg.NodeID)))
	c.isrClient = kclient.New("", "ringtail-broker-"+strconv.Itoa(int(b.cfg.NodeID)))
	c.isr = &isrSender{calls: make(chan *isrCall), stop: c.stop, send: b.sendISR}
	b.cl = c
	if err := b.startReplication(); err != nil {
		return err
	}
	b.reconcile()
	// The controller runs before this node is registered: after a cold restart every node's
	// previous registration is still unfenced, and a new one is refused until the controller
	// fences the old (a node that waited for its own registration first would wait forever).
	c.wg.Add(3)
	go b.followMetadata()
	go b.runController()
	go b.runISRSender()
	if err := b.register(ctx); err != nil {
		close(c.stop)
		c.wg.Wait()
		b.closeReplication()
		return err
	}
	b.reconcile() // now that this node has a broker epoch, start copying what it follows
	c.wg.Add(2)
	go b.runHeartbeats()
	go b.runISR()
	return nil
}

// register proposes this node's registration until it is in: a restart of a broker whose
// previous process is still registered unfenced waits for the controller to fence it (at
// most a session).
func (b *Broker) register(ctx context.Context) error {
	c := b.cl
	cmd := meta.RegisterBroker{
		ID:              b.cfg.NodeID,
		Incarnation:     c.incarnation,
		Listener:        net.JoinHostPort(b.cfg.AdvertisedHost, strconv.Itoa(int(b.cfg.AdvertisedPort))),
		ReplicationAddr: c.cfg.ReplicationAddr,
		Rack:            c.cfg.Rack,
	}
	logged := time.Time{}
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := b.meta.Propose(pctx, cmd)
		cancel()
		if err == nil {
			c.epoch.Store(res.BrokerEpoch)
			b.log.Info("cluster: registered", "node_id", b.cfg.NodeID, "broker_epoch", res.BrokerEpoch)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cluster: registering: %w", err)
		}
		if time.Since(logged) > 5*time.Second {
			b.log.Warn("cluster: registration refused for now; retrying", "err", err)
			logged = time.Now()
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("cluster: registering: %w", ctx.Err())
		}
	}
}

// followMetadata applies every newly committed metadata state to this node.
func (b *Broker) followMetadata() {
	defer b.cl.wg.Done()
	for {
		_, changed := b.meta.Watch() // before reconciling, so no later state goes unseen
		st := b.reconcile()
		if prev := b.cl.reconciled.Swap(st); prev != nil {
			b.cl.isrChanges.Add(uint64(isrChanges(prev, st, b.cfg.NodeID)))
		}
		b.cl.applies.Add(1)
		select {
		case <-changed:
		case <-b.cl.stop:
			return
		}
	}
}

// reconcile opens the partition logs the latest metadata places on this node, gives them
// their leader epochs and roles (leading, or copying from the leader), and closes and removes
// the others. The state is read under topicMu: a
// state read before it could be older than one a topic change reconciled meanwhile, and
// applying it would remove the partitions that change just created.
func (b *Broker) reconcile() *meta.State {
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	st := b.meta.State()
	b.reconcileLocked(st)
	return st
}

// reconcileLocked is reconcile with topicMu held. It may run more than once on one state.
func (b *Broker) reconcileLocked(st *meta.State) {
	c := b.cl
	me := b.cfg.NodeID
	r := &routes{state: st, leader: make(map[TopicPartition]route)}
	wanted := make(map[TopicPartition]bool)
	var notify []TopicPartition
	old := c.routes.Load()
	for _, t := range st.Topics() {
		cfg := partitionConfig(t)
		for p, a := range t.Assignments {
			tp := TopicPartition{Topic: t.Name, Partition: int32(p)}
			r.leader[tp] = route{leader: a.Leader, epoch: a.LeaderEpoch}
			if old != nil && old.leader[tp] != r.leader[tp] {
				notify = append(notify, tp)
			}
			if !slices.Contains(a.Replicas, me) {
				continue
			}
			wanted[tp] = true
			part := b.engine.Partition(tp)
			if part == nil || part.TopicID() != t.ID {
				var err error
				part, err = b.engine.CreatePartition(engine.PartitionSpec{TopicPartition: tp, TopicID: t.ID, Config: cfg, LeaderEpoch: a.LeaderEpoch})
				if err != nil {
					b.log.Error("cluster: opening a partition placed on this node", "topic", tp.Topic, "partition", tp.Partition, "err", err)
					continue
				}
			} else {
				part.SetConfig(cfg)
			}
			part.SetFollowDurableEnd(false) // the leader's tracker moves the high watermark
			if a.Leader == me {
				b.lead(part, t, a)
			} else {
				part.SetLeaderEpoch(a.LeaderEpoch)
				b.follow(part, st, t, a)
			}
		}
	}
	for _, part := range b.engine.Partitions() {
		tp := part.TopicPartition()
		if wanted[tp] {
			continue
		}
		b.forget(part)
		if err := b.engine.DeletePartition(tp); err != nil {
			b.log.Error("cluster: removing a partition no longer placed on this node", "topic", tp.Topic, "partition", tp.Partition, "err", err)
		}
		notify = append(notify, tp)
	}
	c.routes.Store(r)
	for _, tp := range notify {
		b.purg.Notify(tp) // parked requests of a partition whose leader moved answer now
	}
	b.followGroups(st)
	b.followTxns(st)
}

// followGroups hosts the group coordinators of the __consumer_offsets partitions this node
// leads, and only those: a coordinator moves with its partition's leadership. topicMu held.
func (b *Broker) followGroups(st *meta.State) {
	t, ok := st.Topic(OffsetsTopic)
	if !ok {
		return
	}
	h := b.groups.Load()
	if h == nil {
		h = b.newGroupHost(t)
		b.groups.Store(h)
	}
	h.follow(t, b.cfg.NodeID)
}

// follow hosts the partitions of t that node self leads and unloads the others.
func (h *groupHost) follow(t meta.Topic, self int32) {
	for p := int32(0); p < t.Partitions && p < h.partitions; p++ {
		if int(p) < len(t.Assignments) && t.Assignments[p].Leader == self {
			if h.stale(p, t.Assignments[p].LeaderEpoch) {
				h.Unload(p) // another coordinator may have written since this one loaded
			}
			h.Load(p) // its replay runs on the shard's goroutine; requests meanwhile get LOAD_IN_PROGRESS
		} else if h.shards[p].Load() != nil {
			h.Unload(p)
		}
	}
}

// ensureOffsetsTopic creates __consumer_offsets once enough brokers are live to give it its
// replication factor: three, or every voter in a smaller cluster (Kafka's
// offsets.topic.replication.factor, which it also waits for). Run by the controller.
func (b *Broker) ensureOffsetsTopic() {
	partitions := b.cfg.OffsetsTopicPartitions
	if partitions <= 0 {
		partitions = DefaultOffsetsTopicPartitions
	}
	b.ensureInternalTopic(OffsetsTopic, partitions, offsetsTopicConfigs)
}

// ensureInternalTopic creates internal topic name, unless it exists, once enough brokers are
// live to give it its replication factor: three, or every voter in a smaller cluster. Run by
// the controller.
func (b *Broker) ensureInternalTopic(name string, partitions int32, configs map[string]string) {
	st := b.meta.State()
	if _, ok := st.Topic(name); ok {
		b.recordCompactPolicy(name)
		return
	}
	rf := min(3, len(b.cl.cfg.Peers))
	live := 0
	for _, br := range st.Brokers() {
		if br.Active() {
			live++
		}
	}
	if live < rf {
		return
	}
	if _, err := b.createPlaced(name, partitions, int16(rf), nil, configs, false); err != nil && !errors.Is(err, ErrTopicExists) {
		b.log.Warn("cluster: creating "+name, "err", err)
	}
}

// route returns the leader of tp as the committed metadata says, and whether tp exists.
func (c *cluster) route(tp TopicPartition) (route, bool) {
	r := c.routes.Load()
	if r == nil {
		return route{}, false
	}
	rt, ok := r.leader[tp]
	return rt, ok
}

// checkLeader says whether this node may serve tp as its leader, and checks a request's
// current leader epoch (-1: none given) against the partition's.
func (b *Broker) checkLeader(tp TopicPartition, currentLeaderEpoch int32) error {
	if b.cl == nil {
		return checkEpoch(currentLeaderEpoch, 0)
	}
	rt, ok := b.cl.route(tp)
	if !ok {
		return fmt.Errorf("%w: %s-%d", ErrUnknownTopic, tp.Topic, tp.Partition)
	}
	if err := checkEpoch(currentLeaderEpoch, rt.epoch); err != nil {
		return err
	}
	if rt.leader != b.cfg.NodeID {
		return &NotLeaderError{Topic: tp.Topic, Partition: tp.Partition, Leader: rt.leader, LeaderEpoch: rt.epoch}
	}
	return nil
}

func checkEpoch(requested, current int32) error {
	switch {
	case requested < 0:
		return nil
	case requested < current:
		return fmt.Errorf("%w: %d, the partition is at %d", ErrFencedLeaderEpoch, requested, current)
	case requested > current:
		return fmt.Errorf("%w: %d, the partition is at %d", ErrUnknownLeaderEpoch, requested, current)
	}
	return nil
}

// runHeartbeats tells the controller, every HeartbeatInterval, that this node is alive.
func (b *Broker) runHeartbeats() {
	c := b.cl
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	fenced := true
	for {
		// Taken before the heartbeat, so that a change meanwhile is not missed.
		_, leaderChanged := c.raft.WatchLeader()
		isFenced, _, err := b.heartbeat(false)
		if err != nil && !isKafkaError(err) {
			// The connection broke (it is closed now) or no controller is known. The
			// controller, if it saw the connection close, fences this node DisconnectGrace
			// later unless it hears from it: try again on a new connection at once.
			isFenced, _, err = b.heartbeat(false)
		}
		if err != nil {
			b.log.Debug("cluster: heartbeat", "err", err)
		} else if isFenced != fenced {
			fenced = isFenced
			b.log.Info("cluster: the controller says", "fenced", fenced, "broker_epoch", c.epoch.Load())
		}
		// A new controller has heard from nobody and fences whom it does not hear from
		// within three intervals: it hears from this node at once.
		select {
		case <-t.C:
		case <-leaderChanged:
		case <-c.stop:
			return
		}
	}
}

// heartbeat sends one heartbeat (asking to shut down when wantShutdown) to the controller, or
// hands it to this node's own controller.
func (b *Broker) heartbeat(wantShutdown bool) (fenced, shouldShutdown bool, err error) {
	c := b.cl
	self, addr, err := b.controllerListener()
	if err != nil {
		return true, false, err
	}
	if self {
		return b.BrokerHeartbeat(0, b.cfg.NodeID, c.epoch.Load(), wantShutdown) // in process: no connection
	}
	c.hb.SetAddr(addr)
	// A heartbeat is answered from memory; a shutdown request after the controller's
	// proposals, which a loaded disk may take a while to commit.
	timeout := c.cfg.HeartbeatInterval
	if wantShutdown {
		timeout = max(timeout, 2*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return sendHeartbeat(ctx, c.hb, b.cfg.NodeID, c.epoch.Load(), wantShutdown)
}

// controllerListener finds the controller: this node (self), or the Kafka listener of the node
// leading the Raft log.
func (b *Broker) controllerListener() (self bool, addr string, err error) {
	leader, _, ok := b.cl.raft.LeaderID()
	if !ok {
		return false, "", fmt.Errorf("%w: no Raft leader known", ErrNotController)
	}
	if int32(leader) == b.cfg.NodeID {
		return true, "", nil
	}
	ctrl, ok := b.meta.State().Broker(int32(leader))
	if !ok {
		return false, "", fmt.Errorf("%w: the controller (node %d) is not registered yet", ErrNotController, leader)
	}
	return false, ctrl.Listener, nil
}

// BrokerHeartbeat is the controller's side of a heartbeat from broker id at broker epoch
// epoch, which came on connection conn (0: in process): it answers whether the broker is
// fenced and, for a broker asking to shut down, moves its leaderships away and says whether
// it may stop (it leads nothing).
func (b *Broker) BrokerHeartbeat(conn uint64, id int32, epoch int64, wantShutdown bool) (fenced, shouldShutdown bool, err error) {
	if b.cl == nil {
		return false, false, fmt.Errorf("%w: this broker is not in a cluster", ErrNotController)
	}
	c := b.cl
	c.ctrlMu.Lock()
	ctrl := c.ctrl
	var cmds []meta.Command
	st := b.meta.State()
	now := time.Now()
	if ctrl != nil {
		if wantShutdown {
			cmds, err = ctrl.ControlledShutdown(st, id, epoch, conn, now)
		} else {
			err = ctrl.Heartbeat(st, id, epoch, conn, now)
		}
	}
	c.ctrlMu.Unlock()
	if ctrl == nil {
		return true, false, fmt.Errorf("%w: node %d", ErrNotController, b.cfg.NodeID)
	}
	if err != nil {
		return true, false, err
	}
	b.proposeAll(cmds)
	st = b.meta.State()
	br, ok := st.Broker(id)
	if !ok {
		return true, false, fmt.Errorf("%w: broker %d", meta.ErrUnknownBroker, id)
	}
	return br.Fenced, wantShutdown && len(st.PartitionsLedBy(id)) == 0, nil
}

// runController runs the controller while this node leads the Raft log: a new one each time
// it becomes the leader (its soft state, the heartbeats, starts empty), ticking a few times a
// second, and when a broker's session is due to run out.
func (b *Broker) runController() {
	c := b.cl
	defer c.wg.Done()
	tick := time.NewTimer(controllerTick)
	defer tick.Stop()
	for {
		_, leaderChanged := c.raft.WatchLeader()
		leading := c.raft.IsLeader()
		wait := controllerTick
		c.ctrlMu.Lock()
		switch {
		case leading && c.ctrl == nil:
			// Live brokers heartbeat every HeartbeatInterval: three of them are plenty for each to
			// find the new controller, and a broker that died with the old one (often the same
			// process) then loses its leaderships well before a whole session has passed.
			c.ctrl = controller.New(controller.Config{SessionTimeout: c.cfg.SessionTimeout,
				TakeoverGrace: 3 * c.cfg.HeartbeatInterval, DisconnectGrace: c.cfg.DisconnectGrace}, time.Now())
			_, term, _ := c.raft.LeaderID()
			b.log.Info("cluster: this node is the controller", "node_id", b.cfg.NodeID, "raft_term", term)
			c.wg.Add(1)
			go b.probeListeners(c.ctrl)
		case !leading && c.ctrl != nil:
			c.ctrl = nil
			b.log.Info("cluster: this node is no longer the controller", "node_id", b.cfg.NodeID)
		}
		ctrl := c.ctrl
		var cmds []meta.Command
		var err error
		if ctrl != nil {
			st := b.meta.State()
			cmds, err = ctrl.Tick(st, time.Now())
			// A deadline passed already is this Tick's to act on (or its commands were
			// refused): the regular tick comes back to it.
			if next, ok := ctrl.NextDeadline(st); ok && time.Until(next) > 0 {
				wait = min(wait, time.Until(next)+time.Millisecond)
			}
		}
		c.ctrlMu.Unlock()
		if err != nil {
			b.log.Error("cluster: the controller built a command the state refuses", "err", err)
		}
		b.proposeAll(cmds)
		if ctrl != nil {
			b.ensureOffsetsTopic()
			b.ensureTxnTopic()
		}
		tick.Reset(wait)
		select {
		case <-tick.C:
		case <-leaderChanged:
		case <-c.stop:
			return
		}
	}
}

// controllerTick is the longest the controller waits between two Ticks.
const controllerTick = 250 * time.Millisecond

// proposeAll proposes the controller's commands in order. A refusal is logged: the next tick
// builds its commands from the state as it then is.
func (b *Broker) proposeAll(cmds []meta.Command) {
	for _, cmd := range cmds {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := b.meta.Propose(ctx, cmd)
		cancel()
		if err != nil {
			b.log.Warn("cluster: a controller command was not applied", "command", fmt.Sprintf("%T", cmd), "err", err)
			return
		}
		b.log.Info("cluster: controller", "command", describeCommand(cmd))
	}
}

// A client's metadata change (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs, a
// new producer-id block) is proposed through Raft by whichever broker took the request. A
// broker cut off from the majority of the metadata quorum cannot commit it, and its client
// must hear so promptly, in an error it knows how to act on:
//
//   - a broker that knows no controller (no Raft leader: it is in a minority, whose Raft
//     stops believing in a leader after an election timeout, or an election is on) refuses
//     at once with NOT_CONTROLLER and proposes nothing. Kafka clients (franz-go, the Java
//     admin client) read it as "ask the controller": they refresh their metadata and retry
//     where it names the controller, so a client that knows a broker of the majority carries
//     on there, and one that knows only the minority gives up after its retries with this
//     broker's message instead of a bare timeout;
//   - a proposal that did not commit within the Store's bound (raftlog's ProposeTimeout,
//     10 s, inside the 15 s CreateTopics timeout clients send) answers REQUEST_TIMED_OUT when
//     it may still commit (raftlog.ErrOutcomeUnknown: an attempt went to a leader that then
//     went silent, as when the cut comes just after the request), the answer Kafka gives for
//     a change not done within the request's timeout, whose outcome the client must check;
//     NOT_CONTROLLER when no leader ever took it.

// checkController refuses a client's metadata change at once when this node knows no
// controller (see above); nil on a single node.
func (b *Broker) checkController() error {
	if b.cl == nil {
		return nil
	}
	if _, _, ok := b.cl.raft.LeaderID(); !ok {
		return fmt.Errorf("%w: broker %d knows no controller: it cannot reach a majority of the metadata quorum, "+
			"or an election is under way; nothing was changed", ErrNotController, b.cfg.NodeID)
	}
	return nil
}

// metadataError is the error a client sees for a metadata change that failed in the Raft log
// (see above); other errors (the state's refusals) pass unchanged, as on a single node.
func (b *Broker) metadataError(err error) error {
	if b.cl == nil || err == nil {
		return err
	}
	switch {
	case errors.Is(err, raftlog.ErrOutcomeUnknown):
		// The cause only as text: it may wrap a meta sentinel (a stale repeat) that would
		// otherwise decide the error code.
		return fmt.Errorf("%w: the metadata quorum did not commit the change in time, and it may still apply "+
			"(broker %d cannot reach a majority, or the controller moved): %v", ErrRequestTimedOut, b.cfg.NodeID, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: no controller took the change in time (broker %d cannot reach a majority of the "+
			"metadata quorum); nothing was changed: %v", ErrNotController, b.cfg.NodeID, err)
	}
	return err
}

// describeCommand is a log-friendly summary of a controller command.
func describeCommand(cmd meta.Command) string {
	switch c := cmd.(type) {
	case meta.FenceBroker:
		return fmt.Sprintf("fence broker %d (epoch %d)", c.ID, c.Epoch)
	case meta.UnfenceBroker:
		return fmt.Sprintf("unfence broker %d (epoch %d)", c.ID, c.Epoch)
	case meta.BeginControlledShutdown:
		return fmt.Sprintf("controlled shutdown of broker %d (epoch %d)", c.ID, c.Epoch)
	case meta.ChangePartitions:
		return fmt.Sprintf("change %d partitions (leaders, ISRs)", len(c.Changes))
	}
	return fmt.Sprintf("%T", cmd)
}

// controlledShutdown asks the controller to move this node's leaderships away and waits until
// it says the node may stop, or the shutdown timeout.
func (b *Broker) controlledShutdown() {
	c := b.cl
	deadline := time.Now().Add(c.cfg.ShutdownTimeout)
	start := time.Now()
	var failingSince time.Time
	for time.Now().Before(deadline) {
		if !b.otherBrokerActive() {
			// The last broker of a cluster stopping (or every other one fenced): nobody could
			// take the leaderships, and without a quorum no controller would answer either.
			b.log.Info("cluster: no other live broker to take this node's leaderships; stopping without a controlled shutdown")
			return
		}
		_, done, err := b.heartbeat(true)
		if err == nil && done {
			b.log.Info("cluster: controlled shutdown done: this node leads nothing", "took", time.Since(start).Round(time.Millisecond))
			return
		}
		if err == nil {
			failingSince = time.Time{}
		} else {
			b.log.Debug("cluster: controlled shutdown", "err", err)
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			// No controller to answer (the last nodes of a cluster stopping, a minority):
			// nobody could take the leaderships anyway. An election takes a second or two,
			// so give it that long first.
			if time.Since(failingSince) > 3*time.Second {
				b.log.Warn("cluster: no controller answers; stopping without a controlled shutdown", "err", err)
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.log.Warn("cluster: controlled shutdown timed out; stopping with leaderships left to the session timeout", "timeout", c.cfg.ShutdownTimeout)
}

// otherBrokerActive reports whether, as far as this node's copy of the metadata knows, another
// broker is registered, unfenced and not shutting down: one that could take a leadership.
func (b *Broker) otherBrokerActive() bool {
	for _, br := range b.meta.State().Brokers() {
		if br.ID != b.cfg.NodeID && br.Active() {
			return true
		}
	}
	return false
}

// closeCluster stops the node's cluster work after a controlled shutdown, then the Raft log.
func (b *Broker) closeCluster() {
	c := b.cl
	b.controlledShutdown()
	close(c.stop)
	c.wg.Wait()
	b.closeReplication()
	c.hb.Close()
	c.isrClient.Close()
}

// ControllerID is the node leading the metadata (-1 when none is known); on a single node,
// this node.
func (b *Broker) ControllerID() int32 {
	if b.cl == nil {
		return b.cfg.NodeID
	}
	id, _, ok := b.cl.raft.LeaderID()
	if !ok {
		return -1
	}
	return int32(id)
}

// RaftTerm is the Raft term of the metadata log (0 on a single node).
func (b *Broker) RaftTerm() uint64 {
	if b.cl == nil {
		return 0
	}
	_, term, _ := b.cl.raft.LeaderID()
	return term
}

// sendHeartbeat sends one BrokerHeartbeat over hb.
func sendHeartbeat(ctx context.Context, hb *kclient.Client, id int32, epoch int64, wantShutdown bool) (fenced, shouldShutdown bool, err error) {
	req := kmsg.NewPtrBrokerHeartbeatRequest()
	req.Version = 0
	req.BrokerID, req.BrokerEpoch, req.WantShutdown = id, epoch, wantShutdown
	req.CurrentMetadataOffset = -1
	resp, err := hb.Request(ctx, req)
	if err != nil {
		return true, false, err
	}
	r := resp.(*kmsg.BrokerHeartbeatResponse)
	if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
		return true, false, err
	}
	return r.IsFenced, r.ShouldShutdown, nil
}

// Quorum is the metadata cluster's Raft membership as DescribeQuorum reports it.
type Quorum struct {
	LeaderID  int32 // -1: none known
	Term      uint64
	Voters    map[uint64]string // node id → Raft address
	NonVoting map[uint64]string
}

// Quorum describes the metadata cluster's Raft membership (ErrNotController on a single node,
// which has none).
func (b *Broker) Quorum(ctx context.Context) (Quorum, error) {
	if b.cl == nil {
		return Quorum{}, fmt.Errorf("%w: a single node has no metadata quorum", ErrInvalidRequest)
	}
	m, err := b.cl.raft.Membership(ctx)
	if err != nil {
		return Quorum{}, err
	}
	q := Quorum{LeaderID: -1, Voters: m.Voters, NonVoting: m.NonVoting}
	if id, term, ok := b.cl.raft.LeaderID(); ok {
		q.LeaderID, q.Term = int32(id), term
	}
	return q, nil
}

// AddMember adds node id, whose Raft traffic is at raftAddr, to the metadata cluster: as a
// voter, or as a non-voting member that follows the metadata without counting toward its
// quorum. The node then starts with --join.
func (b *Broker) AddMember(ctx context.Context, id int32, raftAddr string, voter bool) error {
	if b.cl == nil {
		return fmt.Errorf("%w: a single node has no metadata quorum", ErrInvalidRequest)
	}
	if id < 1 {
		return fmt.Errorf("%w: node id %d (must be 1 or more)", ErrInvalidRequest, id)
	}
	if _, _, err := net.SplitHostPort(raftAddr); err != nil {
		return fmt.Errorf("%w: raft address %q: %v", ErrInvalidRequest, raftAddr, err)
	}
	var err error
	if voter {
		err = b.cl.raft.AddVoter(ctx, uint64(id), raftAddr)
	} else {
		err = b.cl.raft.AddNonVoting(ctx, uint64(id), raftAddr)
	}
	if err == nil {
		b.log.Info("cluster: member added", "node_id", id, "raft_addr", raftAddr, "voter", voter)
	}
	return err
}

// RemoveMember removes node id from the metadata cluster's Raft membership. Its partitions
// stay assigned to it until they are reassigned; stop it first.
func (b *Broker) RemoveMember(ctx context.Context, id int32) error {
	if b.cl == nil {
		return fmt.Errorf("%w: a single node has no metadata quorum", ErrInvalidRequest)
	}
	err := b.cl.raft.RemoveNode(ctx, uint64(id))
	if err == nil {
		b.log.Info("cluster: member removed", "node_id", id)
	}
	return err
}

// isrChanges counts the partitions led by node in next whose ISR differs from prev's (the
// same topic, by id): the ISR shrinks and expansions between two metadata states.
func isrChanges(prev, next *meta.State, node int32) int {
	n := 0
	for _, t := range next.Topics() {
		var before meta.Topic
		found := false
		for p, a := range t.Assignments {
			if a.Leader != node {
				continue
			}
			if !found {
				if before, found = prev.TopicByID(t.ID); !found {
					break // a new topic: no change
				}
			}
			if p < len(before.Assignments) && !slices.Equal(before.Assignments[p].ISR, a.ISR) {
				n++
			}
		}
	}
	return n
}

// ISRChanges counts the ISR changes (shrinks and expansions) of the partitions this node led
// when they happened, as the metadata it followed recorded them (0 on a single node).
func (b *Broker) ISRChanges() uint64 {
	if b.cl == nil {
		return 0
	}
	return b.cl.isrChanges.Load()
}
