package controller_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/controller"
)

// TestRandomCluster drives a controller over a cluster of brokers that heartbeat, fall silent
// (paused), die (their heartbeat connection reported closed, at once, late or never; their
// listener refusing a new controller's dial), lose their connection and dial again, restart with new incarnations and shut down in a
// controlled way, while
// replication grows and shrinks ISRs, controllers fail over, and proposals are lost, repeated
// or overtaken. Every command goes through meta.Apply. After every step it checks the
// invariants (invariants below), that the controller fenced and unfenced only whom it should,
// and at the end that once every broker is back the cluster heals: every broker unfenced and
// every partition led by its preferred replica.
func TestRandomCluster(t *testing.T) {
	seeds, steps := 12, 1500
	if testing.Short() {
		seeds, steps = 3, 500
	}
	seen := map[string]int{}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s := newSim(t, uint64(seed), seen)
			for step := range steps {
				s.step()
				if t.Failed() {
					t.Fatalf("seed %d step %d:\n%s", seed, step, formatState(s.st))
				}
			}
			s.heal()
		})
	}
	// The run must have gone through what it is meant to test.
	t.Logf("applied: %v", seen)
	for _, kind := range []string{"FenceBroker", "UnfenceBroker", "BeginControlledShutdown", "ChangePartitions", "leader moved", "offline", "back online", "preferred", "stale repeat", "lost", "raced",
		"fenced after a disconnect", "disconnect ignored", "fenced after a refusal"} {
		if seen[kind] == 0 {
			t.Errorf("no %s in the whole run", kind)
		}
	}
}

const (
	simBrokers = 5
	session    = 9 * time.Second
	preferred  = 20 * time.Second
	// disconnectGrace is the controller's default DisconnectGrace.
	disconnectGrace = time.Second
)

// process is one broker id's current process, as the simulation runs it.
type process int

const (
	up          process = iota // heartbeats
	paused                     // SIGSTOP: silent, same epoch when it resumes
	down                       // dead; restarts with a new incarnation
	registering                // a new process retrying its registration
	stopping                   // in controlled shutdown: heartbeats until it leads nothing
)

type sim struct {
	t    *testing.T
	rng  *rand.Rand
	st   *meta.State
	prev *meta.State // the state after the previous step, for the epoch checks
	ctrl *controller.Controller
	now  time.Time
	// ctrlSince and beats are what the current controller was told: when it started and
	// the last heartbeat it took from each broker, to check its fencing.
	ctrlSince time.Time
	beats     map[int32]beat
	refusals  map[int32]beat // listener refusals the controller took (epoch, at)
	procs     map[int32]process
	incs      map[int32]uint64 // each process's incarnation
	epochs    map[int32]int64  // each process's broker epoch (0: none yet)
	conns     map[int32]uint64 // each process's heartbeat connection
	// closing are connections closed and not yet reported to the controller (reports can be
	// late: after the broker heartbeated on a new connection, or restarted).
	closing   []closedConn
	nextInc   uint64
	nextConn  uint64
	nextTopic uint64
	seen      map[string]int // what happened, by kind, over the whole run
}

type beat struct {
	epoch  int64
	at     time.Time
	conn   uint64
	closed time.Time // when conn was reported closed; zero: not
}

type closedConn struct {
	id    int32
	epoch int64
	conn  uint64
}

func newSim(t *testing.T, seed uint64, seen map[string]int) *sim {
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, 11)), st: meta.NewState(), now: time.Unix(1_000_000, 0),
		procs: map[int32]process{}, incs: map[int32]uint64{}, epochs: map[int32]int64{}, conns: map[int32]uint64{}, seen: seen}
	s.failover()
	s.mustApply(meta.InitCluster{ClusterID: "c"})
	for id := int32(1); id <= simBrokers; id++ {
		s.start(id)
		s.register(id)
	}
	s.heartbeats(1)
	s.tick()
	for _, rf := range []int{3, 2, 1, 5, 3} {
		s.createTopic(1+s.rng.IntN(6), rf)
	}
	s.prev = s.st.Clone()
	return s
}

