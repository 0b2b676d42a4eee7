package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtail/ringtail/test/cluster"
)

// TestClusterSoak is a long randomized fault run of a three-broker cluster (`make
// cluster-soak`; skipped unless E2E_CLUSTER_SOAK_SECONDS is set). A nemesis, drawing from a
// seeded random source (E2E_CLUSTER_SOAK_SEED, or the clock; printed either way), picks one
// fault at a time: kill -9 of a broker or of the controller, SIGTERM (a controlled shutdown),
// SIGSTOP until the others have fenced the broker and then SIGCONT, a network cut of one broker
// until it is fenced and then the heal (root with `ip` only: test/cluster's Network; left out,
// and said so, elsewhere), and rarely a cold restart of all three (kill -9 or SIGTERM). A killed
// or stopped broker is started again at once, after a random moment, or once the others have
// fenced it and moved its leaderships. Never more than one broker is down or cut, so a majority
// stays, and the next fault waits until all three are back, live and unfenced, and settled.
//
// Meanwhile a client loop (cluster_soak_client_test.go) creates RF=3 topics, adds partitions,
// alters configs, deletes topics and produces with acks=all through whichever brokers are
// live, and models what it was told. The checks (cluster_soak_view_test.go) run on every read
// of a broker's metadata (safety: leaders in their ISR and unfenced, epochs never going back)
// and at every settled point, with a broker down and again with all three back (the same
// metadata on each; every partition led by a live member of its ISR, or offline only when no
// live broker is in it; the client's acknowledged topics, partition counts and configs). No
// broker may exit unless the nemesis made it, nor log a panic or a fatal error. A failure names
// the seed, the step and the fault, and how to replay it; the brokers' logs are kept then.
//
// The seed fixes the nemesis's choices (fault, broker, hold, gaps) and the client's draws;
// what the cluster makes of them (who is the controller when "kill the controller" comes up,
// which requests time out) depends on timing, so a replay repeats the run's course, not every
// detail of it.
func TestClusterSoak(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("E2E_CLUSTER_SOAK_SECONDS"))
	if secs < 1 {
		t.Skip("a long randomized fault run: `make cluster-soak` runs it (E2E_CLUSTER_SOAK_SECONDS=N, E2E_CLUSTER_SOAK_SEED=S)")
	}
	seed := uint64(time.Now().UnixNano())
	if env := os.Getenv("E2E_CLUSTER_SOAK_SEED"); env != "" {
		v, err := strconv.ParseUint(env, 10, 64)
		if err != nil {
			t.Fatalf("E2E_CLUSTER_SOAK_SEED=%q: %v", env, err)
		}
		seed = v
	}
	s := &soak{t: t, seed: seed, duration: time.Duration(secs) * time.Second,
		rng:  rand.New(rand.NewPCG(seed, 1)),
		http: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		hist: newSoakHistory(), stats: soakStats{faults: map[string]int{},
			failover: map[string][]time.Duration{}, recovery: map[string][]time.Duration{}}}
	t.Logf("cluster soak: seed %d, %v (replay: make cluster-soak CLUSTER_SOAK_SEED=%d CLUSTER_SOAK_SECONDS=%d)",
		seed, s.duration, seed, secs)
	s.run()
}

// The nemesis's faults.
const (
	faultKill       = "kill -9"
	faultKillCtrl   = "kill -9 of the controller"
	faultTerm       = "SIGTERM"
	faultPause      = "SIGSTOP"
	faultCut        = "network cut"
	faultColdRestrt = "cold restart"
)

// soakFault is a fault and how often the nemesis picks it, relative to the others.
type soakFault struct {
	name   string
	weight int
}

// Bounds of the waits: generous against a loaded two-core machine, never fixed sleeps.
const (
	soakFailoverLimit = clusterWait     // from a fault to the others fencing the broker
	soakRecoverLimit  = 2 * clusterWait // from the repair to all three live and unfenced
	soakSettleLimit   = clusterWait     // from there to the same metadata everywhere
	soakGapLimit      = clusterWait     // for the client's operations between faults
)

