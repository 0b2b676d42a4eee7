package broker

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"
)

// Purgatory holds requests that cannot be answered yet: a produce waiting until a partition's
// high watermark passes its batches (delayed produce), a fetch waiting for bytes (delayed
// fetch). Each parked operation watches one or more partitions and has a deadline; whoever
// moves a partition's high watermark calls Notify. The operations watching that partition are
// then checked — cheap checks (comparing two offsets) on the notifying goroutine, expensive
// ones (reading the logs) on the purgatory's one worker goroutine, so the WAL's completion path
// never reads a segment — and completed once their condition holds or their deadline passes.
// No goroutine waits per request; deadlines live in one heap.
//
// Lock order: Purgatory.mu is a leaf. Checks and completions run without it.
type Purgatory struct {
	now    func() time.Time
	parked atomic.Int64 // operations not completed; Notify returns at once when zero

	mu        sync.Mutex
	watchers  map[TopicPartition][]*Delayed
	deadlines deadlineHeap
	queued    []*Delayed // to be checked on the worker
	closed    bool

	wake    chan struct{} // cap 1: the worker has something to do
	stopped chan struct{}
}

// Delayed is one parked operation. Build it with NewDelayed, hand it to Park.
type Delayed struct {
	keys     []TopicPartition
	timeout  time.Duration
	deadline time.Time // set by Park
	// cheap: ready only compares offsets and never blocks, so it may run on any goroutine,
	// concurrently with itself. Otherwise ready runs on the worker goroutine only.
	cheap    bool
	ready    func() bool
	complete func(timedOut bool)

	done      atomic.Bool
	heapIndex int  // in deadlines, -1 when not there; Purgatory.mu
	isQueued  bool // in queued; Purgatory.mu
}

// NewDelayed describes an operation that completes once ready() reports true after a Notify of
// one of keys, or when timeout passes; complete runs exactly once, with timedOut telling which.
// complete must not block: it runs on a notifying goroutine or the purgatory's worker.
func NewDelayed(keys []TopicPartition, timeout time.Duration, cheap bool, ready func() bool, complete func(timedOut bool)) *Delayed {
	return &Delayed{keys: keys, timeout: timeout, cheap: cheap, ready: ready,
		complete: complete, heapIndex: -1}
}

// NewPurgatory starts a purgatory and its worker. now is the clock deadlines are compared with.
func NewPurgatory(now func() time.Time) *Purgatory {
	p := &Purgatory{
		now:      now,
		watchers: make(map[TopicPartition][]*Delayed),
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
	}
	go p.run()
	return p
}

// Park parks op. The caller has found it not ready; since a Notify may have come between that
// check and this call, op is checked once more (a cheap one at once, here; another on the
// worker). After Close, op completes at once as timed out.
func (p *Purgatory) Park(op *Delayed) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.finish(op, true)
		return
	}
	p.parked.Add(1)
	op.deadline = p.now().Add(op.timeout)
	for _, k := range op.keys {
		p.watchers[k] = append(p.watchers[k], op)
	}
	heap.Push(&p.deadlines, op)
	if !op.cheap {
		p.queueLocked(op)
	}
	p.mu.Unlock()
	p.signal()
	if op.cheap && op.ready() {
		p.finish(op, false)
	}
}

// Notify says that tp's high watermark moved (or that tp went away): the operations watching
// it are checked.
func (p *Purgatory) Notify(tp TopicPartition) {
	if p.parked.Load() == 0 {
		return
	}
	p.mu.Lock()
	ops := p.watchers[tp]
	var cheap []*Delayed
	queued := false
	for _, op := range ops {
		switch {
		case op.done.Load():
		case op.cheap:
			cheap = append(cheap, op)
		default:
			p.queueLocked(op)
			queued = true
		}
	}
	p.mu.Unlock()
	if queued {
		p.signal()
	}
	for _, op := range cheap {
		if op.ready() {
			p.finish(op, false)
		}
	}
}

// NotifyTopic notifies every partition of a topic (deleted, for instance).
func (p *Purgatory) NotifyTopic(topic string, partitions int32) {
	for i := int32(0); i < partitions; i++ {
		p.Notify(TopicPartition{Topic: topic, Partition: i})
	}
}

// Parked counts the operations waiting.
func (p *Purgatory) Parked() int { return int(p.parked.Load()) }

// Close completes every parked operation as timed out and stops the worker. Operations parked
// later complete at once.
func (p *Purgatory) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	var all []*Delayed
	for _, op := range p.deadlines {
		all = append(all, op)
	}
	p.mu.Unlock()
	for _, op := range all {
		p.finish(op, true)
	}
	p.signal()
	<-p.stopped
}

func (p *Purgatory) queueLocked(op *Delayed) {
	if !op.isQueued {
		op.isQueued = true
		p.queued = append(p.queued, op)
	}
}

func (p *Purgatory) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// finish completes op unless it already was: it leaves every watcher list and the deadline
// heap, then its complete runs (outside the lock).
func (p *Purgatory) finish(op *Delayed, timedOut bool) {
	if !op.done.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	if op.heapIndex >= 0 {
		heap.Remove(&p.deadlines, op.heapIndex)
		p.parked.Add(-1)
	}
	for _, k := range op.keys {
		ops := p.watchers[k]
		for i, o := range ops {
			if o == op {
				ops = append(ops[:i], ops[i+1:]...)
				break
			}
		}
		if len(ops) == 0 {
			delete(p.watchers, k)
		} else {
			p.watchers[k] = ops
		}
	}
	p.mu.Unlock()
	op.complete(timedOut)
}

// run is the worker: it expires operations whose deadline passed and checks the queued ones.
func (p *Purgatory) run() {
	defer close(p.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		now := p.now()
		var expired []*Delayed
		for len(p.deadlines) > 0 && !p.deadlines[0].deadline.After(now) {
			// Out of the heap (and the count) here; finish below takes it off the watcher
			// lists unless a Notify completed it first.
			op := heap.Pop(&p.deadlines).(*Delayed)
			p.parked.Add(-1)
			expired = append(expired, op)
		}
		queued := p.queued
		p.queued = nil
		for _, op := range queued {
			op.isQueued = false
		}
		wait := time.Hour
		if len(p.deadlines) > 0 {
			wait = p.deadlines[0].deadline.Sub(now)
		}
		closed := p.closed
		p.mu.Unlock()

		for _, op := range expired {
			p.finish(op, true)
		}
		for _, op := range queued {
			if !op.done.Load() && op.ready() {
				p.finish(op, false)
			}
		}
		if closed {
			return
		}
		if len(expired) > 0 || len(queued) > 0 {
			continue // more may have come while these ran
		}
		timer.Reset(wait)
		select {
		case <-p.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// deadlineHeap orders parked operations by deadline.
type deadlineHeap []*Delayed

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *deadlineHeap) Push(x any) {
	op := x.(*Delayed)
	op.heapIndex = len(*h)
	*h = append(*h, op)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	op := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	op.heapIndex = -1
	return op
}