func (s *sim) failover() {
	s.ctrl = controller.New(controller.Config{SessionTimeout: session, PreferredLeaderInterval: preferred}, s.now)
	s.ctrlSince, s.beats, s.refusals = s.now, map[int32]beat{}, map[int32]beat{}
}

func (s *sim) mustApply(cmd meta.Command) meta.Result {
	s.t.Helper()
	res, err := meta.Apply(s.st, cmd)
	if err != nil {
		s.t.Fatalf("%#v: %v", cmd, err)
	}
	return res
}

// start starts a new process of broker id, with a new incarnation: it registers next.
func (s *sim) start(id int32) {
	s.nextInc++
	s.procs[id], s.incs[id], s.epochs[id] = registering, s.nextInc, 0
	s.redial(id)
}

// redial gives broker id's process a new heartbeat connection.
func (s *sim) redial(id int32) {
	s.nextConn++
	s.conns[id] = s.nextConn
}

// closeConn closes broker id's heartbeat connection: the controller hears of it now, later,
// or (rarely: a report lost with a controller that failed over) never.
func (s *sim) closeConn(id int32) {
	c := closedConn{id: id, epoch: s.epochs[id], conn: s.conns[id]}
	switch r := s.rng.IntN(10); {
	case r < 6:
		s.disconnected(c)
	case r < 9:
		s.closing = append(s.closing, c)
	}
}

// disconnected reports c closed to the controller.
func (s *sim) disconnected(c closedConn) {
	err := s.ctrl.Disconnected(s.st, c.id, c.epoch, c.conn, s.now)
	hb, ok := s.beats[c.id]
	counts := ok && hb.epoch == c.epoch && hb.conn == c.conn && c.conn != 0
	if b, _ := s.st.Broker(c.id); c.epoch < b.Epoch {
		counts = false
	}
	switch {
	case counts && err != nil:
		s.t.Errorf("disconnect %+v refused: %v", c, err)
	case !counts && err == nil:
		s.t.Errorf("disconnect %+v taken, though broker %d's last heartbeat was %+v", c, c.id, hb)
	case counts:
		if hb.closed.IsZero() {
			hb.closed = s.now
			s.beats[c.id] = hb
		}
	default:
		s.seen["disconnect ignored"]++
	}
}

// register tries to register broker id's new process: refused while its last registration
// is unfenced, as the old process may be alive; the process retries every step.
func (s *sim) register(id int32) {
	var inc [16]byte
	binary.BigEndian.PutUint64(inc[8:], s.incs[id])
	cmd := meta.RegisterBroker{ID: id, Incarnation: inc, Listener: fmt.Sprintf("b%d:9092", id)}
	res, err := meta.Apply(s.st, cmd)
	if err == nil && s.rng.IntN(5) == 0 {
		// Retried after a timeout, both committed: the same epoch.
		again, err := meta.Apply(s.st, cmd)
		if err != nil || again.BrokerEpoch != res.BrokerEpoch {
			s.t.Errorf("repeated registration of broker %d: %+v, %v; first %+v", id, again, err, res)
		}
	}
	switch {
	case errors.Is(err, meta.ErrDuplicateBroker):
		if b, _ := s.st.Broker(id); b.Fenced {
			s.t.Errorf("registration of broker %d refused though it is fenced: %v", id, err)
		}
	case err != nil:
		s.t.Errorf("registration of broker %d: %v", id, err)
	default:
		s.procs[id], s.epochs[id] = up, res.BrokerEpoch
	}
}

