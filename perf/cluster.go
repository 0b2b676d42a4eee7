package perf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ringtail/ringtail/test/cluster"
)

// ClusterRun is what a run against a cluster measured besides the usual figures: per node, the
// partitions it led, its CPU and its replication traffic over the measured window; the
// replication copy count (bytes copied through user space per byte sent to followers, 0 when
// every batch goes out with sendfile).
type ClusterRun struct {
	Nodes             []ClusterNode `json:"nodes"`
	ReplicationFactor int16         `json:"replication_factor"`
	// Over the measured window, summed over the nodes (false MetricsOK: a scrape failed).
	MetricsOK       bool     `json:"metrics_ok"`
	SentBytes       float64  `json:"replication_sent_bytes"`
	CopiedBytes     float64  `json:"replication_copied_bytes"`
	FromMemoryBytes float64  `json:"replication_sent_from_memory_bytes"` // of SentBytes, with writev from the appended buffers
	CopiesPerByte   *float64 `json:"copies_per_replicated_byte"`         // CopiedBytes / SentBytes
	SentBytesPerMsg float64  `json:"replication_sent_bytes_per_msg"`
	// Since the brokers started, at the end of the window: warm-up and catch-up included.
	SentBytesTotal   float64 `json:"replication_sent_bytes_total"`
	CopiedBytesTotal float64 `json:"replication_copied_bytes_total"`
	// Profile is the CPU profile taken of one node over the window (BenchConfig.Profile).
	Profile     string `json:"profile,omitempty"`
	ProfileNode int    `json:"profile_node,omitempty"`
}

// ClusterNode is one broker of a cluster run.
type ClusterNode struct {
	ID            int      `json:"id"`
	Addr          string   `json:"addr"`
	PID           int      `json:"pid"`
	PartitionsLed int      `json:"partitions_led"`
	CPU           CPUUsage `json:"cpu"` // µs per message of the whole cluster's messages
	SentBytes     float64  `json:"replication_sent_bytes"`
	CopiedBytes   float64  `json:"replication_copied_bytes"`
	// The acks=all appends this node answered as leader in the window, and their mean wait
	// until durable here (local) and then until the high watermark passed them (replication).
	Commits           float64 `json:"committed_appends"`
	LocalMeanUs       float64 `json:"committed_local_mean_us"`
	ReplicationMeanUs float64 `json:"committed_replication_mean_us"`
	// The WAL's cycles in the window (leader and follower appends alike), the records each
	// carried and the mean time of one (write and sync): a node's device traffic.
	WALCycles          float64 `json:"wal_cycles"`
	WALRecordsPerCycle float64 `json:"wal_records_per_cycle"`
	WALCycleMeanUs     float64 `json:"wal_cycle_mean_us"`
}

// nodeSample is one reading of a node at an edge of the window.
type nodeSample struct {
	user, sys      time.Duration
	cpuOK          bool
	sent, copied   float64
	fromMemory     float64
	commits        float64 // committed appends answered (acks=all produces and the like)
	localS, replS  float64 // their summed local and replication times, seconds
	walCycles      float64
	walRecords     float64
	walCycleS      float64
	metricsOK      bool
	metricsFailure string
}

// clusterPorts are the addresses each node gets besides its Kafka listener.
var clusterPorts = []string{"raft", "replication", "metrics", "debug"}

// clusterStopTimeout bounds a node's controlled shutdown (SIGTERM); past it the node is killed.
const clusterStopTimeout = 20 * time.Second

// clusterWait bounds each step of bringing the cluster up (registration, topic, full ISR).
const clusterWait = 60 * time.Second