// soak is one run: the cluster, the nemesis's state and random source, what the checks
// remember, and the counts for the summary. Everything but the client loop runs on the test's
// goroutine.
type soak struct {
	t        *testing.T
	seed     uint64
	duration time.Duration
	rng      *rand.Rand // the nemesis's choices
	http     *http.Client
	c        *cluster.Cluster
	nw       *cluster.Network // nil: no network cuts here
	faults   []soakFault
	client   *soakClient
	hist     *soakHistory
	stats    soakStats

	// pause is read-held by the client for each operation and write-held by the settled
	// checks, which then see no request in flight.
	pause sync.RWMutex

	state      [3]brokerState // by broker id - 1
	logScanned [3]int         // how much of each broker's log checkProcesses has read

	started time.Time
	step    int
	what    string // the step's fault, for failure messages
}

type soakStats struct {
	views, partitionChecks   int
	offline                  int // partitions found offline at the settled points with a broker down
	settles, degradedSettles int
	modelChecks              int
	faults                   map[string]int
	failover                 map[string][]time.Duration // fault → the others fenced the broker and moved its leaderships
	recovery                 map[string][]time.Duration // repair → all three live and unfenced
	settle                   []time.Duration            // then → the same metadata everywhere, every partition led
}

// failf fails the run, naming the seed, the step and how to replay it.
func (s *soak) failf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("cluster soak failed: seed %d, step %d (%s), %v into the run:\n%s\nreplay: make cluster-soak CLUSTER_SOAK_SEED=%d CLUSTER_SOAK_SECONDS=%d",
		s.seed, s.step, s.what, time.Since(s.started).Round(time.Second), fmt.Sprintf(format, args...), s.seed, int(s.duration.Seconds()))
}

func (s *soak) logf(format string, args ...any) {
	s.t.Helper()
	s.t.Logf("[%6.1fs] step %d: %s", time.Since(s.started).Seconds(), s.step, fmt.Sprintf(format, args...))
}

func (s *soak) run() {
	t := s.t
	s.faults = []soakFault{{faultKill, 3}, {faultKillCtrl, 3}, {faultTerm, 2}, {faultPause, 2}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // another test process may hold the network
	nw, err := cluster.NewNetwork(ctx, 3)
	cancel()
	switch {
	case errors.Is(err, cluster.ErrNoNetwork):
		t.Logf("network cuts left out of the nemesis: %v", err)
	case err != nil:
		t.Fatal(err)
	default:
		s.nw = nw
		s.faults = append(s.faults, soakFault{faultCut, 2})
		// Registered before the cluster starts, so it runs after the brokers are killed.
		t.Cleanup(func() {
			if err := nw.Close(); err != nil {
				t.Errorf("closing the test network: %v", err)
			}
		})
	}
	s.faults = append(s.faults, soakFault{faultColdRestrt, 1})
	var names []string
	for _, f := range s.faults {
		names = append(names, fmt.Sprintf("%s (%d)", f.name, f.weight))
	}
	t.Logf("nemesis: %s", strings.Join(names, ", "))

	// The brokers' logs go to files: to E2E_CLUSTER_SOAK_LOGS, kept, when set; otherwise to
	// a temporary directory kept only when the run fails.
	logDir, keep := os.Getenv("E2E_CLUSTER_SOAK_LOGS"), true
	if logDir == "" {
		keep = false
		if logDir, err = os.MkdirTemp("", "ringtail-cluster-soak-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || keep {
			t.Logf("the brokers' logs are in %s", logDir)
			return
		}
		os.RemoveAll(logDir)
	})

	s.started = time.Now()
	s.what = "start"
	s.c = startCluster3With(t, cluster3Opts{network: s.nw, debug: true, logDir: logDir})
	all := []int32{1, 2, 3}
	// The controller creates the offsets topic once all three are live: wait for it, so that
	// it is in every check from the first on.
	s.until(OffsetsTopicName+" created", clusterWait, func() error {
		v, err := s.fetchView(s.c.Broker(1))
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(v.doc.Topics, func(t soakTopic) bool { return t.Name == OffsetsTopicName }) {
			return errors.New("not yet")
		}
		return nil
	})
	s.settle(all, true)

	s.client = s.startClient()
	t.Cleanup(s.client.close) // before the brokers are killed: cleanups run last first
	for time.Since(s.started) < s.duration {
		s.step++
		s.fault()
	}
	s.step++
	s.what = "end"
	s.client.close()
	s.settle(all, true)
	// A clean stop of all three ends the run: each must exit with status 0.
	for i := range s.state {
		s.state[i] = brokerDown
	}
	if err := s.c.Stop(); err != nil {
		s.failf("stopping the cluster at the end: %v", err)
	}
	s.checkProcesses()
	s.summary()
}

