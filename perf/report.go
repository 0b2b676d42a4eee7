package perf

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

// fmtUs renders a latency in µs as µs, ms or s with three significant figures.
func fmtUs(us int64) string {
	switch {
	case us <= 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%dµs", us)
	case us < 10_000:
		return fmt.Sprintf("%.2fms", float64(us)/1e3)
	case us < 100_000:
		return fmt.Sprintf("%.1fms", float64(us)/1e3)
	case us < 1_000_000:
		return fmt.Sprintf("%.0fms", float64(us)/1e3)
	}
	return fmt.Sprintf("%.2fs", float64(us)/1e6)
}

// FormatUs is fmtUs for other packages.
func FormatUs(us int64) string { return fmtUs(us) }

func fmtCPU(c CPUUsage) string {
	if !c.Available {
		return "-"
	}
	return fmt.Sprintf("%.1f", c.UsPerMsg)
}

// DescribeConfig is a one-line summary of a run's configuration.
func DescribeConfig(c *Config) string {
	var shape string
	switch c.Workload() {
	case "closed-loop":
		shape = fmt.Sprintf("closed loop, %d producers on %d client(s) each waiting for its ack", c.Concurrency, c.Clients)
	case "pipelined":
		shape = fmt.Sprintf("pipelined, %d producers on %d client(s), linger %s, batches ≤ %d B, ≤ %d in flight, %d buffered/client",
			c.Concurrency, c.Clients, fmtMs(c.LingerMs), c.BatchBytes, c.MaxInflight, c.MaxBuffered)
	case "open-loop":
		shape = fmt.Sprintf("open loop at %s msg/s on %d client(s), latency from scheduled send time", fmtCount(c.Rate), c.Clients)
	case "e2e":
		shape = fmt.Sprintf("produce→consume at %s msg/s, latency from scheduled send time to receipt by a tailing consumer", fmtCount(c.Rate))
	case "txn":
		shape = fmt.Sprintf("%d transactional producers, each committing transactions of %d records in turn; msg/s counts committed transactions, latency is the commit's (EndTxn)",
			c.Concurrency, txnRecords)
	default:
		shape = c.Workload()
	}
	if c.Pinned {
		shape += "; pinned: the broker on one CPU, the client on the others"
	}
	return fmt.Sprintf("%s; %d B records, acks=%s, %d partitions, compression %s, %.0fs after %.0fs warm-up",
		shape, c.Size, c.Acks, c.Partitions, c.Compression, c.DurationS, c.WarmupS)
}

