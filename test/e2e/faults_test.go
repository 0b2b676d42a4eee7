package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ringtail/ringtail/test/cluster"
)

// TestFaults is the fault test of replication (issue 12), in the style of Jepsen's Kafka test.
// Three brokers hold an RF=3 topic with min.insync.replicas=2. Idempotent acks=all producers
// (kgo defaults) write unique values (p<producer>-<n>) and record every send's outcome;
// consumers poll every partition from the start and record what they are handed, in order. A
// nemesis (faults_nemesis_test.go), drawing from a seeded source, brings one fault at a time
// and repairs it: kill -9 of a partition leader, of a follower, of the controller; SIGSTOP past
// the session until the others fence the broker, then SIGCONT; a network cut of one broker from
// the others (root with `ip`: test/cluster's Network) until it is fenced, then the heal; a power
// cut of one broker (every broker runs on a cutfs mount, test/powercut/cutfs, where FUSE can be
// mounted). After the run everything is healed and the test waits until all three brokers are
// live and every ISR is full, reads every partition from offset 0 to its high watermark, stops
// the brokers cleanly and reads the replicas' segment files. The checker
// (faults_checker_test.go) then holds the history to: every acknowledged value read back at its
// acknowledged offset; no offset holding two values, no value at two offsets; no definitely
// failed send visible; each consumer's offsets increasing without skipping; every value a
// consumer was handed still there; the replicas' logs identical below the high watermark. It
// prints a summary and fails on any violation.
//
// `make test-faults` runs it for FAULTS_SECONDS (E2E_FAULTS_SECONDS); `make test` runs a short
// run (E2E_FAULTS=0 leaves it out, for a quick run of the rest). The seed (E2E_FAULTS_SEED, else
// the clock) is printed; it fixes the nemesis's choices, not the cluster's timing, so a replay
// repeats a run's course, not every detail of it. E2E_FAULTS_LOGS=DIR keeps the brokers' logs.
func TestFaults(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("E2E_FAULTS_SECONDS"))
	if secs < 1 {
		if os.Getenv("E2E_FAULTS") == "0" {
			t.Skip("E2E_FAULTS=0: the replication fault test left out")
		}
		secs = faultsShortSeconds
	}
	seed := uint64(time.Now().UnixNano())
	if env := os.Getenv("E2E_FAULTS_SEED"); env != "" {
		v, err := strconv.ParseUint(env, 10, 64)
		if err != nil {
			t.Fatalf("E2E_FAULTS_SEED=%q: %v", env, err)
		}
		seed = v
	}
	r := &faultsRun{t: t, seed: seed, duration: time.Duration(secs) * time.Second, rng: rand.New(rand.NewPCG(seed, 1)),
		topic: "faults", down: map[int]bool{}, mounts: map[int]*cutfsMount{}, stats: map[string]int{}, waitISR: true}
	t.Logf("faults: seed %d, %v of faults (replay: make test-faults FAULTS_SEED=%d FAULTS_SECONDS=%d)", seed, r.duration, seed, secs)
	r.run()
}

// The run's shape.
const (
	faultsShortSeconds = 75 // the run of `make test`
	faultsPartitions   = 6
	faultsProducers    = 4
	faultsConsumers    = 2
	faultsSendEvery    = 5 * time.Millisecond // per producer: 200 values a second
	faultsInFlight     = 512                  // values per producer sent and not yet answered
	faultsSession      = "5s"                 // --session-timeout: heartbeats go every 500 ms
	// The topic refuses batches over faultsMaxMessage; the producers keep theirs well under it,
	// the refused producer sends values over it (definite failures for the checker).
	faultsMaxMessage   = 64 << 10
	faultsProducerMax  = 16 << 10
	faultsRefusedBytes = 100 << 10
	faultsRefusedEvery = 250 * time.Millisecond
)

