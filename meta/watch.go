package meta

import "sync/atomic"

// Published holds the State a Log publishes and wakes those who watch it, so that the broker
// follows the metadata without polling. Its zero value holds no state; a Log stores one before
// anyone reads it. It is safe for concurrent use: one writer stores, any number read.
type Published struct {
	cur atomic.Pointer[publication]
}

// publication pairs a state with the channel closed when the next one is stored: a watcher
// that got this state learns of any later one through its channel, so no change falls between
// a read and a wait.
type publication struct {
	state   *State
	changed chan struct{}
}

// Load returns the last stored state.
func (p *Published) Load() *State {
	if c := p.cur.Load(); c != nil {
		return c.state
	}
	return nil
}

// Watch returns the last stored state and a channel closed once a newer one is stored. A
// watcher loops: read the state, act on it, wait for the channel, call Watch again. Several
// stores between two calls wake it once; it sees the newest state.
func (p *Published) Watch() (*State, <-chan struct{}) {
	for {
		if c := p.cur.Load(); c != nil {
			return c.state, c.changed
		}
		// Nothing stored yet: install an empty publication so the watcher has a channel to
		// wait on. Only the first caller's install wins; the others read it.
		p.cur.CompareAndSwap(nil, &publication{changed: make(chan struct{})})
	}
}

// Store publishes s, which must not be changed afterwards, and wakes the watchers of the
// previous state. Stores must not run concurrently (a Log stores from one place: under its
// lock, or from Raft's apply loop).
func (p *Published) Store(s *State) {
	old := p.cur.Swap(&publication{state: s, changed: make(chan struct{})})
	if old != nil {
		close(old.changed)
	}
}
