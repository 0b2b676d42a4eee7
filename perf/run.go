package perf

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Result is the outcome of one run: what the text table, the JSON and the plot are made from.
type Result struct {
	Name        string            `json:"name"`             // workload name given by the caller (seed, throughput, …)
	Broker      string            `json:"broker,omitempty"` // broker label given by the caller
	Workload    string            `json:"workload"`         // closed-loop, pipelined, open-loop, consume, e2e
	Config      Config            `json:"config"`
	StartedAt   time.Time         `json:"started_at"`
	WindowS     float64           `json:"window_s"` // length of the measured window
	Messages    int64             `json:"messages"`
	Bytes       int64             `json:"bytes"`
	MsgPerSec   float64           `json:"msg_per_s"`
	MBPerSec    float64           `json:"mb_per_s"` // 10^6 bytes per second, keys + values
	Latency     LatencySummary    `json:"latency"`
	Percentiles []PercentilePoint `json:"percentiles,omitempty"`
	Timeline    []TimelinePoint   `json:"timeline,omitempty"`
	Errors      map[string]int64  `json:"errors"`
	ErrorTotal  int64             `json:"error_total"`
	ClientCPU   CPUUsage          `json:"client_cpu"`
	BrokerCPU   CPUUsage          `json:"broker_cpu"`
	Fairness    *Fairness         `json:"fairness,omitempty"`
	Notes       []string          `json:"notes,omitempty"`
	Failed      string            `json:"failed,omitempty"`  // the run could not be made at all
	Cluster     *ClusterRun       `json:"cluster,omitempty"` // a run against several brokers (benchCluster)
	// HistogramV2 is the whole latency histogram in HdrHistogram's compressed V2 encoding
	// (base64), for re-analysis with any HdrHistogram library.
	HistogramV2 string `json:"histogram_v2,omitempty"`

	hist *hdr.Histogram
}

// Hist returns the run's latency histogram, decoding HistogramV2 for a result read from JSON.
func (r *Result) Hist() *hdr.Histogram {
	if r.hist == nil && r.HistogramV2 != "" {
		if h, err := hdr.Decode([]byte(r.HistogramV2)); err == nil {
			r.hist = h
		}
	}
	return r.hist
}

// Fairness describes how evenly closed-loop producers were served.
type Fairness struct {
	Producers int     `json:"producers"`
	Min       int64   `json:"min"`
	Max       int64   `json:"max"`
	Mean      float64 `json:"mean"`
	Jain      float64 `json:"jain_index"` // 1 is perfectly fair, 1/n is one producer getting everything
}

// ComputeFairness summarises per-producer message counts.
func ComputeFairness(counts []int64) *Fairness {
	if len(counts) == 0 {
		return nil
	}
	f := &Fairness{Producers: len(counts), Min: math.MaxInt64}
	var sum, sq float64
	for _, c := range counts {
		f.Min = min(f.Min, c)
		f.Max = max(f.Max, c)
		sum += float64(c)
		sq += float64(c) * float64(c)
	}
	f.Mean = sum / float64(len(counts))
	if sq > 0 {
		f.Jain = sum * sum / (float64(len(counts)) * sq)
	}
	return f
}

// Options are the run's side channels.
type Options struct {
	Progress io.Writer // live progress line; nil for none
	Name     string
	Broker   string
	// Edge, when set, is called at the start (end false) and at the end (end true) of the
	// measured window, right after the CPU is sampled there, from the run's controller
	// goroutine: a caller's own counters (a cluster's replication metrics) cover the same
	// window as the run's. It should return quickly.
	Edge func(end bool)
}

// window is the measured part of a run: [start, end). With a count limit end is open.
type window struct {
	start, end time.Time
	stopped    atomic.Bool   // set when the window has closed (time or count or cancel)
	done       chan struct{} // closed with stopped
	once       sync.Once
	endedAt    atomic.Int64 // unix nanos of the actual close
}

