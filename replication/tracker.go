package replication

import (
	"slices"
	"time"
)

// DefaultLagMax is Kafka's replica.lag.time.max.ms default, used when Config.LagMax is not set.
const DefaultLagMax = 10 * time.Second

// Config is what a partition leader knows when it takes a leader epoch.
type Config struct {
	Self           int32         // the leader's broker id
	Replicas       []int32       // the partition's replicas
	ISR            []int32       // the committed ISR (from the metadata)
	PartitionEpoch int32         // the committed partition epoch
	LeaderEpoch    int32         // the leader epoch this tracker serves
	EpochStart     int64         // the leader's log end when it took LeaderEpoch
	MinISR         int           // min.insync.replicas (>= 1; less is taken as 1)
	LagMax         time.Duration // replica.lag.time.max.ms (DefaultLagMax when <= 0)
	HighWatermark  int64         // the partition's high watermark when the tracker starts
}

// Tracker is one partition leader's view of its followers for one leader epoch: what each has
// written and made durable, when each was last caught up, the committed ISR and at most one
// ISR change in flight. From these it derives the high watermark and the ISR changes to ask
// the controller for. It is pure (no goroutines, clocks, I/O or locks): the caller passes the
// time in and serialises every call.
type Tracker struct {
	self        int32
	leaderEpoch int32
	epochStart  int64
	minISR      int
	lagMax      time.Duration

	// members is every broker whose acknowledgements count: Replicas, then any ISR member the
	// metadata named that Replicas did not hold, then Self if neither did. Proposals list
	// brokers in this order.
	members []int32

	// isr is the committed ISR at partitionEpoch, as the metadata gave it (duplicates dropped).
	isr            []int32
	partitionEpoch int32
	// pending is the ISR proposed to the controller and not yet resolved (nil when none). It
	// was proposed at partitionEpoch: a Committed at a later epoch resolves it either way.
	pending []int32
	// lastExpanded is the follower last proposed for addition (none at the start): the next
	// expansion looks for an eligible follower after it, so followers take turns.
	lastExpanded int32

	// The leader's own log. leaderLogEnd starts at max(EpochStart, HighWatermark), the least
	// it can be; leaderDurableEnd counts only once leaderKnown, so the high watermark waits
	// for the leader's first report like any member's.
	leaderKnown      bool
	leaderLogEnd     int64
	leaderDurableEnd int64

	// highWatermark never goes down: every record below it is durable on every member of the
	// maximal ISR, and acks=all answers were given on that promise.
	highWatermark int64

	followers map[int32]*progress
}

// progress is the leader's view of one follower, from its acknowledgements in this leader
// epoch only (nothing carries over from an earlier leader).
type progress struct {
	// acked: the follower acknowledged at least once; until then logEnd and durableEnd are
	// unknown and, for a member of the maximal ISR, hold the high watermark back.
	acked bool
	// logEnd is what the follower last said it had written, durableEnd what it had made
	// durable (durableEnd <= logEnd). Kept as reported, even when lower than before: a
	// follower that truncated a divergent tail legitimately goes back.
	logEnd     int64
	durableEnd int64
	// lastCaughtUp is Kafka's lastCaughtUpTimeMs: the latest time the follower's log end
	// reached the leader's. Zero means never (a follower outside the ISR at the start).
	lastCaughtUp time.Time
	// prevLeaderLogEnd and prevAckTime are the leader's log end and the time at the previous
	// acknowledgement (valid once acked): a follower that reaches the leader's log end as of
	// its previous acknowledgement was caught up at that time, so one that keeps up with a
	// steady stream stays in the ISR without ever being exactly at the end.
	prevLeaderLogEnd int64
	prevAckTime      time.Time
	// mustAckToRejoin: the follower left the committed ISR after its last acknowledgement.
	// What it last reported may be a dead or fenced broker's, so it is not proposed back
	// before it acknowledges again.
	mustAckToRejoin bool
}