// fault runs one step: a gap of client operations, a fault, its repair, and the checks.
func (s *soak) fault() {
	// Every choice of the step is drawn up front, in the same order whatever is chosen, so a
	// seed replays the same sequence of choices.
	total := 0
	for _, f := range s.faults {
		total += f.weight
	}
	pick := s.rng.IntN(total)
	victim := int32(1 + s.rng.IntN(3))
	hold := s.rng.IntN(3)
	delay := time.Duration(s.rng.Int64N(int64(4 * time.Second)))
	coldKill := s.rng.IntN(2) == 0
	gap := 1 + s.rng.IntN(4)
	kind := ""
	for _, f := range s.faults {
		if pick -= f.weight; pick < 0 {
			kind = f.name
			break
		}
	}

	s.what = "client operations before the fault"
	s.client.waitOps(gap, soakGapLimit)
	s.stats.faults[kind]++
	all := []int32{1, 2, 3}
	if kind == faultKillCtrl {
		victim = s.controller()
	}
	b := s.c.Broker(int(victim))
	holds := []string{"start it again at once", fmt.Sprintf("start it again after %v", delay.Round(time.Millisecond)),
		"start it again once the others have fenced it"}
	var repairAt time.Time
	switch kind {
	case faultKill, faultKillCtrl, faultTerm:
		s.what = fmt.Sprintf("%s, broker %d; %s", kind, victim, holds[hold])
		s.logf("%s", s.what)
		at := time.Now()
		if kind == faultTerm {
			s.terminate(b)
		} else {
			s.kill(b)
		}
		switch hold {
		case 1:
			// Not a wait for a condition: a random moment in the cluster's reaction (an
			// election, the session running out, the fencing), to start the broker in it.
			time.Sleep(delay)
		case 2:
			s.failover(kind, victim, at)
		}
		repairAt = time.Now()
		s.restart(b)
	case faultPause:
		s.what = fmt.Sprintf("%s, broker %d, until the others fence it; then SIGCONT", kind, victim)
		s.logf("%s", s.what)
		at := time.Now()
		if err := b.Pause(); err != nil {
			s.failf("SIGSTOP: %v", err)
		}
		s.state[victim-1] = brokerPaused
		s.failover(kind, victim, at)
		repairAt = time.Now()
		if err := b.Resume(); err != nil {
			s.failf("SIGCONT: %v", err)
		}
		s.state[victim-1] = brokerUp
	case faultCut:
		s.what = fmt.Sprintf("%s, broker %d off the others, until they fence it; then heal", kind, victim)
		s.logf("%s", s.what)
		at := time.Now()
		if err := s.nw.Isolate(int(victim)); err != nil {
			s.failf("cut: %v", err)
		}
		s.state[victim-1] = brokerCut
		s.failover(kind, victim, at)
		repairAt = time.Now()
		if err := s.nw.HealAll(); err != nil {
			s.failf("heal: %v", err)
		}
		s.state[victim-1] = brokerUp
	case faultColdRestrt:
		how := "SIGTERM"
		if coldKill {
			how = "kill -9"
		}
		s.what = fmt.Sprintf("%s: %s of all three, then start them all", kind, how)
		s.logf("%s", s.what)
		s.checkProcesses()
		for i := range s.state {
			s.state[i] = brokerDown
		}
		if coldKill {
			for _, b := range s.c.Brokers() {
				s.kill(b)
			}
		} else if err := s.c.Stop(); err != nil {
			s.failf("SIGTERM to all three: %v", err)
		}
		repairAt = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), soakRecoverLimit)
		err := s.c.Start(ctx)
		cancel()
		if err != nil {
			s.failf("starting all three again: %v", err)
		}
		for i := range s.state {
			s.state[i] = brokerUp
		}
	}
	s.recover(kind, repairAt, all)
}

