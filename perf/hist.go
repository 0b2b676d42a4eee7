// Package perf drives any Kafka-compatible broker over the wire with franz-go and measures
// throughput and latency honestly: closed-loop and pipelined producers, an open-loop producer
// that charges stalls to every record they delay, consumers and end-to-end latency. Latency is
// kept in an HdrHistogram from 1 µs to 60 s with no sample dropped (out-of-range values are
// clamped into range and counted as such).
//
// It owns the workloads, the measurement and the reports (text, JSON, plots), and the bench that
// compares brokers (bench.go); it starts the broker processes it measures, Ringtail or
// kfake-peer, through test/cluster's Process (broker.go). It is a harness, not a test: it must
// not import package testing, and it asserts nothing about timings.
package perf

import (
	"math"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

const (
	// HistMinUs and HistMaxUs bound the latency histogram: 1 µs to 60 s.
	HistMinUs   = 1
	HistMaxUs   = 60_000_000
	histSigFigs = 3
)

// NewHist returns an empty latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
func NewHist() *hdr.Histogram { return hdr.New(HistMinUs, HistMaxUs, histSigFigs) }

// ClampUs converts a duration to whole microseconds inside the histogram's range. It reports
// whether the value had to be clamped, so that no sample is ever silently dropped.
func ClampUs(d time.Duration) (int64, bool) {
	us := d.Microseconds()
	switch {
	case us < HistMinUs:
		return HistMinUs, d < 0 // sub-µs is normal (rounded up); negative is not
	case us > HistMaxUs:
		return HistMaxUs, true
	}
	return us, false
}

// LatencySummary is the latency part of a report, all in microseconds.
type LatencySummary struct {
	Count   int64   `json:"count"`
	MinUs   int64   `json:"min_us"`
	MeanUs  float64 `json:"mean_us"`
	P50Us   int64   `json:"p50_us"`
	P90Us   int64   `json:"p90_us"`
	P99Us   int64   `json:"p99_us"`
	P999Us  int64   `json:"p99_9_us"`
	P9999Us int64   `json:"p99_99_us"`
	MaxUs   int64   `json:"max_us"`
	Clamped int64   `json:"clamped,omitempty"`
}

// Summarize reads the standard percentiles out of h.
func Summarize(h *hdr.Histogram) LatencySummary {
	if h.TotalCount() == 0 {
		return LatencySummary{}
	}
	return LatencySummary{
		Count:   h.TotalCount(),
		MinUs:   h.Min(),
		MeanUs:  h.Mean(),
		P50Us:   h.ValueAtQuantile(50),
		P90Us:   h.ValueAtQuantile(90),
		P99Us:   h.ValueAtQuantile(99),
		P999Us:  h.ValueAtQuantile(99.9),
		P9999Us: h.ValueAtQuantile(99.99),
		MaxUs:   h.Max(),
	}
}

// PercentilePoint is one point of the percentile curve (q in percent, 0–100).
type PercentilePoint struct {
	Q  float64 `json:"q"`
	Us int64   `json:"us"`
}

// PercentileCurve samples the latency at percentiles spaced evenly on the "nines" scale
// (50, 75, 87.5, … up to 99.999) plus 100, the shape of an HdrHistogram percentile plot.
func PercentileCurve(h *hdr.Histogram) []PercentilePoint {
	if h.TotalCount() == 0 {
		return nil
	}
	var pts []PercentilePoint
	for _, q := range curveQuantiles() {
		pts = append(pts, PercentilePoint{Q: q, Us: h.ValueAtQuantile(q)})
	}
	pts = append(pts, PercentilePoint{Q: 100, Us: h.Max()})
	return pts
}

// curveQuantiles: 0–40 in steps of 10, then 8 points per decade of (100-q) from 50 to 99.999.
func curveQuantiles() []float64 {
	qs := []float64{0, 10, 20, 30, 40}
	for k := 0; ; k++ {
		q := 100 - 50*math.Pow(10, -float64(k)/8)
		if q > 99.999 {
			break
		}
		qs = append(qs, q)
	}
	return append(qs, 99.999)
}

// TimelinePoint holds one interval of the run (latency over time).
type TimelinePoint struct {
	T      float64 `json:"t_s"` // seconds since the measured window started (end of interval)
	Count  int64   `json:"count"`
	P50Us  int64   `json:"p50_us"`
	P99Us  int64   `json:"p99_us"`
	MaxUs  int64   `json:"max_us"`
	Errors int64   `json:"errors,omitempty"`
}

// Recorder collects latencies from many goroutines: a total histogram for the measured window,
// a per-interval histogram for the timeline and the live progress line, and error counts by code.
// It is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	total    *hdr.Histogram
	interval *hdr.Histogram
	ivErrors int64
	clamped  int64
	msgs     int64
	bytes    int64
	errors   map[string]int64
	timeline []TimelinePoint
	start    time.Time // start of the measured window
	lastTick time.Time
	// the last closed interval, for the progress line
	lastRate float64
	lastP99  int64
	limit    int64  // accept at most this many messages (0: no limit)
	onFull   func() // called once when the limit is reached
}