func (s *sim) createTopic(partitions, rf int) {
	lists, err := controller.Placement(s.st, partitions, rf, nil)
	if errors.Is(err, meta.ErrInvalidRF) {
		return // not enough live brokers now
	}
	if err != nil {
		s.t.Fatalf("placement: %v", err)
	}
	s.nextTopic++
	var id [16]byte
	binary.BigEndian.PutUint64(id[8:], s.nextTopic)
	s.mustApply(meta.CreateTopic{Name: fmt.Sprintf("t%d", s.nextTopic), ID: id, Partitions: controller.NewPartitions(lists)})
}

// heartbeats sends a heartbeat from each live process with probability p.
func (s *sim) heartbeats(p float64) {
	for id := int32(1); id <= simBrokers; id++ {
		if pr := s.procs[id]; (pr != up && pr != stopping) || s.rng.Float64() >= p {
			continue
		}
		s.heartbeat(id)
	}
}

// heartbeat sends a heartbeat from broker id's process, on its connection.
func (s *sim) heartbeat(id int32) {
	if err := s.ctrl.Heartbeat(s.st, id, s.epochs[id], s.conns[id], s.now); err != nil {
		s.t.Errorf("heartbeat of broker %d at epoch %d: %v", id, s.epochs[id], err)
	}
	s.beats[id] = beat{epoch: s.epochs[id], at: s.now, conn: s.conns[id]}
	delete(s.refusals, id)
}

// refused tells the controller that broker id's listener refused a connection a moment ago:
// only ever for a broker whose process is gone (down, or a new one not yet listening).
func (s *sim) refused(id int32) {
	b, ok := s.st.Broker(id)
	if !ok {
		return
	}
	at := s.now.Add(-time.Duration(s.rng.IntN(1500)) * time.Millisecond)
	err := s.ctrl.ListenerRefused(s.st, id, b.Epoch, at)
	hb, heard := s.beats[id]
	heardSince := heard && hb.epoch >= b.Epoch && hb.at.After(at)
	switch {
	case heardSince && !errors.Is(err, controller.ErrHeardSince):
		s.t.Errorf("refusal of broker %d at %v taken after its heartbeat %+v: %v", id, at, hb, err)
	case !heardSince && err != nil:
		s.t.Errorf("refusal of broker %d refused: %v", id, err)
	case !heardSince:
		if r, ok := s.refusals[id]; !ok || r.epoch < b.Epoch || at.Before(r.at) {
			s.refusals[id] = beat{epoch: b.Epoch, at: at}
		}
	}
}

func (s *sim) step() {
	s.now = s.now.Add(time.Duration(s.rng.IntN(3000)) * time.Millisecond)
	for id := int32(1); id <= simBrokers; id++ {
		switch pr := s.procs[id]; {
		case pr == registering:
			s.register(id)
		case pr == stopping && len(s.st.PartitionsLedBy(id)) == 0:
			s.procs[id] = down // done: it exits
			s.closeConn(id)
		case pr == stopping:
			s.shutdown(id) // its request was lost: it asks again
		}
		if pr := s.procs[id]; (pr == down || pr == registering) && s.rng.IntN(20) == 0 {
			s.refused(id) // a new controller's dial, or one that happens to come now
		}
	}
	if len(s.closing) > 0 && s.rng.IntN(3) == 0 {
		i := s.rng.IntN(len(s.closing))
		s.disconnected(s.closing[i])
		s.closing = slices.Delete(s.closing, i, i+1)
	}
	s.heartbeats(0.9)
	id := int32(1 + s.rng.IntN(simBrokers))
	switch r := s.rng.IntN(100); {
	case r < 4 && s.procs[id] == up:
		s.procs[id] = paused
	case r < 10 && s.procs[id] == paused:
		s.procs[id] = up
	case r < 13 && s.procs[id] != registering:
		if s.procs[id] != down {
			s.closeConn(id) // the kernel closes a dead process's sockets
		}
		s.procs[id] = down
	case r < 20 && s.procs[id] == down:
		s.start(id)
	case r < 22 && s.procs[id] == up:
		s.procs[id] = stopping
		s.shutdown(id)
	case r < 23:
		s.failover()
	case r < 24:
		s.createTopic(1+s.rng.IntN(4), 1+s.rng.IntN(3))
	case r < 40:
		s.replicate()
	case r < 45 && s.procs[id] == up:
		// The connection breaks and the broker dials again; it heartbeats on the new one
		// at once, or only at its next heartbeat (past the grace, it may be fenced).
		s.closeConn(id)
		s.redial(id)
		if s.rng.IntN(2) == 0 {
			s.heartbeat(id)
		}
	}
	s.tick()
	s.checkInvariants()
	s.prev = s.st.Clone()
}

