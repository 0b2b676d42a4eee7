package e2e

// The nemesis of the fault test (faults_test.go): one fault at a time, each repaired and
// recovered from before the next, its choices drawn from the run's seeded source. And how the
// test watches the cluster: Metadata straight from one broker over a connection of its own, so
// that a paused or cut broker costs a short timeout, not a client's retries.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// The nemesis's faults.
const (
	faultKillLeader     = "kill -9 of a partition leader"
	faultKillFollower   = "kill -9 of a follower"
	faultKillController = "kill -9 of the controller"
	faultsPause         = "SIGSTOP past the session, then SIGCONT"
	faultsCut           = "network cut, then heal"
	faultPowerCut       = "power cut"
	faultDiskFail       = "WAL writes failing (EIO) under a partition leader"
	faultPowerCutAll    = "power cut of all three"
)

// faultWeight is a fault and how often the nemesis picks it, relative to the others.
type faultWeight struct {
	name   string
	weight int
}

// Bounds of the waits (generous against a loaded two-core machine; each is a condition, never a
// fixed sleep).
const (
	faultsFenceLimit   = clusterWait     // from a fault to the others fencing the broker
	faultsRecoverLimit = 2 * clusterWait // from the repair to all three live, every partition led
	faultsISRLimit     = 20 * time.Second
	faultsGapLimit     = 10 * time.Second // for the acknowledgements between two faults
)

// faultsView is one broker's Metadata: the controller it names, the live brokers it lists and
// the test topic's partitions.
type faultsView struct {
	broker     int32
	controller int32
	live       []int32 // sorted
	parts      map[int32]faultsPartition
}

type faultsPartition struct {
	leader        int32
	replicas, isr []int32
}

// view asks broker b for its Metadata, once, within a few seconds.
func (r *faultsRun) view(b *cluster.Broker) (faultsView, error) {
	c, err := net.DialTimeout("tcp", b.Addr(), 2*time.Second)
	if err != nil {
		return faultsView{}, err
	}
	rc := &rawConn{c: c, f: kmsg.NewRequestFormatter(kmsg.FormatterClientID("e2e-faults"))}
	defer rc.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 7
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(r.topic)
	req.Topics = append(req.Topics, rt)
	resp, err := rc.roundTrip(req, 3*time.Second)
	if err != nil {
		return faultsView{}, fmt.Errorf("broker %d: Metadata: %w", b.ID(), err)
	}
	md := resp.(*kmsg.MetadataResponse)
	v := faultsView{broker: int32(b.ID()), controller: md.ControllerID, parts: map[int32]faultsPartition{}}
	for _, br := range md.Brokers {
		v.live = append(v.live, br.NodeID)
	}
	slices.Sort(v.live)
	if len(md.Topics) != 1 || md.Topics[0].ErrorCode != 0 {
		return faultsView{}, fmt.Errorf("broker %d: topic %s missing or in error", b.ID(), r.topic)
	}
	for _, p := range md.Topics[0].Partitions {
		v.parts[p.Partition] = faultsPartition{leader: p.Leader, replicas: p.Replicas, isr: p.ISR}
	}
	return v, nil
}

// anyView is the view of the first of the live (not intentionally down or paused) brokers that
// answers.
func (r *faultsRun) anyView() (faultsView, error) {
	var errs []error
	for _, b := range r.c.Brokers() {
		if r.down[b.ID()] {
			continue
		}
		v, err := r.view(b)
		if err == nil {
			return v, nil
		}
		errs = append(errs, err)
	}
	return faultsView{}, fmt.Errorf("no broker answers Metadata: %w", errors.Join(errs...))
}

// until polls cond until it holds, or limit passes (then the last error).
func (r *faultsRun) until(limit time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	err := cluster.Poll(ctx, func(context.Context) error { return cond() })
	return time.Since(start), err
}

// allLive holds when every broker lists all three as live and every partition has a leader.
func (r *faultsRun) allLive() error {
	for _, b := range r.c.Brokers() {
		v, err := r.view(b)
		if err != nil {
			return err
		}
		if len(v.live) != 3 {
			return fmt.Errorf("broker %d lists live brokers %v", b.ID(), v.live)
		}
		for p, pv := range v.parts {
			if pv.leader < 1 {
				return fmt.Errorf("broker %d: partition %d has no leader", b.ID(), p)
			}
		}
	}
	return nil
}

