package perf

import (
	"bytes"
	"encoding/json"
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