// SetLimit makes the recorder accept at most n messages and call onFull (once, outside its
// lock) when the n-th arrives; later messages are not counted.
func (r *Recorder) SetLimit(n int64, onFull func()) {
	r.mu.Lock()
	r.limit, r.onFull = n, onFull
	r.mu.Unlock()
}

// full reports whether the limit is reached; called with r.mu held.
func (r *Recorder) full() bool { return r.limit > 0 && r.msgs >= r.limit }

// afterAdd runs onFull if this add reached the limit; called with r.mu held, returns the callback.
func (r *Recorder) afterAdd() func() {
	if r.limit > 0 && r.msgs == r.limit && r.onFull != nil {
		f := r.onFull
		r.onFull = nil
		return f
	}
	return nil
}

// NewRecorder returns an empty Recorder whose measured window starts at start.
func NewRecorder(start time.Time) *Recorder {
	return &Recorder{total: NewHist(), interval: NewHist(), errors: map[string]int64{}, start: start, lastTick: start}
}

// Record adds one acknowledged (or received) message of n bytes with latency d.
func (r *Recorder) Record(d time.Duration, n int) {
	us, clamped := ClampUs(d)
	r.mu.Lock()
	if r.full() {
		r.mu.Unlock()
		return
	}
	r.total.RecordValue(us)
	r.interval.RecordValue(us)
	r.msgs++
	r.bytes += int64(n)
	if clamped {
		r.clamped++
	}
	f := r.afterAdd()
	r.mu.Unlock()
	if f != nil {
		f()
	}
}

// RecordError counts one failed message under its error name.
func (r *Recorder) RecordError(code string) {
	r.mu.Lock()
	r.errors[code]++
	r.ivErrors++
	r.mu.Unlock()
}

// Tick closes the current interval at time now and appends it to the timeline.
func (r *Recorder) Tick(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tickLocked(now)
}

func (r *Recorder) tickLocked(now time.Time) {
	if r.start.IsZero() || !now.After(r.lastTick) {
		return
	}
	iv := r.interval
	p := TimelinePoint{T: now.Sub(r.start).Seconds(), Count: iv.TotalCount(), Errors: r.ivErrors}
	if iv.TotalCount() > 0 {
		p.P50Us, p.P99Us, p.MaxUs = iv.ValueAtQuantile(50), iv.ValueAtQuantile(99), iv.Max()
	}
	r.timeline = append(r.timeline, p)
	r.lastRate = float64(p.Count) / now.Sub(r.lastTick).Seconds()
	r.lastP99 = p.P99Us
	r.lastTick = now
	iv.Reset()
	r.ivErrors = 0
}

// Progress returns the rate and p99 of the last closed interval, and totals so far.
func (r *Recorder) Progress() (rate float64, p99Us int64, msgs int64, errs int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.errors {
		errs += n
	}
	return r.lastRate, r.lastP99, r.msgs, errs
}

// Snapshot returns copies of everything recorded so far.
func (r *Recorder) Snapshot() (h *hdr.Histogram, msgs, bytes int64, errs map[string]int64, timeline []TimelinePoint, clamped int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs = make(map[string]int64, len(r.errors))
	for k, v := range r.errors {
		errs[k] = v
	}
	return r.total.Clone(), r.msgs, r.bytes, errs, append([]TimelinePoint(nil), r.timeline...), r.clamped
}

// RecordCount adds one message of n bytes without a latency sample.
func (r *Recorder) RecordCount(n int) {
	r.mu.Lock()
	if r.full() {
		r.mu.Unlock()
		return
	}
	r.msgs++
	r.bytes += int64(n)
	f := r.afterAdd()
	r.mu.Unlock()
	if f != nil {
		f()
	}
}
