package controller

import (
	"errors"
	"fmt"
	"time"

	"github.com/ringtail/ringtail/meta"
)

// Defaults of Config.
const (
	DefaultSessionTimeout          = 9 * time.Second
	DefaultPreferredLeaderInterval = 30 * time.Second
	DefaultDisconnectGrace         = time.Second
)

// ErrStaleBrokerEpoch: a heartbeat or controlled-shutdown request names a broker epoch older
// than the broker's registration (an earlier process of the broker). It is ignored; the
// process that sent it registers again.
var ErrStaleBrokerEpoch = errors.New("controller: stale broker epoch") // STALE_BROKER_EPOCH

// ErrNotHeartbeatConn: a closed connection is not the one a broker's last heartbeat came on
// (it heartbeated on another since, or never on this one, or in process). It says nothing of
// the broker and is ignored.
var ErrNotHeartbeatConn = errors.New("controller: not the connection of the broker's last heartbeat")

// ErrHeardSince: a broker whose listener refused a connection heartbeated after the refusal.
var ErrHeardSince = errors.New("controller: the broker heartbeated since")

// Config configures a Controller; zero fields take the defaults.
type Config struct {
	// SessionTimeout: an unfenced broker not heard from for longer is fenced (default 9 s).
	SessionTimeout time.Duration
	// PreferredLeaderInterval is the least time between two passes that move leaderships
	// back to preferred replicas, the first one no earlier than one interval after becoming
	// controller (default 30 s; negative: never). With the ISR rule (the preferred replica
	// must be back in the ISR, which replication grants only once it has caught up), it keeps
	// a flapping broker from taking leaderships back and forth.
	PreferredLeaderInterval time.Duration
	// TakeoverGrace is how long a new controller waits to hear from a broker before fencing
	// it (default: SessionTimeout). Live brokers heartbeat every few seconds, so a grace of a
	// few heartbeat intervals is enough for them all to find the new controller, and a broker
	// that died with the old controller (the same process, often) loses its leaderships that
	// much sooner than a whole session after the election.
	TakeoverGrace time.Duration
	// DisconnectGrace is how long a broker stays unfenced after the connection its last
	// heartbeat came on closed, unless it heartbeats again (default 1 s; negative: a closed
	// connection shortens nothing, the session alone counts; at most SessionTimeout). The
	// kernel closes a process's sockets when it dies, so this is how a kill -9 is noticed
	// within about a second instead of a session; a live broker whose connection broke
	// (a timed-out request, a blip) dials again and heartbeats at once, well within it.
	DisconnectGrace time.Duration
}

// Controller decides, on the Raft leader, which commands keep the cluster's leaderships on
// live brokers. It is a pure state machine: every call takes the committed state and the
// time and returns commands to propose; it keeps only soft state (heartbeats, the last
// preferred-leader pass), which a new controller starts without.
//
// Not safe for concurrent use: its caller serialises the calls. The caller proposes the
// commands a call returns in order. Each was built on the outcome of the ones before it, so
// once one is rejected (meta.ErrStaleCommand: the state moved meanwhile) or its outcome is
// unknown (a timed-out proposal), the ones after it may be rejected as stale too; they are
// dropped, and the next Tick, on the state as it is then, builds again whatever is still
// needed. Calling Tick again before its commands were applied returns them again; the
// repeats are rejected as stale.
type Controller struct {
	cfg Config
	// since is when this node became controller. It had no heartbeats before: every
	// registered broker's session counts from here at the earliest (one session of grace).
	since         time.Time
	beats         map[int32]heartbeat // the last heartbeat of each broker
	refused       map[int32]refusal   // brokers whose listener refused a connection since
	lastPreferred time.Time           // the last preferred-leader pass (since, at first)
}

// refusal is a connection to a broker's listener that was refused: at which registration of
// the broker, and when.
type refusal struct {
	epoch int64
	at    time.Time
}

// heartbeat is the last one heard from a broker: from which registration, when, on which
// connection, and when that connection closed.
type heartbeat struct {
	epoch int64
	at    time.Time
	// conn is the connection it came on, as the caller names connections (never reused);
	// 0: none (the controller's own node, in process).
	conn uint64
	// closed is when conn was reported closed; zero while it is open. A heartbeat on any
	// connection replaces the record, so it counts only until the broker is heard from again.
	closed time.Time
}