// faultsRun is one run: the cluster, the nemesis's state, the clients and what they recorded.
type faultsRun struct {
	t        *testing.T
	seed     uint64
	duration time.Duration
	rng      *rand.Rand
	topic    string

	c          *cluster.Cluster
	nw         *cluster.Network    // nil: no network cuts here
	cutfsBin   string              // "": no power cuts here
	backingDir string              // the cutfs backing directories, broker-<id>
	mounts     map[int]*cutfsMount // by broker id
	faults     []faultWeight

	producers []*faultsProducer
	consumers []*faultsConsumer

	started   time.Time
	step      int
	what      string       // the step's fault, for messages
	down      map[int]bool // brokers the nemesis has killed or paused
	crashes   []string     // brokers that exited on their own
	stats     map[string]int
	notFenced int
	waitISR   bool // the ISR refilled after every fault so far
}

func (r *faultsRun) logf(format string, args ...any) {
	r.t.Helper()
	r.t.Logf("[%6.1fs] step %d: %s", time.Since(r.started).Seconds(), r.step, fmt.Sprintf(format, args...))
}

// fatalf ends a run that cannot go on, naming the seed and the step.
func (r *faultsRun) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("faults: seed %d, step %d (%s), %v into the run: %s\nreplay: make test-faults FAULTS_SEED=%d FAULTS_SECONDS=%d",
		r.seed, r.step, r.what, time.Since(r.started).Round(time.Second), fmt.Sprintf(format, args...), r.seed, int(r.duration.Seconds()))
}

func (r *faultsRun) run() {
	t := r.t
	r.setup()
	r.started = time.Now()
	r.what = "start"
	for i := range faultsConsumers {
		r.consumers = append(r.consumers, r.startConsumer(fmt.Sprintf("consumer %d", i+1)))
	}
	for i := range faultsProducers {
		r.producers = append(r.producers, r.startProducer(i, false))
	}
	r.producers = append(r.producers, r.startProducer(faultsProducers, true))
	if _, err := r.until(clusterWait, func() error {
		if n := r.acked(); n < 500 {
			return fmt.Errorf("%d acknowledgements", n)
		}
		return nil
	}); err != nil {
		r.fatalf("the producers do not get going before any fault: %v", err)
	}

	for time.Since(r.started) < r.duration {
		r.step++
		r.fault()
	}
	r.step++
	r.what = "the end"
	h := r.finish()
	v := checkFaults(h)
	var faults []string
	for _, f := range r.faults {
		if n := r.stats[f.name]; n > 0 {
			faults = append(faults, fmt.Sprintf("%s ×%d", f.name, n))
		}
	}
	notFenced := ""
	if r.notFenced > 0 {
		notFenced = fmt.Sprintf("; a broker not fenced within %v of its fault ×%d", faultsFenceLimit, r.notFenced)
	}
	summary := fmt.Sprintf("faults checker: seed %d, %v, %d faults: %s%s\n%s",
		r.seed, time.Since(r.started).Round(time.Second), r.step-1, strings.Join(faults, ", "), notFenced, v)
	t.Log(summary)
	if n := v.violations(); n > 0 {
		t.Errorf("faults: %d violations (summary above); replay: make test-faults FAULTS_SEED=%d FAULTS_SECONDS=%d",
			n, r.seed, int(r.duration.Seconds()))
	}
}

