package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/replication"
)

// Errors of acks=all produces in a cluster.
var (
	// ErrNotEnoughReplicas: the ISR is smaller than min.insync.replicas; nothing was appended
	// (NOT_ENOUGH_REPLICAS).
	ErrNotEnoughReplicas = errors.New("broker: fewer in-sync replicas than min.insync.replicas")
	// ErrNotEnoughReplicasAfterAppend: the batches were appended, but the ISR fell below
	// min.insync.replicas before they were committed (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
	ErrNotEnoughReplicasAfterAppend = errors.New("broker: the in-sync replicas fell below min.insync.replicas after the append")
)

// DefaultReplicaLagMax is Kafka's replica.lag.time.max.ms: a follower that has not caught up
// for this long leaves the ISR.
const DefaultReplicaLagMax = replication.DefaultLagMax

// isrInterval is how often the leaders look for ISR changes to propose.
const isrInterval = 250 * time.Millisecond

// replicas is a cluster node's replication: the leader side (a tracker per partition this node
// leads, and the server streaming to followers) and the follower side (the fetchers).
//
// Lock order: Broker.topicMu, then replicas.mu, then ledPartition.mu (docs/locking.md).
type replicas struct {
	server   *replication.Server
	fetchers *replication.Fetchers
	lagMax   time.Duration

	mu  sync.Mutex
	led map[*engine.Partition]*ledPartition
}

// ledPartition is a partition this node leads, in one leader epoch.
type ledPartition struct {
	tp          TopicPartition
	topicID     [16]byte
	leaderEpoch int32
	epochStart  int64 // the log end when this node took the leadership
	replicas    int   // how many replicas the partition has
	minISR      int   // min.insync.replicas of its topic (guarded by mu)

	mu           sync.Mutex
	tracker      *replication.Tracker
	brokerEpochs map[int32]int64 // each follower's broker epoch, from its stream's hello
	resigned     bool            // the leadership moved on; produces waiting for it answer NOT_LEADER_OR_FOLLOWER
	proposing    bool            // an AlterPartition is out
}

// startReplication opens the replication listener (before this node registers, so that the
// address it announces accepts) and the follower side.
func (b *Broker) startReplication() error {
	c := b.cl
	lagMax := c.cfg.ReplicaLagMax
	if lagMax <= 0 {
		lagMax = DefaultReplicaLagMax
	}
	r := &replicas{lagMax: lagMax, led: map[*engine.Partition]*ledPartition{}}
	if addr := c.cfg.ReplicationAddr; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("cluster: replication listener: %w", err)
		}
		r.server = replication.Serve(ln, (*leaderHost)(b), b.log)
		b.log.Info("cluster: replication listener open", "addr", ln.Addr().String())
	}
	r.fetchers = replication.NewFetchers(b.cfg.NodeID, c.epoch.Load, b.log)
	b.repl = r
	return nil
}

// closeReplication stops streaming and fetching.
func (b *Broker) closeReplication() {
	r := b.repl
	if r == nil {
		return
	}
	r.fetchers.Close()
	if r.server != nil {
		r.server.Close()
	}
}

// ReplicationStats returns the batch bytes this node sent to followers and how many of them
// went through user space (zero with sendfile).
func (b *Broker) ReplicationStats() (sent, copied uint64) {
	if b.repl == nil || b.repl.server == nil {
		return 0, 0
	}
	return b.repl.server.Stats()
}

// UnderReplicated counts the partitions this node leads whose ISR is smaller than their
// replica set.
func (b *Broker) UnderReplicated() int {
	if b.repl == nil {
		return 0
	}
	b.repl.mu.Lock()
	led := make([]*ledPartition, 0, len(b.repl.led))
	for _, lp := range b.repl.led {
		led = append(led, lp)
	}
	b.repl.mu.Unlock()
	n := 0
	for _, lp := range led {
		lp.mu.Lock()
		if !lp.resigned && len(lp.tracker.ISR()) < lp.replicas {
			n++
		}
		lp.mu.Unlock()
	}
	return n
}

