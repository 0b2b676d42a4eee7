package raftlog

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/ringtail/ringtail/meta"
)

// An entry of the Raft log is one command in an envelope:
//
//	version (1 byte, 1) | proposal id (16 bytes) | meta.EncodeCommand(cmd)
//
// The proposal id is the proposing Log's random nonce (8 bytes) and a sequence number
// (8 bytes, big-endian); every attempt of one Propose carries the same id. Apply never sees
// it: it only lets the proposing node recognise its own earlier attempt (see proposals). The
// entries stay in the Raft log until compacted and are replayed on restart, so this layout is
// permanent; a change gets a new version byte.
const (
	entryVersion    = 1
	proposalIDBytes = 16
	entryHeader     = 1 + proposalIDBytes
)

type proposalID [proposalIDBytes]byte

func encodeEntry(id proposalID, cmd []byte) []byte {
	b := make([]byte, 0, entryHeader+len(cmd))
	b = append(b, entryVersion)
	b = append(b, id[:]...)
	return append(b, cmd...)
}

func decodeEntry(b []byte) (proposalID, meta.Command, error) {
	var id proposalID
	if len(b) < entryHeader {
		return id, nil, fmt.Errorf("entry of %d bytes is shorter than its header", len(b))
	}
	if b[0] != entryVersion {
		return id, nil, fmt.Errorf("entry version %d (this build reads %d)", b[0], entryVersion)
	}
	copy(id[:], b[1:entryHeader])
	cmd, err := meta.DecodeCommand(b[entryHeader:])
	return id, cmd, err
}

// The statemachine.Result of an update: whether Apply took the command. What Apply returned
// (the meta.Result, or the rejection with its sentinels) reaches the proposer through
// proposals instead, as Go values: the proposer always runs in the same process as the
// replica whose Update answers it (dragonboat returns the proposing node's own Update
// result), so nothing needs encoding, and errors.Is works against every meta sentinel,
// including ones added later.
const (
	resultApplied  = 1
	resultRejected = 2
)

// outcome is what Apply returned for one entry.
type outcome struct {
	res meta.Result
	err error
}

// proposals tracks this Log's proposals in flight, so that Propose returns what Apply said for
// the first of its attempts to apply, even when that attempt timed out and a later one was
// rejected as stale (as a repeat of the first). Only proposals whose Propose is still running
// are tracked, so it holds at most one entry per waiting caller.
type proposals struct {
	nonce [8]byte
	seq   atomic.Uint64

	mu sync.Mutex // guards m; a leaf: taken by Update (under dragonboat's lock) and Propose
	m  map[proposalID]*proposal
}

type proposal struct {
	applied int     // attempts applied on this replica so far
	first   outcome // of the first one applied
	// gap: this replica installed a snapshot while the proposal was pending, so an attempt
	// may have applied inside the snapshot without this replica seeing it.
	gap bool
}

func newProposals() *proposals {
	p := &proposals{m: make(map[proposalID]*proposal)}
	if _, err := rand.Read(p.nonce[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return p
}

// add starts tracking a new proposal and returns its id.
func (p *proposals) add() proposalID {
	var id proposalID
	copy(id[:8], p.nonce[:])
	binary.BigEndian.PutUint64(id[8:], p.seq.Add(1))
	p.mu.Lock()
	p.m[id] = &proposal{}
	p.mu.Unlock()
	return id
}

func (p *proposals) remove(id proposalID) {
	p.mu.Lock()
	delete(p.m, id)
	p.mu.Unlock()
}

// get returns a copy of the proposal's record.
func (p *proposals) get(id proposalID) (proposal, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, ok := p.m[id]; ok {
		return *r, true
	}
	return proposal{}, false
}

// applied records the outcome of an entry carrying id, if id is tracked here.
func (p *proposals) applied(id proposalID, o outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.m[id]
	if !ok {
		return
	}
	if r.applied == 0 {
		r.first = o
	}
	r.applied++
}

// snapshotInstalled marks every pending proposal: what the snapshot covered was not seen.
func (p *proposals) snapshotInstalled() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.m {
		r.gap = true
	}
}

// appliedIndex is the index of the last entry Update applied (or saw rejected), which Open
// waits on to replay the node's own log.
type appliedIndex struct {
	mu      sync.Mutex // a leaf, like proposals.mu
	index   uint64
	target  uint64
	reached chan struct{} // closed once index >= target; nil while nobody waits
}

func (a *appliedIndex) advance(index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.index = max(a.index, index)
	if a.reached != nil && a.index >= a.target {
		close(a.reached)
		a.reached = nil
	}
}

// wait returns a channel closed once an entry at target or later has been applied. One
// waiter at a time (Open).
func (a *appliedIndex) wait(target uint64) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := make(chan struct{})
	if a.index >= target {
		close(c)
		return c
	}
	a.target, a.reached = target, c
	return c
}