func (s *sim) shutdown(id int32) {
	cmds, err := s.ctrl.ControlledShutdown(s.st, id, s.epochs[id], s.conns[id], s.now)
	s.checkErr(err)
	s.beats[id] = beat{epoch: s.epochs[id], at: s.now, conn: s.conns[id]}
	s.checkDecisions(cmds)
	s.propose(cmds)
}

func (s *sim) checkErr(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Errorf("the controller left out commands: %v", err)
	}
}

// tick runs the controller and proposes what it returns; sometimes replication's own change
// gets in between (so some of the controller's commands are overtaken and stale).
func (s *sim) tick() {
	cmds, err := s.ctrl.Tick(s.st, s.now)
	s.checkErr(err)
	raced := s.rng.IntN(10) == 0
	if raced {
		s.seen["raced"]++
		s.replicate()
	}
	s.checkDecisions(cmds)
	applied, lost := s.proposeRaced(cmds, raced)
	if !raced && !lost {
		// Everything applied: the controller's work is done until something changes.
		again, err := s.ctrl.Tick(s.st, s.now)
		s.checkErr(err)
		if len(again) > 0 {
			s.t.Errorf("a second Tick at once proposes more: %#v", again)
		}
	}
	if s.rng.IntN(10) == 0 {
		// The same proposals again (retried after a timeout, both committed): all stale.
		for _, cmd := range applied {
			if _, err := meta.Apply(s.st, cmd); !errors.Is(err, meta.ErrStaleCommand) {
				s.t.Errorf("%#v applied twice: %v", cmd, err)
			}
			s.seen["stale repeat"]++
		}
	}
}

func (s *sim) propose(cmds []meta.Command) { s.proposeRaced(cmds, false) }

// proposeRaced applies cmds in order, as the controller's caller proposes them; some are lost
// (a proposal that timed out and never committed), which the next Tick makes up for, and the
// ones after a lost one may be stale, as they were built on its outcome. It returns the ones
// applied, and whether any was lost.
func (s *sim) proposeRaced(cmds []meta.Command, raced bool) (applied []meta.Command, lost bool) {
	for _, cmd := range cmds {
		if s.rng.IntN(30) == 0 {
			lost = true
			s.seen["lost"]++
			continue
		}
		_, err := meta.Apply(s.st, cmd)
		switch {
		case err == nil:
			applied = append(applied, cmd)
			s.seen[strings.TrimPrefix(fmt.Sprintf("%T", cmd), "meta.")]++
		case (raced || lost) && errors.Is(err, meta.ErrStaleCommand):
		default:
			s.t.Errorf("%#v refused: %v", cmd, err)
		}
	}
	return applied, lost
}

