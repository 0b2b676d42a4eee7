package raftlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/client"
	pb "github.com/lni/dragonboat/v4/raftpb"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/ringtail/ringtail/meta"
)

// Errors of the package, beside meta's (meta.ErrClosed, and Apply's rejections as they are).
var (
	// ErrOutcomeUnknown: an attempt of the proposal (or membership change) timed out or was
	// cut off, and it is not known whether it committed: it may still apply after the call
	// returned. It comes joined with the error that ended the call (the context's, or a stale
	// rejection of a later attempt that may have been a repeat of the unknown one).
	ErrOutcomeUnknown = errors.New("raftlog: outcome unknown: an attempt timed out or was cut off and may still commit")
	// ErrHostnameChanged: the data directory was written under another hostname, which
	// dragonboat records (and names a directory after) and refuses to change.
	ErrHostnameChanged = errors.New("raftlog: the host name changed since the Raft data was written")
)

// Log is a meta.Log on a dragonboat Raft shard: every node of the cluster runs one, with its
// own NodeHost, and all apply the same commands in the same order. Propose may be called on
// any node (a follower's proposal is forwarded to the leader by dragonboat, and retried if it
// is lost on the way); State and Watch are local and may lag the leader by the commands not
// yet applied here; SyncState reads through the leader.
type Log struct {
	cfg       Config
	log       *slog.Logger
	nh        *dragonboat.NodeHost
	session   *client.Session // the no-op session: commands are compare-and-set, not deduplicated by dragonboat
	published meta.Published
	proposals *proposals
	applied   *appliedIndex
	leader    *leaderListener
	// proposeEntry makes one attempt to commit an entry (proposeOnce); a seam for the test
	// that loses an attempt's answer.
	proposeEntry func(ctx context.Context, entry []byte) error

	closeMu sync.Mutex  // serialises Close (NodeHost.Close panics when called twice)
	closed  atomic.Bool // set before the NodeHost closes, read by everything that fails after it
}

var _ meta.Log = (*Log)(nil)

// Open starts this node's NodeHost and its replica of the metadata shard. A node with Raft
// data in cfg.Dir restarts from it (snapshot, then the log), whatever cfg.InitialMembers says;
// a node without starts as one of cfg.InitialMembers (or joins, with cfg.Join). Open returns
// once the replica has restored its latest snapshot and replayed the commands its own log
// held as committed, so State() is the node's last state, with or without a quorum; a leader
// may not be elected yet (SyncState waits for one and catches up with it).
func Open(c Config) (l *Log, err error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if err := claimDir(cfg.Dir); err != nil {
		return nil, err
	}
	defer func() {
		// dragonboat panics on some failures to open (pebble refusing its directory, for
		// one) after cleaning up after itself; the broker is better served by an error.
		if r := recover(); r != nil {
			err = fmt.Errorf("raftlog: opening %s: %v", cfg.Dir, r)
		}
		if err != nil {
			releaseDir(cfg.Dir)
		}
	}()
	return open(cfg)
}

// openDirs are the directories of the Logs open in this process. dragonboat's directory lock
// keeps out another process, but not a second NodeHost of this one (POSIX locks are per
// process), and pebble then panics.
var openDirs struct {
	mu sync.Mutex
	m  map[string]bool
}

func claimDir(dir string) error {
	openDirs.mu.Lock()
	defer openDirs.mu.Unlock()
	if openDirs.m[dir] {
		return fmt.Errorf("raftlog: %s is in use by another Log of this process", dir)
	}
	if openDirs.m == nil {
		openDirs.m = make(map[string]bool)
	}
	openDirs.m[dir] = true
	return nil
}

func releaseDir(dir string) {
	openDirs.mu.Lock()
	defer openDirs.mu.Unlock()
	delete(openDirs.m, dir)
}

