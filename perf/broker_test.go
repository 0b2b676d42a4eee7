package perf

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// buildPeer builds cmd/kfake-peer, the franz-go kfake broker in its own process.
func buildPeer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kfake-peer")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/kfake-peer")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build kfake-peer: %v\n%s", err, out)
	}
	return bin
}

// One short run of every mode against a real broker process, over TCP on 127.0.0.1.
func TestAgainstBrokerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildPeer(t)
	p, err := StartBroker(ctx, BrokerSpec{Label: "kfake", Args: []string{bin, "--listen", "{addr}", "--partitions", "3"}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()

	base := DefaultConfig()
	base.Brokers, base.Topic, base.Partitions, base.CreateTopic = []string{p.Addr}, "t", 3, true
	base.Duration, base.Warmup, base.BrokerPID = time.Second, 200*time.Millisecond, p.PID()

	check := func(name string, c Config) *Result {
		t.Helper()
		r, err := Run(ctx, c, Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.ErrorTotal != 0 || r.Messages == 0 {
			t.Fatalf("%s: %d msgs, errors %v", name, r.Messages, r.Errors)
		}
		var b bytes.Buffer
		WriteText(&b, r)
		t.Logf("%s", b.String())
		return r
	}

	seed := base
	seed.Concurrency = 16
	r := check("closed loop", seed)
	if !r.BrokerCPU.Available || r.BrokerCPU.TotalS <= 0 || r.Fairness == nil || r.Fairness.Producers != 16 {
		t.Errorf("closed loop: broker CPU %+v fairness %+v", r.BrokerCPU, r.Fairness)
	}
	if r.Latency.Count != r.Messages || len(r.Timeline) == 0 {
		t.Errorf("closed loop: %d latencies for %d msgs, %d timeline points", r.Latency.Count, r.Messages, len(r.Timeline))
	}

	pipe := base
	pipe.Linger, pipe.Concurrency, pipe.Clients, pipe.MaxBuffered, pipe.Compression, pipe.Keys = time.Millisecond, 2, 2, 2000, "lz4", "random"
	check("pipelined", pipe)

	open := base
	open.Rate, open.Keys = 2000, "sequential"
	r = check("open loop", open)
	if r.Messages < 1900 || r.Messages > 2100 {
		t.Errorf("open loop at 2000/s for 1s acknowledged %d", r.Messages)
	}

	e2e := base
	e2e.Mode, e2e.Rate = "e2e", 1000
	r = check("e2e", e2e)
	if r.Messages < 900 || r.Messages > 1100 {
		t.Errorf("e2e at 1000/s for 1s received %d", r.Messages)
	}

	cons := base
	cons.Mode, cons.Duration, cons.CreateTopic = "consume", 0, false
	r = check("consume", cons)
	cons.Group = "perf-test"
	r2 := check("consume group", cons)
	if r2.Messages != r.Messages {
		t.Errorf("group consumer read %d, plain consumer %d", r2.Messages, r.Messages)
	}
}

// The bench end to end with one peer and one short workload: table, JSON and plot.
func TestBenchWithPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	bin := buildPeer(t)
	out := t.TempDir()
	bc := BenchConfig{
		Brokers: []BrokerSpec{
			{Label: "ringtail", Args: []string{"/nonexistent/ringtail", "serve"}}, // a broker that cannot start
			{Label: "kfake-mem", Args: []string{bin, "--listen", "{addr}", "--partitions", "6"}, Durability: "memory"},
		},
		Baseline: "ringtail", Workloads: []string{"open-loop"}, Duration: time.Second, Warmup: 200 * time.Millisecond,
		Rate: 1000, OutDir: out, Stamp: "test", Plots: true,
	}
	var log bytes.Buffer
	cmp, err := RunBench(context.Background(), bc, &log)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmp.Results) != 2 || cmp.Results[0].Failed == "" || cmp.Results[1].Failed != "" || cmp.Results[1].ErrorTotal != 0 {
		t.Fatalf("results: %+v\n%s", cmp.Results, log.String())
	}
	var b bytes.Buffer
	WriteComparison(&b, cmp)
	if !strings.Contains(b.String(), "FAILED") || !strings.Contains(b.String(), "kfake-mem") {
		t.Errorf("table:\n%s", b.String())
	}
	files, err := WriteBenchOutputs(bc, cmp)
	if err != nil || len(files) != 2 {
		t.Fatalf("outputs %v %v", files, err)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// With RINGTAIL_BIN set (as `make e2e` does), the same short closed-loop and open-loop runs go
// against Ringtail itself.
func TestAgainstRingtail(t *testing.T) {
	bin := os.Getenv("RINGTAIL_BIN")
	if bin == "" || testing.Short() {
		t.Skip("RINGTAIL_BIN not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := StartBroker(ctx, BrokerSpec{Label: "ringtail", Args: []string{bin, "serve", "--listen", "{addr}", "--data-dir", "{dir}"}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	// The report's disk line comes from the broker's own start-up lines, never from the harness's
	// line naming the command.
	if io := brokerIO(p.Log()); !strings.Contains(io, "durability=") || !strings.Contains(io, "wal_io=") {
		t.Errorf("brokerIO = %q, want durability= and wal_io= from the start-up log", io)
	}
	c := DefaultConfig()
	c.Brokers, c.Topic, c.CreateTopic = []string{p.Addr}, "rt", true
	c.Duration, c.Warmup, c.Concurrency, c.BrokerPID = time.Second, 200*time.Millisecond, 16, p.PID()
	for _, rate := range []float64{0, 2000} {
		c.Rate = rate
		r, err := Run(ctx, c, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Messages == 0 || r.ErrorTotal != 0 || !r.BrokerCPU.Available {
			t.Errorf("%s: %d msgs, errors %v, broker CPU %+v", r.Workload, r.Messages, r.Errors, r.BrokerCPU)
		}
	}
	// The txn workload: transactions committed, none failed.
	tc, err := WorkloadConfig("txn", time.Second, 200*time.Millisecond, 0)
	if err != nil {
		t.Fatal(err)
	}
	tc.Brokers, tc.BrokerPID = []string{p.Addr}, p.PID()
	r, err := Run(ctx, tc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Messages == 0 || r.ErrorTotal != 0 || r.Latency.P50Us <= 0 {
		t.Errorf("txn: %d transactions, errors %v, commit p50 %d µs", r.Messages, r.Errors, r.Latency.P50Us)
	}
}

// With RINGTAIL_BIN set, a short bench of the three-broker cluster: it runs only its workload,
// reads every node's CPU and replication counters (sendfile: no byte copied), takes the profile,
// records every node's id in the pid file, and stops every node.
func TestBenchCluster(t *testing.T) {
	bin := os.Getenv("RINGTAIL_BIN")
	if bin == "" || testing.Short() {
		t.Skip("RINGTAIL_BIN not set")
	}
	out := t.TempDir()
	pidFile := filepath.Join(out, "pids")
	bc := BenchConfig{
		Brokers: []BrokerSpec{{Label: "ringtail-cluster", Args: []string{bin}, Nodes: 3, ReplicationFactor: 3,
			TopicConfigs: map[string]string{"min.insync.replicas": "2"}, Workloads: []string{"seed"}, Warmup: time.Second}},
		Baseline: "ringtail", Workloads: []string{"seed", "lone"}, Duration: 2 * time.Second, Warmup: 200 * time.Millisecond,
		OutDir: out, Stamp: "test", PIDFile: pidFile, Profile: true,
	}
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmp, err := RunBench(ctx, bc, &log)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmp.Results) != 1 {
		t.Fatalf("%d results, want seed only:\n%s", len(cmp.Results), log.String())
	}
	r := cmp.Results[0]
	if r.Failed != "" || r.ErrorTotal != 0 || r.Messages == 0 || !r.BrokerCPU.Available {
		t.Fatalf("cluster run: failed %q, %d msgs, errors %v, CPU %+v, notes %v", r.Failed, r.Messages, r.Errors, r.BrokerCPU, r.Notes)
	}
	cr := r.Cluster
	if cr == nil || len(cr.Nodes) != 3 || !cr.MetricsOK || cr.SentBytes <= 0 || cr.CopiesPerByte == nil || *cr.CopiesPerByte != 0 {
		t.Fatalf("cluster figures: %+v (notes %v)", cr, r.Notes)
	}
	var led int
	var cpu float64
	for _, n := range cr.Nodes {
		led += n.PartitionsLed
		cpu += n.CPU.TotalS
		if !n.CPU.Available {
			t.Errorf("node %d: no CPU", n.ID)
		}
	}
	var commits float64
	for _, n := range cr.Nodes {
		commits += n.Commits
		if n.Commits > 0 && (n.LocalMeanUs <= 0 || n.ReplicationMeanUs <= 0) {
			t.Errorf("node %d: %v acks=all appends, mean wait local %v µs, replication %v µs", n.ID, n.Commits, n.LocalMeanUs, n.ReplicationMeanUs)
		}
		// Every node writes what it leads and what it follows through its WAL.
		if n.WALCycles <= 0 || n.WALRecordsPerCycle < 1 || n.WALCycleMeanUs <= 0 {
			t.Errorf("node %d: WAL %v cycles of %v records, mean %v µs", n.ID, n.WALCycles, n.WALRecordsPerCycle, n.WALCycleMeanUs)
		}
	}
	if commits == 0 {
		t.Errorf("no node timed an acks=all append in the window: %+v", cr.Nodes)
	}
	if led != 6 || cpu < r.BrokerCPU.TotalS-0.05 || cpu > r.BrokerCPU.TotalS+0.05 {
		t.Errorf("partitions led %d (want 6); nodes' CPU %.2fs, the run's broker CPU %.2fs", led, cpu, r.BrokerCPU.TotalS)
	}
	if st, err := os.Stat(cr.Profile); err != nil || st.Size() == 0 {
		t.Errorf("profile %q: %v", cr.Profile, err)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pids := strings.Fields(string(raw))
	if len(pids) != 3 {
		t.Errorf("pid file holds %v, want the three nodes", pids)
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + pid); err == nil {
			t.Errorf("node process %s still running after the bench", pid)
		}
	}
}

func TestCompanionsRunBesideTheBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts broker processes")
	}
	bin := buildPeer(t)
	spec := BrokerSpec{Label: "kfake-mem", Args: []string{bin, "--listen", "{addr}"},
		Companions: [][]string{{bin, "--listen", "127.0.0.1:0", "--sync-load-dir", "{dir}", "--sync-load-rate", "100"}}}
	p, err := StartBroker(context.Background(), spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	load := filepath.Join(p.Dir, "companion-1", "sync-load")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(load); err == nil {
			break
		}
		if time.Now().After(deadline) {
			p.Stop()
			t.Fatalf("the companion's load file %s never appeared; log: %s", load, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !p.Alive() {
		t.Fatal("broker or companion not running")
	}
	p.Stop()
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Errorf("data and companion directories left behind: %v", err)
	}
	if len(p.companions) != 1 || p.companions[0].Running() {
		t.Errorf("the companion outlived Stop")
	}

	// A companion that stops makes the broker count as not alive: its run is not the one asked for.
	spec.Companions = [][]string{{"/bin/sh", "-c", "exit 0"}}
	p, err = StartBroker(context.Background(), spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	for p.Alive() {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatal("an exited companion still counts as alive")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(p.exitedCompanions(), "companion 1 exited") {
		t.Errorf("the exited companion is not named: %q", p.exitedCompanions())
	}
}

// kfake-mem-sync's peer does one raw sync inside each Produce request: after n single-record
// produces, acknowledged one at a time, the first n blocks of its file hold the counts 1..n and
// the next one is untouched.
func TestKfakeSyncsInsideEachProduce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bin := buildPeer(t)
	p, err := StartBroker(ctx, BrokerSpec{Label: "kfake-mem-sync", Args: []string{bin, "--listen", "{addr}", "--sync-each-produce", "{dir}"}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Addr), kgo.DefaultProduceTopic("t"), kgo.AllowAutoTopicCreation(),
		kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 5
	for i := 0; i < n; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	f, err := os.ReadFile(filepath.Join(p.Dir, "data", "sync-each-produce"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= n; i++ {
		want := uint64(i + 1)
		if i == n {
			want = 0
		}
		if got := binary.LittleEndian.Uint64(f[i*4096:]); got != want {
			t.Errorf("block %d holds %d, want %d", i, got, want)
		}
	}
}
