package perf

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// BenchConfig drives `make bench`: the same workloads against several brokers the harness
// starts itself, one fresh broker process per workload.
type BenchConfig struct {
	Brokers   []BrokerSpec
	Baseline  string // label of the broker the ratios are for
	Workloads []string
	Duration  time.Duration
	Warmup    time.Duration
	Rate      float64 // open-loop offered rate
	OutDir    string  // results directory
	Stamp     string  // file name prefix: <date>-<commit>
	Date      string
	Commit    string
	Plots     bool
	Progress  io.Writer
	// PIDFile, when set, gets the id of every broker process the bench starts, one a line, as
	// soon as it is started: should the bench itself die without stopping them (SIGKILL, a
	// panic), its caller stops the ones left (perf/bench.sh does).
	PIDFile string
	// Profile takes a CPU profile of one node of each cluster run (the one leading the most
	// partitions) over the measured window, from its --debug-listen, into
	// <OutDir>/<Stamp>-<workload>-<label>-node<N>.pprof.
	Profile bool
}

// WorkloadConfig returns the Config of a named bench workload (see ../shared/PERF.md).
func WorkloadConfig(name string, d, w time.Duration, rate float64) (Config, error) {
	c := DefaultConfig()
	c.Topic = "bench-" + name
	c.CreateTopic = true
	c.Duration, c.Warmup = d, w
	// <workload>-pinned: the same load with the broker on one CPU and the client on the others
	// (one broker only), so that neither steals the other's CPU or cache.
	base, pinned := strings.CutSuffix(name, "-pinned")
	c.Pinned = pinned
	switch base {
	case "seed":
		// 128 producers × 1 record each, waiting for the ack; one shared client (see docs/benchmarks.md)
		c.Concurrency, c.Clients = 128, 1
	case "throughput":
		c.Pipeline = true
		c.Concurrency, c.Clients = 4, 4
		c.Linger = time.Millisecond
		c.BatchBytes = 64 << 10
		c.MaxInflight = 5
		c.MaxBuffered = 10000
	case "open-loop":
		c.Rate = rate
		c.Clients = 1
	case "lone":
		// One producer, one record at a time, one partition: the latency of a single durable ack,
		// compared with the disk's raw write+fdatasync (RawSync).
		c.Concurrency, c.Clients = 1, 1
		c.Partitions = 1
	case "txn":
		// 8 transactional producers, each committing transactions of 100 records (256 B) over
		// 6 partitions one after another: msg/s counts committed transactions, the latency is
		// the commit's (EndTxn, markers written).
		c.Mode = "txn"
		c.Concurrency, c.Clients = 8, 8
		c.Acks = "all"
		c.Idempotent = true
	case "e2e": // not in the default set: BENCH_WORKLOADS=seed,throughput,open-loop,e2e
		c.Mode = "e2e"
		c.Rate = rate
		c.Clients = 1
	case "consume":
		// One consumer reading a full topic from the start (issue 14's "fetch from a full
		// topic"): 2,000,000 records of 256 B over the 6 partitions, produced first. The rate is
		// of the whole read, connection included; broker CPU counts the read only.
		c.Mode = "consume"
		c.Prefill = 2_000_000
		c.Duration, c.Warmup = 0, 0
	case "consume-1000": // not in the default set: BENCH_WORKLOADS=consume-1000
		// One consumer reading 1,000 partitions from the start: 1,000 records of 256 B each,
		// produced first. The rate is of the whole read, connection included.
		c.Mode = "consume"
		c.Partitions = 1000
		c.Prefill = 1_000_000
		c.Duration, c.Warmup = 0, 0
	case "e2e-1000": // not in the default set
		// A consumer tailing 1,000 partitions while a producer sends at the open-loop rate: most
		// fetches find new data in a few partitions only, which is what fetch sessions (KIP-227)
		// are for; broker CPU per message shows what a full fetch of every partition costs.
		c.Mode = "e2e"
		c.Rate = rate
		c.Clients = 1
		c.Partitions = 1000
	default:
		return c, fmt.Errorf("unknown bench workload %q (seed, throughput, open-loop, lone, txn, consume, e2e, consume-1000, e2e-1000; each also as <name>-pinned)", name)
	}
	return c, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// RunBench runs every workload against every broker, workload by workload (so the brokers
// compared on one workload are measured close together in time), and returns the comparison.
// A broker that fails to start or a run that fails is recorded as failed; the rest go on.
func RunBench(ctx context.Context, bc BenchConfig, log io.Writer) (*Comparison, error) {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	cmp := &Comparison{
		Date:     bc.Date,
		Commit:   bc.Commit,
		Baseline: bc.Baseline,
		Machine: map[string]any{
			"cpus":          runtime.NumCPU(),
			"go":            runtime.Version(),
			"kernel":        strings.TrimSpace(string(kernel)),
			"loadavg_start": loadavg(),
		},
	}
	for _, s := range bc.Brokers {
		cmp.Brokers = append(cmp.Brokers, BrokerInfo{Label: s.Label, Command: strings.Join(s.Args, " "), Durability: s.Durability, Nodes: s.Nodes})
	}
	tmp, err := os.MkdirTemp("", "ringtail-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for _, wl := range bc.Workloads {
		var rawBefore []time.Duration
		if wl == "lone" {
			if rawBefore, err = rawSyncSamples(tmp, 1000); err != nil {
				fmt.Fprintf(log, "bench: raw 4 KiB write+fdatasync: %v\n", err)
			}
		}
		for bi, spec := range bc.Brokers {
			if ctx.Err() != nil {
				return cmp, ctx.Err()
			}
			if !spec.runs(wl) {
				continue
			}
			c, err := WorkloadConfig(wl, bc.Duration, bc.Warmup, bc.Rate)
			if err != nil {
				return nil, err
			}
			if spec.Warmup > 0 {
				c.Warmup = spec.Warmup
			}
			if spec.ReplicationFactor > 0 {
				c.ReplicationFactor = spec.ReplicationFactor
			}
			if spec.TopicConfigs != nil {
				c.TopicConfigs = spec.TopicConfigs
			}
			var res *Result
			if spec.Nodes > 1 {
				res = benchCluster(ctx, bc, spec, c, wl, tmp, &cmp.Brokers[bi])
			} else {
				res = benchOne(ctx, bc, spec, c, wl, tmp, &cmp.Brokers[bi])
			}
			fmt.Fprintf(log, "bench: %-10s on %-10s … ", wl, spec.Label)
			if res.Failed != "" {
				fmt.Fprintf(log, "FAILED: %s\n", oneLine(res.Failed, 300))
			} else {
				fmt.Fprintf(log, "%s msg/s, p99 %s, %d errors\n", fmtCount(res.MsgPerSec), fmtUs(res.Latency.P99Us), res.ErrorTotal)
			}
			cmp.Results = append(cmp.Results, res)
		}
		if rawBefore != nil {
			rawAfter, err := rawSyncSamples(tmp, 1000)
			if err != nil {
				fmt.Fprintf(log, "bench: raw 4 KiB write+fdatasync: %v\n", err)
				continue
			}
			raw := RawSyncAround(rawBefore, rawAfter)
			cmp.RawSync = &raw
		}
	}
	cmp.Machine["loadavg_end"] = loadavg()
	cmp.ComputeRatios()
	return cmp, nil
}

// failedResult is the result of a run that could not be made.
func failedResult(spec BrokerSpec, c Config, wl, format string, args ...any) *Result {
	r := &Result{Name: wl, Broker: spec.Label, Workload: c.Workload(), Config: c, Failed: fmt.Sprintf(format, args...), Errors: map[string]int64{}}
	r.Config.Validate()
	return r
}

func benchOne(ctx context.Context, bc BenchConfig, spec BrokerSpec, c Config, wl, tmp string, info *BrokerInfo) *Result {
	progress := bc.Progress
	failed := func(format string, args ...any) *Result { return failedResult(spec, c, wl, format, args...) }
	var brokerCPUs, clientCPUs []int
	if c.Pinned {
		var err error
		if brokerCPUs, clientCPUs, err = splitCPUs(); err != nil {
			return failed("pinned: %v", err)
		}
	}
	p, err := startBroker(ctx, spec, tmp, brokerCPUs, func(pid int) { recordPID(bc.PIDFile, pid) })
	if err != nil {
		return failed("%v", err)
	}
	defer p.Stop()
	if c.Pinned {
		unpin, err := pinSelf(clientCPUs)
		if err != nil {
			return failed("pinned: %v", err)
		}
		defer unpin()
	}
	if info.IO == "" {
		info.IO = brokerIO(p.Log())
	}
	c.Brokers = []string{p.Addr}
	c.BrokerPID = p.PID()
	res, err := Run(ctx, c, Options{Name: wl, Broker: spec.Label, Progress: progress})
	if err != nil {
		return failed("%v; broker log: %s", err, tail(p.Log(), 400))
	}
	if res.Messages == 0 && res.ErrorTotal == 0 {
		res.Failed = "no message was acknowledged in the measured window"
	}
	if !p.Alive() {
		// A run whose companion load stopped is not the run asked for either.
		res.Notes = append(res.Notes, "broker or a companion exited during the run: "+p.exitedCompanions()+tail(p.Log(), 400))
		if res.ErrorTotal == 0 {
			res.Failed = "broker or a companion exited during the run"
		}
	}
	res.Notes = append(res.Notes, "load average before stop: "+loadavg())
	return res
}

// recordPID appends pid to the bench's pid file, if it has one (BenchConfig.PIDFile).
func recordPID(path string, pid int) {
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintln(f, pid)
	f.Close()
}

// brokerIO says how a broker reaches its disk, from its start-up log: Ringtail logs
// "storage recovered … durability=… wal_io=…" and a warning when io_uring is not in use. The
// fields are read from the whole line: an earlier, longer line (the engine's) also names wal_io,
// and FindLine's report-sized cut lost both fields.
func brokerIO(log string) string {
	var parts []string
	for _, f := range strings.Fields(logLine(log, "durability=")) {
		if strings.HasPrefix(f, "durability=") || strings.HasPrefix(f, "wal_io=") {
			parts = append(parts, f)
		}
	}
	if warn := oneLine(strings.TrimSpace(logLine(log, "io_uring is not in use")), 160); warn != "" {
		parts = append(parts, "fallback: "+warn)
	}
	return strings.Join(parts, " ")
}

// WriteBenchOutputs writes <stamp>.json and one comparison plot per workload into bc.OutDir.
func WriteBenchOutputs(bc BenchConfig, cmp *Comparison) (files []string, err error) {
	if err := os.MkdirAll(bc.OutDir, 0o755); err != nil {
		return nil, err
	}
	jp := filepath.Join(bc.OutDir, bc.Stamp+".json")
	if err := WriteJSON(jp, cmp); err != nil {
		return nil, err
	}
	files = append(files, jp)
	if !bc.Plots {
		return files, nil
	}
	for _, wl := range bc.Workloads {
		var rs []*Result
		for _, r := range cmp.Results {
			if r.Name == wl {
				rs = append(rs, r)
			}
		}
		pp := filepath.Join(bc.OutDir, bc.Stamp+"-"+wl+".png")
		if err := PlotComparison(pp, wl, rs); err != nil {
			continue // nothing to plot (every broker failed)
		}
		files = append(files, pp)
	}
	return files, nil
}
