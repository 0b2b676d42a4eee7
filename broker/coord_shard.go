package broker

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/engine"
)

// Coordinator shards. The group coordinators (groups_shard.go) and the transaction coordinators
// (txn_shard.go) each run one pure coordinator per partition of their internal topic, on a
// goroutine of its own, fed by a queue that never blocks those who fill it (request handlers,
// the engine's durability callbacks, marker writes), so that nobody waits on anybody. What they
// share is here: the queue and the goroutine's life (shardCore), and the table of shards by
// partition with its Load and Unload (shardHost). What differs — the replay, the requests, the
// answers a shutdown gives — stays with each.

// shardEvent is one entry of a shard's queue: a client's request (fn nil), or the shard's own
// work fn, which an Unload drops (calling dropped, when set, instead).
type shardEvent[R any] struct {
	req     R
	fn      func(now time.Time)
	dropped func()
}

// shardCore is the queue and the life of one coordinator shard, R its request type.
type shardCore[R any] struct {
	partition int32
	part      *engine.Partition
	// epoch is the coordinator epoch: the partition's leader epoch when this node took it. A
	// new leadership, even this node's again, loads a new shard (shardHost.stale).
	epoch   int32
	log     *slog.Logger
	loaded  atomic.Bool   // replay done: requests go to the coordinator
	ready   chan struct{} // closed when the replay is over, loadErr set
	loadErr error

	mu      sync.Mutex
	events  []shardEvent[R]
	closed  bool // Unload began: enqueue refuses, the caller answers NOT_COORDINATOR
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func (c *shardCore[R]) init(p int32, part *engine.Partition, log *slog.Logger) {
	c.partition, c.part, c.epoch, c.log = p, part, part.LeaderEpoch(), log
	c.ready, c.wake = make(chan struct{}), make(chan struct{}, 1)
	c.stop, c.stopped = make(chan struct{}), make(chan struct{})
}

// loadDone records the outcome of the replay: on success requests reach the coordinator from
// now on (set before ready closes, so whoever waited for the load finds the shard taking
// requests). On the shard's goroutine.
func (c *shardCore[R]) loadDone(err error) {
	c.loadErr = err
	if err == nil {
		c.loaded.Store(true)
	}
	close(c.ready)
}

// wait returns once the replay is over, with its error.
func (c *shardCore[R]) wait() error {
	<-c.ready
	return c.loadErr
}

// coordinatorEpoch is the leader epoch of the partition when this node took it.
func (c *shardCore[R]) coordinatorEpoch() int32 { return c.epoch }

// isLoaded reports whether the replay is done and requests reach the coordinator.
func (c *shardCore[R]) isLoaded() bool { return c.loaded.Load() }

// submit queues a client's request; false when the shard is being unloaded (the caller answers
// NOT_COORDINATOR). It never blocks.
func (c *shardCore[R]) submit(r R) bool { return c.enqueue(shardEvent[R]{req: r}) }

// enqueue adds ev to the queue and wakes the goroutine; false once the shard is being unloaded.
func (c *shardCore[R]) enqueue(ev shardEvent[R]) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.events = append(c.events, ev)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// halt stops the goroutine (interrupting a replay), waits until it is gone and returns what was
// left in the queue, for the caller to answer. Not on the shard's goroutine.
func (c *shardCore[R]) halt() []shardEvent[R] {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.stopped
	// The goroutine is gone: its state is ours now.
	c.mu.Lock()
	events := c.events
	c.events = nil
	c.mu.Unlock()
	return events
}

// serve runs the queue (requests through handle, work as it is) and the coordinator's
// deadlines (next, tick) until halt. On the shard's goroutine.
func (c *shardCore[R]) serve(handle func(now time.Time, r R), next func() (time.Time, bool), tick func(now time.Time)) {
	shardLoop(c.stop, c.wake, func() bool {
		c.mu.Lock()
		events := c.events
		c.events = nil
		c.mu.Unlock()
		for _, ev := range events {
			if ev.fn != nil {
				ev.fn(time.Now())
			} else {
				handle(time.Now(), ev.req)
			}
		}
		return len(events) > 0
	}, next, tick)
}

// shardLoop is the goroutine of a coordinator shard until stop closes: run runs what is queued
// (false when nothing was), and when nothing is, the loop sleeps until wake, stop or the
// coordinator's next deadline, which tick fires.
func shardLoop(stop, wake <-chan struct{}, run func() bool, next func() (time.Time, bool), tick func(now time.Time)) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if run() {
			continue // more may have arrived while these ran
		}
		wait := time.Hour
		if at, ok := next(); ok {
			wait = time.Until(at)
		}
		if wait <= 0 {
			tick(time.Now())
			continue
		}
		timer.Reset(wait)
		select {
		case <-wake:
		case <-timer.C:
			tick(time.Now())
		case <-stop:
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// coordShard is what shardHost needs of a shard type S: its goroutine (run: replay, then serve
// until shutdown), shutdown (halt, then answer what it held), and the load state (shardCore's).
type coordShard[S any] interface {
	*S
	run()
	shutdown()
	wait() error
	isLoaded() bool
	coordinatorEpoch() int32
}

// shardHost is the table of the shards of one internal topic this node hosts, by partition.
// Requests read it without a lock; load and unload change it under loadMu, which serialises
// them (an unload waits for the shard's goroutine to end and answers what it held, so that
// goroutine never takes loadMu: a failed replay removes its shard with a compare-and-swap).
type shardHost[S any, P coordShard[S]] struct {
	topic      string
	partitions int32 // the topic's partition count, fixed for the life of the topic
	shards     []atomic.Pointer[S]
	loadMu     sync.Mutex
}

func (h *shardHost[S, P]) initShards(topic string, partitions int32) {
	h.topic, h.partitions, h.shards = topic, partitions, make([]atomic.Pointer[S], partitions)
}

// load starts hosting partition p with the shard open makes (its goroutine started here), unless
// one is loaded or loading already; wait returns once its replay is over.
func (h *shardHost[S, P]) load(p int32, open func() (P, error)) (wait func() error) {
	if p < 0 || p >= h.partitions {
		err := fmt.Errorf("%w: %s has no partition %d", ErrUnknownTopic, h.topic, p)
		return func() error { return err }
	}
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	s := P(h.shards[p].Load())
	if s == nil {
		var err error
		if s, err = open(); err != nil {
			return func() error { return err }
		}
		h.shards[p].Store(s)
		go s.run()
	}
	return s.wait
}

// unload stops hosting partition p: what its shard holds is answered NOT_COORDINATOR, a replay
// in progress is abandoned. It returns once the shard's goroutine is gone; a partition not
// hosted is nothing to do.
func (h *shardHost[S, P]) unload(p int32) {
	if p < 0 || p >= h.partitions {
		return
	}
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	if s := P(h.shards[p].Swap(nil)); s != nil {
		s.shutdown()
	}
}

// stale reports whether partition p is hosted by a shard of a leadership older than
// leaderEpoch: the leadership left and came back between two reconciles, and another
// coordinator may have written to the partition meanwhile, which the shard's state lacks. Its
// caller unloads it and loads the partition again, replaying what is there now.
func (h *shardHost[S, P]) stale(p int32, leaderEpoch int32) bool {
	if p < 0 || p >= h.partitions {
		return false
	}
	s := P(h.shards[p].Load())
	return s != nil && s.coordinatorEpoch() < leaderEpoch
}

// unloadAll unloads every partition.
func (h *shardHost[S, P]) unloadAll() {
	for p := range h.shards {
		h.unload(int32(p))
	}
}

// shardOf returns the loaded shard of partition p, or the code to answer: NOT_COORDINATOR when
// not hosted here, COORDINATOR_LOAD_IN_PROGRESS while it replays.
func (h *shardHost[S, P]) shardOf(p int32) (P, int16) {
	s := P(h.shards[p].Load())
	switch {
	case s == nil:
		return nil, codeNotCoordinator
	case !s.isLoaded():
		return nil, codeLoading
	}
	return s, 0
}