// controller is the controller a live broker names.
func (s *soak) controller() int32 {
	var ctrl int32
	s.until("a broker naming the controller", clusterWait, func() error {
		for _, b := range s.c.Brokers() {
			if v, err := s.fetchView(b); err == nil && v.md.ControllerID >= 1 {
				ctrl = v.md.ControllerID
				return nil
			}
		}
		return errors.New("no broker names a controller")
	})
	return ctrl
}

// kill kills b with SIGKILL and checks that the kill, not a crash before it, ended it.
func (s *soak) kill(b *cluster.Broker) {
	s.checkProcesses()
	s.state[b.ID()-1] = brokerDown
	if err := b.Kill(); err != nil {
		s.failf("kill -9 of broker %d: %v", b.ID(), err)
	}
	if !killedBySIGKILL(b.Process()) {
		s.failf("broker %d ended before the kill (%s); its log ends:\n%s", b.ID(), exitStatus(b.Process()), b.LogTail(8<<10))
	}
}

// terminate stops b with SIGTERM: with the two others up, its controlled shutdown must
// complete and it must exit with status 0.
func (s *soak) terminate(b *cluster.Broker) {
	s.checkProcesses()
	from := b.LogLen()
	s.state[b.ID()-1] = brokerDown
	if err := b.Stop(); err != nil {
		s.failf("SIGTERM to broker %d: %v; its log ends:\n%s", b.ID(), err, b.LogTail(8<<10))
	}
	if log := b.Log()[from:]; !strings.Contains(log, "controlled shutdown done") {
		s.failf("broker %d stopped without completing its controlled shutdown, with a majority up; its log ends:\n%s", b.ID(), tail(log, 8<<10))
	}
}

// restart starts b again and waits until it answers.
func (s *soak) restart(b *cluster.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), soakRecoverLimit)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		s.failf("starting broker %d again: %v", b.ID(), err)
	}
	s.state[b.ID()-1] = brokerUp
}

// failover waits, with the client running, until the two others have fenced victim and moved
// its leaderships (timed from the fault, at), then checks the settled state of the two.
func (s *soak) failover(kind string, victim int32, at time.Time) {
	others := without([]int32{1, 2, 3}, victim)
	s.until(fmt.Sprintf("brokers %v fencing broker %d and moving its leaderships", others, victim), soakFailoverLimit, func() error {
		vs, err := s.views(others[:1])
		if err != nil {
			return err
		}
		d := vs[others[0]].doc
		for _, b := range d.Brokers {
			if b.ID == victim && !b.Fenced {
				return fmt.Errorf("broker %d not fenced yet", victim)
			}
		}
		for _, t := range d.Topics {
			for _, p := range t.Partitions {
				if p.Leader == victim {
					return fmt.Errorf("%s-%d still led by broker %d", t.Name, p.Partition, victim)
				}
			}
		}
		return nil
	})
	took := time.Since(at)
	s.stats.failover[kind] = append(s.stats.failover[kind], took)
	settle := s.settle(others, false)
	s.logf("broker %d fenced and its leaderships moved %v after the fault; brokers %v settled in %v more",
		victim, took.Round(time.Millisecond), others, settle.Round(time.Millisecond))
}

// recover waits until every broker in all says all three are live and unfenced (timed from
// the repair), then runs the full settled checks.
func (s *soak) recover(kind string, repairAt time.Time, all []int32) {
	s.until("all three brokers live and unfenced", soakRecoverLimit, func() error {
		vs, err := s.views(all)
		if err != nil {
			return err
		}
		for _, v := range vs {
			if len(v.md.Brokers) != len(all) {
				return fmt.Errorf("broker %d lists %d live brokers", v.broker, len(v.md.Brokers))
			}
			for _, b := range v.doc.Brokers {
				if b.Fenced || b.InControlledShutdown {
					return fmt.Errorf("broker %d says broker %d is fenced or shutting down", v.broker, b.ID)
				}
			}
		}
		return nil
	})
	took := time.Since(repairAt)
	s.stats.recovery[kind] = append(s.stats.recovery[kind], took)
	settle := s.settle(all, true)
	s.stats.settle = append(s.stats.settle, settle)
	s.logf("all three live and unfenced %v after the repair; settled in %v more; checks pass",
		took.Round(time.Millisecond), settle.Round(time.Millisecond))
}