// fenced holds when the other brokers no longer list victim as live, no partition is led by it
// and it is in no ISR: the controller has fenced it and moved its leaderships.
func (r *faultsRun) fenced(victim int) error {
	for _, b := range r.c.Brokers() {
		if b.ID() == victim {
			continue
		}
		v, err := r.view(b)
		if err != nil {
			return err
		}
		if slices.Contains(v.live, int32(victim)) {
			return fmt.Errorf("broker %d still lists broker %d as live", b.ID(), victim)
		}
		for p, pv := range v.parts {
			// The last member of an ISR stays in it (Kafka's rule: the ISR is never empty).
			if pv.leader == int32(victim) || slices.Contains(pv.isr, int32(victim)) && len(pv.isr) > 1 {
				return fmt.Errorf("broker %d: partition %d led by %d, ISR %v", b.ID(), p, pv.leader, pv.isr)
			}
		}
	}
	return nil
}

// isrFull holds when every partition's ISR is all its replicas (a broker's view).
func (r *faultsRun) isrFull() error {
	v, err := r.anyView()
	if err != nil {
		return err
	}
	if short := isrShortOf(v); len(short) > 0 {
		return errors.New(strings.Join(short, "; "))
	}
	return nil
}

// isrShortOf lists the partitions whose ISR is not all their replicas.
func isrShortOf(v faultsView) []string {
	var short []string
	for _, p := range sortedPartitions(v.parts) {
		pv := v.parts[p]
		if len(pv.isr) < len(pv.replicas) {
			short = append(short, fmt.Sprintf("partition %d: ISR %v of replicas %v", p, pv.isr, pv.replicas))
		}
	}
	return short
}

// checkProcesses records, and starts again, every broker that exited without the nemesis
// making it.
func (r *faultsRun) checkProcesses() {
	for _, b := range r.c.Brokers() {
		if r.down[b.ID()] || b.Running() {
			continue
		}
		r.crashes = append(r.crashes, fmt.Sprintf("broker %d exited on its own at step %d (%s), %v; its log ends: %s",
			b.ID(), r.step, r.what, b.Process().ExitErr(), tail(b.LogTail(2<<10), 2<<10)))
		r.logf("broker %d exited on its own (%v): starting it again", b.ID(), b.Process().ExitErr())
		r.start(b)
	}
}

// start starts b again and waits until it answers.
func (r *faultsRun) start(b *cluster.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), faultsRecoverLimit)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		r.fatalf("starting broker %d again: %v", b.ID(), err)
	}
	r.down[b.ID()] = false
}

// kill kills b with SIGKILL.
func (r *faultsRun) kill(b *cluster.Broker) {
	r.checkProcesses()
	r.down[b.ID()] = true
	if err := b.Kill(); err != nil {
		r.fatalf("kill -9 of broker %d: %v", b.ID(), err)
	}
}

// powerCut cuts the power under b: its cutfs dies first, so that nothing more reaches the
// backing directory, then the broker; the dead mount is detached and a fresh cutfs mounted over
// the same backing directory, for the broker's next start to recover from what was synced.
func (r *faultsRun) powerCut(b *cluster.Broker) {
	r.checkProcesses()
	r.down[b.ID()] = true
	m := r.mounts[b.ID()]
	m.cut()
	if err := b.Kill(); err != nil {
		r.fatalf("kill -9 of broker %d after its power cut: %v", b.ID(), err)
	}
	m.detach()
	r.mounts[b.ID()] = r.mount(b)
}

// powerCutAll cuts the power under every broker at once (all the cutfs processes die before
// any broker), then starts the three together: each waits for a quorum of the others.
func (r *faultsRun) powerCutAll() {
	r.checkProcesses()
	brokers := r.c.Brokers()
	for _, b := range brokers {
		r.down[b.ID()] = true
		r.mounts[b.ID()].cut()
	}
	for _, b := range brokers {
		if err := b.Kill(); err != nil {
			r.fatalf("kill -9 of broker %d after the power cut: %v", b.ID(), err)
		}
		r.mounts[b.ID()].detach()
		r.mounts[b.ID()] = r.mount(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultsRecoverLimit)
	defer cancel()
	errs := make([]error, len(brokers))
	var wg sync.WaitGroup
	for i, b := range brokers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Start(ctx)
		}()
	}
	wg.Wait()
	for i, b := range brokers {
		if errs[i] != nil {
			r.fatalf("starting broker %d after the power cut of all three: %v", b.ID(), errs[i])
		}
		r.down[b.ID()] = false
	}
}

