package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringtail/ringtail/test/cluster"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sys/unix"
)

// The power-cut tests run the broker on a cutfs mount (test/powercut/cutfs): a FUSE mirror of a
// backing directory that holds written data in the cutfs process's memory until it is fsynced
// (or written with O_DSYNC/RWF_DSYNC). Killing cutfs is a power cut: the backing directory then
// holds exactly what was synced, which a SIGKILL of the broker alone cannot show (the page cache
// survives it). Directory operations reach the backing directory at once; see the cutfs
// package comment for what is and is not simulated.

// TestPowerCutKeepsAckedRecords: producers stream acks=all records while the power is cut under
// a running broker, five times over the same data (each broker after the first recovers from the
// previous cut on cutfs too); after each cut a broker on the backing directory must serve every
// record that was ever acknowledged. Some cuts come while syncs are held (once one is waiting on
// the hold), so that appends are certainly caught written but not yet durable; some run the
// portable WAL writer (pwrite + fdatasync) instead of io_uring (RWF_DSYNC writes). Segments of
// 1 MiB roll during the test, and
// the last round writes over 16 MiB, the checkpoint interval, so that a checkpoint (segment
// fdatasyncs, the checkpoint file, WAL reuse) runs on the mount and may be cut.
func TestPowerCutKeepsAckedRecords(t *testing.T) {
	bin := buildCutfs(t)
	backing := t.TempDir()
	topic := "powercut"
	acked := newAckSet()
	small := []string{"--segment-bytes", "1048576"}
	portable := append([]string{"--wal-io", "portable"}, small...)
	plans := []cutPlan{
		{acks: 4000, args: small},
		{acks: 4000, hold: true, args: small},
		{acks: 4000, args: portable},
		{acks: 4000, hold: true, args: portable},
		{acks: 20000, args: small},
	}
	// E2E_POWERCUT_ROUNDS (`make powercut`) runs more rounds, cycling through the plans with
	// random acknowledgement counts so the cuts land at other points of the log.
	if v := os.Getenv("E2E_POWERCUT_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("E2E_POWERCUT_ROUNDS=%q: want a positive integer", v)
		}
		base := plans
		plans = nil
		for i := range n {
			p := base[i%len(base)]
			p.acks = 500 + rand.IntN(8000)
			plans = append(plans, p)
		}
	}
	for round, plan := range plans {
		cut := powerCutRound(t, bin, backing, topic, round, acked, plan)
		got := consumeValues(t, backing, topic)
		missing := acked.missingFrom(got)
		t.Logf("round %d %v: power cut %s; %d records acknowledged in all, %d in the log after the cut, %d acknowledged ones missing",
			round, plan.args, cut, acked.len(), len(got), len(missing))
		if len(missing) > 0 {
			t.Fatalf("round %d: %d acknowledged records lost in the power cut (durability fsync); first: %v",
				round, len(missing), missing[:min(10, len(missing))])
		}
		// Every record once: recovery must not replay the WAL over what a segment already has.
		if dups := duplicates(got); len(dups) > 0 {
			t.Fatalf("round %d: %d records appear more than once after the power cut; first: %v", round, len(dups), dups[:min(10, len(dups))])
		}
	}
}

// TestPowerCutDetectsLoss is the negative control: with --durability none the broker acknowledges
// an append right after its segment write(2) and writes the WAL behind it, so records acknowledged
// while syncs are held are not durable, and a power cut must lose them. (Without the hold the WAL
// write, still RWF_DSYNC, trails the ack by well under a millisecond: a cut at a random moment
// rarely lands in between.) If no loss showed, the harness would be proving nothing.
func TestPowerCutDetectsLoss(t *testing.T) {
	bin := buildCutfs(t)
	backing := t.TempDir()
	topic := "powercut-none"
	acked := newAckSet()
	cut := powerCutRound(t, bin, backing, topic, 0, acked, cutPlan{acks: 2000, hold: true, holdAcks: 1000, args: []string{"--durability", "none"}})
	got := consumeValues(t, backing, topic)
	missing := acked.missingFrom(got)
	t.Logf("durability none: power cut %s; %d records acknowledged, %d in the log after the cut, %d acknowledged ones missing",
		cut, acked.len(), len(got), len(missing))
	if len(missing) == 0 {
		t.Fatalf("durability none lost no acknowledged record in a power cut: the harness cannot detect loss")
	}
}

// cutPlan says when powerCutRound cuts.
type cutPlan struct {
	acks     int      // acknowledgements to wait for before cutting (or holding syncs)
	hold     bool     // then hold syncs, and cut after holdAcks more acknowledgements (0: after 300 ms)
	holdAcks int      //
	args     []string // extra serve flags
}