// settle pauses the client, waits until the brokers in live agree and the cluster is settled
// with exactly those live, and runs the settled checks (with full, every broker is back: the
// client's model too). It returns how long the agreement took.
func (s *soak) settle(live []int32, full bool) time.Duration {
	waitedFrom := time.Now()
	s.pause.Lock()
	defer s.pause.Unlock()
	// The client's request in flight may be one that waits on a paused or cut broker, until
	// its timeout: said apart, so that it is not taken for the cluster's slowness.
	if waited := time.Since(waitedFrom); waited > time.Second {
		s.logf("waited %v for the client's request in flight", waited.Round(time.Millisecond))
	}
	var agreed soakView
	took := s.until(fmt.Sprintf("brokers %v settled", live), soakSettleLimit, func() error {
		vs, err := s.views(live)
		if err != nil {
			return err
		}
		if err := settled(vs, live); err != nil {
			return err
		}
		agreed = vs[live[0]]
		return nil
	})
	s.checkSettled(agreed.doc)
	if !full {
		s.stats.degradedSettles++
		for _, t := range agreed.doc.Topics {
			for _, p := range t.Partitions {
				if p.Leader == -1 {
					s.stats.offline++ // checked: no live broker in its ISR
				}
			}
		}
		return took
	}
	s.stats.settles++
	if s.client != nil {
		s.stats.modelChecks++
		if err := s.client.model.check(agreed.doc); err != nil {
			s.failf("settled with all three back: %v", err)
		}
	}
	return took
}

// summary prints the run's counts and timings.
func (s *soak) summary() {
	st := s.stats
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	add("cluster soak summary: seed %d, %v of faults (asked for %v), %d steps", s.seed,
		time.Since(s.started).Round(time.Second), s.duration, s.step-1)
	if s.nw == nil {
		add("network cuts: left out (needs root and `ip`)")
	}
	var allRec, allFail []time.Duration
	for _, f := range s.faults {
		rec, fo := st.recovery[f.name], st.failover[f.name]
		allRec = append(allRec, rec...)
		allFail = append(allFail, fo...)
		line := fmt.Sprintf("  %-26s %3d", f.name, st.faults[f.name])
		if len(rec) > 0 {
			line += fmt.Sprintf("; back live and unfenced after the repair: median %v, max %v", median(rec).Round(time.Millisecond), slices.Max(rec).Round(time.Millisecond))
		}
		if len(fo) > 0 {
			line += fmt.Sprintf("; fenced and leaderships moved after the fault: median %v, max %v (%d)", median(fo).Round(time.Millisecond), slices.Max(fo).Round(time.Millisecond), len(fo))
		}
		lines = append(lines, line)
	}
	if len(allRec) > 0 {
		add("recovery (repair to all three live and unfenced), all faults: median %v, max %v", median(allRec).Round(time.Millisecond), slices.Max(allRec).Round(time.Millisecond))
	}
	if len(allFail) > 0 {
		add("failover (fault to the broker fenced and its leaderships moved): median %v, max %v", median(allFail).Round(time.Millisecond), slices.Max(allFail).Round(time.Millisecond))
	}
	if len(st.settle) > 0 {
		add("settle (then to the same metadata on all three, every partition led): median %v, max %v", median(st.settle).Round(time.Millisecond), slices.Max(st.settle).Round(time.Millisecond))
	}
	lines = append(lines, s.client.summary()...)
	add("checks: %d settled points with all three (%d with the client's model), %d with one broker down (%d partitions offline there, each with no live broker in its ISR); %d metadata views, %d partition checks; no crash, no panic or fatal in the logs",
		st.settles, st.modelChecks, st.degradedSettles, st.offline, st.views, st.partitionChecks)
	for _, l := range lines {
		s.t.Log(l)
	}
}