// benchCluster runs workload c against spec.Nodes Ringtail brokers started together on this
// machine (test/cluster), with spec's replication factor and topic configs: the topic is made,
// every partition's ISR must be complete, then the run measures the cluster's figures with the
// CPU of every node summed, and each node's replication counters from its --metrics-listen over
// the same window. Every node is stopped before it returns, whatever happened.
func benchCluster(ctx context.Context, bc BenchConfig, spec BrokerSpec, c Config, wl, tmp string, info *BrokerInfo) *Result {
	failed := func(format string, args ...any) *Result { return failedResult(spec, c, wl, format, args...) }
	if len(spec.Args) == 0 {
		return failed("no Ringtail binary for the cluster")
	}
	if c.Pinned {
		return failed("the pinned mode runs one broker on one CPU, not a cluster")
	}
	dir, err := os.MkdirTemp(tmp, spec.Label+"-")
	if err != nil {
		return failed("%v", err)
	}
	defer os.RemoveAll(dir)
	cl, err := cluster.NewCluster(cluster.ClusterConfig{
		Brokers: spec.Nodes,
		Dir:     dir,
		Bin:     spec.Args[0],
		Args:    spec.Args[1:],
		Ports:   clusterPorts,
		BrokerArgs: func(b *cluster.Broker, all []*cluster.Broker) []string {
			return []string{"--node-id", strconv.Itoa(b.ID()), "--raft-addr", b.ExtraAddr("raft"),
				"--replication-listen", b.ExtraAddr("replication"), "--peers", cluster.Peers(all, "raft"),
				"--metrics-listen", b.ExtraAddr("metrics"), "--debug-listen", b.ExtraAddr("debug")}
		},
		OnStart:     func(_ *cluster.Broker, pid int) { recordPID(bc.PIDFile, pid) },
		StopTimeout: clusterStopTimeout,
	})
	if err != nil {
		return failed("%v", err)
	}
	var stopErr error
	stop := sync.OnceFunc(func() { stopErr = stopCluster(cl) })
	defer stop()
	if err := cl.Start(ctx); err != nil {
		return failed("start: %v; logs: %s", err, clusterLogs(cl, 300))
	}
	if info.IO == "" {
		info.IO = brokerIO(cl.Broker(1).Log())
	}
	addrs := cl.Addrs()
	leaders, err := prepareClusterTopic(ctx, addrs, &c, spec.Nodes)
	if err != nil {
		return failed("%v; logs: %s", err, clusterLogs(cl, 300))
	}

	nodes := cl.Brokers()
	pids := make([]int, len(nodes))
	for i, b := range nodes {
		pids[i] = b.Process().Pid()
	}
	c.Brokers, c.BrokerPIDs, c.BrokerPID = addrs, pids, 0

	// The node leading the most partitions (the lowest id on a tie) is the one profiled.
	prof := nodes[0]
	for _, b := range nodes {
		if leaders[int32(b.ID())] > leaders[int32(prof.ID())] {
			prof = b
		}
	}
	var (
		edges      [2][]nodeSample
		profPath   string
		profErr    error
		profWG     sync.WaitGroup
		profCancel = func() {}
	)
	defer func() { profCancel(); profWG.Wait() }()
	edge := func(end bool) {
		i := 0
		if end {
			i = 1
		}
		edges[i] = sampleNodes(ctx, nodes)
		if !end && bc.Profile {
			secs := max(1, int(c.Duration/time.Second))
			profPath = filepath.Join(bc.OutDir, fmt.Sprintf("%s-%s-%s-node%d.pprof", bc.Stamp, wl, spec.Label, prof.ID()))
			pctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
			profCancel = cancel
			profWG.Add(1)
			go func() {
				defer profWG.Done()
				profErr = fetchProfile(pctx, prof.ExtraAddr("debug"), secs, profPath)
			}()
		}
	}
	res, err := Run(ctx, c, Options{Name: wl, Broker: spec.Label, Progress: bc.Progress, Edge: edge})
	profWG.Wait()
	if err != nil {
		return failed("%v; logs: %s", err, clusterLogs(cl, 300))
	}
	if res.Messages == 0 && res.ErrorTotal == 0 {
		res.Failed = "no message was acknowledged in the measured window"
	}
	run := &ClusterRun{ReplicationFactor: c.ReplicationFactor}
	if edges[0] != nil && edges[1] != nil {
		run.fill(nodes, leaders, edges, res.Messages)
	}
	for _, n := range edges[1] {
		if n.metricsFailure != "" {
			res.Notes = append(res.Notes, "metrics: "+n.metricsFailure)
		}
	}
	if bc.Profile {
		if profErr != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("CPU profile of node %d failed: %v", prof.ID(), profErr))
		} else {
			run.Profile, run.ProfileNode = profPath, prof.ID()
		}
	}
	res.Cluster = run
	for _, b := range nodes {
		if !b.Running() {
			res.Notes = append(res.Notes, fmt.Sprintf("node %d exited during the run: %s", b.ID(), tail(b.Log(), 400)))
			if res.ErrorTotal == 0 {
				res.Failed = fmt.Sprintf("node %d exited during the run", b.ID())
			}
		}
	}
	res.Notes = append(res.Notes, "load average before stop: "+loadavg())
	stop()
	if stopErr != nil {
		res.Notes = append(res.Notes, "stopping the cluster: "+oneLine(stopErr.Error(), 300))
	}
	return res
}