// powerCutRound mounts cutfs over backing, runs a broker on it (after round 0 it must start on the
// clean path: consumeValues stopped the last one cleanly), creates topic (3 partitions) in
// round 0, and runs concurrent idempotent acks=all producers, recording each acknowledged value
// in acked, until the plan's acknowledgements have come. Then, with production still going on,
// it cuts the power (SIGKILL cutfs, so nothing can be synced any more), SIGKILLs the broker and
// detaches the dead mount. It returns a description of the moment of the cut.
func powerCutRound(t *testing.T, bin, backing, topic string, round int, acked *ackSet, plan cutPlan) string {
	t.Helper()
	fsm := mountCutfs(t, bin, backing)
	b := startBroker(t, withDataDir(fsm.mnt), withArgs(plan.args...))
	if round == 0 {
		createTopic(t, b.Admin(t), topic, 3, nil)
	} else if !strings.Contains(b.Log(), "recovery: clean shutdown, replay skipped") {
		// consumeValues stopped the last broker cleanly: this start trusts what that stop wrote,
		// and removes its marker, durably, before this round's cut.
		t.Fatalf("round %d: the start after a clean stop did not take the clean path:\n%s", round, b.Log())
	}

	const producers = 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := acked.len()
	var sent atomic.Int64
	var wg sync.WaitGroup
	closers := make([]func(), producers)
	for p := range producers {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(b.Addr()),
			kgo.DefaultProduceTopic(topic),
			kgo.RequiredAcks(kgo.AllISRAcks()), // the default, said out loud: this is what is promised
			kgo.ProducerLinger(time.Millisecond),
			kgo.MaxBufferedRecords(1000),
			kgo.ProducerBatchCompression(kgo.NoCompression()), // the padding would compress to nothing
		)
		if err != nil {
			t.Fatalf("kgo.NewClient: %v", err)
		}
		closers[p] = sync.OnceFunc(cl.Close)
		t.Cleanup(closers[p])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				// Distinct values, padded to 100 B - 2 KB so that cycles carry some bytes.
				v := fmt.Sprintf("r%d-p%d-%07d-%s", round, p, i, strings.Repeat("x", 100+rand.IntN(1900)))
				cl.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
					if err == nil {
						acked.add(string(r.Value))
					}
				})
				sent.Add(1)
			}
		}()
	}
	waitFor(t, opTimeout, fmt.Sprintf("%d acks", plan.acks), func() bool { return acked.len()-start >= plan.acks })
	held := ""
	if plan.hold {
		fsm.holdSyncs()
		atHold, heldAt := acked.len(), time.Now()
		if plan.holdAcks > 0 {
			waitFor(t, opTimeout, fmt.Sprintf("%d acks while syncs are held", plan.holdAcks),
				func() bool { return acked.len()-atHold >= plan.holdAcks })
		} else {
			fsm.waitSyncHeld()
		}
		held = fmt.Sprintf(", %d of them in the %v syncs were held, the last %v before the cut",
			acked.len()-atHold, time.Since(heldAt).Round(time.Millisecond), time.Since(acked.lastAck()).Round(time.Millisecond))
	} else {
		// Not a wait for anything: a random delay, so that cuts land at no particular point of a
		// WAL cycle.
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	}

	fsm.cut()
	cut := fmt.Sprintf("after %d acks%s, of %d records sent this round", acked.len()-start, held, sent.Load())
	b.Kill()
	cancel()
	// Close fails whatever is buffered or in flight; those records were never acknowledged. An
	// ack that arrived after the cut is still a promise: the broker sent it after its sync had
	// completed, so before the cut.
	for _, closeClient := range closers {
		wg.Add(1)
		go func() { defer wg.Done(); closeClient() }()
	}
	waitGroupDone(t, &wg, opTimeout, "producers to stop")
	fsm.detach()
	return cut
}