// onAppend streams a leader's fresh batches to its followers at once, before its own sync.
func (b *Broker) onAppend(p *engine.Partition) {
	if r := b.repl; r != nil && r.server != nil {
		r.server.Notify(p)
	}
}

// ledBy returns the leadership state of p, nil when this node does not lead it.
func (r *replicas) ledBy(p *engine.Partition) *ledPartition {
	r.mu.Lock()
	lp := r.led[p]
	r.mu.Unlock()
	return lp
}

// progressed applies a tracker's new high watermark: the partition, the produces waiting for
// it, the followers.
func (b *Broker) progressed(p *engine.Partition, hw int64, moved bool) {
	if !moved {
		return
	}
	p.SetHighWatermark(hw)
	b.purg.Notify(p.TopicPartition())
	// The followers learn it with the next data frame, or within the server's HW interval.
}

// leaderDurable feeds a leader's own durable end to its tracker.
func (b *Broker) leaderDurable(p *engine.Partition, durableEnd int64) {
	lp := b.repl.ledBy(p)
	if lp == nil {
		return
	}
	lp.mu.Lock()
	hw, moved := lp.tracker.LeaderProgress(p.LogEndOffset(), durableEnd, time.Now())
	lp.mu.Unlock()
	b.progressed(p, hw, moved)
}

// lead makes this node p's leader in a's leader epoch, or, in the same epoch, takes the
// committed ISR. topicMu held.
func (b *Broker) lead(p *engine.Partition, t meta.Topic, a meta.PartitionAssignment) {
	r := b.repl
	tp := p.TopicPartition()
	r.fetchers.Unfollow(replication.PartitionID{TopicID: t.ID, Partition: tp.Partition}) // no follower append after this
	p.SetLeaderEpoch(a.LeaderEpoch)
	minISR, _ := strconv.Atoi(t.Effective("min.insync.replicas"))
	minISR = max(minISR, 1)
	now := time.Now()
	r.mu.Lock()
	lp := r.led[p]
	if lp != nil && lp.leaderEpoch == a.LeaderEpoch {
		r.mu.Unlock()
		lp.mu.Lock()
		var hw int64
		var moved bool
		if lp.minISR != minISR {
			// min.insync.replicas changed (AlterConfigs): the same leadership, a tracker with the
			// new rule. Followers' progress is learnt again from their next acknowledgements.
			lp.minISR = minISR
			lp.tracker = lp.newTracker(b.cfg.NodeID, a, p.HighWatermark(), r.lagMax, now)
			hw, moved = lp.tracker.LeaderProgress(p.LogEndOffset(), p.DurableEnd(), now)
		} else {
			hw, moved = lp.tracker.Committed(a.ISR, a.PartitionEpoch, now)
		}
		lp.mu.Unlock()
		b.progressed(p, hw, moved)
		b.purg.Notify(tp) // an ISR change may answer waiting produces (NOT_ENOUGH_REPLICAS_AFTER_APPEND)
		return
	}
	if lp != nil {
		lp.resign()
	}
	lp = &ledPartition{tp: tp, topicID: t.ID, leaderEpoch: a.LeaderEpoch, epochStart: p.LogEndOffset(), replicas: len(a.Replicas),
		minISR: minISR, brokerEpochs: map[int32]int64{}}
	lp.tracker = lp.newTracker(b.cfg.NodeID, a, p.HighWatermark(), r.lagMax, now)
	r.led[p] = lp
	r.mu.Unlock()
	b.log.Info("cluster: leading a partition", "topic", tp.Topic, "partition", tp.Partition, "leader_epoch", a.LeaderEpoch,
		"isr", a.ISR, "log_end", p.LogEndOffset(), "high_watermark", p.HighWatermark())
	lp.mu.Lock()
	hw, moved := lp.tracker.LeaderProgress(p.LogEndOffset(), p.DurableEnd(), now)
	lp.mu.Unlock()
	b.progressed(p, hw, moved)
}