// diskFail makes every write to b's WAL files fail, as a failing disk: b must stop by itself
// (a cluster node whose storage fails shuts down rather than lead on in the same epoch), with
// an error status and its reason in the log, while the others take over. The writes are healed
// and b started again, to recover from its WAL and follow.
func (r *faultsRun) diskFail(b *cluster.Broker) {
	r.checkProcesses()
	r.down[b.ID()] = true
	m := r.mounts[b.ID()]
	m.toggleWriteFaults("failing writes")
	took, err := r.until(faultsFenceLimit, func() error {
		if b.Running() {
			return fmt.Errorf("broker %d still running", b.ID())
		}
		return nil
	})
	switch {
	case err != nil:
		r.crashes = append(r.crashes, fmt.Sprintf("broker %d did not stop %v after its WAL writes began to fail (step %d)", b.ID(), took.Round(time.Millisecond), r.step))
		if err := b.Kill(); err != nil {
			r.fatalf("kill -9 of broker %d: %v", b.ID(), err)
		}
	case b.Process().ExitErr() == nil || !strings.Contains(b.LogTail(64<<10), "storage failure"):
		r.crashes = append(r.crashes, fmt.Sprintf("broker %d stopped after its WAL writes failed with status %v, without logging a storage failure: %s",
			b.ID(), b.Process().ExitErr(), tail(b.LogTail(2<<10), 2<<10)))
	default:
		r.logf("broker %d stopped by itself %v after its WAL writes began to fail (%v)", b.ID(), took.Round(time.Millisecond), b.Process().ExitErr())
	}
	m.toggleWriteFaults("writes healed")
	r.start(b)
}

// mount mounts a cutfs over broker b's backing directory at its data directory.
func (r *faultsRun) mount(b *cluster.Broker) *cutfsMount {
	backing := filepath.Join(r.backingDir, fmt.Sprintf("broker-%d", b.ID()))
	for _, d := range []string{backing, b.DataDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			r.fatalf("%v", err)
		}
	}
	m := &cutfsMount{t: r.t, mnt: b.DataDir()}
	// Write faults (diskFail) hit the WAL only: the metadata log's files share the mount, and
	// it is the storage engine's failure handling that is under test.
	p, err := cluster.StartProcess(cluster.ProcessConfig{Name: fmt.Sprintf("cutfs of broker %d", b.ID()), Path: r.cutfsBin,
		Args: []string{backing, m.mnt}, Env: []string{"CUTFS_FAIL_MATCH=*.wal"}})
	if err != nil {
		r.fatalf("starting cutfs: %v", err)
	}
	m.p = p
	if err := m.await(0, "ready"); err != nil {
		r.fatalf("cutfs did not mount for broker %d: %v\n%s", b.ID(), err, p.OutputTail(4<<10))
	}
	return m
}

