package perf

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Schedule is a fixed-rate send schedule: send i is due at Start + i/Rate.
type Schedule struct {
	Start time.Time
	Rate  float64 // sends per second
}

// At returns when send i is due.
func (s Schedule) At(i int64) time.Time {
	return s.Start.Add(time.Duration(float64(i) * float64(time.Second) / s.Rate))
}

// Due returns how many sends are due at now (sends 0 … Due-1).
func (s Schedule) Due(now time.Time) int64 {
	if now.Before(s.Start) {
		return 0
	}
	n := int64(now.Sub(s.Start).Seconds()*s.Rate) + 1
	// guard against float rounding at the edges
	for n > 0 && s.At(n-1).After(now) {
		n--
	}
	for !s.At(n).After(now) {
		n++
	}
	return n
}

// RunSchedule calls send(i, at) for every send due before end, in order, as close to its due time
// as it can. It never waits for a send to be acknowledged: when send blocks (the client's buffer
// is full, the broker stalls), the sends that fell due meanwhile are issued at once on return,
// each still carrying its own due time, so the stall is charged to every record it delayed.
// It returns the number of sends made.
func RunSchedule(ctx context.Context, s Schedule, end time.Time, stop func() bool, send func(i int64, at time.Time)) int64 {
	var i int64
	for {
		if ctx.Err() != nil || (stop != nil && stop()) {
			return i
		}
		now := time.Now()
		due := s.Due(now)
		for ; i < due; i++ {
			at := s.At(i)
			if !at.Before(end) || (stop != nil && i > 0 && stop()) {
				return i
			}
			send(i, at)
		}
		next := s.At(i)
		if !next.Before(end) {
			return i
		}
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return i
			case <-time.After(d):
			}
		}
	}
}

// runOpenLoop offers c.Rate records per second regardless of how fast they are acknowledged;
// latency is measured from each record's scheduled send time.
func runOpenLoop(ctx context.Context, c Config, opts Options) (*Result, error) {
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
	t0, w, rec := m.t0, m.w, m.rec

	// A record counts when it was scheduled inside the window, however late its ack comes.
	var pending sync.WaitGroup
	sched := Schedule{Start: t0, Rate: c.Rate}
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		RunSchedule(rctx, sched, w.end, w.stopped.Load, func(i int64, at time.Time) {
			counted := w.in(at)
			pending.Add(1)
			cls[i%int64(len(cls))].Produce(rctx, mk.make(mk.value), func(_ *kgo.Record, err error) {
				defer pending.Done()
				if !counted {
					return
				}
				if err != nil {
					rec.RecordError(ErrorName(err))
					return
				}
				rec.Record(time.Since(at), size)
			})
		})
	}()
	<-w.done
	<-schedDone
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { pending.Wait(); wg.Done() }()
	ok := drain(&wg, drainTimeout, cancel)
	res := m.result(&c, opts)
	if !ok {
		res.Notes = append(res.Notes, "records still unacknowledged after the drain timeout were canceled and counted as errors")
	}
	return res, nil
}

// e2e timestamps: the first 8 bytes of the value carry the scheduled send time (unix nanos).
func putStamp(b []byte, t time.Time) { binary.BigEndian.PutUint64(b, uint64(t.UnixNano())) }
func getStamp(b []byte) (time.Time, bool) {
	if len(b) < 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))), true
}