// follow makes this node copy p from its leader, or stop leading it. topicMu held.
func (b *Broker) follow(p *engine.Partition, st *meta.State, t meta.Topic, a meta.PartitionAssignment) {
	r := b.repl
	b.unlead(p)
	id := replication.PartitionID{TopicID: t.ID, Partition: p.TopicPartition().Partition}
	// Not before this node is registered: a stream names its broker epoch in its hello, and a
	// leader proposes this node back into an ISR only at that epoch (startCluster reconciles
	// again once registered).
	if a.Leader == meta.NoLeader || b.cl.epoch.Load() == 0 {
		r.fetchers.Unfollow(id)
		return
	}
	leader, ok := st.Broker(a.Leader)
	if !ok || leader.ReplicationAddr == "" {
		r.fetchers.Unfollow(id)
		b.log.Warn("cluster: the leader of a partition has no replication listener; not copying it",
			"topic", t.Name, "partition", id.Partition, "leader", a.Leader)
		return
	}
	r.fetchers.Follow(p, id, a.Leader, leader.ReplicationAddr, a.LeaderEpoch)
}

// unlead forgets this node's leadership of p (it moved, or p goes away): produces waiting for
// its high watermark answer NOT_LEADER_OR_FOLLOWER.
func (b *Broker) unlead(p *engine.Partition) {
	r := b.repl
	r.mu.Lock()
	lp := r.led[p]
	delete(r.led, p)
	r.mu.Unlock()
	if lp != nil {
		lp.resign()
		b.purg.Notify(p.TopicPartition())
	}
}

// forget stops copying and leading p before it is deleted. topicMu held.
func (b *Broker) forget(p *engine.Partition) {
	b.unlead(p)
	b.repl.fetchers.Unfollow(replication.PartitionID{TopicID: p.TopicID(), Partition: p.TopicPartition().Partition})
}

// newTracker is the tracker of this leadership for assignment a.
func (lp *ledPartition) newTracker(self int32, a meta.PartitionAssignment, hw int64, lagMax time.Duration, now time.Time) *replication.Tracker {
	return replication.NewTracker(replication.Config{
		Self: self, Replicas: slices.Clone(a.Replicas), ISR: slices.Clone(a.ISR),
		PartitionEpoch: a.PartitionEpoch, LeaderEpoch: a.LeaderEpoch, EpochStart: lp.epochStart,
		MinISR: lp.minISR, LagMax: lagMax, HighWatermark: hw,
	}, now)
}

func (lp *ledPartition) resign() {
	lp.mu.Lock()
	lp.resigned = true
	lp.mu.Unlock()
}

// state says whether the leadership still holds and the ISR is big enough.
func (lp *ledPartition) state() (resigned, isrBigEnough bool) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.resigned, lp.tracker.ISRBigEnough()
}

// runISR proposes the ISR changes the trackers ask for, one at a time per partition.
func (b *Broker) runISR() {
	defer b.cl.wg.Done()
	t := time.NewTicker(isrInterval)
	defer t.Stop()
	for {
		select {
		case <-b.cl.stop:
			return
		case <-t.C:
		}
		r := b.repl
		r.mu.Lock()
		led := make([]*ledPartition, 0, len(r.led))
		for _, lp := range r.led {
			led = append(led, lp)
		}
		r.mu.Unlock()
		now := time.Now()
		for _, lp := range led {
			lp.mu.Lock()
			if lp.resigned || lp.proposing {
				lp.mu.Unlock()
				continue
			}
			isr, partitionEpoch, ok := lp.tracker.Propose(now)
			var members []ISRMember
			if ok {
				lp.proposing = true
				// Each member with the broker epoch its stream came from: the controller refuses
				// a joining broker whose process has changed since (KIP-903).
				for _, id := range isr {
					m := ISRMember{ID: id, BrokerEpoch: -1}
					if e, known := lp.brokerEpochs[id]; known && id != b.cfg.NodeID {
						m.BrokerEpoch = e
					}
					members = append(members, m)
				}
			}
			lp.mu.Unlock()
			if ok {
				b.cl.wg.Add(1)
				go b.proposeISR(lp, members, partitionEpoch)
			}
		}
	}
}

