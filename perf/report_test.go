package perf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFormatting(t *testing.T) {
	for us, want := range map[int64]string{0: "-", 7: "7µs", 999: "999µs", 1530: "1.53ms", 54_500: "54.5ms", 250_000: "250ms", 2_500_000: "2.50s"} {
		if got := fmtUs(us); got != want {
			t.Errorf("fmtUs(%d) = %q, want %q", us, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 62000.4: "62,000", 1234567: "1,234,567"} {
		if got := fmtCount(v); got != want {
			t.Errorf("fmtCount(%v) = %q, want %q", v, got, want)
		}
	}
}

// fakeResult builds a result the way a run would, from a set of latencies.
func fakeResult(name, broker string, msgs int64, latUs int64, brokerCPU float64) *Result {
	c := DefaultConfig()
	c.Duration, c.Warmup = 10*time.Second, time.Second
	c.Validate()
	start := time.Unix(0, 0)
	rec := NewRecorder(start)
	for i := int64(0); i < msgs; i++ {
		rec.Record(time.Duration(latUs+i%7)*time.Microsecond, 256)
	}
	rec.Tick(start.Add(10 * time.Second))
	w := newWindow(start.Add(-time.Second), &c)
	w.stop(start.Add(10 * time.Second))
	r := &Result{}
	r.fill(&c, Options{Name: name, Broker: broker}, rec, w, [2]cpuSample{
		{brokerOK: true},
		{brokerOK: true, brokerUser: time.Duration(brokerCPU * float64(msgs) * float64(time.Microsecond))},
	}, start)
	return r
}

func TestWriteText(t *testing.T) {
	r := fakeResult("seed", "kfake-mem", 10_000, 1500, 4)
	r.Errors["NOT_LEADER_OR_FOLLOWER(6)"] = 3
	r.ErrorTotal = 3
	r.Fairness = ComputeFairness([]int64{5000, 5000})
	var b bytes.Buffer
	WriteText(&b, r)
	out := b.String()
	for _, want := range []string{"closed-loop [seed] against kfake-mem", "128 producers on 1 client(s)", "1,000", "0.3", "1.50ms",
		"NOT_LEADER_OR_FOLLOWER(6)", "Jain index 1.000", "4.0", "msg/s", "p99.9"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if r.MsgPerSec != 1000 || r.Latency.Count != 10_000 {
		t.Errorf("msg/s %v count %d", r.MsgPerSec, r.Latency.Count)
	}
}

func TestComparisonRatiosAndJSON(t *testing.T) {
	cmp := &Comparison{Date: "2026-01-01", Commit: "abc", Baseline: "ringtail",
		Brokers: []BrokerInfo{{Label: "ringtail"}, {Label: "kfake-mem"}, {Label: "kfake-sync"}},
		Results: []*Result{
			fakeResult("seed", "ringtail", 20_000, 2000, 10),
			fakeResult("seed", "kfake-mem", 10_000, 1000, 5),
			{Name: "seed", Broker: "kfake-sync", Failed: "did not start", Errors: map[string]int64{}},
		}}
	cmp.ComputeRatios()
	if len(cmp.Ratios) != 2 {
		t.Fatalf("ratios %+v", cmp.Ratios)
	}
	r := cmp.Ratios[0]
	if r.Peer != "kfake-mem" || r.MsgPerSec == nil || *r.MsgPerSec != 2 || r.P99 == nil || *r.P99 < 1.9 || *r.P99 > 2.1 ||
		r.BrokerCPUPMsg == nil || *r.BrokerCPUPMsg < 1.99 || *r.BrokerCPUPMsg > 2.01 {
		t.Errorf("ratio vs kfake-mem: %+v", r)
	}
	if cmp.Ratios[1].MsgPerSec != nil {
		t.Errorf("ratio against a failed run should be n/a")
	}
	var b bytes.Buffer
	WriteComparison(&b, cmp)
	out := b.String()
	for _, want := range []string{"seed", "ringtail", "kfake-mem", "FAILED: did not start", "2.00×", "n/a", "ratios ringtail/peer"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
	p := filepath.Join(t.TempDir(), "c.json")
	if err := WriteJSON(p, cmp); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	var back Comparison
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("JSON does not parse: %v", err)
	}
	if len(back.Results) != 3 || back.Results[0].Latency.P99Us != cmp.Results[0].Latency.P99Us || *back.Ratios[0].MsgPerSec != 2 {
		t.Errorf("JSON round trip lost data")
	}
	h := back.Results[0].Hist()
	if h == nil || h.TotalCount() != 20_000 || h.ValueAtQuantile(99) != cmp.Results[0].Hist().ValueAtQuantile(99) {
		t.Errorf("histogram_v2 does not decode to the run's histogram")
	}
}

func TestPlotsArePNG(t *testing.T) {
	dir := t.TempDir()
	a := fakeResult("seed", "ringtail", 5000, 2000, 10)
	b := fakeResult("seed", "kfake-mem", 5000, 900, 5)
	for name, f := range map[string]func(string) error{
		"one.png": func(p string) error { return PlotResult(p, a) },
		"cmp.png": func(p string) error { return PlotComparison(p, "seed", []*Result{a, b}) },
	} {
		p := filepath.Join(dir, name)
		if err := f(p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s is not a PNG: %v", name, err)
		}
		if img.Bounds().Dx() < 800 {
			t.Errorf("%s is %v, too small to read", name, img.Bounds())
		}
	}
}

// A cluster is compared with each single broker the other way round (cluster/peer), with the
// targets against the baseline; it is left out of the baseline/peer table and of the workloads
// it did not run.
func TestClusterRatios(t *testing.T) {
	cl := fakeResult("seed", "ringtail-cluster", 6_000, 3000, 9)
	cl.Config.ReplicationFactor, cl.Config.TopicConfigs = 3, map[string]string{"min.insync.replicas": "2"}
	zero := 0.0
	cl.Cluster = &ClusterRun{ReplicationFactor: 3, MetricsOK: true, SentBytes: 3.2e6, CopiedBytes: 0, CopiesPerByte: &zero,
		SentBytesPerMsg: 533, SentBytesTotal: 5e6, Profile: "x.pprof", ProfileNode: 2,
		Nodes: []ClusterNode{{ID: 1, PartitionsLed: 2}, {ID: 2, PartitionsLed: 2}, {ID: 3, PartitionsLed: 2}}}
	cmp := &Comparison{Baseline: "ringtail",
		Brokers: []BrokerInfo{{Label: "ringtail"}, {Label: "ringtail-cluster", Nodes: 3}, {Label: "kfake-mem"}},
		Results: []*Result{
			fakeResult("seed", "ringtail", 10_000, 1000, 2),
			cl,
			fakeResult("seed", "kfake-mem", 20_000, 1000, 2),
			fakeResult("throughput", "ringtail", 10_000, 1000, 2),
			fakeResult("throughput", "kfake-mem", 10_000, 1000, 2),
		}}
	cmp.ComputeRatios()
	if len(cmp.Ratios) != 2 || cmp.Ratios[0].Peer != "kfake-mem" || cmp.Ratios[1].Peer != "kfake-mem" {
		t.Fatalf("baseline ratios should name kfake-mem only: %+v", cmp.Ratios)
	}
	if len(cmp.ClusterRatios) != 2 {
		t.Fatalf("cluster ratios: %+v", cmp.ClusterRatios)
	}
	one, kf := cmp.ClusterRatios[0], cmp.ClusterRatios[1]
	if one.Peer != "ringtail" || *one.MsgPerSec != 0.6 || *one.P99 < 2.9 || *one.P99 > 3.1 ||
		one.MsgPerSecMet == nil || !*one.MsgPerSecMet || one.P99Met == nil || *one.P99Met {
		t.Errorf("against one broker: %+v", one)
	}
	if *one.BrokerCPUPMsg < 4.4 || *one.BrokerCPUPMsg > 4.6 {
		t.Errorf("cluster CPU ratio %v, want 4.5", *one.BrokerCPUPMsg)
	}
	if kf.Peer != "kfake-mem" || *kf.MsgPerSec != 0.3 || kf.MsgPerSecMet != nil || kf.P99Met != nil {
		t.Errorf("against kfake: %+v", kf)
	}
	var b bytes.Buffer
	WriteComparison(&b, cmp)
	out := b.String()
	for _, want := range []string{"cluster/peer, same run (targets against ringtail: msg/s ≥ 0.50×, p99 ≤ 2.00×)",
		"msg/s met, p99 NOT met", "0.60×", "RF 3, min.insync.replicas=2", "0.000 copies per replicated byte",
		"533 B per acknowledged message", "node 2: leads 2 partitions", "CPU profile of node 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ringtail-cluster  n/a") {
		t.Errorf("the cluster has a row in the baseline/peer table:\n%s", out)
	}
}

func TestRawSyncAroundTheLoneRuns(t *testing.T) {
	ms := func(us ...int) []time.Duration {
		var d []time.Duration
		for _, u := range us {
			d = append(d, time.Duration(u)*time.Microsecond)
		}
		return d
	}
	raw := RawSyncAround(ms(80, 90, 95), ms(100, 110, 120))
	if raw.Samples != 6 || raw.P50Us != 100 || raw.BeforeP50Us != 90 || raw.AfterP50Us != 110 {
		t.Fatalf("raw sync of both halves: %+v", raw)
	}
	ringtail := fakeResult("lone", "ringtail", 1000, 250, 100)
	kfake := fakeResult("lone", "kfake-mem", 1000, 120, 90)
	cmp := &Comparison{Baseline: "ringtail", RawSync: &raw, Results: []*Result{ringtail, kfake}}
	var b strings.Builder
	writeRawSync(&b, cmp)
	want := fmt.Sprintf("= %+d µs", ringtail.Latency.P50Us-kfake.Latency.P50Us-100)
	for _, s := range []string{"p50 90µs just before the lone runs, 110µs just after", want} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("missing %q in:\n%s", s, b.String())
		}
	}
	if strings.Count(b.String(), "raw sync's") != 1 {
		t.Errorf("the difference belongs on ringtail's line only:\n%s", b.String())
	}
}

// kfake-mem-sync is the sum issue 14's lone figure subtracts, run as one broker: its line shows
// its own excess over the sum, and ringtail's line its ratio to it.
func TestLoneAgainstTheSyncingPeer(t *testing.T) {
	raw := RawSync{Samples: 2, P50Us: 100}
	ringtail := fakeResult("lone", "ringtail", 1000, 250, 100)
	kfake := fakeResult("lone", "kfake-mem", 1000, 120, 90)
	composite := fakeResult("lone", "kfake-mem-sync", 1000, 300, 90)
	cmp := &Comparison{Baseline: "ringtail", RawSync: &raw, Results: []*Result{ringtail, kfake, composite}}
	var b strings.Builder
	writeRawSync(&b, cmp)
	lines := strings.Split(b.String(), "\n")
	find := func(broker string) string {
		for _, l := range lines {
			if strings.Contains(l, "produce on "+broker+" ") {
				return l
			}
		}
		t.Fatalf("no line for %s in:\n%s", broker, b.String())
		return ""
	}
	if l := find("ringtail"); !strings.Contains(l, "= +30 µs") || !strings.Contains(l, "0.83× kfake-mem-sync's p50") {
		t.Errorf("ringtail's line: %s", l)
	}
	if l := find("kfake-mem-sync"); !strings.Contains(l, "= +80 µs") || strings.Contains(l, "× kfake-mem-sync's") {
		t.Errorf("kfake-mem-sync's line: %s", l)
	}
	if l := find("kfake-mem"); strings.Contains(l, "raw sync's)") {
		t.Errorf("kfake-mem's line: %s", l)
	}
}