// fill sums the nodes' readings at the window's two edges.
func (r *ClusterRun) fill(nodes []*cluster.Broker, leaders map[int32]int, edges [2][]nodeSample, msgs int64) {
	r.MetricsOK = true
	for i, b := range nodes {
		a, z := edges[0][i], edges[1][i]
		n := ClusterNode{ID: b.ID(), Addr: b.Addr(), PID: b.Process().Pid(), PartitionsLed: leaders[int32(b.ID())],
			CPU: cpuUsage(z.user-a.user, z.sys-a.sys, a.cpuOK && z.cpuOK, msgs)}
		if a.metricsOK && z.metricsOK {
			n.SentBytes, n.CopiedBytes = z.sent-a.sent, z.copied-a.copied
			r.FromMemoryBytes += z.fromMemory - a.fromMemory
			if n.Commits = z.commits - a.commits; n.Commits > 0 {
				n.LocalMeanUs = 1e6 * (z.localS - a.localS) / n.Commits
				n.ReplicationMeanUs = 1e6 * (z.replS - a.replS) / n.Commits
			}
			if n.WALCycles = z.walCycles - a.walCycles; n.WALCycles > 0 {
				n.WALRecordsPerCycle = (z.walRecords - a.walRecords) / n.WALCycles
				n.WALCycleMeanUs = 1e6 * (z.walCycleS - a.walCycleS) / n.WALCycles
			}
		} else {
			r.MetricsOK = false
		}
		r.SentBytes += n.SentBytes
		r.CopiedBytes += n.CopiedBytes
		r.SentBytesTotal += z.sent
		r.CopiedBytesTotal += z.copied
		r.Nodes = append(r.Nodes, n)
	}
	if r.MetricsOK && r.SentBytes > 0 {
		v := r.CopiedBytes / r.SentBytes
		r.CopiesPerByte = &v
	}
	if r.MetricsOK && msgs > 0 {
		r.SentBytesPerMsg = r.SentBytes / float64(msgs)
	}
}