func open(cfg Config) (*Log, error) {
	routeDragonboatLogs(cfg.Logger)
	l := &Log{
		cfg:       cfg,
		log:       cfg.Logger.With("raft_node", cfg.ReplicaID),
		proposals: newProposals(),
		applied:   &appliedIndex{},
		leader:    newLeaderListener(),
	}
	l.published.Store(meta.NewState())
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if err := checkHostname(cfg); err != nil {
		return nil, err
	}
	nh, err := dragonboat.NewNodeHost(nodeHostConfig(cfg, l.leader))
	if err != nil {
		return nil, openError(cfg, err)
	}
	l.nh = nh
	l.session = nh.GetNoOPSession(shardID)
	l.proposeEntry = l.proposeOnce
	// The restart rule: dragonboat keeps what the node was started with (its bootstrap
	// record) beside its log. With one, start from it and pass no members (dragonboat
	// refuses a member list that differs from the record, and after a membership change
	// --peers is out of date by design). Without one, this is the node's first start.
	members, join := map[uint64]string(nil), false
	restart := nh.HasNodeInfo(shardID, cfg.ReplicaID)
	if !restart {
		if err := cfg.checkMembership(); err != nil {
			nh.Close()
			return nil, err
		}
		if cfg.Join {
			join = true
		} else {
			members = cfg.InitialMembers
		}
	}
	create := func(uint64, uint64) sm.IStateMachine {
		return newStateMachine(&l.published, l.proposals, l.applied)
	}
	start := time.Now()
	if err := nh.StartReplica(members, join, create, replicaConfig(cfg)); err != nil {
		nh.Close()
		if errors.Is(err, dragonboat.ErrReplicaRemoved) {
			return nil, fmt.Errorf("raftlog: node %d was removed from the cluster; its data in %s cannot rejoin (remove it to join again under a new node id): %w", cfg.ReplicaID, cfg.Dir, err)
		}
		return nil, fmt.Errorf("raftlog: starting node %d: %w", cfg.ReplicaID, err)
	}
	if restart {
		l.awaitReplay()
	}
	l.log.Info("raft metadata log started", "dir", cfg.Dir, "raft_addr", cfg.RaftAddress, "restart", restart, "join", join, "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// awaitReplay waits until the replica has applied, from its own log, the commands it knew to
// be committed when it stopped. dragonboat's StartReplica returns once the latest snapshot is
// restored and replays the log after it in the background; without this wait State() after
// Open would be that snapshot's state (the empty one before the first snapshot), a node
// restarting alone (no quorum, so nothing new commits) would serve it, and meta.Store would
// see no cluster id and propose InitCluster again. The replay is local and quick; if it is
// not done within ProposeTimeout, Open goes on and says so.
func (l *Log) awaitReplay() {
	reader, err := l.nh.GetLogReader(shardID)
	if err != nil {
		return
	}
	hard, _ := reader.NodeState()
	first, _ := reader.GetRange()
	low := max(first, snapshotIndex(reader)+1)
	if hard.Commit < low {
		return // the snapshot holds everything committed
	}
	entries, err := reader.Entries(low, hard.Commit+1, math.MaxUint64)
	if err != nil {
		l.log.Warn("raft metadata log: cannot read the log to replay", "err", err)
		return
	}
	// The last committed entry that reaches Update (no-ops and membership changes do not).
	var target uint64
	for i := len(entries) - 1; i >= 0 && target == 0; i-- {
		if entries[i].IsUpdateEntry() {
			target = entries[i].Index
		}
	}
	if target == 0 {
		return
	}
	t := time.NewTimer(l.cfg.ProposeTimeout)
	defer t.Stop()
	select {
	case <-l.applied.wait(target):
	case <-t.C:
		l.log.Warn("raft metadata log: replay of the local log not done; serving an older state meanwhile", "replay_to", target)
	}
}

// snapshotIndex is the index of the latest snapshot in the log reader. The reader hands out a
// referenced snapshot, and the log is not compacted behind it until the reference is dropped.
func snapshotIndex(reader dragonboat.ReadonlyLogReader) uint64 {
	ss := reader.Snapshot()
	if pb.IsEmptySnapshot(ss) {
		return 0
	}
	// The reader holds its own reference until a newer snapshot replaces it; dropping the
	// last one compacts the in-memory log up to the snapshot, which the replacement did
	// already if this fails.
	_ = ss.Unref()
	return ss.Index
}

// checkHostname refuses a data directory written under another host name before dragonboat
// does, with a message that names both: dragonboat keeps its data in a directory named after
// the host (<Dir>/nodehost/<hostname>, <Dir>/wal/<hostname>) and records the name, so a
// container whose host name changes on every start cannot restart its node.
func checkHostname(cfg Config) error {
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	for _, sub := range []string{"nodehost", "wal"} {
		dir := filepath.Join(cfg.Dir, sub)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // none yet: a first start
		}
		var others []string
		mine := false
		for _, e := range entries {
			switch {
			case !e.IsDir():
			case e.Name() == host:
				mine = true
			default:
				others = append(others, e.Name())
			}
		}
		if !mine && len(others) > 0 {
			return fmt.Errorf("%w: %s holds Raft data of host %s but this host is %q; dragonboat names its directories after the host and records the name, so set the host name back (in a container, give it a fixed one)", ErrHostnameChanged, dir, strings.Join(others, ", "), host)
		}
	}
	return nil
}

// openError explains the NodeHost errors that a misconfiguration causes. dragonboat's
// sentinels for them are in an internal package, so they are recognised by their text (the
// version is pinned; TestOpenErrors checks the two that tests can cause).
func openError(cfg Config, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "hostname changed"):
		return fmt.Errorf("%w: %v", ErrHostnameChanged, err)
	case strings.Contains(msg, "not the owner of the data directory"):
		return fmt.Errorf("raftlog: %s was written by a node with another raft address than %s, and the raft address may not change: %w", cfg.Dir, cfg.RaftAddress, err)
	case strings.Contains(msg, "failed to lock data directory"):
		return fmt.Errorf("raftlog: %s is in use by another NodeHost: %w", cfg.Dir, err)
	}
	return fmt.Errorf("raftlog: opening %s: %w", cfg.Dir, err)
}