// setup starts the network (as root), the cutfs mounts (where FUSE mounts), the cluster and the
// topic, and picks the faults this machine can bring.
func (r *faultsRun) setup() {
	t := r.t
	r.faults = []faultWeight{{faultKillLeader, 3}, {faultKillFollower, 2}, {faultKillController, 2}, {faultPause, 2}}
	only := os.Getenv("E2E_FAULTS_ONLY")
	var nw *cluster.Network
	err := fmt.Errorf("%w: E2E_FAULTS_ONLY=%q leaves them out", cluster.ErrNoNetwork, only)
	if only == "" || strings.Contains(faultCut, only) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // another test process may hold the network
		nw, err = cluster.NewNetwork(ctx, 3)
		cancel()
	}
	switch {
	case errors.Is(err, cluster.ErrNoNetwork):
		t.Logf("network cuts left out of the nemesis: %v", err)
	case err != nil:
		t.Fatal(err)
	default:
		r.nw = nw
		r.faults = append(r.faults, faultWeight{faultCut, 2})
		// Registered before the cluster starts, so it runs after the brokers are killed.
		t.Cleanup(func() {
			if err := nw.Close(); err != nil {
				t.Errorf("closing the test network: %v", err)
			}
		})
	}

	logDir := os.Getenv("E2E_FAULTS_LOGS")
	if logDir != "" {
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("the brokers' logs go to %s", logDir)
	}
	c, err := cluster.NewCluster(cluster.ClusterConfig{
		Brokers: 3,
		Dir:     t.TempDir(),
		Bin:     brokerBin,
		Network: r.nw,
		Ports:   []string{"raft", "replication"},
		Args:    []string{"--session-timeout", faultsSession, "--segment-bytes", "1048576"},
		BrokerArgs: func(b *cluster.Broker, all []*cluster.Broker) []string {
			return []string{"--node-id", strconv.Itoa(b.ID()), "--raft-addr", b.ExtraAddr("raft"),
				"--replication-listen", b.ExtraAddr("replication"), "--peers", cluster.Peers(all, "raft")}
		},
		LogDir: logDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.c = c

	// Power cuts: every broker's data directory is a cutfs mount, so any of them can be cut.
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Logf("power cuts left out of the nemesis: no FUSE here: %v", err)
	} else {
		r.cutfsBin, r.backingDir = buildCutfs(t), t.TempDir()
		t.Cleanup(func() { // after the brokers are killed (registered before)
			for _, m := range r.mounts {
				m.cut()
				m.detach()
			}
		})
		for _, b := range c.Brokers() {
			r.mounts[b.ID()] = r.mount(b)
		}
		r.faults = append(r.faults, faultWeight{faultPowerCut, 2}, faultWeight{faultDiskFail, 1}, faultWeight{faultPowerCutAll, 1})
	}
	// E2E_FAULTS_ONLY=TEXT keeps the faults whose names contain TEXT (to work on one of them).
	if only != "" {
		r.faults = slices.DeleteFunc(r.faults, func(f faultWeight) bool { return !strings.Contains(f.name, only) })
		if len(r.faults) == 0 {
			t.Fatalf("E2E_FAULTS_ONLY=%q matches no fault this machine can bring", only)
		}
	}
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() && logDir == "" {
			for _, b := range c.Brokers() {
				t.Logf("%s log (last 64 KiB):\n%s", b.Name(), b.LogTail(64<<10))
			}
		}
	})
	startCtx, cancel := context.WithTimeout(context.Background(), faultsRecoverLimit)
	defer cancel()
	if err := c.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range r.faults {
		names = append(names, fmt.Sprintf("%s (%d)", f.name, f.weight))
	}
	t.Logf("nemesis: %s", strings.Join(names, ", "))

	waitBrokers(t, c, c.Broker(1), []int32{1, 2, 3})
	adm, err := c.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	resp, err := adm.CreateTopic(ctxTimeout(t, opTimeout), faultsPartitions, 3, map[string]*string{
		"min.insync.replicas": strp("2"),
		"max.message.bytes":   strp(strconv.Itoa(faultsMaxMessage)),
	}, r.topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v %s", r.topic, err, resp.ErrMessage)
	}
	if _, err := r.until(clusterWait, r.allLive); err != nil {
		t.Fatalf("topic %s not led on every broker: %v", r.topic, err)
	}
}

// acked is the number of acknowledgements the producers have had so far.
func (r *faultsRun) acked() int64 {
	n := int64(0)
	for _, p := range r.producers {
		n += p.acked.Load()
	}
	return n
}

// faultsProducer is one producer client writing unique values and recording every send.
type faultsProducer struct {
	name     string
	cl       *kgo.Client
	close    func() // cl.Close, once
	stop     chan struct{}
	done     chan struct{}
	inflight chan struct{} // a token per value sent and not yet answered
	acked    atomic.Int64

	mu    sync.Mutex
	sends []faultSend
}