// fault runs one step: a gap of acknowledged writes, the fault, its repair, the recovery.
func (r *faultsRun) fault() {
	// Every choice of the step is drawn up front, in the same order whatever is chosen, so that
	// a seed replays the same sequence of choices.
	total := 0
	for _, f := range r.faults {
		total += f.weight
	}
	pick := r.rng.IntN(total)
	part := int32(r.rng.IntN(faultsPartitions))
	follower := r.rng.IntN(2)
	anyBroker := 1 + r.rng.IntN(3)
	hold := r.rng.IntN(3)
	delay := time.Duration(r.rng.Int64N(int64(4 * time.Second)))
	gap := 200 + r.rng.IntN(1800)
	kind := ""
	for _, f := range r.faults {
		if pick -= f.weight; pick < 0 {
			kind = f.name
			break
		}
	}

	r.what = "acknowledgements before the fault"
	r.gap(gap)
	r.checkProcesses()
	r.stats[kind]++

	victim := anyBroker
	who := fmt.Sprintf("broker %d", victim)
	switch kind {
	case faultKillLeader, faultKillFollower, faultPowerCut, faultDiskFail:
		v, err := r.anyView()
		pv, ok := v.parts[part]
		if err != nil || !ok || pv.leader < 1 {
			who = fmt.Sprintf("broker %d (partition %d has no leader to pick: %v)", victim, part, err)
			break
		}
		victim, who = int(pv.leader), fmt.Sprintf("broker %d, leader of partition %d", pv.leader, part)
		if kind == faultKillFollower {
			fs := without(pv.replicas, pv.leader)
			if len(fs) > 0 {
				f := fs[follower%len(fs)]
				victim, who = int(f), fmt.Sprintf("broker %d, follower of partition %d (leader %d, ISR %v)", f, part, pv.leader, pv.isr)
			}
		}
	case faultKillController:
		if v, err := r.anyView(); err == nil && v.controller >= 1 {
			victim, who = int(v.controller), fmt.Sprintf("broker %d, the controller", v.controller)
		} else {
			who = fmt.Sprintf("broker %d (no broker names a controller: %v)", victim, err)
		}
	}
	b := r.c.Broker(victim)
	holds := []string{"start it again at once", fmt.Sprintf("start it again after %v", delay.Round(time.Millisecond)),
		"start it again once the others have fenced it"}
	switch kind {
	case faultKillLeader, faultKillFollower, faultKillController, faultPowerCut:
		r.what = fmt.Sprintf("%s: %s; %s", kind, who, holds[hold])
		r.logf("%s", r.what)
		if kind == faultPowerCut {
			r.powerCut(b)
		} else {
			r.kill(b)
		}
		switch hold {
		case 1:
			// Not a wait for a condition: a random moment in the cluster's reaction (an
			// election, the session running out, the fencing) to start the broker in.
			time.Sleep(delay)
		case 2:
			r.awaitFenced(victim)
		}
		r.start(b)
	case faultDiskFail:
		r.what = fmt.Sprintf("%s: %s", kind, who)
		r.logf("%s", r.what)
		r.diskFail(b)
	case faultPowerCutAll:
		r.what = kind
		r.logf("%s", r.what)
		r.powerCutAll()
	case faultsPause:
		r.what = fmt.Sprintf("%s: %s", kind, who)
		r.logf("%s", r.what)
		r.checkProcesses()
		r.down[victim] = true
		if err := b.Pause(); err != nil {
			r.fatalf("SIGSTOP of broker %d: %v", victim, err)
		}
		r.awaitFenced(victim)
		if err := b.Resume(); err != nil {
			r.fatalf("SIGCONT of broker %d: %v", victim, err)
		}
		r.down[victim] = false
	case faultsCut:
		r.what = fmt.Sprintf("%s: %s off the two others", kind, who)
		r.logf("%s", r.what)
		if err := r.nw.Isolate(victim); err != nil {
			r.fatalf("cutting broker %d off: %v", victim, err)
		}
		r.awaitFenced(victim)
		if err := r.nw.HealAll(); err != nil {
			r.fatalf("healing the network: %v", err)
		}
	}
	r.recover()
}

// gap waits until the producers have had n more acknowledgements, or faultsGapLimit passes
// (without replication, or while partitions are short of in-sync replicas, acknowledgements
// may not come: that is the cluster's to answer for, and the checker's to judge).
func (r *faultsRun) gap(n int) {
	from := r.acked()
	took, err := r.until(faultsGapLimit, func() error {
		if got := r.acked() - from; got < int64(n) {
			return fmt.Errorf("%d of %d acknowledgements", got, n)
		}
		return nil
	})
	if err != nil {
		r.logf("only %d of %d acknowledgements in %v before the fault", r.acked()-from, n, took.Round(time.Millisecond))
	}
}

// awaitFenced waits until the other brokers have fenced victim and moved its leaderships; not
// getting there is logged and counted, and the fault repaired anyway.
func (r *faultsRun) awaitFenced(victim int) {
	took, err := r.until(faultsFenceLimit, func() error { return r.fenced(victim) })
	if err != nil {
		r.notFenced++
		r.logf("broker %d not fenced, its leaderships not moved %v after the fault: %v", victim, took.Round(time.Millisecond), err)
		return
	}
	r.logf("broker %d fenced, leaderships and ISRs moved off it %v after the fault", victim, took.Round(time.Millisecond))
}

// recover waits until all three brokers are live and every partition is led, then (while the
// ISR has refilled after every fault so far) until every ISR is full again.
func (r *faultsRun) recover() {
	took, err := r.until(faultsRecoverLimit, r.allLive)
	if err != nil {
		r.fatalf("not all three brokers live with every partition led %v after the repair: %v", took.Round(time.Millisecond), err)
	}
	r.checkProcesses()
	if !r.waitISR {
		r.logf("all three live, every partition led, %v after the repair", took.Round(time.Millisecond))
		return
	}
	isrTook, err := r.until(faultsISRLimit, r.isrFull)
	if err != nil {
		// Without replication a restarted broker never rejoins an ISR: waiting after every
		// fault would only spend the run.
		r.waitISR = false
		r.logf("all three live, every partition led, %v after the repair; ISR not full %v later (not waited for again): %v",
			took.Round(time.Millisecond), isrTook.Round(time.Millisecond), err)
		return
	}
	r.logf("all three live, every partition led, %v after the repair; every ISR full %v later",
		took.Round(time.Millisecond), isrTook.Round(time.Millisecond))
}