// NewTracker starts tracking a partition whose leadership (or leader epoch) this broker just
// took. The committed ISR's members start caught up at now, as in Kafka: a new leader gives
// every follower in the ISR one LagMax to show up before it proposes to remove it. A tracker
// serves one leader epoch with one replica set: a new leader epoch or a reassignment needs a
// new tracker.
func NewTracker(cfg Config, now time.Time) *Tracker {
	t := &Tracker{
		self:           cfg.Self,
		leaderEpoch:    cfg.LeaderEpoch,
		epochStart:     max(cfg.EpochStart, 0),
		minISR:         max(cfg.MinISR, 1),
		lagMax:         cfg.LagMax,
		partitionEpoch: cfg.PartitionEpoch,
		highWatermark:  max(cfg.HighWatermark, 0),
		lastExpanded:   -1, // broker ids are >= 0
		followers:      map[int32]*progress{},
	}
	if t.lagMax <= 0 {
		t.lagMax = DefaultLagMax
	}
	t.leaderLogEnd = max(t.epochStart, t.highWatermark)
	for _, id := range cfg.Replicas {
		t.addMember(id)
	}
	t.isr = dedup(cfg.ISR)
	for _, id := range t.isr {
		t.addMember(id)
	}
	t.addMember(cfg.Self)
	for _, id := range t.isr {
		if f := t.followers[id]; f != nil {
			f.lastCaughtUp = now
		}
	}
	return t
}

// addMember makes id a broker whose acknowledgements count.
func (t *Tracker) addMember(id int32) {
	if slices.Contains(t.members, id) {
		return
	}
	t.members = append(t.members, id)
	if id != t.self {
		t.followers[id] = &progress{}
	}
}

// LeaderProgress reports the leader's own log: logEnd written, durableEnd durable. It returns
// the high watermark and whether it moved. The leader never truncates within its epoch, so a
// lower report than before is taken as stale and the higher value kept; a report with
// negative offsets or durableEnd > logEnd is ignored.
//
// Report logEnd as soon as a batch is appended (before it is sent to followers), not only once
// it is durable: the leader's log end is what followers' caught-up times are measured against.
func (t *Tracker) LeaderProgress(logEnd, durableEnd int64, now time.Time) (hw int64, moved bool) {
	if durableEnd < 0 || logEnd < durableEnd {
		return t.highWatermark, false
	}
	t.leaderKnown = true
	if logEnd > t.leaderLogEnd {
		// A follower at the leader's old log end was caught up until this moment. Kafka learns
		// that from the fetches an idle follower keeps sending; here an idle follower need not
		// acknowledge anything, so without this one append after an idle spell longer than
		// LagMax would make every follower look lagging at once.
		for _, f := range t.followers {
			if f.acked && f.logEnd >= t.leaderLogEnd {
				f.lastCaughtUp = later(f.lastCaughtUp, now)
			}
		}
		t.leaderLogEnd = logEnd
	}
	t.leaderDurableEnd = max(t.leaderDurableEnd, durableEnd)
	return t.advance()
}

// FollowerProgress reports a follower's acknowledgement: it has written up to logEnd, and
// durableEnd is durable. It returns the high watermark and whether it moved. An
// acknowledgement from a broker that is not a replica (or from the leader itself), with
// negative offsets or with durableEnd > logEnd is ignored. Offsets lower than the follower's
// previous ones are taken as they are (it truncated); the high watermark still never goes
// down.
//
// The tracker trusts that the caller checked the follower's log against the leader's epochs
// (the DivergingEpoch rule) before reporting: a divergent follower's offsets mean nothing.
func (t *Tracker) FollowerProgress(id int32, logEnd, durableEnd int64, now time.Time) (hw int64, moved bool) {
	f := t.followers[id]
	if f == nil || durableEnd < 0 || logEnd < durableEnd {
		return t.highWatermark, false
	}
	// Kafka's ReplicaState.updateFetchState.
	switch {
	case logEnd >= t.leaderLogEnd:
		f.lastCaughtUp = later(f.lastCaughtUp, now)
	case f.acked && logEnd >= f.prevLeaderLogEnd:
		f.lastCaughtUp = later(f.lastCaughtUp, f.prevAckTime)
	}
	f.acked = true
	f.mustAckToRejoin = false
	f.logEnd, f.durableEnd = logEnd, durableEnd
	f.prevLeaderLogEnd, f.prevAckTime = t.leaderLogEnd, now
	return t.advance()
}