func newWindow(t0 time.Time, c *Config) *window {
	w := &window{start: t0.Add(c.Warmup), done: make(chan struct{})}
	if c.Duration > 0 {
		w.end = w.start.Add(c.Duration)
	} else {
		w.end = t0.Add(100 * 365 * 24 * time.Hour)
	}
	return w
}

func (w *window) stop(t time.Time) {
	w.once.Do(func() {
		w.endedAt.Store(t.UnixNano())
		w.stopped.Store(true)
		close(w.done)
	})
}

// in reports whether t falls inside the measured window.
func (w *window) in(t time.Time) bool {
	if t.Before(w.start) {
		return false
	}
	if e := w.endedAt.Load(); e != 0 {
		return t.UnixNano() < e
	}
	return t.Before(w.end)
}

// measurement is what every mode sets up the same way: the measured window, its recorder, and
// the controller goroutine that ticks them, samples CPU and closes the window.
type measurement struct {
	t0  time.Time
	w   *window
	rec *Recorder
	cpu [2]cpuSample // written by the controller; read after ctl.Wait
	ctl sync.WaitGroup
}

func startMeasurement(ctx context.Context, c *Config, opts Options) *measurement {
	m := &measurement{t0: time.Now()}
	m.w = newWindow(m.t0, c)
	m.rec = NewRecorder(m.w.start)
	m.ctl.Add(1)
	go controller(ctx, c, opts, m.rec, m.w, &m.cpu, &m.ctl)
	limitCount(c, m.rec, m.w)
	return m
}

// result waits for the controller to finish and summarises the measurement.
func (m *measurement) result(c *Config, opts Options) *Result {
	m.ctl.Wait()
	res := &Result{}
	res.fill(c, opts, m.rec, m.w, m.cpu, m.t0)
	return res
}

// controller ticks the recorder once a second through the window, prints progress, samples CPU
// at the window's edges and closes the window on time, on count or on cancellation.
func controller(ctx context.Context, c *Config, opts Options, rec *Recorder, w *window, cpu *[2]cpuSample, wg *sync.WaitGroup) {
	defer wg.Done()
	progress := func(now time.Time, final bool) {
		if opts.Progress == nil {
			return
		}
		rate, p99, msgs, errs := rec.Progress()
		el := now.Sub(w.start).Seconds()
		phase := ""
		if el < 0 {
			phase, el = " warm-up", -el
		}
		fmt.Fprintf(opts.Progress, "\r\033[K%6.1fs%s  %s msg/s  p99 %s  msgs %d  errors %d", el, phase, fmtCount(rate), fmtUs(p99), msgs, errs)
		if final {
			fmt.Fprint(opts.Progress, "\r\033[K")
		}
	}
	sample := func(i int) {
		cpu[i] = sampleCPU(c.brokerPIDs())
		if opts.Edge != nil {
			opts.Edge(i == 1)
		}
	}
	// warm-up
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for time.Now().Before(w.start) {
		select {
		case <-ctx.Done():
			sample(0)
			sample(1)
			w.stop(time.Now())
			return
		case <-time.After(time.Until(w.start)):
		case now := <-tk.C:
			progress(now, false)
		}
	}
	sample(0)
	tk.Reset(time.Second)
	for {
		select {
		case <-ctx.Done():
			now := time.Now()
			sample(1)
			w.stop(now)
			rec.Tick(now)
			progress(now, true)
			return
		case <-w.done: // closed by a worker (count reached, consumer caught up)
			now := time.Unix(0, w.endedAt.Load())
			sample(1)
			rec.Tick(now)
			progress(now, true)
			return
		case now := <-tk.C:
			if !now.Before(w.end) {
				sample(1)
				w.stop(w.end)
				rec.Tick(w.end)
				progress(w.end, true)
				return
			}
			rec.Tick(now)
			progress(now, false)
		case <-time.After(time.Until(w.end)):
			sample(1)
			w.stop(w.end)
			rec.Tick(w.end)
			progress(w.end, true)
			return
		}
	}
}