// proposeISR sends one ISR change to the controller.
func (b *Broker) proposeISR(lp *ledPartition, isr []ISRMember, partitionEpoch int32) {
	defer b.cl.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-b.cl.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	b.log.Info("cluster: proposing an ISR change", "topic", lp.tp.Topic, "partition", lp.tp.Partition,
		"leader_epoch", lp.leaderEpoch, "partition_epoch", partitionEpoch, "isr", isr)
	err := b.AlterISRWithEpochs(ctx, lp.tp, lp.topicID, lp.leaderEpoch, partitionEpoch, isr)
	lp.mu.Lock()
	lp.proposing = false
	hw, moved := int64(0), false
	if err != nil {
		// A refused expansion leaves the maximal ISR smaller, which may let the high
		// watermark move.
		before := lp.tracker.HighWatermark()
		lp.tracker.ProposalFailed(time.Now())
		hw = lp.tracker.HighWatermark()
		moved = hw != before
	}
	resigned := lp.resigned
	lp.mu.Unlock()
	if moved && !resigned {
		if p := b.engine.Partition(lp.tp); p != nil && p.TopicID() == lp.topicID {
			b.progressed(p, hw, true)
		}
	}
	if err != nil {
		b.log.Warn("cluster: the ISR change was not made", "topic", lp.tp.Topic, "partition", lp.tp.Partition, "isr", isr, "err", err)
	}
}

// leaderHost is the broker as the replication server sees it.
type leaderHost Broker

func (h *leaderHost) Leading(id replication.PartitionID, leaderEpoch, follower int32) (*engine.Partition, int16) {
	b := (*Broker)(h)
	rt := b.cl.routes.Load()
	if rt == nil {
		return nil, replication.CodeNotLeaderOrFollower
	}
	t, ok := rt.state.TopicByID(id.TopicID)
	if !ok || id.Partition < 0 || id.Partition >= t.Partitions {
		return nil, replication.CodeUnknownTopicOrPartition
	}
	a := t.Assignments[id.Partition]
	switch {
	case leaderEpoch < a.LeaderEpoch:
		return nil, replication.CodeFencedLeaderEpoch
	case leaderEpoch > a.LeaderEpoch:
		return nil, replication.CodeUnknownLeaderEpoch
	case a.Leader != b.cfg.NodeID || !slices.Contains(a.Replicas, follower):
		return nil, replication.CodeNotLeaderOrFollower
	}
	p := b.engine.Partition(TopicPartition{Topic: t.Name, Partition: id.Partition})
	if p == nil || p.TopicID() != t.ID {
		return nil, replication.CodeNotLeaderOrFollower
	}
	if lp := b.repl.ledBy(p); lp == nil || lp.leaderEpoch != leaderEpoch {
		return nil, replication.CodeUnknownLeaderEpoch // this node has not taken the leadership yet
	}
	return p, 0
}

func (h *leaderHost) FollowerProgress(p *engine.Partition, leaderEpoch, follower int32, brokerEpoch, logEnd, durableEnd int64) {
	b := (*Broker)(h)
	lp := b.repl.ledBy(p)
	if lp == nil || lp.leaderEpoch != leaderEpoch {
		return
	}
	lp.mu.Lock()
	lp.brokerEpochs[follower] = brokerEpoch
	hw, moved := lp.tracker.FollowerProgress(follower, logEnd, durableEnd, time.Now())
	lp.mu.Unlock()
	b.progressed(p, hw, moved)
}