// New returns the controller of a node that became the Raft leader at now.
func New(cfg Config, now time.Time) *Controller {
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.PreferredLeaderInterval == 0 {
		cfg.PreferredLeaderInterval = DefaultPreferredLeaderInterval
	}
	if cfg.TakeoverGrace <= 0 || cfg.TakeoverGrace > cfg.SessionTimeout {
		cfg.TakeoverGrace = cfg.SessionTimeout
	}
	if cfg.DisconnectGrace == 0 {
		cfg.DisconnectGrace = DefaultDisconnectGrace
	}
	cfg.DisconnectGrace = min(cfg.DisconnectGrace, cfg.SessionTimeout)
	return &Controller{cfg: cfg, since: now, beats: map[int32]heartbeat{}, refused: map[int32]refusal{}, lastPreferred: now}
}

// Heartbeat records that broker id, at broker epoch epoch, was alive at now; it came on
// connection conn (see Disconnected; 0: in process). A fenced broker heard from is unfenced
// by the next Tick (unless it is shutting down); heartbeats are soft state, never commands. A
// heartbeat from an older epoch is ignored (ErrStaleBrokerEpoch), as is one from a broker the
// state does not hold (meta.ErrUnknownBroker: it registers). One from a newer epoch than the
// state's is kept: the state has not applied the registration yet, and the heartbeat counts
// once it has. A heartbeat ends the short grace of a closed connection: the session counts
// from it again.
func (c *Controller) Heartbeat(st *meta.State, id int32, epoch int64, conn uint64, now time.Time) error {
	b, ok := st.Broker(id)
	if !ok {
		return fmt.Errorf("%w: broker %d", meta.ErrUnknownBroker, id)
	}
	if epoch < b.Epoch {
		return fmt.Errorf("%w: broker %d is at broker epoch %d, the heartbeat names %d", ErrStaleBrokerEpoch, id, b.Epoch, epoch)
	}
	if last, ok := c.beats[id]; ok && last.epoch > epoch {
		return fmt.Errorf("%w: broker %d heartbeated at broker epoch %d already, this one names %d", ErrStaleBrokerEpoch, id, last.epoch, epoch)
	}
	c.beats[id] = heartbeat{epoch: epoch, at: now, conn: conn}
	delete(c.refused, id)
	return nil
}

// ListenerRefused records that a connection to the Kafka listener of broker id, registered
// at broker epoch epoch, was refused at the time at: nothing listened there, so the process
// of that registration is most likely gone (a broker listens for as long as it runs, bar the
// moments between its registration and the start of its listener, and a restarted one
// registers at a new epoch). A new controller, which has heard from nobody, dials the
// brokers it has not heard from: a dead one (its predecessor, often) is then fenced
// DisconnectGrace after the refusal instead of TakeoverGrace after the start. Like a closed
// connection it is a hint, never proof: the broker is fenced DisconnectGrace after at, or
// after this controller started if at is earlier (a live broker gets that long to find it),
// unless it heartbeats at that epoch after at.
//
// It is ignored for an older epoch than the broker's (ErrStaleBrokerEpoch), a broker the state
// does not hold, or one heard from after at (ErrHeardSince).
func (c *Controller) ListenerRefused(st *meta.State, id int32, epoch int64, at time.Time) error {
	b, ok := st.Broker(id)
	if !ok {
		return fmt.Errorf("%w: broker %d", meta.ErrUnknownBroker, id)
	}
	if epoch < b.Epoch {
		return fmt.Errorf("%w: broker %d is at broker epoch %d, the refused connection was to %d", ErrStaleBrokerEpoch, id, b.Epoch, epoch)
	}
	if hb, ok := c.beats[id]; ok && hb.epoch >= epoch && hb.at.After(at) {
		return fmt.Errorf("%w: broker %d, after the refused connection", ErrHeardSince, id)
	}
	if r, ok := c.refused[id]; c.cfg.DisconnectGrace > 0 && (!ok || r.epoch < epoch || (r.epoch == epoch && at.Before(r.at))) {
		c.refused[id] = refusal{epoch: epoch, at: at}
	}
	return nil
}

