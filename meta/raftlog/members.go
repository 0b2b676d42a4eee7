package raftlog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/raftio"

	"github.com/ringtail/ringtail/meta"
)

// Leader is a node's view of the shard's leader: the controller of the cluster.
type Leader struct {
	ID   uint64 // the leader's replica id; 0 when none is known (an election is on)
	Term uint64 // the Raft term it leads (or the term of the election)
}

// leaderListener receives dragonboat's leader changes (on the NodeHost's single event
// goroutine, which must not block) and publishes the latest, with a channel closed when the
// next arrives (the same pattern as meta.Published).
type leaderListener struct {
	cur atomic.Pointer[leaderNews]
	mu  sync.Mutex // serialises publishing with close; a leaf
	// done: the Log closed; later events (the NodeHost's last ones while it stops) are
	// dropped so a closed Log's view does not change under its watchers.
	done bool
}

type leaderNews struct {
	leader  Leader
	changed chan struct{}
}

var _ raftio.IRaftEventListener = (*leaderListener)(nil)

func newLeaderListener() *leaderListener {
	l := &leaderListener{}
	l.cur.Store(&leaderNews{changed: make(chan struct{})})
	return l
}

func (l *leaderListener) LeaderUpdated(info raftio.LeaderInfo) {
	if info.ShardID != shardID {
		return
	}
	l.publish(Leader{ID: info.LeaderID, Term: info.Term})
}

func (l *leaderListener) publish(ld Leader) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	old := l.cur.Swap(&leaderNews{leader: ld, changed: make(chan struct{})})
	close(old.changed)
}