// consumeValues starts a broker on dir (a plain directory: the backing directory after a power
// cut; it must recover as after a crash), reads every record of topic, stops the broker (cleanly:
// the next round's start takes the clean path) and returns the values read, counted. A
// topic that did not survive has no records.
func consumeValues(t *testing.T, dir, topic string) map[string]int {
	t.Helper()
	b := startBroker(t, withDataDir(dir))
	defer b.Stop()
	// No marker may outlive the power cut: neither the killed broker's (it wrote none) nor one
	// from an earlier clean stop (the start after it removed it durably).
	if !strings.Contains(b.Log(), "recovery: no clean shutdown marker") {
		t.Fatalf("the start after a power cut did not recover as after a crash:\n%s", b.Log())
	}
	out := make(map[string]int)
	tds, err := b.Admin(t).ListTopics(ctxTimeout(t, opTimeout), topic)
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	if !tds.Has(topic) || tds[topic].Err != nil {
		t.Logf("topic %s is gone after the power cut", topic)
		return out
	}
	recs := consumeAll(t, b, topic)
	checkContiguous(t, recs)
	for _, rs := range recs {
		for _, r := range rs {
			out[string(r.Value)]++
		}
	}
	return out
}

// duplicates lists, sorted, the values read more than once (the padding cut off).
func duplicates(got map[string]int) []string {
	var dups []string
	for v, n := range got {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s ×%d", v[:strings.LastIndexByte(v, '-')], n))
		}
	}
	slices.Sort(dups)
	return dups
}

// ackSet is the set of acknowledged values.
type ackSet struct {
	mu   sync.Mutex
	m    map[string]struct{}
	last time.Time // of the latest acknowledgement
}

func newAckSet() *ackSet { return &ackSet{m: make(map[string]struct{})} }

func (a *ackSet) add(v string) {
	a.mu.Lock()
	a.m[v] = struct{}{}
	a.last = time.Now()
	a.mu.Unlock()
}

func (a *ackSet) lastAck() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

func (a *ackSet) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m)
}

// missingFrom lists, sorted, the acknowledged values that got lacks (the padding cut off).
func (a *ackSet) missingFrom(got map[string]int) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var missing []string
	for v := range a.m {
		if got[v] == 0 {
			missing = append(missing, v[:strings.LastIndexByte(v, '-')])
		}
	}
	slices.Sort(missing)
	return missing
}

// buildCutfs builds the cutfs command into the test's temporary directory. It skips the test
// when the machine has no FUSE device.
func buildCutfs(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("FUSE is not available here, so no power cut can be simulated: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cutfs")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/ringtail/ringtail/test/powercut/cutfs/cmd/cutfs")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building cutfs: %v\n%s", err, out)
	}
	return bin
}

// cutfsMount is a running cutfs process serving a mount of a backing directory. cutfs answers
// on stdout: "ready" once mounted, and one line per signal it acted on.
type cutfsMount struct {
	t        *testing.T
	p        *cluster.Process
	mnt      string
	holdFrom int // output offset just before the last holdSyncs
}

// mountCutfs mounts backing on a fresh mount point. The process is killed and the mount detached
// when the test ends, whatever happened. It skips the test if FUSE cannot be mounted here.
// env is added to cutfs's environment (CUTFS_FAIL_MATCH, CUTFS_FAIL_ERRNO).
func mountCutfs(t *testing.T, bin, backing string, env ...string) *cutfsMount {
	t.Helper()
	m := &cutfsMount{t: t, mnt: t.TempDir()}
	p, err := cluster.StartProcess(cluster.ProcessConfig{Name: "cutfs", Path: bin, Args: []string{backing, m.mnt}, Env: env})
	if err != nil {
		t.Fatalf("starting cutfs: %v", err)
	}
	m.p = p
	t.Cleanup(func() {
		m.cut()
		m.detach()
		if t.Failed() {
			t.Logf("cutfs output:\n%s", p.OutputTail(16<<10))
		}
	})
	if err := m.await(0, "ready"); err != nil {
		if errors.Is(err, cluster.ErrExited) && p.ExitCode() == 3 {
			t.Skipf("FUSE cannot be mounted here: %s", strings.TrimSpace(p.OutputTail(4<<10)))
		}
		t.Fatalf("cutfs did not mount: %v\n%s", err, p.OutputTail(16<<10))
	}
	return m
}

// await waits until cutfs prints the line want at or after output offset from; it gives up
// when cutfs exits or after readyTimeout.
func (m *cutfsMount) await(from int, want string) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	_, err := m.p.WaitLine(ctx, from, func(l string) bool { return l == want })
	return err
}

// signal sends sig to cutfs and waits for its answer want.
func (m *cutfsMount) signal(sig os.Signal, want string) {
	m.t.Helper()
	from := m.p.OutputLen()
	if err := m.p.Signal(sig); err != nil {
		m.t.Fatalf("signalling cutfs: %v", err)
	}
	if err := m.await(from, want); err != nil {
		m.t.Fatalf("cutfs did not say %q: %v", want, err)
	}
}

