package perf

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// endOffsets returns the current end offset of every partition of topic.
func endOffsets(ctx context.Context, brokers []string, topic string) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	lo, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	var ferr error
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			ferr = o.Err
		}
		out[o.Partition] = o.Offset
	})
	if len(out) == 0 && ferr == nil {
		ferr = fmt.Errorf("topic %s has no partitions", topic)
	}
	return out, ferr
}

// runConsume reads the topic from the start (alone, or as a member of --group) and reports the
// rate. It stops at -n messages, after -d, or once it has read everything that was in the topic
// when it started, whichever comes first. The histogram holds each poll's wait.
func runConsume(ctx context.Context, c Config, opts Options) (*Result, error) {
	if c.Prefill > 0 {
		if err := prefill(ctx, c); err != nil {
			return nil, fmt.Errorf("prefill: %w", err)
		}
	}
	ends, err := endOffsets(ctx, c.Brokers, c.Topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	var target int64
	for _, o := range ends {
		target += o
	}
	copts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ConsumeTopics(c.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}
	if c.Group != "" {
		copts = append(copts, kgo.ConsumerGroup(c.Group), kgo.DisableAutoCommit())
	}
	cl, err := kgo.NewClient(copts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	c.Warmup, c.WarmupS = 0, 0 // a consumer reading from the start has nothing to warm up on
	if c.Count > 0 && (target == 0 || c.Count < target) {
		target = c.Count
	}
	if target == 0 && c.Duration <= 0 {
		return nil, fmt.Errorf("topic %s is empty: produce to it first, or give -n or -d to wait for records", c.Topic)
	}
	t0 := time.Now()
	if c.Duration <= 0 {
		c.Duration = 10 * time.Minute
	}
	w := newWindow(t0, &c)
	rec := NewRecorder(w.start)
	var cpu [2]cpuSample
	var ctl sync.WaitGroup
	ctl.Add(1)
	cc := c
	cc.Count = 0 // the consumer itself closes the window at the target
	go controller(ctx, &cc, opts, rec, w, &cpu, &ctl)
	limitCount(&c, rec, w)
	var n int64
	for !w.stopped.Load() {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		t := time.Now()
		fs := cl.PollFetches(pctx)
		cancel()
		wait := time.Since(t)
		fs.EachError(func(_ string, _ int32, err error) {
			if err != context.DeadlineExceeded && err != context.Canceled {
				rec.RecordError(ErrorName(err))
			}
		})
		first := true
		fs.EachRecord(func(r *kgo.Record) {
			sz := len(r.Value) + len(r.Key)
			if first {
				rec.Record(wait, sz)
				first = false
			} else {
				rec.RecordCount(sz)
			}
			n++
		})
		if target > 0 && n >= target {
			w.stop(time.Now())
		}
		if ctx.Err() != nil {
			break
		}
	}
	ctl.Wait()
	res := &Result{}
	res.fill(&c, opts, rec, w, cpu, t0)
	res.Notes = append(res.Notes, "consume latency is the wait of each poll that returned records, not a per-record latency",
		"the window includes connecting (and joining the group), from the first request to the last record")
	return res, nil
}

// runE2E produces at --rate with the scheduled send time in each record, and a consumer tailing
// the same partitions from their current end measures the time from schedule to receipt.
func runE2E(ctx context.Context, c Config, opts Options) (*Result, error) {
	if c.Rate <= 0 {
		return nil, fmt.Errorf("e2e needs --rate")
	}
	ends, err := endOffsets(ctx, c.Brokers, c.Topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	offs := map[int32]kgo.Offset{}
	for p, o := range ends {
		offs[p] = kgo.NewOffset().At(o)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.Topic: offs}),
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cons.Close()
	cls, err := newClients(ctx, &c, c.Clients)
	if err != nil {
		return nil, err
	}
	defer closeAll(cls)
	mk := newRecordMaker(&c)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := startMeasurement(ctx, &c, opts)
	t0, w, rec := m.t0, m.w, m.rec

	var mu sync.Mutex
	var expected, received int64 // records scheduled in the window that were acked / received
	consDone := make(chan struct{})
	var prodDone = make(chan struct{})
	go func() {
		defer close(consDone)
		for {
			pctx, pcancel := context.WithTimeout(rctx, 200*time.Millisecond)
			fs := cons.PollFetches(pctx)
			pcancel()
			now := time.Now()
			fs.EachError(func(_ string, _ int32, err error) {
				if err != context.DeadlineExceeded && err != context.Canceled {
					rec.RecordError(ErrorName(err))
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				at, ok := getStamp(r.Value)
				if !ok || !w.in(at) {
					return
				}
				rec.Record(now.Sub(at), len(r.Value)+len(r.Key))
				mu.Lock()
				received++
				mu.Unlock()
			})
			select {
			case <-prodDone:
				mu.Lock()
				all := received >= expected
				mu.Unlock()
				if all {
					return
				}
			default:
			}
			if rctx.Err() != nil {
				return
			}
		}
	}()
	var pending sync.WaitGroup
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		RunSchedule(rctx, Schedule{Start: t0, Rate: c.Rate}, w.end, w.stopped.Load, func(i int64, at time.Time) {
			v := make([]byte, c.Size)
			copy(v, mk.value)
			putStamp(v, at)
			counted := w.in(at)
			pending.Add(1)
			cls[i%int64(len(cls))].Produce(rctx, mk.make(v), func(_ *kgo.Record, err error) {
				defer pending.Done()
				if !counted {
					return
				}
				if err != nil {
					rec.RecordError("produce: " + ErrorName(err))
					return
				}
				mu.Lock()
				expected++
				mu.Unlock()
			})
		})
	}()
	<-w.done
	<-schedDone
	var notes []string
	var acks sync.WaitGroup
	acks.Add(1)
	go func() { pending.Wait(); acks.Done() }()
	if !drain(&acks, drainTimeout, cancel) {
		notes = append(notes, "some produced records were not acknowledged within the drain timeout")
	}
	close(prodDone)
	select {
	case <-consDone:
	case <-time.After(drainTimeout):
		cancel()
		<-consDone
		notes = append(notes, "consumer did not receive every acknowledged record within the drain timeout")
	}
	m.ctl.Wait()
	mu.Lock()
	if missing := expected - received; missing > 0 {
		for ; missing > 0; missing-- {
			rec.RecordError("NOT_RECEIVED")
		}
	}
	mu.Unlock()
	res := &Result{}
	res.fill(&c, opts, rec, w, m.cpu, t0)
	res.Notes = append(res.Notes, notes...)
	res.Notes = append(res.Notes, "latency is from each record's scheduled send time to its receipt by the tailing consumer")
	return res, nil
}

// prefill produces c.Prefill records of c.Size bytes round robin over the topic's partitions,
// pipelined on one client with acks=all, and returns once every one is acknowledged.
func prefill(ctx context.Context, c Config) error {
	pc := c
	pc.Pipeline, pc.Linger, pc.MaxBuffered, pc.Retries = true, 5*time.Millisecond, 20000, -1
	cl, err := kgo.NewClient(append(pc.producerOpts(), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	mk := newRecordMaker(&pc)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := int64(0); i < c.Prefill && ctx.Err() == nil; i++ {
		wg.Add(1)
		cl.Produce(ctx, mk.make(mk.value), func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