// Disconnected records that connection conn of broker id, at broker epoch epoch, closed at
// now. If the broker's last heartbeat came on it, the broker is fenced DisconnectGrace after
// now (or when its session runs out, if sooner) unless it heartbeats again meanwhile: a dead
// process's sockets close at once, while a live broker that lost its connection dials again
// and heartbeats. A closed connection is a hint, never proof.
//
// It is ignored, with an error saying why, for a connection the last heartbeat did not come
// on (ErrNotHeartbeatConn: the broker heartbeated on another since, which a late report of an
// old connection must not undo, or in process, conn 0), an older epoch than the broker's
// (ErrStaleBrokerEpoch: an earlier process), a broker the state does not hold, and a broker
// this controller has not heard from (ErrNotHeartbeatConn: a new controller's TakeoverGrace
// covers it). Connection ids are the caller's, never reused.
func (c *Controller) Disconnected(st *meta.State, id int32, epoch int64, conn uint64, now time.Time) error {
	b, ok := st.Broker(id)
	if !ok {
		return fmt.Errorf("%w: broker %d", meta.ErrUnknownBroker, id)
	}
	if epoch < b.Epoch {
		return fmt.Errorf("%w: broker %d is at broker epoch %d, the closed connection's heartbeat named %d", ErrStaleBrokerEpoch, id, b.Epoch, epoch)
	}
	hb, ok := c.beats[id]
	if !ok || conn == 0 || hb.conn != conn || hb.epoch != epoch {
		return fmt.Errorf("%w: broker %d, connection %d", ErrNotHeartbeatConn, id, conn)
	}
	if c.cfg.DisconnectGrace > 0 && hb.closed.IsZero() {
		hb.closed = now
		c.beats[id] = hb
	}
	return nil
}

// Tick returns the commands that bring the state in line with the brokers' liveness at now,
// in the order to propose them:
//
//  1. UnfenceBroker for each fenced broker (not shutting down) heard from at its current
//     epoch within the session;
//  2. ChangePartitions (in parts of at most meta.MaxPartitionChanges) that take every broker
//     that is fenced, shutting down, unregistered or whose session ran out out of the ISRs,
//     unless that would empty one: then the ISR stays as it is, every member a candidate for
//     a clean election when it returns. A leader that is no longer in the ISR or may not lead
//     gives way to the first replica, in replica order, that is in the ISR and may lead, or
//     to none (meta.NoLeader: offline), unless the topic sets unclean.leader.election.enable:
//     then the first live replica leads alone in its ISR. Every change bumps the
//     partition epoch, a new leader the leader epoch. Once per PreferredLeaderInterval the
//     same pass also moves leaderships back to their preferred replica (the first) where it
//     is in the ISR and may lead.
//  3. FenceBroker for each broker whose session ran out (its last heartbeat at its current
//     epoch, or the moment this node became controller if later, older than the session),
//     and for each broker in controlled shutdown that leads nothing after step 2 (its
//     shutdown is done; it registers again when it restarts).
//
// Each command is applied to a copy of st as it is built, so each is built on the state the
// ones before it leave, and is checked: a command that copy refuses is left out and reported
// in the error (a bug, or a state the controller does not know how to mend; the commands
// returned are still right to propose). On a single node's state (no broker registered) it
// returns nothing.
func (c *Controller) Tick(st *meta.State, now time.Time) ([]meta.Command, error) {
	preferred := c.cfg.PreferredLeaderInterval > 0 && !now.Before(c.lastPreferred.Add(c.cfg.PreferredLeaderInterval))
	if preferred {
		c.lastPreferred = now
	}
	return c.plan(newPlan(st), now, preferred)
}

// ControlledShutdown starts or continues the controlled shutdown of broker id (at broker epoch
// epoch): BeginControlledShutdown unless it was begun, then what Tick would propose after it
// (its leaderships moved, it out of the ISRs, and it fenced once it leads nothing). The
// request counts as a heartbeat on connection conn. The broker is done when it leads nothing;
// it then stops and registers again when it restarts.
func (c *Controller) ControlledShutdown(st *meta.State, id int32, epoch int64, conn uint64, now time.Time) ([]meta.Command, error) {
	b, ok := st.Broker(id)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: broker %d", meta.ErrUnknownBroker, id)
	case epoch < b.Epoch:
		return nil, fmt.Errorf("%w: broker %d is at broker epoch %d, the request names %d", ErrStaleBrokerEpoch, id, b.Epoch, epoch)
	case epoch > b.Epoch:
		return nil, fmt.Errorf("%w: broker %d at broker epoch %d is not applied here yet", meta.ErrUnknownBroker, id, epoch)
	}
	c.beats[id] = heartbeat{epoch: epoch, at: now, conn: conn}
	p := newPlan(st)
	if !b.InControlledShutdown {
		p.add(meta.BeginControlledShutdown{ID: id, Epoch: epoch})
	}
	return c.plan(p, now, false)
}