// startProducer starts producer id: p<id>-<n> values round the partitions, faultsSendEvery
// apart, or with refused, values over the topic's max.message.bytes, one at a time.
func (r *faultsRun) startProducer(id int, refused bool) *faultsProducer {
	opts := []kgo.Opt{kgo.SeedBrokers(r.c.Addrs()...), kgo.DefaultProduceTopic(r.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner())}
	name, every, inflight := fmt.Sprintf("producer %d", id), faultsSendEvery, faultsInFlight
	if refused {
		// Uncompressed, or the padding would shrink under the limit.
		name, every, inflight = "refused producer", faultsRefusedEvery, 1
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	} else {
		opts = append(opts, kgo.ProducerBatchMaxBytes(faultsProducerMax))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		r.t.Fatal(err)
	}
	p := &faultsProducer{name: name, cl: cl, close: sync.OnceFunc(cl.Close), stop: make(chan struct{}), done: make(chan struct{}),
		inflight: make(chan struct{}, inflight)}
	r.t.Cleanup(p.close)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			select {
			case <-p.stop:
				return
			case p.inflight <- struct{}{}:
			}
			value := fmt.Sprintf("p%d-%d", id, n)
			payload := []byte(value)
			if refused {
				value = fmt.Sprintf("r-%d", n)
				payload = append([]byte(value+"~"), make([]byte, faultsRefusedBytes)...)
			}
			part := int32((n + id) % faultsPartitions)
			p.mu.Lock()
			i := len(p.sends)
			p.sends = append(p.sends, faultSend{value: value, partition: part, offset: -1})
			p.mu.Unlock()
			cl.Produce(context.Background(), &kgo.Record{Partition: part, Value: payload}, func(rec *kgo.Record, err error) {
				p.mu.Lock()
				s := &p.sends[i]
				switch {
				case err == nil:
					s.outcome, s.partition, s.offset = sendAcked, rec.Partition, rec.Offset
					p.acked.Add(1)
				case definiteSendErr(err):
					s.outcome, s.err = sendFailed, err
				default:
					s.outcome, s.err = sendIndeterminate, err
				}
				p.mu.Unlock()
				<-p.inflight
			})
		}
	}()
	return p
}

// faultsConsumer is one consumer reading every partition from the start, recording every record
// it is handed, in order.
type faultsConsumer struct {
	name   string
	cl     *kgo.Client
	close  func() // cl.Close, once
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	reads []faultRead
	errs  map[string]int // fetch errors by text, counted
}

func (r *faultsRun) startConsumer(name string) *faultsConsumer {
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.c.Addrs()...), kgo.ConsumeTopics(r.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(time.Second))
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &faultsConsumer{name: name, cl: cl, close: sync.OnceFunc(cl.Close), cancel: cancel, done: make(chan struct{}), errs: map[string]int{}}
	r.t.Cleanup(c.close)
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			c.mu.Lock()
			fs.EachError(func(_ string, p int32, err error) {
				if !errors.Is(err, context.Canceled) {
					c.errs[fmt.Sprintf("partition %d: %v", p, err)]++
				}
			})
			fs.EachRecord(func(rec *kgo.Record) {
				c.reads = append(c.reads, faultRead{partition: rec.Partition, offset: rec.Offset, value: valueID(rec.Value)})
			})
			c.mu.Unlock()
		}
	}()
	return c
}

