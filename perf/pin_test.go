package perf

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// threadCPUs returns the Cpus_allowed_list of every thread of this process.
func threadCPUs(t *testing.T) map[string]bool {
	t.Helper()
	lists := map[string]bool{}
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", e.Name(), "status"))
		if err != nil {
			continue // the thread ended
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				lists[strings.TrimSpace(v)] = true
			}
		}
	}
	return lists
}

// TestPinSelf: every thread of the client goes to the client's CPUs, and back afterwards.
func TestPinSelf(t *testing.T) {
	broker, client, err := splitCPUs()
	if err != nil {
		t.Skip(err)
	}
	if len(broker) != 1 || len(client) == 0 || broker[0] <= client[len(client)-1] {
		t.Fatalf("split: broker %v, client %v", broker, client)
	}
	before := threadCPUs(t)
	unpin, err := pinSelf(client)
	if err != nil {
		t.Fatal(err)
	}
	pinned := threadCPUs(t)
	unpin()
	after := threadCPUs(t)
	for l := range pinned {
		if got := parseCPUList(t, l); !slices.Equal(got, client) {
			t.Errorf("a pinned thread may run on %v, want the client's CPUs %v", got, client)
		}
	}
	if len(after) != len(before) {
		t.Errorf("after unpin threads may run on %v, before on %v", after, before)
	}
	for l := range after {
		if !before[l] {
			t.Errorf("after unpin a thread may run on %q, before on %v", l, before)
		}
	}
}

// parseCPUList reads the kernel's CPU list format ("0-2,4").
func parseCPUList(t *testing.T, l string) []int {
	t.Helper()
	var cpus []int
	for _, part := range strings.Split(l, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil {
			t.Fatalf("cpu list %q: %v", l, err)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// TestBenchPinned: the seed-pinned workload runs against a real broker, says so in its
// report, and gives the client its CPUs back.
func TestBenchPinned(t *testing.T) {
	bin := os.Getenv("RINGTAIL_BIN")
	if bin == "" || testing.Short() {
		t.Skip("RINGTAIL_BIN not set")
	}
	if _, _, err := splitCPUs(); err != nil {
		t.Skip(err)
	}
	before := threadCPUs(t)
	bc := BenchConfig{
		Brokers:   []BrokerSpec{{Label: "ringtail", Args: []string{bin, "serve", "--listen", "{addr}", "--data-dir", "{dir}"}}},
		Baseline:  "ringtail",
		Workloads: []string{"seed-pinned"},
		Duration:  time.Second, Warmup: 200 * time.Millisecond,
	}
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmp, err := RunBench(ctx, bc, &log)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmp.Results) != 1 {
		t.Fatalf("%d results:\n%s", len(cmp.Results), log.String())
	}
	r := cmp.Results[0]
	if r.Failed != "" || r.ErrorTotal != 0 || r.Messages == 0 || !r.Config.Pinned || r.Config.Concurrency != 128 {
		t.Fatalf("seed-pinned: failed %q, %d msgs, errors %v, config %+v", r.Failed, r.Messages, r.Errors, r.Config)
	}
	var text bytes.Buffer
	WriteText(&text, r)
	if !strings.Contains(text.String(), "pinned: the broker on one CPU") {
		t.Errorf("report does not say the run was pinned:\n%s", text.String())
	}
	for l := range threadCPUs(t) {
		if !before[l] {
			t.Errorf("after the run a thread may run on %q, before on %v", l, before)
		}
	}
}
