package meta

import "context"

// Log orders commands, makes them durable and applies them. LocalLog is the single-node
// implementation; the Raft adapter is the cluster's.
type Log interface {
	// Propose applies cmd once it is durable (committed, under Raft) and returns its Result, or
	// Apply's rejection (an error wrapping one of the package's sentinels), with nothing
	// recorded. Any other error leaves it unknown whether cmd will be applied: a Raft proposal
	// that timed out may still commit. The compare-and-set fields of commands make proposing
	// again safe: a command applied already is rejected as stale.
	Propose(ctx context.Context, cmd Command) (Result, error)
	// State returns the state after the last applied command. It is never modified after it is
	// returned (a Log applies commands to a clone and then publishes it), so callers read it
	// without locks; they must not Apply to it.
	State() *State
	// Watch returns State() and a channel closed once a newer state is published, so the
	// broker follows the metadata without polling: read, act, wait for the channel, repeat.
	// The state is the one the channel belongs to, so no change is missed between the two.
	Watch() (state *State, changed <-chan struct{})
	// Close releases the log's files (and, under Raft, leaves the cluster's traffic).
	Close() error
}