// State returns the state after the last command applied on this node.
func (l *Log) State() *meta.State { return l.published.Load() }

// Watch returns State() and a channel closed once a newer state is applied on this node.
func (l *Log) Watch() (*meta.State, <-chan struct{}) { return l.published.Watch() }

// ReplicaID is this node's id in the shard.
func (l *Log) ReplicaID() uint64 { return l.cfg.ReplicaID }

// Close stops the replica and the NodeHost: this node leaves the cluster's traffic (a leader
// that closes is replaced by an election among the others). Calls in flight return
// meta.ErrClosed; State and Watch keep answering with the last state.
func (l *Log) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed.Swap(true) {
		return nil
	}
	// The NodeHost panics when a module fails to close; that is a bug or a broken disk, and
	// a broker stopping anyway is better served by an error than by a crash.
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("raftlog: closing the NodeHost: %v", r)
			}
		}()
		l.nh.Close()
	}()
	l.leader.close()
	releaseDir(l.cfg.Dir)
	return err
}

// Propose commits cmd through Raft and returns what meta.Apply said when it applied on this
// node: its Result, or its rejection (a meta error, unchanged).
//
// It retries with backoff until ctx ends (or ProposeTimeout, when ctx has no deadline): when
// dragonboat answers at once that it cannot take the proposal now (no leader after an
// election began, ErrShardNotReady; too busy, ErrSystemBusy), and when an attempt times out.
// A timed-out attempt may still commit; every attempt carries the same proposal id, so:
//
//   - if an earlier attempt applies on this node before Propose returns, Propose returns what
//     Apply said for it (the first attempt to apply), even when the retry that made Propose
//     return was rejected as stale for being its repeat;
//   - if ctx ends first, Propose returns ctx's error joined with ErrOutcomeUnknown: the
//     command may apply later. Proposing it again is safe (meta's commands are
//     compare-and-set: a repeat is rejected with meta.ErrStaleCommand);
//   - in the rare case that this node installed a snapshot from the leader meanwhile (it had
//     fallen behind), an attempt may have applied inside the snapshot unseen: a stale
//     rejection then comes joined with ErrOutcomeUnknown.
//
// A command that cannot be decoded again is refused before it is proposed
// (meta.ErrInvalidCommand): no replica could apply it.
func (l *Log) Propose(ctx context.Context, cmd meta.Command) (meta.Result, error) {
	if l.closed.Load() {
		return meta.Result{}, meta.ErrClosed
	}
	body := meta.EncodeCommand(cmd)
	if _, err := meta.DecodeCommand(body); err != nil {
		return meta.Result{}, err
	}
	ctx, cancel := l.bounded(ctx)
	defer cancel()
	id := l.proposals.add()
	defer l.proposals.remove(id)
	entry := encodeEntry(id, body)
	uncertain, err := l.retry(ctx,
		func(actx context.Context) error { return l.proposeEntry(actx, entry) },
		func() bool {
			// Before another attempt: an earlier one that timed out may have applied since.
			p, _ := l.proposals.get(id)
			return p.applied > 0
		})
	if p, _ := l.proposals.get(id); p.applied > 0 {
		// Whatever ended the loop (success, or the context ending just as an attempt
		// applied), an attempt applied here: its outcome is the answer.
		return l.outcome(p, uncertain)
	}
	if err == nil {
		return meta.Result{}, errNoOutcome
	}
	if uncertain {
		return meta.Result{}, fmt.Errorf("%w: proposing %T: %w", ErrOutcomeUnknown, cmd, err)
	}
	return meta.Result{}, fmt.Errorf("raftlog: proposing %T: %w", cmd, err)
}

// errLeaderChanged ends an attempt when the leader changes while it is in flight.
var errLeaderChanged = errors.New("raftlog: the leader changed during the attempt")