// sampleNodes reads every node's CPU and replication counters.
func sampleNodes(ctx context.Context, nodes []*cluster.Broker) []nodeSample {
	out := make([]nodeSample, len(nodes))
	var wg sync.WaitGroup
	for i, b := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &out[i]
			var err error
			if s.user, s.sys, err = ProcCPU(b.Process().Pid()); err == nil {
				s.cpuOK = true
			}
			m, err := ScrapeMetrics(ctx, b.ExtraAddr("metrics"), MetricReplicationSent, MetricReplicationCopied, MetricReplicationFromMemory,
				MetricCommittedLocalSum, MetricCommittedLocalCount, MetricCommittedReplicationSum,
				MetricWALCycles, MetricWALRecords, MetricWALCycleSumSec)
			_, okS := m[MetricReplicationSent]
			_, okC := m[MetricReplicationCopied]
			switch {
			case err != nil:
				s.metricsFailure = fmt.Sprintf("node %d: %v", b.ID(), err)
			case !okS || !okC:
				s.metricsFailure = fmt.Sprintf("node %d: no %s or %s on its --metrics-listen", b.ID(), MetricReplicationSent, MetricReplicationCopied)
			default:
				// From memory is absent on a build that sends every batch from its files: 0.
				s.sent, s.copied, s.fromMemory, s.metricsOK = m[MetricReplicationSent], m[MetricReplicationCopied], m[MetricReplicationFromMemory], true
				// Absent on a build without them: no split is reported.
				s.commits, s.localS, s.replS = m[MetricCommittedLocalCount], m[MetricCommittedLocalSum], m[MetricCommittedReplicationSum]
				s.walCycles, s.walRecords, s.walCycleS = m[MetricWALCycles], m[MetricWALRecords], m[MetricWALCycleSumSec]
			}
		}()
	}
	wg.Wait()
	return out
}

// prepareClusterTopic waits until all n brokers are registered, creates c's topic with its
// replication factor and configs, and waits until every partition has a leader and a complete
// ISR. It returns how many partitions each broker leads.
func prepareClusterTopic(ctx context.Context, addrs []string, c *Config, n int) (map[int32]int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	wctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var last string
	poll := func(what string, done func() bool) error {
		for !done() {
			select {
			case <-wctx.Done():
				return fmt.Errorf("%s: not within %v (%s)", what, clusterWait, last)
			case <-time.After(100 * time.Millisecond):
			}
		}
		return nil
	}
	err = poll(fmt.Sprintf("%d brokers registered", n), func() bool {
		md, err := adm.Metadata(wctx)
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("%d brokers", len(md.Brokers))
		return len(md.Brokers) >= n
	})
	if err != nil {
		return nil, err
	}
	if err := EnsureTopic(ctx, addrs, c.Topic, c.Partitions, c.ReplicationFactor, c.TopicConfigs); err != nil {
		return nil, err
	}
	leaders := map[int32]int{}
	err = poll(fmt.Sprintf("every partition of %s with %d in-sync replicas", c.Topic, c.ReplicationFactor), func() bool {
		md, err := adm.Metadata(wctx, c.Topic)
		if err != nil {
			last = err.Error()
			return false
		}
		td, ok := md.Topics[c.Topic]
		if !ok || td.Err != nil || len(td.Partitions) < int(c.Partitions) {
			last = fmt.Sprintf("topic metadata %+v", td.Err)
			return false
		}
		clear(leaders)
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 || len(p.ISR) < int(c.ReplicationFactor) {
				last = fmt.Sprintf("partition %d: leader %d, ISR %v, err %v", p.Partition, p.Leader, p.ISR, p.Err)
				return false
			}
			leaders[p.Leader]++
		}
		return true
	})
	return leaders, err
}

// stopCluster stops every node with SIGTERM (each killed past clusterStopTimeout), then kills
// any still running, so that no node outlives the run.
func stopCluster(cl *cluster.Cluster) error {
	err := cl.Stop()
	for _, b := range cl.Brokers() {
		if b.Running() {
			err = errors.Join(err, b.Kill())
		}
	}
	return err
}

// fetchProfile saves a CPU profile of secs seconds from a Go pprof endpoint at addr to path.
func fetchProfile(ctx context.Context, addr string, secs int, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("GET %s profile: %s %s", addr, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// clusterLogs is the end of every node's log, for a failure message.
func clusterLogs(cl *cluster.Cluster, n int) string {
	var parts []string
	for _, b := range cl.Brokers() {
		parts = append(parts, fmt.Sprintf("[node %d] %s", b.ID(), tail(b.Log(), n)))
	}
	return strings.Join(parts, " ")
}