// HighWatermark is the partition's high watermark: every offset below it is durable on every
// member of the maximal ISR.
func (t *Tracker) HighWatermark() int64 { return t.highWatermark }

// ISRBigEnough reports whether the committed ISR has at least MinISR members (acks=all is
// refused up front with NOT_ENOUGH_REPLICAS otherwise, and the high watermark does not move).
func (t *Tracker) ISRBigEnough() bool { return len(t.isr) >= t.minISR }

// Propose returns the next ISR to ask the controller for, when one is due and none is in
// flight, with the committed partition epoch the change must be made against. It marks that
// ISR pending: the maximal ISR (committed ∪ pending) counts for the high watermark until
// Committed at a later partition epoch or ProposalFailed. ok is false when nothing is due or
// a proposal is pending. The leader is always in the proposed ISR.
//
// A shrink comes first and alone: the committed ISR without the followers not caught up for
// longer than LagMax (never the leader), since they hold the high watermark back. Otherwise an
// expansion by one follower caught up in this leader epoch: durable end >= max(high
// watermark, EpochStart), caught up by the LagMax rule (else the next call would remove it
// again), and acknowledged since it last left the ISR (a broker the controller removed, fenced,
// must show it is alive). Changes are never bundled and followers take turns, so one the
// controller keeps refusing (INELIGIBLE_REPLICA) delays neither a shrink nor the others.
func (t *Tracker) Propose(now time.Time) (isr []int32, partitionEpoch int32, ok bool) {
	if t.pending != nil {
		return nil, 0, false
	}
	var next []int32
	if slices.ContainsFunc(t.isr, func(id int32) bool { return id != t.self && !t.caughtUp(id, now) }) {
		next = t.proposal(func(id int32) bool { return slices.Contains(t.isr, id) && t.caughtUp(id, now) })
	} else if add, found := t.nextEligible(now); found {
		t.lastExpanded = add
		next = t.proposal(func(id int32) bool { return id == add || slices.Contains(t.isr, id) })
	} else if !slices.Contains(t.isr, t.self) {
		next = t.proposal(func(id int32) bool { return slices.Contains(t.isr, id) })
	} else {
		return nil, 0, false
	}
	t.pending = next
	return slices.Clone(next), t.partitionEpoch, true
}

// proposal lists, in member order, the leader and the followers keep selects.
func (t *Tracker) proposal(keep func(id int32) bool) []int32 {
	var out []int32
	for _, id := range t.members {
		if id == t.self || keep(id) {
			out = append(out, id)
		}
	}
	return out
}

// nextEligible picks the follower to add: the first eligible one after the last follower
// proposed for addition, in member order, wrapping around.
func (t *Tracker) nextEligible(now time.Time) (int32, bool) {
	start := slices.Index(t.members, t.lastExpanded) + 1 // 0 when none was
	for i := range t.members {
		id := t.members[(start+i)%len(t.members)]
		if id != t.self && !slices.Contains(t.isr, id) && t.eligible(id, now) {
			return id, true
		}
	}
	return 0, false
}

// ProposalFailed reports that the controller refused the pending ISR or the request failed:
// the committed ISR stands and another proposal may be made. The maximal ISR may shrink with
// it (a refused expansion), which can let the high watermark advance: compare HighWatermark
// before and after the call.
//
// The call names no proposal, so the caller must keep one AlterPartition request in flight
// per partition: call Propose again only after the previous request returned.
func (t *Tracker) ProposalFailed(now time.Time) {
	if t.pending == nil {
		return
	}
	t.pending = nil
	t.advance()
}

