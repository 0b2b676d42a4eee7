package perf

import (
	"math"
	"testing"
	"time"
)

func TestClampUs(t *testing.T) {
	cases := []struct {
		d       time.Duration
		want    int64
		clamped bool
	}{
		{0, 1, false},
		{500 * time.Nanosecond, 1, false},
		{1500 * time.Nanosecond, 1, false},
		{2 * time.Millisecond, 2000, false},
		{60 * time.Second, 60_000_000, false},
		{61 * time.Second, 60_000_000, true},
		{-time.Millisecond, 1, true},
	}
	for _, c := range cases {
		got, cl := ClampUs(c.d)
		if got != c.want || cl != c.clamped {
			t.Errorf("ClampUs(%v) = %d,%v; want %d,%v", c.d, got, cl, c.want, c.clamped)
		}
	}
}

// A uniform distribution of 1..100000 µs has known percentiles; the histogram must report them
// within its 3-significant-digit precision.
func TestSummarizeUniform(t *testing.T) {
	h := NewHist()
	for v := int64(1); v <= 100_000; v++ {
		h.RecordValue(v)
	}
	s := Summarize(h)
	check := func(name string, got, want int64) {
		if math.Abs(float64(got-want)) > float64(want)*0.001+1 {
			t.Errorf("%s = %d, want %d ±0.1%%", name, got, want)
		}
	}
	check("p50", s.P50Us, 50_000)
	check("p90", s.P90Us, 90_000)
	check("p99", s.P99Us, 99_000)
	check("p99.9", s.P999Us, 99_900)
	check("max", s.MaxUs, 100_000)
	check("min", s.MinUs, 1)
	if s.Count != 100_000 {
		t.Errorf("count = %d", s.Count)
	}
	if math.Abs(s.MeanUs-50_000.5) > 50 {
		t.Errorf("mean = %f", s.MeanUs)
	}
}

// The tail must survive: one slow sample in a million fast ones is the max.
func TestSummarizeKeepsTail(t *testing.T) {
	h := NewHist()
	h.RecordValues(1000, 999_999)
	h.RecordValue(5_000_000)
	s := Summarize(h)
	if s.P99Us < 999 || s.P99Us > 1001 || s.P999Us > 1001 {
		t.Errorf("p99 %d p99.9 %d, want ≈1000", s.P99Us, s.P999Us)
	}
	if s.MaxUs < 4_995_000 || s.MaxUs > 5_005_000 {
		t.Errorf("max = %d, want ≈5s", s.MaxUs)
	}
}

func TestRecorderTimelineAndErrors(t *testing.T) {
	start := time.Unix(1000, 0)
	r := NewRecorder(start)
	for i := 0; i < 100; i++ {
		r.Record(time.Duration(i+1)*time.Millisecond, 10)
	}
	r.RecordError("NOT_LEADER_OR_FOLLOWER(6)")
	r.Tick(start.Add(time.Second))
	r.Record(7*time.Millisecond, 10)
	r.Record(70*time.Second, 10) // clamped, still counted
	r.Tick(start.Add(2 * time.Second))
	h, msgs, bytes, errs, tl, clamped := r.Snapshot()
	if msgs != 102 || bytes != 1020 || h.TotalCount() != 102 || clamped != 1 {
		t.Fatalf("msgs %d bytes %d count %d clamped %d", msgs, bytes, h.TotalCount(), clamped)
	}
	if errs["NOT_LEADER_OR_FOLLOWER(6)"] != 1 {
		t.Errorf("errors = %v", errs)
	}
	if len(tl) != 2 {
		t.Fatalf("timeline has %d points", len(tl))
	}
	if tl[0].Count != 100 || tl[0].T != 1 || tl[0].Errors != 1 || tl[0].MaxUs < 99_900 || tl[0].P50Us < 49_900 || tl[0].P50Us > 50_100 {
		t.Errorf("first interval %+v", tl[0])
	}
	if tl[1].Count != 2 || tl[1].MaxUs < HistMaxUs*999/1000 {
		t.Errorf("second interval %+v", tl[1])
	}
	rate, p99, _, e := r.Progress()
	if rate != 2 || p99 < HistMaxUs*999/1000 || e != 1 {
		t.Errorf("progress rate %v p99 %d errors %d", rate, p99, e)
	}
}

func TestPercentileCurveMonotonic(t *testing.T) {
	h := NewHist()
	for v := int64(1); v <= 10_000; v++ {
		h.RecordValue(v * v % 9973)
	}
	pts := PercentileCurve(h)
	if len(pts) < 30 {
		t.Fatalf("only %d points", len(pts))
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Q <= pts[i-1].Q || pts[i].Us < pts[i-1].Us {
			t.Fatalf("not monotonic at %d: %+v %+v", i, pts[i-1], pts[i])
		}
	}
	if last := pts[len(pts)-1]; last.Q != 100 || last.Us != h.Max() {
		t.Errorf("last point %+v, max %d", last, h.Max())
	}
}

func TestFairness(t *testing.T) {
	f := ComputeFairness([]int64{10, 10, 10, 10})
	if f.Jain != 1 || f.Min != 10 || f.Max != 10 {
		t.Errorf("even: %+v", f)
	}
	f = ComputeFairness([]int64{40, 0, 0, 0})
	if math.Abs(f.Jain-0.25) > 1e-9 {
		t.Errorf("one producer served: Jain %v, want 0.25", f.Jain)
	}
}

func TestParseProcStat(t *testing.T) {
	// comm with spaces and a parenthesis; utime 250 ticks, stime 75 ticks
	line := "4242 (my (odd) broker) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 12345 1000000 500 18446744073709551615"
	u, s, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if u != 2500*time.Millisecond || s != 750*time.Millisecond {
		t.Errorf("user %v sys %v", u, s)
	}
	if _, _, err := parseProcStat("garbage"); err == nil {
		t.Error("garbage parsed")
	}
	cu, cs := SelfCPU()
	if cu+cs <= 0 {
		t.Error("SelfCPU returned nothing")
	}
}

func TestRecorderLimit(t *testing.T) {
	r := NewRecorder(time.Now())
	calls := 0
	r.SetLimit(3, func() { calls++ })
	for i := 0; i < 5; i++ {
		r.Record(time.Millisecond, 1)
	}
	r.RecordCount(1)
	h, msgs, _, _, _, _ := r.Snapshot()
	if msgs != 3 || h.TotalCount() != 3 || calls != 1 {
		t.Errorf("limit 3: msgs %d hist %d onFull calls %d", msgs, h.TotalCount(), calls)
	}
}