// replicate is what replication proposes: a caught-up follower joins the ISR, or the leader
// drops a lagging one.
func (s *sim) replicate() {
	topics := s.st.Topics()
	top := topics[s.rng.IntN(len(topics))]
	p := s.rng.IntN(len(top.Assignments))
	a := top.Assignments[p]
	if a.Leader == meta.NoLeader {
		return
	}
	isr := slices.Clone(a.ISR)
	if s.rng.IntN(3) == 0 && len(isr) > 1 {
		i := s.rng.IntN(len(isr))
		if isr[i] == a.Leader {
			return
		}
		isr = slices.Delete(isr, i, i+1)
	} else {
		r := a.Replicas[s.rng.IntN(len(a.Replicas))]
		b, ok := s.st.Broker(r)
		if slices.Contains(isr, r) || !ok || !b.Active() || s.procs[r] != up {
			return
		}
		isr = append(isr, r)
	}
	s.mustApply(meta.ChangePartitions{Changes: []meta.PartitionChange{{Topic: top.Name, TopicID: top.ID, Partition: int32(p),
		ExpectedPartitionEpoch: a.PartitionEpoch, Leader: a.Leader, ISR: isr}}})
}

// sessionOver: what the controller was told says broker b's session ran out: a session after
// its last heartbeat (or the controller's start), or the grace after that heartbeat's
// connection was reported closed.
func (s *sim) sessionOver(b meta.Broker) bool {
	if r, ok := s.refusals[b.ID]; ok && r.epoch == b.Epoch {
		if at := maxTime(r.at, s.ctrlSince); s.now.Sub(at) > disconnectGrace {
			s.seen["fenced after a refusal"]++
			return true
		}
	}
	hb, ok := s.beats[b.ID]
	if !ok || hb.epoch != b.Epoch || !hb.at.After(s.ctrlSince) {
		return s.now.Sub(s.ctrlSince) > session
	}
	if s.now.Sub(hb.at) > session {
		return true
	}
	if !hb.closed.IsZero() && s.now.Sub(hb.closed) > disconnectGrace {
		s.seen["fenced after a disconnect"]++
		return true
	}
	return false
}

// checkDecisions: a broker is fenced only when its session ran out or its controlled
// shutdown is done, unfenced only when it heartbeated within the session. Each command is
// judged on the state the ones before it leave, as the controller built it.
func (s *sim) checkDecisions(cmds []meta.Command) {
	st := s.st.Clone()
	for _, cmd := range cmds {
		switch c := cmd.(type) {
		case meta.FenceBroker:
			b, _ := st.Broker(c.ID)
			if !b.InControlledShutdown && !s.sessionOver(b) {
				s.t.Errorf("broker %d fenced within its session", c.ID)
			}
		case meta.UnfenceBroker:
			hb := s.beats[c.ID]
			r, refused := s.refusals[c.ID]
			if hb.epoch != c.Epoch || s.now.Sub(hb.at) > session || (!hb.closed.IsZero() && s.now.Sub(hb.closed) > disconnectGrace) ||
				(refused && r.epoch == c.Epoch && s.now.Sub(maxTime(r.at, s.ctrlSince)) > disconnectGrace) {
				s.t.Errorf("broker %d unfenced at epoch %d without a heartbeat in its session (last %+v)", c.ID, c.Epoch, hb)
			}
		}
		meta.Apply(st, cmd) // refused only when overtaken by replication: then nothing changes
	}
}