// WriteText writes the human-readable report of one run.
func WriteText(w io.Writer, r *Result) {
	c := r.Config
	fmt.Fprintf(w, "%s", r.Workload)
	if r.Name != "" {
		fmt.Fprintf(w, " [%s]", r.Name)
	}
	if r.Broker != "" {
		fmt.Fprintf(w, " against %s", r.Broker)
	}
	fmt.Fprintf(w, " — topic %s, %d partitions, %d B records, acks=%s, compression %s, keys %s\n",
		c.Topic, c.Partitions, c.Size, c.Acks, c.Compression, c.Keys)
	switch r.Workload {
	case "closed-loop":
		fmt.Fprintf(w, "  %d producers on %d client(s), each waiting for its ack\n", c.Concurrency, c.Clients)
	case "pipelined":
		fmt.Fprintf(w, "  %d producers on %d client(s), linger %s, batch %d B, max in flight %d\n", c.Concurrency, c.Clients, fmtMs(c.LingerMs), c.BatchBytes, c.MaxInflight)
	case "open-loop", "e2e":
		fmt.Fprintf(w, "  offered %s msg/s on %d client(s), latency from scheduled send time\n", fmtCount(c.Rate), c.Clients)
	}
	if c.Pinned {
		fmt.Fprintf(w, "  pinned: the broker on one CPU, the client on the others\n")
	}
	if r.Failed != "" {
		fmt.Fprintf(w, "  FAILED: %s\n", r.Failed)
		return
	}
	fmt.Fprintf(w, "  window %.1fs after %.1fs warm-up\n", r.WindowS, c.WarmupS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "msgs\tmsg/s\tMB/s\tp50\tp99\tp99.9\tmax\terrors\tclient CPU-µs/msg\tbroker CPU-µs/msg\t")
	fmt.Fprintf(tw, "%d\t%s\t%.1f\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", r.Messages, fmtCount(r.MsgPerSec), r.MBPerSec,
		fmtUs(r.Latency.P50Us), fmtUs(r.Latency.P99Us), fmtUs(r.Latency.P999Us), fmtUs(r.Latency.MaxUs),
		r.ErrorTotal, fmtCPU(r.ClientCPU), fmtCPU(r.BrokerCPU))
	tw.Flush()
	if r.BrokerCPU.Available {
		fmt.Fprintf(w, "  broker CPU %.2fs user + %.2fs sys; client CPU %.2fs user + %.2fs sys\n", r.BrokerCPU.UserS, r.BrokerCPU.SysS, r.ClientCPU.UserS, r.ClientCPU.SysS)
	} else {
		fmt.Fprintf(w, "  client CPU %.2fs user + %.2fs sys\n", r.ClientCPU.UserS, r.ClientCPU.SysS)
	}
	if f := r.Fairness; f != nil && f.Producers > 1 {
		fmt.Fprintf(w, "  fairness: per-producer msgs min %d / mean %.0f / max %d, Jain index %.3f\n", f.Min, f.Mean, f.Max, f.Jain)
	}
	if r.Latency.Clamped > 0 {
		fmt.Fprintf(w, "  %d latencies outside 1µs–60s were clamped into range\n", r.Latency.Clamped)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "  errors:")
		for _, k := range sortedKeys(r.Errors) {
			fmt.Fprintf(w, "    %-40s %d\n", k, r.Errors[k])
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

func fmtMs(ms float64) string {
	if ms == 0 {
		return "0"
	}
	return fmt.Sprintf("%gms", ms)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// WriteJSON writes v as indented JSON to path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Comparison is a bench run: the same workloads against several brokers.
type Comparison struct {
	Date     string         `json:"date"`
	Commit   string         `json:"commit"`
	Machine  map[string]any `json:"machine"`
	Brokers  []BrokerInfo   `json:"brokers"`
	Results  []*Result      `json:"results"`
	Ratios   []Ratio        `json:"ratios"`
	Baseline string         `json:"baseline"`              // the broker the ratios are taken for (ringtail)
	RawSync  *RawSync       `json:"raw_sync_4k,omitempty"` // the disk's floor, measured when "lone" runs
	// ClusterRatios are each cluster's figures over each single broker's on the same workload
	// (cluster/peer: the price of replication), with the targets against the baseline.
	ClusterRatios []ClusterRatio `json:"cluster_ratios,omitempty"`
}

// The targets of a three-broker RF=3 cluster against the single broker on seed, same run
// (../shared/PERF.md, issue 12): msg/s at least this fraction, p99 at most this multiple.
const (
	ClusterMinMsgRatio = 0.5
	ClusterMaxP99Ratio = 2.0
)

// ClusterRatio is a cluster's result over a single broker's on one workload.
type ClusterRatio struct {
	Workload      string   `json:"workload"`
	Cluster       string   `json:"cluster"`
	Peer          string   `json:"peer"`
	MsgPerSec     *float64 `json:"msg_per_s"`
	P99           *float64 `json:"p99"`
	BrokerCPUPMsg *float64 `json:"broker_cpu_us_per_msg"` // all the cluster's brokers over the peer
	// Against the baseline only: whether msg/s ≥ ClusterMinMsgRatio× and p99 ≤ ClusterMaxP99Ratio×.
	MsgPerSecMet *bool `json:"msg_per_s_met,omitempty"`
	P99Met       *bool `json:"p99_met,omitempty"`
}

// BrokerInfo describes a broker the bench started.
type BrokerInfo struct {
	Label      string `json:"label"`
	Command    string `json:"command"`
	Durability string `json:"durability"`
	IO         string `json:"io,omitempty"`
	Nodes      int    `json:"nodes,omitempty"` // > 1: a cluster of that many brokers
}

// Ratio is Baseline/peer for one workload.
type Ratio struct {
	Workload      string   `json:"workload"`
	Peer          string   `json:"peer"`
	MsgPerSec     *float64 `json:"msg_per_s"`
	P99           *float64 `json:"p99"`
	BrokerCPUPMsg *float64 `json:"broker_cpu_us_per_msg"`
}

func ratio(a, b float64, ok bool) *float64 {
	if !ok || a <= 0 || b <= 0 {
		return nil
	}
	v := a / b
	return &v
}

// ComputeRatios fills c.Ratios: for every workload, baseline over each other single broker that
// ran it; and c.ClusterRatios: each cluster over each single broker.
func (c *Comparison) ComputeRatios() {
	c.Ratios, c.ClusterRatios = nil, nil
	find := func(w, b string) *Result {
		for _, r := range c.Results {
			if r.Name == w && r.Broker == b {
				return r
			}
		}
		return nil
	}
	ok := func(r *Result) bool { return r != nil && r.Failed == "" }
	for _, w := range c.workloads() {
		for _, cb := range c.Brokers {
			clr := find(w, cb.Label)
			if cb.Nodes < 2 || clr == nil {
				continue
			}
			for _, b := range c.Brokers {
				peer := find(w, b.Label)
				if b.Nodes > 1 || peer == nil {
					continue
				}
				cr := ClusterRatio{Workload: w, Cluster: cb.Label, Peer: b.Label}
				if ok(clr) && ok(peer) {
					cr.MsgPerSec = ratio(clr.MsgPerSec, peer.MsgPerSec, true)
					cr.P99 = ratio(float64(clr.Latency.P99Us), float64(peer.Latency.P99Us), true)
					cr.BrokerCPUPMsg = ratio(clr.BrokerCPU.UsPerMsg, peer.BrokerCPU.UsPerMsg, clr.BrokerCPU.Available && peer.BrokerCPU.Available)
					if b.Label == c.Baseline {
						if cr.MsgPerSec != nil {
							met := *cr.MsgPerSec >= ClusterMinMsgRatio && clr.ErrorTotal == 0
							cr.MsgPerSecMet = &met
						}
						if cr.P99 != nil {
							met := *cr.P99 <= ClusterMaxP99Ratio && clr.ErrorTotal == 0
							cr.P99Met = &met
						}
					}
				}
				c.ClusterRatios = append(c.ClusterRatios, cr)
			}
		}
		base := find(w, c.Baseline)
		for _, b := range c.Brokers {
			if b.Label == c.Baseline || b.Nodes > 1 {
				continue
			}
			peer := find(w, b.Label)
			if peer == nil {
				continue // it does not run this workload
			}
			rt := Ratio{Workload: w, Peer: b.Label}
			if base != nil && peer != nil && base.Failed == "" && peer.Failed == "" {
				rt.MsgPerSec = ratio(base.MsgPerSec, peer.MsgPerSec, true)
				rt.P99 = ratio(float64(base.Latency.P99Us), float64(peer.Latency.P99Us), true)
				rt.BrokerCPUPMsg = ratio(base.BrokerCPU.UsPerMsg, peer.BrokerCPU.UsPerMsg, base.BrokerCPU.Available && peer.BrokerCPU.Available)
			}
			c.Ratios = append(c.Ratios, rt)
		}
	}
}

func (c *Comparison) workloads() []string {
	var ws []string
	seen := map[string]bool{}
	for _, r := range c.Results {
		if !seen[r.Name] {
			seen[r.Name] = true
			ws = append(ws, r.Name)
		}
	}
	return ws
}

func fmtRatio(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", *v)
}

// WriteComparison prints the side-by-side table and the ratios.
func WriteComparison(w io.Writer, c *Comparison) {
	fmt.Fprintf(w, "Ringtail bench %s, commit %s", c.Date, c.Commit)
	if m := c.Machine; m != nil {
		fmt.Fprintf(w, ", %v CPUs, %v", m["cpus"], m["go"])
	}
	fmt.Fprintln(w)
	for _, b := range c.Brokers {
		fmt.Fprintf(w, "  %-12s %s", b.Label, b.Durability)
		if b.IO != "" {
			fmt.Fprintf(w, ", io: %s", b.IO)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tbroker\tmsg/s\tMB/s\tp50\tp99\tp99.9\tmax\terrors\tbroker CPU-µs/msg\tclient CPU-µs/msg\t")
	for _, r := range c.Results {
		if r.Failed != "" {
			fmt.Fprintf(tw, "%s\t%s\tFAILED: %s\t\t\t\t\t\t\t\t\t\n", r.Name, r.Broker, oneLine(r.Failed, 70))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", r.Name, r.Broker, fmtCount(r.MsgPerSec), r.MBPerSec,
			fmtUs(r.Latency.P50Us), fmtUs(r.Latency.P99Us), fmtUs(r.Latency.P999Us), fmtUs(r.Latency.MaxUs),
			r.ErrorTotal, fmtCPU(r.BrokerCPU), fmtCPU(r.ClientCPU))
	}
	tw.Flush()
	seen := map[string]bool{}
	for _, r := range c.Results {
		if !seen[r.Name] {
			seen[r.Name] = true
			fmt.Fprintf(w, "  %s: %s\n", r.Name, DescribeConfig(&r.Config))
		}
	}
	if len(c.Ratios) > 0 {
		writeRatios(w, c)
	}
	writeCluster(w, c)
	writeRawSync(w, c)
	writeErrors(w, c)
}

func writeRatios(w io.Writer, c *Comparison) {
	fmt.Fprintf(w, "\nratios %s/peer (msg/s: higher is better; p99 and CPU-µs/msg: lower is better)\n", c.Baseline)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tpeer\tmsg/s\tp99\tbroker CPU-µs/msg\t")
	for _, r := range c.Ratios {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", r.Workload, r.Peer, fmtRatio(r.MsgPerSec), fmtRatio(r.P99), fmtRatio(r.BrokerCPUPMsg))
	}
	tw.Flush()
}

// writeCluster prints each cluster over each single broker, whether the targets are met, and
// what the cluster run measured of replication: the copy count, bytes sent, CPU per node.
func writeCluster(w io.Writer, c *Comparison) {
	if len(c.ClusterRatios) > 0 {
		fmt.Fprintf(w, "\ncluster/peer, same run (targets against %s: msg/s ≥ %.2f×, p99 ≤ %.2f×)\n", c.Baseline, ClusterMinMsgRatio, ClusterMaxP99Ratio)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "workload\tcluster\tpeer\tmsg/s\tp99\tbroker CPU-µs/msg\ttargets\t")
		for _, r := range c.ClusterRatios {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Workload, r.Cluster, r.Peer, fmtRatio(r.MsgPerSec), fmtRatio(r.P99),
				fmtRatio(r.BrokerCPUPMsg), fmtTargets(r))
		}
		tw.Flush()
	}
	for _, r := range c.Results {
		cr := r.Cluster
		if cr == nil || r.Failed != "" {
			continue
		}
		fmt.Fprintf(w, "%s/%s: %d brokers, RF %d", r.Name, r.Broker, len(cr.Nodes), cr.ReplicationFactor)
		for _, k := range sortedKeys(r.Config.TopicConfigs) {
			fmt.Fprintf(w, ", %s=%s", k, r.Config.TopicConfigs[k])
		}
		fmt.Fprintln(w)
		if cr.MetricsOK {
			copies := "n/a (nothing replicated)"
			if cr.CopiesPerByte != nil {
				copies = fmt.Sprintf("%.3f", *cr.CopiesPerByte)
			}
			fmt.Fprintf(w, "  replication in the window: %.1f MB sent to followers (%.0f B per acknowledged message; %.1f MB from the appended buffers with writev, the rest from segment files with sendfile), %.0f B copied through user space: %s copies per replicated byte\n",
				cr.SentBytes/1e6, cr.SentBytesPerMsg, cr.FromMemoryBytes/1e6, cr.CopiedBytes, copies)
			fmt.Fprintf(w, "  since start: %.1f MB sent, %.0f B copied\n", cr.SentBytesTotal/1e6, cr.CopiedBytesTotal)
		} else {
			fmt.Fprintln(w, "  replication counters: not read (see the notes in the JSON)")
		}
		for _, n := range cr.Nodes {
			fmt.Fprintf(w, "  node %d: leads %d partitions, CPU %.2fs user + %.2fs sys = %s µs/msg, sent %.1f MB",
				n.ID, n.PartitionsLed, n.CPU.UserS, n.CPU.SysS, fmtCPU(n.CPU), n.SentBytes/1e6)
			if n.Commits > 0 {
				fmt.Fprintf(w, "; %.0f acks=all appends answered, mean wait %s durable here + %s for the followers",
					n.Commits, fmtUs(int64(n.LocalMeanUs)), fmtUs(int64(n.ReplicationMeanUs)))
			}
			if n.WALCycles > 0 {
				fmt.Fprintf(w, "; WAL %.0f cycles of %.1f records, mean %s",
					n.WALCycles, n.WALRecordsPerCycle, fmtUs(int64(n.WALCycleMeanUs)))
			}
			fmt.Fprintln(w)
		}
		if cr.Profile != "" {
			fmt.Fprintf(w, "  CPU profile of node %d over the window: %s\n", cr.ProfileNode, cr.Profile)
		}
	}
}

func fmtTargets(r ClusterRatio) string {
	if r.MsgPerSecMet == nil && r.P99Met == nil {
		return ""
	}
	word := func(b *bool) string {
		switch {
		case b == nil:
			return "n/a"
		case *b:
			return "met"
		}
		return "NOT met"
	}
	return fmt.Sprintf("msg/s %s, p99 %s", word(r.MsgPerSecMet), word(r.P99Met))
}

func writeRawSync(w io.Writer, c *Comparison) {
	if c.RawSync == nil {
		return
	}
	fmt.Fprintf(w, "\nraw 4 KiB write+fdatasync (queue depth 1, preallocated file): p50 %s, p99 %s",
		fmtUs(int64(c.RawSync.P50Us)), fmtUs(int64(c.RawSync.P99Us)))
	if c.RawSync.BeforeP50Us > 0 {
		fmt.Fprintf(w, " (p50 %s just before the lone runs, %s just after)",
			fmtUs(int64(c.RawSync.BeforeP50Us)), fmtUs(int64(c.RawSync.AfterP50Us)))
	}
	fmt.Fprintln(w)
	var peer, composite *Result
	for _, r := range c.Results {
		if r.Name == "lone" && r.Failed == "" {
			switch r.Broker {
			case "kfake-mem":
				peer = r
			case "kfake-mem-sync":
				composite = r
			}
		}
	}
	for _, r := range c.Results {
		if r.Name != "lone" || r.Failed != "" || c.RawSync.P50Us <= 0 {
			continue
		}
		fmt.Fprintf(w, "  lone acks=all produce on %-10s p50 %s = %.2f× the raw sync",
			r.Broker, fmtUs(r.Latency.P50Us), float64(r.Latency.P50Us)/c.RawSync.P50Us)
		// Issue 14's measure of what a durable lone produce adds to an in-memory broker's round
		// trip and the disk's sync.
		// kfake-mem-sync is that sum run as one broker: what it shows over the sum is what one
		// sync costs a request's round trip on this machine beyond the sync's own time.
		if peer != nil && r != peer && (strings.HasPrefix(r.Broker, "ringtail") || r == composite) {
			fmt.Fprintf(w, "; − (kfake-mem's p50 + the raw sync's) = %+d µs",
				int64(math.Round(float64(r.Latency.P50Us)-float64(peer.Latency.P50Us)-c.RawSync.P50Us)))
		}
		if composite != nil && strings.HasPrefix(r.Broker, "ringtail") {
			fmt.Fprintf(w, "; %.2f× kfake-mem-sync's p50", float64(r.Latency.P50Us)/float64(composite.Latency.P50Us))
		}
		fmt.Fprintln(w)
	}
}

func writeErrors(w io.Writer, c *Comparison) {
	var errs []string
	for _, r := range c.Results {
		for _, k := range sortedKeys(r.Errors) {
			errs = append(errs, fmt.Sprintf("  %s/%s: %s × %d", r.Name, r.Broker, k, r.Errors[k]))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintln(w, "\nerrors by code:")
		fmt.Fprintln(w, strings.Join(errs, "\n"))
	}
}

func oneLine(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