// close publishes "no leader known" as the last news, and nothing after it.
func (l *leaderListener) close() {
	l.publish(Leader{Term: l.cur.Load().leader.Term})
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

func (l *leaderListener) watch() (Leader, <-chan struct{}) {
	n := l.cur.Load()
	return n.leader, n.changed
}

// LeaderID returns the leader this node knows of and its term; ok is false while none is
// known (an election is on, or the Log is closed).
func (l *Log) LeaderID() (id uint64, term uint64, ok bool) {
	if l.closed.Load() {
		return 0, 0, false
	}
	id, term, ok, err := l.nh.GetLeaderID(shardID)
	if err != nil || id == 0 {
		return 0, term, false
	}
	return id, term, ok
}

// IsLeader tells whether this node is the leader, as far as it knows: a leader cut off from
// the majority keeps believing it for up to an election timeout (CheckQuorum then makes it
// step down), so a controller must still have its decisions committed, never act on this
// alone.
func (l *Log) IsLeader() bool {
	id, _, ok := l.LeaderID()
	return ok && id == l.cfg.ReplicaID
}

// WatchLeader returns the latest leader change this node heard of and a channel closed at the
// next one: the controller's cue to start or stop acting. The news comes from dragonboat's
// event goroutine, a moment after LeaderID already answers with it.
func (l *Log) WatchLeader() (Leader, <-chan struct{}) { return l.leader.watch() }

// SyncState returns a state that holds every command committed before the call: it asks the
// leader for its commit index (Raft's ReadIndex) and waits until this node has applied that
// far. A node that just started calls it to catch up before it serves; right after a leader
// change dragonboat answers ErrShardNotReady, which is retried until ctx ends (or
// ProposeTimeout, when ctx has no deadline).
func (l *Log) SyncState(ctx context.Context) (*meta.State, error) {
	ctx, cancel := l.bounded(ctx)
	defer cancel()
	var st *meta.State
	_, err := l.retry(ctx, func(actx context.Context) error {
		v, err := l.nh.SyncRead(actx, shardID, stateQuery{})
		if err == nil {
			st = v.(*meta.State)
		}
		return err
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("raftlog: reading through the leader: %w", err)
	}
	return st, nil
}

// Membership is the shard's membership as of a committed read.
type Membership struct {
	Voters    map[uint64]string // replica id → raft address
	NonVoting map[uint64]string // replica id → raft address
	Removed   []uint64          // ids removed; never usable again
}

// Membership reads the membership through the leader (see SyncState).
func (l *Log) Membership(ctx context.Context) (Membership, error) {
	ctx, cancel := l.bounded(ctx)
	defer cancel()
	m, err := l.membership(ctx)
	if err != nil {
		return Membership{}, fmt.Errorf("raftlog: reading the membership: %w", err)
	}
	return m, nil
}

func (l *Log) membership(ctx context.Context) (Membership, error) {
	var m *dragonboat.Membership
	_, err := l.retry(ctx, func(actx context.Context) error {
		var err error
		m, err = l.nh.SyncGetShardMembership(actx, shardID)
		return err
	}, nil)
	if err != nil {
		return Membership{}, err
	}
	out := Membership{Voters: maps.Clone(m.Nodes), NonVoting: maps.Clone(m.NonVotings)}
	for id := range m.Removed {
		out.Removed = append(out.Removed, id)
	}
	slices.Sort(out.Removed)
	return out, nil
}

// AddVoter adds node id at addr as a voter, or promotes the non-voting member id (at the same
// address) to one. The new node then starts with Config.Join (or restarts, if it was a
// non-voting member). A voter that is not running counts against the quorum from the moment
// it is added: add it once its process is about to start, and grow three voters to five, not
// four.
func (l *Log) AddVoter(ctx context.Context, id uint64, addr string) error {
	return l.changeMembership(ctx, fmt.Sprintf("adding voter %d at %s", id, addr),
		func(actx context.Context) error { return l.nh.SyncRequestAddReplica(actx, shardID, id, addr, 0) },
		func(m Membership) bool { return m.Voters[id] == addr })
}

// AddNonVoting adds node id at addr as a non-voting member: it receives and applies the log
// (and serves the metadata locally) without counting for the quorum. It then starts with
// Config.Join and Config.NonVoting.
func (l *Log) AddNonVoting(ctx context.Context, id uint64, addr string) error {
	return l.changeMembership(ctx, fmt.Sprintf("adding non-voting member %d at %s", id, addr),
		func(actx context.Context) error { return l.nh.SyncRequestAddNonVoting(actx, shardID, id, addr, 0) },
		func(m Membership) bool { return m.NonVoting[id] == addr })
}

// RemoveNode removes node id (voter or non-voting) from the shard. Its id can never be used
// again, and its data directory cannot rejoin.
func (l *Log) RemoveNode(ctx context.Context, id uint64) error {
	return l.changeMembership(ctx, fmt.Sprintf("removing node %d", id),
		func(actx context.Context) error { return l.nh.SyncRequestDeleteReplica(actx, shardID, id, 0) },
		func(m Membership) bool {
			_, voter := m.Voters[id]
			_, nonVoting := m.NonVoting[id]
			return !voter && !nonVoting
		})
}

// changeMembership runs a membership change with the retries of Propose. dragonboat rejects a
// change that is already in effect (ErrRejected), which is what a retry of a timed-out change
// that committed gets; so on a rejection, and when the outcome is unknown, the membership is
// read back and the call succeeds if it already is what was asked.
func (l *Log) changeMembership(ctx context.Context, what string, change func(context.Context) error, inEffect func(Membership) bool) error {
	if l.closed.Load() {
		return meta.ErrClosed
	}
	ctx, cancel := l.bounded(ctx)
	defer cancel()
	uncertain, err := l.retry(ctx, change, nil)
	if err == nil {
		l.log.Info("raft membership changed: " + what)
		return nil
	}
	if errors.Is(err, dragonboat.ErrRejected) || uncertain {
		// Read with a fresh deadline: ctx may be what ended the change.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), attemptTimeout)
		defer rcancel()
		if m, merr := l.membership(rctx); merr == nil {
			if inEffect(m) {
				l.log.Info("raft membership changed (by an earlier attempt): " + what)
				return nil
			}
			if errors.Is(err, dragonboat.ErrRejected) {
				return fmt.Errorf("raftlog: %s: rejected by the shard (voters %s, non-voting %s, removed %v): %w", what, FormatPeers(m.Voters), FormatPeers(m.NonVoting), m.Removed, err)
			}
		}
	}
	if uncertain {
		return fmt.Errorf("%w: %s: %w", ErrOutcomeUnknown, what, err)
	}
	return fmt.Errorf("raftlog: %s: %w", what, err)
}