// Committed reports that the metadata now has isr at partitionEpoch (with the same leader and
// leader epoch). A partition epoch not later than the one known is stale or repeated and
// ignored. A later one replaces the committed ISR and resolves the pending proposal, whatever
// it was: the proposal was made against an earlier epoch, so it either is this change (or was
// folded into it) or can no longer commit. Brokers in isr that were not replicas start
// counting as members. It returns the high watermark and whether it moved (an ISR that lost a
// lagging member, or grew back to MinISR, can let it advance).
func (t *Tracker) Committed(isr []int32, partitionEpoch int32, now time.Time) (hw int64, moved bool) {
	if partitionEpoch <= t.partitionEpoch {
		return t.highWatermark, false
	}
	next := dedup(isr)
	for _, id := range t.isr {
		if f := t.followers[id]; f != nil && !slices.Contains(next, id) {
			f.mustAckToRejoin = true
		}
	}
	t.isr = next
	t.partitionEpoch = partitionEpoch
	t.pending = nil
	for _, id := range t.isr {
		t.addMember(id)
	}
	return t.advance()
}

// ISR is the committed ISR.
func (t *Tracker) ISR() []int32 { return slices.Clone(t.isr) }

// LeaderEpoch is the leader epoch the tracker serves.
func (t *Tracker) LeaderEpoch() int32 { return t.leaderEpoch }

// PartitionEpoch is the committed partition epoch.
func (t *Tracker) PartitionEpoch() int32 { return t.partitionEpoch }

// Pending reports whether a proposal is in flight.
func (t *Tracker) Pending() bool { return t.pending != nil }

// PendingISR is the ISR proposed and not yet resolved (nil when none).
func (t *Tracker) PendingISR() []int32 { return slices.Clone(t.pending) }

// MaximalISR is the committed ISR with the pending proposal's members added, in member order:
// the set the high watermark is computed over. The leader is always in it.
func (t *Tracker) MaximalISR() []int32 {
	var out []int32
	for _, id := range t.members {
		if id == t.self || slices.Contains(t.isr, id) || slices.Contains(t.pending, id) {
			out = append(out, id)
		}
	}
	return out
}

// Follower returns what follower id last acknowledged; known is false before its first
// acknowledgement in this leader epoch, or when id is not a follower of this partition.
func (t *Tracker) Follower(id int32) (logEnd, durableEnd int64, known bool) {
	f := t.followers[id]
	if f == nil || !f.acked {
		return 0, 0, false
	}
	return f.logEnd, f.durableEnd, true
}

// LastCaughtUp is when follower id was last caught up (zero: never, or not a follower).
func (t *Tracker) LastCaughtUp(id int32) time.Time {
	if f := t.followers[id]; f != nil {
		return f.lastCaughtUp
	}
	return time.Time{}
}

// advance raises the high watermark to the minimum durable end over the maximal ISR, when
// every member of it has reported and the committed ISR has at least MinISR members (KIP-966:
// with fewer, a record below the high watermark could be on fewer than MinISR brokers).
func (t *Tracker) advance() (hw int64, moved bool) {
	if !t.ISRBigEnough() || !t.leaderKnown {
		return t.highWatermark, false
	}
	lowest := t.leaderDurableEnd
	for _, id := range t.MaximalISR() {
		if id == t.self {
			continue
		}
		f := t.followers[id]
		if !f.acked {
			return t.highWatermark, false
		}
		lowest = min(lowest, f.durableEnd)
	}
	if lowest <= t.highWatermark {
		return t.highWatermark, false
	}
	t.highWatermark = lowest
	return t.highWatermark, true
}

// caughtUp is Kafka's ReplicaState.isCaughtUp: the follower is at the leader's log end, or
// was within the last LagMax.
func (t *Tracker) caughtUp(id int32, now time.Time) bool {
	f := t.followers[id]
	if f.acked && f.logEnd >= t.leaderLogEnd {
		return true
	}
	return !f.lastCaughtUp.IsZero() && now.Sub(f.lastCaughtUp) <= t.lagMax
}

// eligible: a follower outside the ISR may join it once it holds everything below the high
// watermark and everything this leader epoch started with, durably, and is caught up.
func (t *Tracker) eligible(id int32, now time.Time) bool {
	f := t.followers[id]
	return f.acked && !f.mustAckToRejoin && f.durableEnd >= max(t.highWatermark, t.epochStart) && t.caughtUp(id, now)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func dedup(ids []int32) []int32 {
	out := make([]int32, 0, len(ids))
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}