// plan adds Tick's three steps to p and returns its commands.
func (c *Controller) plan(p *plan, now time.Time, preferred bool) ([]meta.Command, error) {
	brokers := p.st.Brokers()
	if len(brokers) == 0 {
		return nil, nil
	}
	c.forget(p.st)
	var expired []meta.Broker
	for _, b := range brokers {
		switch {
		case b.Fenced && !b.InControlledShutdown && c.heardFrom(b, now):
			p.add(meta.UnfenceBroker{ID: b.ID, Epoch: b.Epoch})
		case !b.Fenced && c.expired(b, now):
			expired = append(expired, b)
		}
	}
	p.changePartitions(expired, preferred)
	for _, b := range expired {
		p.add(meta.FenceBroker{ID: b.ID, Epoch: b.Epoch})
	}
	for _, b := range p.st.Brokers() {
		if b.InControlledShutdown && !b.Fenced && len(p.st.PartitionsLedBy(b.ID)) == 0 {
			p.add(meta.FenceBroker{ID: b.ID, Epoch: b.Epoch})
		}
	}
	return p.cmds, errors.Join(p.errs...)
}

// NextDeadline is the earliest time at which an unfenced broker's session runs out as things
// stand (a session after its last heartbeat, the grace after that heartbeat's connection
// closed or its listener refused a connection, or a new controller's takeover grace): a Tick
// after it fences the broker unless it is heard from meanwhile. The caller ticks then rather
// than waiting for its next regular tick. ok is false when no broker is unfenced.
func (c *Controller) NextDeadline(st *meta.State) (deadline time.Time, ok bool) {
	for _, b := range st.Brokers() {
		if b.Fenced {
			continue
		}
		if end := c.sessionEnd(b); !ok || end.Before(deadline) {
			deadline, ok = end, true
		}
	}
	return deadline, ok
}

// heardFrom: b heartbeated at its current epoch, and its session has not run out since.
func (c *Controller) heardFrom(b meta.Broker, now time.Time) bool {
	hb, ok := c.beats[b.ID]
	return ok && hb.epoch == b.Epoch && !now.After(c.refusedBy(b, c.deadline(hb)))
}

// expired: b's session ran out (sessionEnd).
func (c *Controller) expired(b meta.Broker, now time.Time) bool { return now.After(c.sessionEnd(b)) }

// sessionEnd is when b's session runs out: a session after its last heartbeat at its current
// epoch, or DisconnectGrace after the connection of that heartbeat closed if sooner, or, never
// heard from by this controller, TakeoverGrace after this node became controller (a new
// controller knows no heartbeat from before); and at the latest DisconnectGrace after its
// listener refused a connection at that epoch (or after this node became controller, if
// later), if it was not heard from since.
func (c *Controller) sessionEnd(b meta.Broker) time.Time {
	end := c.since.Add(c.cfg.TakeoverGrace)
	if hb, ok := c.beats[b.ID]; ok && hb.epoch == b.Epoch && hb.at.After(c.since) {
		end = c.deadline(hb)
	}
	return c.refusedBy(b, end)
}

// refusedBy is end, or DisconnectGrace after b's listener refused a connection at its
// current epoch (after this node became controller, if the refusal was earlier) if sooner.
func (c *Controller) refusedBy(b meta.Broker, end time.Time) time.Time {
	r, ok := c.refused[b.ID]
	if !ok || r.epoch != b.Epoch {
		return end
	}
	at := r.at
	if at.Before(c.since) {
		at = c.since
	}
	return minTime(end, at.Add(c.cfg.DisconnectGrace))
}

// deadline is when the session of a broker whose last heartbeat was hb runs out.
func (c *Controller) deadline(hb heartbeat) time.Time {
	end := hb.at.Add(c.cfg.SessionTimeout)
	if !hb.closed.IsZero() {
		end = minTime(end, hb.closed.Add(c.cfg.DisconnectGrace))
	}
	return end
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// forget drops the heartbeats and refusals of brokers that are not registered, or registered
// again since.
func (c *Controller) forget(st *meta.State) {
	for id, hb := range c.beats {
		if b, ok := st.Broker(id); !ok || hb.epoch < b.Epoch {
			delete(c.beats, id)
		}
	}
	for id, r := range c.refused {
		if b, ok := st.Broker(id); !ok || r.epoch < b.Epoch {
			delete(c.refused, id)
		}
	}
}