// holdSyncs makes cutfs hold every sync from now on, as a disk that stops completing flushes.
func (m *cutfsMount) holdSyncs() {
	m.t.Helper()
	m.holdFrom = m.p.OutputLen()
	m.signal(unix.SIGUSR1, "holding syncs")
}

// waitSyncHeld waits until a sync is waiting on the hold: from then on, what that sync was to
// make durable is certainly written and not durable.
func (m *cutfsMount) waitSyncHeld() {
	m.t.Helper()
	if err := m.await(m.holdFrom, "sync held"); err != nil {
		m.t.Fatalf("no sync reached the hold: %v", err)
	}
}

// toggleWriteFaults starts or ends failing writes (see the cutfs command), and waits until cutfs
// says want ("failing writes" or "writes healed").
func (m *cutfsMount) toggleWriteFaults(want string) {
	m.t.Helper()
	m.signal(unix.SIGUSR2, want)
}

// cut is the power cut: SIGKILL, and wait until the process is gone. Its FUSE connection dies
// with it, so every request after this moment fails and nothing more reaches the backing
// directory.
func (m *cutfsMount) cut() {
	_ = m.p.Kill()
}

// detach lazily unmounts the (dead) mount.
func (m *cutfsMount) detach() {
	if err := unix.Unmount(m.mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		m.t.Errorf("unmount %s: %v", m.mnt, err)
	}
}

// TestPowerCutKeepsCommittedOffsets: clients commit ever larger offsets for several groups while
// the power is cut under the broker (once at a random moment, once while syncs are held); after
// each cut a broker on the backing directory must return, for every group and partition, at
// least the last offset whose commit was acknowledged. Committed offsets go through the same WAL
// as records, into __consumer_offsets, and are answered only once durable.
func TestPowerCutKeepsCommittedOffsets(t *testing.T) {
	bin := buildCutfs(t)
	backing := t.TempDir()
	const topic, groups, partitions = "pc-offsets", 4, 3
	type key struct {
		group     string
		partition int32
	}
	var mu sync.Mutex
	acked := map[key]int64{} // highest acknowledged commit
	for round, hold := range []bool{false, true} {
		fsm := mountCutfs(t, bin, backing)
		b := startBroker(t, withDataDir(fsm.mnt))
		adm := b.Admin(t)
		if round == 0 {
			createTopic(t, adm, topic, partitions, nil)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var commits atomic.Int64
		var wg sync.WaitGroup
		for g := range groups {
			group := fmt.Sprintf("pc-group-%d", g)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next := int64(round*1_000_000 + 1); ctx.Err() == nil; next++ {
					offs := make(kadm.Offsets)
					for p := int32(0); p < partitions; p++ {
						offs.Add(kadm.Offset{Topic: topic, Partition: p, At: next, LeaderEpoch: -1})
					}
					res, err := adm.CommitOffsets(ctx, group, offs)
					if err != nil || res.Error() != nil {
						continue // refused or cut off: not a promise
					}
					mu.Lock()
					for p := int32(0); p < partitions; p++ {
						acked[key{group, p}] = max(acked[key{group, p}], next)
					}
					mu.Unlock()
					commits.Add(1)
				}
			}()
		}
		waitFor(t, opTimeout, "200 acknowledged commits", func() bool { return commits.Load() >= 200 })
		if hold {
			fsm.holdSyncs()
			fsm.waitSyncHeld()
		} else {
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond) // a random cut point, as above
		}
		fsm.cut()
		b.Kill()
		cancel()
		waitGroupDone(t, &wg, opTimeout, "committers to stop")
		fsm.detach()

		after := startBroker(t, withDataDir(backing))
		aadm := after.Admin(t)
		mu.Lock()
		want := maps.Clone(acked)
		mu.Unlock()
		for g := range groups {
			group := fmt.Sprintf("pc-group-%d", g)
			fetched, err := aadm.FetchOffsets(ctxTimeout(t, opTimeout), group)
			if err != nil {
				t.Fatalf("round %d: FetchOffsets(%s): %v", round, group, err)
			}
			for p := int32(0); p < partitions; p++ {
				w := want[key{group, p}]
				o, ok := fetched.Lookup(topic, p)
				if w > 0 && (!ok || o.Err != nil || o.At < w) {
					t.Fatalf("round %d: %s partition %d: committed offset %+v after the power cut, but %d was acknowledged",
						round, group, p, o, w)
				}
			}
		}
		t.Logf("round %d (syncs held: %v): %d commits acknowledged, every acknowledged offset survived the cut",
			round, hold, commits.Load())
		after.Stop()
	}
}
