package perf

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringtail/ringtail/test/cluster"
)

// BrokerSpec says how to start a broker process. Args may use {addr} and {dir}, replaced by the
// listen address (127.0.0.1 and a free port) and a fresh data directory.
type BrokerSpec struct {
	Label      string
	Args       []string
	Durability string // for the report

	// Nodes > 1 runs Args[0], a Ringtail binary, as a cluster of that many `ringtail serve`
	// processes on this machine (benchCluster); Args[1:] are flags for every node.
	Nodes int
	// ReplicationFactor and TopicConfigs are the topic's, when the run creates it (0 and nil: the
	// workload's).
	ReplicationFactor int16
	TopicConfigs      map[string]string
	// Workloads, when set, are the only workloads this broker runs.
	Workloads []string
	// Warmup, when set, replaces the bench's warm-up for this broker.
	Warmup time.Duration
	// Companions are commands run beside the broker for as long as it runs, each with {dir}
	// replaced by a directory of its own (for example the disk traffic of the other nodes of a
	// cluster sharing this machine's disk: kfake-peer --sync-load-dir). Their CPU is not the
	// broker's.
	Companions [][]string
}

// runs reports whether the broker runs workload wl.
func (s BrokerSpec) runs(wl string) bool {
	return len(s.Workloads) == 0 || slices.Contains(s.Workloads, wl)
}

// BrokerProc is a running broker the harness started: a test/cluster process (Ringtail or
// kfake-peer alike, so not a cluster.Broker, which runs `ringtail serve` only).
type BrokerProc struct {
	Spec       BrokerSpec
	Addr       string
	Dir        string
	proc       *cluster.Process
	companions []*cluster.Process
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	addrs, err := cluster.FreeAddrs("127.0.0.1", 1)
	if err != nil {
		return 0, err
	}
	_, port, err := net.SplitHostPort(addrs[0])
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(port)
}

// StartBroker starts spec in a fresh data directory under parent and waits until it accepts a
// connection and answers ApiVersions on it.
func StartBroker(ctx context.Context, spec BrokerSpec, parent string) (*BrokerProc, error) {
	return startBroker(ctx, spec, parent, nil, nil)
}

// startBroker is StartBroker, confined to cpus when there are any, calling onStart (when set)
// with the process id once the process is started, before it is ready.
func startBroker(ctx context.Context, spec BrokerSpec, parent string, cpus []int, onStart func(pid int)) (*BrokerProc, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, spec.Label+"-")
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var companions []*cluster.Process
	stopCompanions := func() {
		for _, c := range companions {
			_ = c.Stop(10 * time.Second)
		}
	}
	for i, cmd := range spec.Companions {
		cargs := make([]string, len(cmd))
		for j, a := range cmd {
			cargs[j] = strings.ReplaceAll(a, "{dir}", fmt.Sprintf("%s/companion-%d", dir, i+1))
		}
		c, err := cluster.StartProcess(cluster.ProcessConfig{Name: fmt.Sprintf("%s-companion-%d", spec.Label, i+1),
			Path: cargs[0], Args: cargs[1:], MaxOutput: 1 << 20, OwnProcessGroup: true, CPUs: cpus})
		if err != nil {
			stopCompanions()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start %s's companion %d: %w", spec.Label, i+1, err)
		}
		if onStart != nil {
			onStart(c.Pid())
		}
		companions = append(companions, c)
	}
	args := make([]string, len(spec.Args))
	for i, a := range spec.Args {
		a = strings.ReplaceAll(a, "{addr}", addr)
		args[i] = strings.ReplaceAll(a, "{dir}", dir+"/data")
	}
	proc, err := cluster.StartProcess(cluster.ProcessConfig{
		Name: spec.Label,
		Path: args[0],
		Args: args[1:],
		// Keep memory bounded over long runs; the head has the startup lines the report quotes.
		MaxOutput: 4 << 20,
		// A broker given as a script or `go run` has children: Stop's kill takes them too.
		OwnProcessGroup: true,
		CPUs:            cpus,
	})
	if err != nil {
		stopCompanions()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", spec.Label, err)
	}
	if onStart != nil {
		onStart(proc.Pid())
	}
	p := &BrokerProc{Spec: spec, Addr: addr, Dir: dir, proc: proc, companions: companions}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := proc.WaitFor(wctx, func(ctx context.Context) error { return cluster.PingApiVersions(ctx, addr) }); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%s did not become ready: %v; log: %s", spec.Label, err, tail(p.Log(), 600))
	}
	return p, nil
}

// PID is the broker's process id.
func (p *BrokerProc) PID() int { return p.proc.Pid() }

// Alive reports whether the process, and every companion, is still running.
func (p *BrokerProc) Alive() bool {
	for _, c := range p.companions {
		if !c.Running() {
			return false
		}
	}
	return p.proc.Running()
}

// Log returns what the broker wrote to stdout and stderr.
func (p *BrokerProc) Log() string { return p.proc.Output() }

// exitedCompanions returns what each companion that is no longer running wrote, for a failed
// run's notes.
func (p *BrokerProc) exitedCompanions() string {
	var b strings.Builder
	for i, c := range p.companions {
		if !c.Running() {
			fmt.Fprintf(&b, "companion %d exited: %s; ", i+1, tail(c.Output(), 300))
		}
	}
	return b.String()
}

// Stop sends SIGTERM, waits up to 10 s, then kills the process group, and removes the data dir.
// How the broker exited is not the benchmark's business: the run's results are already in.
func (p *BrokerProc) Stop() {
	_ = p.proc.Stop(10 * time.Second)
	for _, c := range p.companions {
		_ = c.Stop(10 * time.Second)
	}
	os.RemoveAll(p.Dir)
}

// FindLine returns the first line of the broker's log containing any of the words, cut to one
// short line for the report (for example whether Ringtail runs on io_uring or its fallback).
func (p *BrokerProc) FindLine(words ...string) string {
	return oneLine(strings.TrimSpace(logLine(p.Log(), words...)), 160)
}

// logLine is the first line of a broker's own output containing any of the words, whole.
func logLine(log string, words ...string) string {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, cluster.MarkerPrefix) {
			continue // the harness's start line, with the command line: not the broker's words
		}
		for _, w := range words {
			if strings.Contains(strings.ToLower(l), strings.ToLower(w)) {
				return l
			}
		}
	}
	return ""
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