// finish heals and recovers the cluster, ends the producers (answering what they still can)
// and the consumers, waits until every ISR is full, reads every partition to its high
// watermark, stops the brokers cleanly and reads their logs: the history for the checker.
func (r *faultsRun) finish() *faultHistory {
	t := r.t
	h := &faultHistory{hw: map[int32]int64{}}
	if r.nw != nil {
		if err := r.nw.HealAll(); err != nil {
			r.fatalf("healing the network: %v", err)
		}
	}
	if took, err := r.until(faultsRecoverLimit, r.allLive); err != nil {
		r.fatalf("not all three brokers live with every partition led %v after the run: %v", took.Round(time.Millisecond), err)
	}

	// The producers stop sending; what they have in flight gets a while to be answered, then
	// closing the clients fails the rest (indeterminate).
	for _, p := range r.producers {
		close(p.stop)
		<-p.done
	}
	took, err := r.until(faultsRecoverLimit, func() error {
		n := 0
		for _, p := range r.producers {
			n += len(p.inflight)
		}
		if n > 0 {
			return fmt.Errorf("%d sends unanswered", n)
		}
		return nil
	})
	if err != nil {
		r.logf("producers: not every send answered %v after the run (closing them): %v", took.Round(time.Millisecond), err)
	}
	for _, p := range r.producers {
		p.close()
		p.mu.Lock()
		h.sends = append(h.sends, p.sends...)
		p.mu.Unlock()
	}

	// Every replica back in its ISR: only then must every replica's log hold the high watermark.
	took, err = r.until(clusterWait, r.isrFull)
	if err != nil {
		v, verr := r.anyView()
		if verr != nil {
			r.fatalf("metadata after healing: %v", verr)
		}
		for _, s := range isrShortOf(v) {
			h.isrShort = append(h.isrShort, fmt.Sprintf("%s, %v after the producers stopped", s, took.Round(time.Second)))
		}
	} else {
		r.logf("every ISR full %v after the producers stopped", took.Round(time.Millisecond))
	}

	for _, c := range r.consumers {
		c.cancel()
		<-c.done
		c.close()
		c.mu.Lock()
		h.readers = append(h.readers, faultReader{name: c.name, reads: c.reads})
		if len(c.errs) > 0 {
			r.logf("%s: fetch errors: %v", c.name, c.errs)
		}
		c.mu.Unlock()
	}

	h.final, h.hw, h.finalIncomplete = r.finalRead()

	// The replicas' logs: the brokers stopped cleanly, their segment files read (through the
	// cutfs mounts, which show what the brokers wrote, synced or not).
	v, err := r.anyView()
	if err != nil {
		t.Fatalf("metadata before the clean stop: %v", err)
	}
	if err := r.c.Stop(); err != nil {
		r.logf("stopping the cluster cleanly: %v", err)
	}
	for _, b := range r.c.Brokers() {
		r.down[b.ID()] = true
	}
	h.replicas = map[int32][]replicaLog{}
	for p, pv := range v.parts {
		for _, id := range pv.replicas {
			l := replicaLog{broker: id, inISR: slices.Contains(pv.isr, id)}
			// The broker keeps its partition logs under <data-dir>/logs (broker.Config.DataDir).
			dir := filepath.Join(r.c.Broker(int(id)).DataDir(), "logs", fmt.Sprintf("%s-%d", r.topic, p))
			l.batches, l.tail, l.err = readReplicaLog(dir)
			h.replicas[p] = append(h.replicas[p], l)
		}
	}
	h.crashes = r.crashes
	return h
}

// finalRead reads every partition from offset 0 to its high watermark (ListOffsets latest) with
// a fresh consumer.
func (r *faultsRun) finalRead() (faultReader, map[int32]int64, []string) {
	t := r.t
	adm, err := r.c.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends := map[int32]int64{}
	took, err := r.until(clusterWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		lo, err := adm.ListEndOffsets(ctx, r.topic)
		if err != nil {
			return err
		}
		var errs []error
		lo.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				errs = append(errs, fmt.Errorf("partition %d: %w", o.Partition, o.Err))
				return
			}
			ends[o.Partition] = o.Offset
		})
		if len(ends) < faultsPartitions {
			errs = append(errs, fmt.Errorf("end offsets of %d partitions", len(ends)))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		r.fatalf("listing the high watermarks after the run: %v (%v)", err, took.Round(time.Millisecond))
	}
	offsets := map[int32]kgo.Offset{}
	for p := range ends {
		offsets[p] = kgo.NewOffset().At(0)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.c.Addrs()...), kgo.FetchMaxWait(time.Second),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	read := faultReader{name: "final read"}
	next := map[int32]int64{} // per partition, the offset after the last record read
	done := func() bool {
		for p, end := range ends {
			if next[p] < end {
				return false
			}
		}
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := map[string]int{}
	for !done() && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				errs[fmt.Sprintf("partition %d: %v", p, err)]++
			}
		})
		fs.EachRecord(func(rec *kgo.Record) {
			read.reads = append(read.reads, faultRead{partition: rec.Partition, offset: rec.Offset, value: valueID(rec.Value)})
			next[rec.Partition] = rec.Offset + 1
		})
	}
	var incomplete []string
	for _, p := range sortedPartitions(ends) {
		if next[p] < ends[p] {
			incomplete = append(incomplete, fmt.Sprintf("partition %d read to offset %d of high watermark %d (fetch errors: %v)", p, next[p], ends[p], errs))
		}
	}
	if len(errs) > 0 {
		r.logf("final read: fetch errors: %v", errs)
	}
	return read, ends, incomplete
}