// Run performs one run described by c.
func Run(ctx context.Context, c Config, opts Options) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.CreateTopic {
		if err := EnsureTopic(ctx, c.Brokers, c.Topic, c.Partitions, c.ReplicationFactor, c.TopicConfigs); err != nil {
			return nil, err
		}
	}
	switch c.Mode {
	case "produce":
		return runProduce(ctx, c, opts)
	case "consume":
		return runConsume(ctx, c, opts)
	case "txn":
		return runTxn(ctx, c, opts)
	case "e2e":
		return runE2E(ctx, c, opts)
	}
	return nil, fmt.Errorf("unknown mode %q", c.Mode)
}

// EnsureTopic creates topic with the given partitions, replication factor and configs unless it
// exists, then waits until its metadata shows every partition with a leader.
func EnsureTopic(ctx context.Context, brokers []string, topic string, partitions int32, rf int16, configs map[string]string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var cfg map[string]*string
	for k, v := range configs {
		if cfg == nil {
			cfg = map[string]*string{}
		}
		cfg[k] = &v
	}
	resp, err := adm.CreateTopic(ctx, partitions, rf, cfg, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !isErr(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	for {
		md, err := adm.Metadata(ctx, topic)
		if err == nil {
			if td, ok := md.Topics[topic]; ok && td.Err == nil && len(td.Partitions) >= int(partitions) {
				ready := true
				for _, p := range td.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
					}
				}
				if ready {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s did not become ready: %v", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func isErr(err error, target *kerr.Error) bool {
	ke, ok := err.(*kerr.Error)
	return ok && ke.Code == target.Code
}

// newClients opens n producing clients and waits until each can reach a broker and knows the topic.
func newClients(ctx context.Context, c *Config, n int, extra ...kgo.Opt) ([]*kgo.Client, error) {
	var cls []*kgo.Client
	for i := 0; i < n; i++ {
		cl, err := kgo.NewClient(append(c.producerOpts(), extra...)...)
		if err != nil {
			closeAll(cls)
			return nil, err
		}
		cls = append(cls, cl)
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = cl.Ping(pctx)
		cancel()
		if err != nil {
			closeAll(cls)
			return nil, fmt.Errorf("cannot reach %v: %w", c.Brokers, err)
		}
	}
	return cls, nil
}

func closeAll(cls []*kgo.Client) {
	for _, cl := range cls {
		cl.Close()
	}
}

// recordMaker builds records with a shared random payload and the configured keys.
type recordMaker struct {
	c     *Config
	value []byte
	seq   atomic.Int64
}

func newRecordMaker(c *Config) *recordMaker {
	v := make([]byte, c.Size)
	rand.Read(v)
	return &recordMaker{c: c, value: v}
}

// keyLen is the size of a generated key.
func (m *recordMaker) keyLen() int {
	if m.c.Keys == "none" {
		return 0
	}
	return 16
}

func (m *recordMaker) make(value []byte) *kgo.Record {
	r := &kgo.Record{Topic: m.c.Topic, Value: value}
	switch m.c.Keys {
	case "random":
		r.Key = []byte(fmt.Sprintf("%016x", mrand.Uint64()))
	case "sequential":
		r.Key = []byte(fmt.Sprintf("%016d", m.seq.Add(1)))
	}
	return r
}

func (r *Result) fill(c *Config, opts Options, rec *Recorder, w *window, cpu [2]cpuSample, t0 time.Time) {
	h, msgs, bytes, errs, tl, clamped := rec.Snapshot()
	r.Name, r.Broker, r.Workload, r.Config = opts.Name, opts.Broker, c.Workload(), *c
	r.StartedAt = t0
	end := time.Unix(0, w.endedAt.Load())
	r.WindowS = end.Sub(w.start).Seconds()
	if r.WindowS < 0 {
		r.WindowS = 0
	}
	r.Messages, r.Bytes = msgs, bytes
	if r.WindowS > 0 {
		r.MsgPerSec = float64(msgs) / r.WindowS
		r.MBPerSec = float64(bytes) / r.WindowS / 1e6
	}
	r.hist = h
	if h.TotalCount() > 0 {
		if b, err := h.Encode(hdr.V2CompressedEncodingCookieBase); err == nil {
			r.HistogramV2 = string(b)
		}
	}
	r.Latency = Summarize(h)
	r.Latency.Clamped = clamped
	r.Percentiles = PercentileCurve(h)
	r.Timeline = tl
	r.Errors = errs
	for _, n := range errs {
		r.ErrorTotal += n
	}
	r.ClientCPU, r.BrokerCPU = cpuDelta(cpu[0], cpu[1], msgs)
}

// limitCount closes the window when the -n'th message is recorded.
func limitCount(c *Config, rec *Recorder, w *window) {
	if c.Count > 0 {
		rec.SetLimit(c.Count, func() { w.stop(time.Now()) })
	}
}

// drain waits for wg up to d, then cancels.
func drain(wg *sync.WaitGroup, d time.Duration, cancel func()) bool {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		cancel()
		<-ch
		return false
	}
}

const drainTimeout = 30 * time.Second

// runProduce runs the closed-loop, pipelined or open-loop producer.
func runProduce(ctx context.Context, c Config, opts Options) (*Result, error) {
	if c.Rate > 0 {
		return runOpenLoop(ctx, c, opts)
	}
	cls, err := newClients(ctx, &c, c.Clients)
	if err != nil {
		return nil, err
	}
	defer closeAll(cls)
	mk := newRecordMaker(&c)
	size := c.Size + mk.keyLen()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := startMeasurement(ctx, &c, opts)
	w, rec := m.w, m.rec

	var workers sync.WaitGroup
	counts := make([]int64, c.Concurrency)
	if !c.Pipeline {
		// closed loop: each producer sends one record and waits for its ack before the next
		for i := 0; i < c.Concurrency; i++ {
			cl := cls[i%len(cls)]
			workers.Add(1)
			go func(i int) {
				defer workers.Done()
				for !w.stopped.Load() {
					r := mk.make(mk.value)
					t := time.Now()
					err := cl.ProduceSync(rctx, r).FirstErr()
					done := time.Now()
					if err != nil && (w.in(done) || w.in(t)) { // a failure of a record sent in the window counts even if late
						rec.RecordError(ErrorName(err))
						continue
					}
					if err != nil || !w.in(done) {
						continue
					}
					rec.Record(done.Sub(t), size)
					counts[i]++
				}
			}(i)
		}
	} else {
		// pipelined: each producer keeps handing records to its client, which batches them
		// (linger, batch bytes) and keeps up to max-inflight requests outstanding; Produce
		// blocks when the client's buffer is full, so the client's buffer bounds the queue.
		for i := 0; i < c.Concurrency; i++ {
			cl := cls[i%len(cls)]
			workers.Add(1)
			go func(i int) {
				defer workers.Done()
				var n atomic.Int64
				var pending sync.WaitGroup
				for !w.stopped.Load() {
					r := mk.make(mk.value)
					t := time.Now()
					pending.Add(1)
					cl.Produce(rctx, r, func(_ *kgo.Record, err error) {
						defer pending.Done()
						done := time.Now()
						if err != nil && (w.in(done) || w.in(t)) {
							rec.RecordError(ErrorName(err))
							return
						}
						if err != nil || !w.in(done) {
							return
						}
						rec.Record(done.Sub(t), size)
						n.Add(1)
					})
				}
				pending.Wait()
				counts[i] = n.Load()
			}(i)
		}
	}
	<-w.done
	ok := drain(&workers, drainTimeout, cancel)
	res := m.result(&c, opts)
	if !c.Pipeline {
		res.Fairness = ComputeFairness(counts)
	}
	if !ok {
		res.Notes = append(res.Notes, "producers did not finish within the drain timeout; in-flight records were canceled")
	}
	return res, nil
}

// IsTerminal reports whether f is a terminal (for the live progress line).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func fmtCount(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
