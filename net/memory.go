package kafkanet

import (
	"sync"
	"sync/atomic"
	"time"
)

// requestMemory bounds the request bytes all connections together hold
// (queued.max.request.bytes): a frame counts from its size prefix, when its buffer is promised,
// until its answer is written or its connection closes. While the bound is reached, a
// connection about to take a new frame stops reading (as for its own bounds, conn.go) and
// waits here; every release wakes the waiting connections, which look again. As in Kafka's
// (non-strict) memory pool, a frame is admitted while any memory is left, so the bytes held
// pass the bound by at most one frame per event loop. The connections holding memory all have
// requests being handled, so memory is always released again: no connection waits forever
// unless a client announces frames it never sends (which the per-connection rules of conn.go
// do not stop either).
//
// Lock order: requestMemory.mu is a leaf; release takes connection.mu after dropping it.
type requestMemory struct {
	max   int64         // <= 0: no bound
	used  atomic.Int64  // bytes held
	waits atomic.Uint64 // times a connection began to wait

	mu      sync.Mutex
	waiting []*connection // each with memWaiting set; mu
	lastLog time.Time     // of the last "bound reached" line; mu
}

// full reports whether a new frame must wait for memory.
func (m *requestMemory) full() bool { return m.max > 0 && m.used.Load() >= m.max }

// take records n bytes held.
func (m *requestMemory) take(n int64) { m.used.Add(n) }

// await puts c on the waiting list unless it is there. The log line is written at most once a
// second (with the count): under sustained pressure every connection waits again and again.
func (m *requestMemory) await(c *connection) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.memWaiting {
		return
	}
	c.memWaiting = true
	m.waiting = append(m.waiting, c)
	n := m.waits.Add(1)
	now := time.Now()
	if now.Sub(m.lastLog) < time.Second {
		return
	}
	m.lastLog = now
	c.log.Warn("request memory bound reached (queued.max.request.bytes); not reading this connection until requests are answered",
		"held_bytes", m.used.Load(), "queued_max_request_bytes", m.max, "waits_total", n)
}

// forget takes a closed connection off the waiting list.
func (m *requestMemory) forget(c *connection) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !c.memWaiting {
		return
	}
	c.memWaiting = false
	for i, w := range m.waiting {
		if w == c {
			m.waiting = append(m.waiting[:i], m.waiting[i+1:]...)
			break
		}
	}
}

// release returns n bytes and wakes every waiting connection, which looks again (those that
// still find the bound reached wait anew). Called without connection.mu held.
func (m *requestMemory) release(n int64) {
	if n == 0 {
		return
	}
	m.used.Add(-n)
	if m.max <= 0 {
		return
	}
	m.mu.Lock()
	ws := m.waiting
	m.waiting = nil
	for _, c := range ws {
		c.memWaiting = false
	}
	m.mu.Unlock()
	for _, c := range ws {
		c.wake()
	}
}