// proposeOnce makes one attempt to commit entry, like nh.SyncPropose, but gives up as soon as
// the leader changes: a follower forwards its proposal to the leader it knows, and when that
// leader dies the proposal is lost with it while dragonboat only reports the loss at the
// attempt's timeout. Giving up is safe (retry and repeat are told apart by the proposal id),
// and a follower's proposal during a failover then waits for the election, not for the
// timeout. The abandoned request is left to dragonboat, which times it out.
func (l *Log) proposeOnce(ctx context.Context, entry []byte) error {
	_, news := l.leader.watch() // before proposing: a change during the attempt closes it
	deadline, _ := ctx.Deadline()
	rs, err := l.nh.Propose(l.session, entry, time.Until(deadline))
	if err != nil {
		return err
	}
	select {
	case r := <-rs.AppliedC():
		rs.Release()
		switch {
		case r.Completed():
			return nil
		case r.Dropped():
			return dragonboat.ErrShardNotReady
		case r.Timeout():
			return dragonboat.ErrTimeout
		case r.Terminated():
			return dragonboat.ErrShardClosed
		case r.Aborted():
			return dragonboat.ErrAborted
		case r.Rejected():
			return dragonboat.ErrRejected
		}
		return fmt.Errorf("raftlog: unknown request result %+v", r)
	case <-news:
		return errLeaderChanged
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return dragonboat.ErrCanceled
		}
		return dragonboat.ErrTimeout
	}
}

// outcome is Propose's answer once an attempt applied on this node: what Apply said for the
// first attempt to apply. A stale rejection is only trusted when no attempt can have applied
// unseen: when one timed out (uncertain) and a snapshot was installed meanwhile (gap), the
// stale command may have been this proposal's own repeat.
func (l *Log) outcome(p proposal, uncertain bool) (meta.Result, error) {
	if uncertain && p.gap && errors.Is(p.first.err, meta.ErrStaleCommand) {
		return meta.Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, p.first.err)
	}
	return p.first.res, p.first.err
}

// bounded gives ctx the ProposeTimeout deadline when it has none: dragonboat needs one, and a
// caller without one must not wait forever for a quorum that is gone.
func (l *Log) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, l.cfg.ProposeTimeout)
}

// minAttempt is the shortest attempt worth starting: dragonboat measures timeouts in ticks
// and refuses one shorter than a tick.
const minAttempt = 2 * rttMillisecond * time.Millisecond

// retry runs attempt until it returns nil or an error that retrying cannot cure, or ctx ends.
// Each attempt gets at most attemptTimeout. dragonboat's answers are sorted three ways:
//
//   - not taken (ErrShardNotReady: no leader known, as right after a leader change;
//     ErrSystemBusy; ErrShardNotInitialized): nothing was proposed; retried after a backoff;
//   - outcome unknown (ErrTimeout, ErrCanceled, ErrAborted, ErrShardClosed, and
//     errLeaderChanged from proposeOnce): the request may still commit; retried at once,
//     and uncertain is reported;
//   - anything else ends the loop (ErrClosed: the NodeHost is closed, reported as
//     meta.ErrClosed).
//
// settled, when given, is asked before each retry whether the answer is known already.
func (l *Log) retry(ctx context.Context, attempt func(context.Context) error, settled func() bool) (uncertain bool, err error) {
	backoff := minBackoff
	var last error
	for {
		if l.closed.Load() {
			return uncertain, meta.ErrClosed
		}
		deadline, _ := ctx.Deadline()
		remaining := time.Until(deadline)
		if remaining < minAttempt {
			<-ctx.Done()
			return uncertain, ended(ctx, last)
		}
		actx, cancel := context.WithTimeout(ctx, min(attemptTimeout, remaining))
		err := attempt(actx)
		cancel()
		wait := time.Duration(0)
		switch {
		case err == nil:
			return uncertain, nil
		case errors.Is(err, dragonboat.ErrShardNotReady), errors.Is(err, dragonboat.ErrSystemBusy),
			errors.Is(err, dragonboat.ErrShardNotInitialized):
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		case errors.Is(err, dragonboat.ErrTimeout), errors.Is(err, dragonboat.ErrCanceled),
			errors.Is(err, dragonboat.ErrAborted), errors.Is(err, dragonboat.ErrShardClosed),
			errors.Is(err, errLeaderChanged):
			uncertain = true
			backoff = minBackoff
		case errors.Is(err, dragonboat.ErrClosed), errors.Is(err, dragonboat.ErrShardNotFound):
			return uncertain, fmt.Errorf("%w: %v", meta.ErrClosed, err)
		default:
			return uncertain, err
		}
		last = err
		if l.closed.Load() {
			return uncertain, meta.ErrClosed
		}
		if settled != nil && settled() {
			return uncertain, nil
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			return uncertain, ended(ctx, last)
		}
	}
}

// ended is the error of a call whose context ended, naming dragonboat's last answer, which
// says why (ErrShardNotReady for a cluster without a leader, ErrTimeout for one without a
// quorum behind its leader).
func ended(ctx context.Context, last error) error {
	if last == nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
}