// stateQuery is the Lookup query for the replica's current state.
type stateQuery struct{}

// stateMachine is the replica's metadata: a meta.State changed by Update through meta.Apply,
// published after every command that applied. dragonboat serialises Update,
// RecoverFromSnapshot and Close under its write lock, and runs Lookup and SaveSnapshot under
// its read lock, so state needs no lock of its own. The published states are never modified:
// Update applies to a clone and publishes the clone.
type stateMachine struct {
	state     *meta.State // the latest; also the one published
	published *meta.Published
	proposals *proposals
	applied   *appliedIndex
}

var _ sm.IStateMachine = (*stateMachine)(nil)

// newStateMachine starts from the empty state, as dragonboat requires: it restores the
// latest snapshot and replays the log after it.
func newStateMachine(published *meta.Published, proposals *proposals, applied *appliedIndex) *stateMachine {
	return &stateMachine{state: meta.NewState(), published: published, proposals: proposals, applied: applied}
}

// Update applies one entry. An entry that does not decode is an error, which dragonboat treats
// as unrecoverable (it panics): it was proposed by a newer version, and skipping it would
// leave this replica's state behind the others' for good.
func (s *stateMachine) Update(e sm.Entry) (sm.Result, error) {
	id, cmd, err := decodeEntry(e.Cmd)
	if err != nil {
		return sm.Result{}, fmt.Errorf("raftlog: entry %d: %w", e.Index, err)
	}
	next := s.state.Clone()
	res, err := meta.Apply(next, cmd)
	s.proposals.applied(id, outcome{res: res, err: err})
	if err == nil {
		s.state = next
		s.published.Store(next)
	}
	s.applied.advance(e.Index)
	if err != nil {
		return sm.Result{Value: resultRejected}, nil
	}
	return sm.Result{Value: resultApplied}, nil
}

// Lookup answers stateQuery with the current state.
func (s *stateMachine) Lookup(q any) (any, error) {
	if _, ok := q.(stateQuery); !ok {
		return nil, fmt.Errorf("raftlog: unknown query %T", q)
	}
	return s.state, nil
}

// SaveSnapshot writes the state's own encoding (meta.State.Snapshot: versioned and
// checksummed). The state is small, so the whole of it is written under dragonboat's read
// lock rather than prepared aside.
func (s *stateMachine) SaveSnapshot(w io.Writer, _ sm.ISnapshotFileCollection, done <-chan struct{}) error {
	select {
	case <-done:
		return sm.ErrSnapshotStopped
	default:
	}
	_, err := w.Write(s.state.Snapshot())
	return err
}

// RecoverFromSnapshot replaces the state with the snapshot's (on restart, or when the leader
// sends one because this replica fell behind the compacted log) and publishes it.
func (s *stateMachine) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, done <-chan struct{}) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return sm.ErrSnapshotStopped
	default:
	}
	st := meta.NewState()
	if err := st.Restore(b); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	s.state = st
	s.published.Store(st)
	s.proposals.snapshotInstalled()
	return nil
}

func (s *stateMachine) Close() error { return nil }

// errNoOutcome: dragonboat said an attempt applied, yet this replica recorded no outcome for
// it. It cannot happen while Update records before dragonboat answers; it is an error rather
// than a zero Result so that a broken assumption is seen.
var errNoOutcome = errors.New("raftlog: a proposal applied without an outcome recorded")
