package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ringtail/ringtail/perf"
)

// runBench starts Ringtail and kfake (in memory, and persisted with SyncWrites) in turn, runs
// the seed, seed-pinned, throughput, open-loop, lone and txn workloads against each, and seed against a cluster of
// three Ringtail brokers (RF 3, min.insync.replicas=2), and prints the comparison.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	ringtail := fs.String("ringtail", "bin/ringtail", "Ringtail binary")
	kfake := fs.String("kfake", "bin/kfake-peer", "kfake-peer binary")
	base := fs.String("ringtail-base", "", "another Ringtail binary (an earlier build), run as broker ringtail-base, so a change is measured against its base in the same run")
	dur := fs.String("duration", envOr("BENCH_DURATION", "10s"), "measured duration per run (env BENCH_DURATION; a bare number is seconds)")
	warm := fs.Duration("warmup", 2*time.Second, "warm-up per run")
	rate := fs.Float64("rate", 20000, "open-loop offered rate, msg/s")
	brokers := fs.String("brokers", "ringtail,ringtail-cluster,kfake-mem,kfake-mem-sync,kfake-sync", "brokers to run, in order (also ringtail-none: --durability none, for issue 14's figures; kfake-mem-io: kfake in memory beside a durable broker's disk writes; kfake-mem-sync: kfake in memory with one raw sync inside each Produce request, lone only; ringtail-io2: Ringtail beside the other two cluster nodes' disk writes)")
	clusterWorkloads := fs.String("cluster-workloads", "seed", "the workloads ringtail-cluster runs (it skips the others)")
	clusterWarm := fs.Duration("cluster-warmup", 5*time.Second, "warm-up of the ringtail-cluster runs (after every partition's ISR is complete)")
	profile := fs.Bool("profile-cluster", false, "take a CPU profile of the ringtail-cluster node leading the most partitions over each measured window (<out>/<stamp>-<workload>-ringtail-cluster-node<N>.pprof)")
	pidFile := fs.String("pid-file", "", "append the id of every broker process started to this file, so a wrapper can stop any left behind")
	workloads := fs.String("workloads", "seed,seed-pinned,throughput,open-loop,lone,txn,consume", "workloads to run, in order (seed, throughput, open-loop, lone, txn, consume, e2e, consume-1000, e2e-1000; <name>-pinned runs the broker on one CPU and the client on the others)")
	out := fs.String("out", "bench/results", "results directory")
	commit := fs.String("commit", "unknown", "commit the results are for")
	noPlots := fs.Bool("no-plots", false, "skip the PNG plots")
	fs.Parse(args)

	d, err := parseDur(*dur)
	if err != nil {
		return fmt.Errorf("bad duration %q: %v", *dur, err)
	}
	// A disk load like one cluster node's WAL under seed (ringtail-io2).
	nodeLoad := []string{*kfake, "--listen", "127.0.0.1:0", "--sync-load-dir", "{dir}", "--sync-load-bytes", "16384", "--sync-load-rate", "1450"}
	all := map[string]perf.BrokerSpec{
		"ringtail": {Label: "ringtail", Args: []string{*ringtail, "serve", "--listen", "{addr}", "--data-dir", "{dir}"},
			Durability: "Ringtail default durability (fsync before ack)"},
		"ringtail-none": {Label: "ringtail-none", Args: []string{*ringtail, "serve", "--listen", "{addr}", "--data-dir", "{dir}", "--durability", "none"},
			Durability: "Ringtail with --durability none (acks after the segment write, no WAL, no sync waited for)"},
		"kfake-mem": {Label: "kfake-mem", Args: []string{*kfake, "--listen", "{addr}", "--partitions", "6"},
			Durability: "kfake in memory, no durability"},
		// What a durable broker's device traffic costs this machine by itself: kfake in memory
		// beside a loop of writes like the WAL's cycles under seed (about 16 KiB, one at a time,
		// 4,000 a second), acknowledging nothing by them.
		"kfake-mem-io": {Label: "kfake-mem-io", Args: []string{*kfake, "--listen", "{addr}", "--partitions", "6",
			"--sync-load-dir", "{dir}", "--sync-load-bytes", "16384", "--sync-load-rate", "4000"},
			Durability: "kfake in memory beside a disk load: 16 KiB O_DIRECT+RWF_DSYNC writes, one at a time, 4,000/s, acknowledging nothing"},
		// One broker beside the device traffic of the other two nodes of ringtail-cluster, which
		// share this machine's disk: each node's WAL made about 1,450 cycles of ~16 KiB a second
		// under seed (2026-12-03). What the cluster pays for one disk, without replication.
		"ringtail-io2": {Label: "ringtail-io2", Args: []string{*ringtail, "serve", "--listen", "{addr}", "--data-dir", "{dir}"},
			Durability: "Ringtail default durability, beside two disk loads like the other cluster nodes' WALs (16 KiB O_DIRECT+RWF_DSYNC writes, one at a time, 1,450/s each)",
			Companions: [][]string{nodeLoad, nodeLoad}},
		// The composite issue 14's lone target adds up (kfake's round trip + one raw sync), run
		// as one broker: kfake in memory doing the bench's raw sync inside every Produce request.
		"kfake-mem-sync": {Label: "kfake-mem-sync", Args: []string{*kfake, "--listen", "{addr}", "--partitions", "6", "--sync-each-produce", "{dir}"},
			Durability: "kfake in memory, one raw sync (4 KiB pwrite + fdatasync) inside every Produce request before it answers",
			Workloads:  []string{"lone", "lone-pinned"}},
		"kfake-sync": {Label: "kfake-sync", Args: []string{*kfake, "--listen", "{addr}", "--partitions", "6", "--persist-dir", "{dir}", "--sync-writes"},
			Durability: "kfake persisted, SyncWrites (fsync per batch)"},
	}
	all["ringtail-cluster"] = perf.BrokerSpec{Label: "ringtail-cluster", Args: []string{*ringtail},
		Durability:        "three Ringtail brokers on this machine (default durability each), topic RF 3, min.insync.replicas=2",
		Nodes:             3,
		ReplicationFactor: 3,
		TopicConfigs:      map[string]string{"min.insync.replicas": "2"},
		Workloads:         strings.Split(*clusterWorkloads, ","),
		Warmup:            *clusterWarm,
	}
	if *base != "" {
		all["ringtail-base"] = perf.BrokerSpec{Label: "ringtail-base", Args: []string{*base, "serve", "--listen", "{addr}", "--data-dir", "{dir}"},
			Durability: "Ringtail default durability, the base build (--ringtail-base)"}
	}
	now := time.Now()
	bc := perf.BenchConfig{
		Baseline:  "ringtail",
		Workloads: strings.Split(*workloads, ","),
		Duration:  d,
		Warmup:    *warm,
		Rate:      *rate,
		OutDir:    *out,
		Date:      now.Format("2006-01-02 15:04 MST"),
		Commit:    *commit,
		Stamp:     freeStamp(*out, now.Format("2006-01-02")+"-"+*commit),
		Plots:     !*noPlots,
		PIDFile:   *pidFile,
		Profile:   *profile,
	}
	for _, b := range strings.Split(*brokers, ",") {
		s, ok := all[b]
		if !ok {
			return fmt.Errorf("unknown broker %q (ringtail, ringtail-none, ringtail-io2, ringtail-cluster, kfake-mem, kfake-mem-io, kfake-mem-sync, kfake-sync; ringtail-base with --ringtail-base)", b)
		}
		bc.Brokers = append(bc.Brokers, s)
	}
	if perf.IsTerminal(os.Stderr) {
		bc.Progress = os.Stderr
	}
	cmp, err := perf.RunBench(ctx, bc, os.Stderr)
	if cmp == nil {
		return err
	}
	fmt.Println()
	perf.WriteComparison(os.Stdout, cmp)
	files, werr := perf.WriteBenchOutputs(bc, cmp)
	fmt.Println()
	for _, f := range files {
		fmt.Println("wrote", f)
	}
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	var bad []string
	for _, r := range cmp.Results {
		if r.Failed != "" || r.ErrorTotal > 0 {
			bad = append(bad, r.Name+"/"+r.Broker)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("runs with failures or errors: %s", strings.Join(bad, ", "))
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func parseDur(s string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// freeStamp returns stamp, or stamp-2, stamp-3 … if a result with that name already exists, so
// that a second run of the same commit on the same day does not overwrite the first.
func freeStamp(dir, stamp string) string {
	s := stamp
	for i := 2; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, s+".json")); os.IsNotExist(err) {
			return s
		}
		s = fmt.Sprintf("%s-%d", stamp, i)
	}
}