// invariants that hold after every step, whatever was lost, repeated or overtaken.
func (s *sim) checkInvariants() {
	for _, b := range s.st.Brokers() {
		if pb, ok := s.prev.Broker(b.ID); ok && b.Epoch < pb.Epoch {
			s.t.Errorf("broker %d epoch went back from %d to %d", b.ID, pb.Epoch, b.Epoch)
		}
	}
	for _, top := range s.st.Topics() {
		prevTop, hadTop := s.prev.Topic(top.Name)
		for p, a := range top.Assignments {
			name := fmt.Sprintf("%s-%d", top.Name, p)
			if len(a.ISR) == 0 {
				s.t.Errorf("%s: empty ISR", name)
			}
			for i, r := range a.ISR {
				if !slices.Contains(a.Replicas, r) || slices.Contains(a.ISR[:i], r) {
					s.t.Errorf("%s: ISR %v not a set of replicas %v", name, a.ISR, a.Replicas)
				}
			}
			if a.Leader != meta.NoLeader {
				b, ok := s.st.Broker(a.Leader)
				if !slices.Contains(a.ISR, a.Leader) || !ok || b.Fenced {
					s.t.Errorf("%s: leader %d not in ISR %v or fenced (%+v)", name, a.Leader, a.ISR, b)
				}
			}
			if !hadTop || p >= len(prevTop.Assignments) {
				continue
			}
			old := prevTop.Assignments[p]
			switch {
			case a.Leader != old.Leader && a.Leader == meta.NoLeader:
				s.seen["offline"]++
			case a.Leader != old.Leader && old.Leader == meta.NoLeader:
				s.seen["back online"]++
			case a.Leader != old.Leader && a.Leader == a.Replicas[0]:
				s.seen["preferred"]++
			case a.Leader != old.Leader:
				s.seen["leader moved"]++
			}
			switch {
			case a.LeaderEpoch < old.LeaderEpoch || a.PartitionEpoch < old.PartitionEpoch:
				s.t.Errorf("%s: epochs went back: %+v after %+v", name, a, old)
			case a.Leader != old.Leader && a.LeaderEpoch == old.LeaderEpoch:
				s.t.Errorf("%s: leader changed without a new leader epoch: %+v after %+v", name, a, old)
			case (a.Leader != old.Leader || !slices.Equal(a.ISR, old.ISR)) && a.PartitionEpoch == old.PartitionEpoch:
				s.t.Errorf("%s: changed without a new partition epoch: %+v after %+v", name, a, old)
			}
		}
	}
}

// heal brings every broker back and checks the cluster recovers: every broker registered and
// unfenced, every replica back in its ISR (replication catching up), every partition led by
// its preferred replica once a preferred-leader pass has run.
func (s *sim) heal() {
	for id := int32(1); id <= simBrokers; id++ {
		switch s.procs[id] {
		case paused:
			s.procs[id] = up // it resumes with its epoch
		case down, stopping:
			s.start(id)
		}
	}
	for range 2 * int(preferred/time.Second) {
		s.now = s.now.Add(time.Second)
		for id := int32(1); id <= simBrokers; id++ {
			if s.procs[id] == registering {
				s.register(id)
			}
		}
		s.heartbeats(1)
		s.tick()
		s.catchUp()
		s.checkInvariants()
		s.prev = s.st.Clone()
	}
	for _, b := range s.st.Brokers() {
		if b.Fenced || b.InControlledShutdown || s.procs[b.ID] != up {
			s.t.Errorf("after healing, broker %+v (process %d)", b, s.procs[b.ID])
		}
	}
	for _, top := range s.st.Topics() {
		for p, a := range top.Assignments {
			if a.Leader != a.Replicas[0] || len(a.ISR) != len(a.Replicas) {
				s.t.Errorf("after healing, %s-%d: %+v", top.Name, p, a)
			}
		}
	}
	if s.t.Failed() {
		s.t.Logf("%s", formatState(s.st))
	}
}

// catchUp takes every live replica into its ISR, as replication would once it caught up.
func (s *sim) catchUp() {
	var changes []meta.PartitionChange
	for _, top := range s.st.Topics() {
		for p, a := range top.Assignments {
			if a.Leader == meta.NoLeader {
				continue
			}
			isr := slices.Clone(a.ISR)
			for _, r := range a.Replicas {
				if b, ok := s.st.Broker(r); ok && b.Active() && !slices.Contains(isr, r) {
					isr = append(isr, r)
				}
			}
			if len(isr) != len(a.ISR) {
				changes = append(changes, meta.PartitionChange{Topic: top.Name, TopicID: top.ID, Partition: int32(p),
					ExpectedPartitionEpoch: a.PartitionEpoch, Leader: a.Leader, ISR: isr})
			}
		}
	}
	if len(changes) > 0 {
		s.mustApply(meta.ChangePartitions{Changes: changes})
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
