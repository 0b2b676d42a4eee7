package replication

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/engine"
)

// Kafka error codes a fetch is refused with (the host's Leading returns them too).
const (
	CodeOffsetOutOfRange        int16 = 1
	CodeUnknownTopicOrPartition int16 = 3
	CodeNotLeaderOrFollower     int16 = 6
	CodeKafkaStorageError       int16 = 56
	CodeFencedLeaderEpoch       int16 = 74
	CodeUnknownLeaderEpoch      int16 = 75
)

// LeaderHost is what the leader side asks of the broker.
type LeaderHost interface {
	// Leading returns the partition when this node leads it at leaderEpoch and follower is one
	// of its replicas; otherwise 0 and a Kafka error code: NOT_LEADER_OR_FOLLOWER, an older
	// epoch FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION.
	Leading(id PartitionID, leaderEpoch, follower int32) (*engine.Partition, int16)
	// FollowerProgress tells what follower (at brokerEpoch, from its hello) holds of part
	// (logEnd written, durableEnd durable), on a stream whose history was checked against this
	// leader's in leaderEpoch. It runs on the connection's reader goroutine and must not block
	// for long.
	FollowerProgress(part *engine.Partition, leaderEpoch, follower int32, brokerEpoch, logEnd, durableEnd int64)
}

// Server is the leader side: it accepts followers on the replication listener and streams
// them the partitions they subscribe to.
type Server struct {
	host LeaderHost
	ln   net.Listener
	log  *slog.Logger

	mu     sync.Mutex
	closed bool
	conns  map[*leaderConn]struct{}
	// subs: the subscriptions streaming each partition (*engine.Partition → *[]*subscription),
	// so that Notify wakes only their connections. Notify runs on every leader append: it reads
	// without a lock; the slices are replaced, never changed, under mu.
	subs sync.Map

	sentBytes   atomic.Uint64 // batch bytes sent to followers
	memoryBytes atomic.Uint64 // of those, bytes sent from the buffers they were appended in
	copiedBytes atomic.Uint64 // of those, bytes copied through user space (no descriptor)
	wg          sync.WaitGroup
}

// Serve accepts followers on ln until Close.
func Serve(ln net.Listener, host LeaderHost, log *slog.Logger) *Server {
	s := &Server{host: host, ln: ln, log: log, conns: map[*leaderConn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats returns the batch bytes sent to followers, how many of them went from the buffers
// they were appended in (the leader's tail, with writev), and how many were copied through
// user space on the way (zero when every segment is sent with sendfile).
func (s *Server) Stats() (sent, fromMemory, copied uint64) {
	return s.sentBytes.Load(), s.memoryBytes.Load(), s.copiedBytes.Load()
}

// Notify tells the followers streaming part that it has new batches or a new high watermark.
// It does not block: the appender calls it.
func (s *Server) Notify(part *engine.Partition) {
	v, ok := s.subs.Load(part)
	if !ok {
		return
	}
	for _, sub := range *v.(*[]*subscription) {
		sub.dirty.Store(true)
		sub.conn.wake()
	}
}

// addSubLocked starts Notify waking sub for its partition. s.mu held.
func (s *Server) addSubLocked(sub *subscription) {
	var next []*subscription
	if v, ok := s.subs.Load(sub.part); ok {
		next = append(next, *v.(*[]*subscription)...)
	}
	next = append(next, sub)
	s.subs.Store(sub.part, &next)
}

// removeSubLocked stops Notify waking sub. s.mu held.
func (s *Server) removeSubLocked(sub *subscription) {
	v, ok := s.subs.Load(sub.part)
	if !ok {
		return
	}
	old := *v.(*[]*subscription)
	next := make([]*subscription, 0, len(old))
	for _, o := range old {
		if o != sub {
			next = append(next, o)
		}
	}
	if len(next) == 0 {
		s.subs.Delete(sub.part)
		return
	}
	s.subs.Store(sub.part, &next)
}

// Close stops accepting, closes every follower's connection and waits for their goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*leaderConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.ln.Close()
	for _, c := range conns {
		c.conn.Close()
	}
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("replication: accepting a follower", "err", err)
			}
			return
		}
		tc, ok := nc.(*net.TCPConn)
		if !ok {
			nc.Close()
			continue
		}
		c := &leaderConn{s: s, conn: tc, wakeCh: make(chan struct{}, 1), subs: map[PartitionID]*subscription{}}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			tc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(2)
		go c.read()
		go c.write()
	}
}

// subscription is one partition streamed to one follower from one fetch.
type subscription struct {
	conn        *leaderConn
	id          PartitionID
	sub         uint32
	part        *engine.Partition
	leaderEpoch int32
	// dirty: the partition may have something to send (Notify, a new subscription, a span
	// cut short): a writer round visits only these, not every partition of the connection
	// (a follower follows tens of partitions of a leader, __consumer_offsets' among them).
	dirty atomic.Bool

	// Guarded by conn.mu.
	next   int64       // the next offset to send
	prev   engine.Span // the span sent last, ending at next (a hint for the next one)
	sentHW int64       // the high watermark last sent; -1: none yet
	sentLS int64       // the log start offset last sent
	// answer, when not nil, is the one frame still to send (diverging or refused); the
	// subscription ends with it.
	answer []byte
}

// leaderConn is one follower's connection.
type leaderConn struct {
	s           *Server
	conn        *net.TCPConn
	follower    atomic.Int32 // from its hello
	brokerEpoch atomic.Int64 // from its hello
	wakeCh      chan struct{}

	mu   sync.Mutex
	subs map[PartitionID]*subscription
	gone bool
}

func (c *leaderConn) wake() {
	select {
	case c.wakeCh <- struct{}{}:
	default:
	}
}

// read handles the follower's frames; when the connection ends it unregisters the
// subscriptions.
func (c *leaderConn) read() {
	defer c.s.wg.Done()
	defer c.close()
	fr := newFrameReader(bufio.NewReaderSize(c.conn, 64<<10))
	helloed := false
	for {
		kind, size, err := fr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.s.log.Info("replication: a follower's connection ended", "follower", c.follower.Load(), "remote", c.conn.RemoteAddr(), "err", err)
			}
			return
		}
		if !helloed && kind != kindHello {
			c.s.log.Warn("replication: a follower spoke before its hello; closing", "remote", c.conn.RemoteAddr(), "kind", kind)
			return
		}
		switch kind {
		case kindHello:
			d, err := fr.body(size, helloSize)
			if err != nil {
				c.s.log.Warn("replication: bad hello", "remote", c.conn.RemoteAddr(), "err", err)
				return
			}
			h := d.hello()
			c.follower.Store(h.Follower)
			c.brokerEpoch.Store(h.BrokerEpoch)
			helloed = true
		case kindFetch:
			d, err := fr.body(size, fetchSize)
			if err != nil {
				c.s.log.Warn("replication: bad fetch", "follower", c.follower.Load(), "err", err)
				return
			}
			c.fetch(d.fetch())
		case kindAck:
			d, err := fr.body(size, ackSize)
			if err != nil {
				c.s.log.Warn("replication: bad ack", "follower", c.follower.Load(), "err", err)
				return
			}
			a := d.ack()
			c.mu.Lock()
			sub := c.subs[a.Key]
			streaming := sub != nil && sub.sub == a.Sub && sub.answer == nil
			c.mu.Unlock()
			if streaming {
				c.s.host.FollowerProgress(sub.part, sub.leaderEpoch, c.follower.Load(), c.brokerEpoch.Load(), a.LogEnd, a.DurableEnd)
			}
		case kindStop:
			d, err := fr.body(size, stopSize)
			if err != nil {
				c.s.log.Warn("replication: bad stop", "follower", c.follower.Load(), "err", err)
				return
			}
			m := d.stop()
			c.mu.Lock()
			if sub := c.subs[m.Key]; sub != nil && sub.sub == m.Sub {
				c.dropLocked(sub)
			}
			c.mu.Unlock()
		default:
			c.s.log.Warn("replication: unknown frame from a follower; closing", "follower", c.follower.Load(), "kind", kind)
			return
		}
	}
}

// fetch checks a subscription against this leader's log and starts streaming it, or queues
// the answer that refuses it.
func (c *leaderConn) fetch(f fetch) {
	follower := c.follower.Load()
	sub := &subscription{conn: c, id: f.Key, sub: f.Sub, leaderEpoch: f.LeaderEpoch, next: f.FetchOffset, sentHW: -1}
	sub.dirty.Store(true)
	part, code := c.s.host.Leading(f.Key, f.LeaderEpoch, follower)
	switch {
	case code != 0:
		sub.answer = appendRefused(nil, refused{Key: f.Key, Sub: f.Sub, Code: code, LogStartOffset: -1})
	default:
		sub.part = part
		sub.answer = c.check(part, f)
	}
	c.mu.Lock()
	if old := c.subs[f.Key]; old != nil {
		c.dropLocked(old)
	}
	if !c.gone {
		c.subs[f.Key] = sub
		if sub.answer == nil {
			c.s.mu.Lock()
			c.s.addSubLocked(sub)
			c.s.mu.Unlock()
		}
	}
	c.mu.Unlock()
	c.wake()
}

// check applies the divergence rule (divergence.go) to a fetch and returns the frame that
// refuses it, or nil when the follower's log is a prefix of this one and streaming may start.
func (c *leaderConn) check(part *engine.Partition, f fetch) []byte {
	d, code := checkFetch(part, f.FetchOffset, f.LastFetchedEpoch)
	switch {
	case code == CodeOffsetOutOfRange:
		start, err := part.ReplicaStart()
		if err != nil {
			start = -1 // the follower retries; the leader's reads report the storage error
		}
		if f.FetchOffset == start {
			return nil // a follower that restarted its log at the batch holding the log start
		}
		c.s.log.Warn("replication: a follower fetches below the log start; it must restart its log there", "follower", c.follower.Load(),
			"topic", part.TopicPartition().Topic, "partition", part.TopicPartition().Partition, "fetch_offset", f.FetchOffset,
			"log_start", part.LogStartOffset(), "restart_at", start)
		return appendRefused(nil, refused{Key: f.Key, Sub: f.Sub, Code: code, LogStartOffset: start})
	case d != nil:
		return appendDiverging(nil, diverging{Key: f.Key, Sub: f.Sub, Epoch: d.Epoch, EndOffset: d.EndOffset})
	}
	return nil
}

// dropLocked ends a subscription. c.mu held.
func (c *leaderConn) dropLocked(sub *subscription) {
	if c.subs[sub.id] == sub {
		delete(c.subs, sub.id)
	}
	if sub.part == nil {
		return
	}
	c.s.mu.Lock()
	c.s.removeSubLocked(sub)
	c.s.mu.Unlock()
}

func (c *leaderConn) close() {
	c.conn.Close()
	c.mu.Lock()
	c.gone = true
	for _, sub := range c.subs {
		c.dropLocked(sub)
	}
	c.mu.Unlock()
	c.wake()
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
}

// writeTimeout bounds one write to a follower: a follower that takes nothing for this long
// is cut off (it reconnects and resubscribes).
const writeTimeout = 30 * time.Second

// write streams the subscriptions: in rounds, each subscription with something to send
// sends one frame or span per round, until none has anything; then it waits for a Notify.
func (c *leaderConn) write() {
	defer c.s.wg.Done()
	var copyBuf []byte
	var subs []*subscription
	r := &writeRound{conn: c.conn}
	tick := time.NewTicker(hwInterval)
	defer tick.Stop()
	for {
		flushHW := false
		select {
		case <-c.wakeCh:
		case <-tick.C:
			flushHW = true
		}
		for {
			c.mu.Lock()
			if c.gone {
				c.mu.Unlock()
				return
			}
			subs = subs[:0]
			for _, sub := range c.subs {
				// A round on the HW interval visits every subscription; the others only those
				// with news. The flag is cleared before the visit, so a Notify during it marks
				// the subscription again.
				if sub.dirty.Swap(false) || flushHW {
					subs = append(subs, sub)
				}
			}
			c.mu.Unlock()
			if len(subs) == 0 {
				break
			}
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			var err error
			for _, sub := range subs {
				var did bool
				if did, err = c.send(sub, flushHW, r, &copyBuf); err != nil {
					break
				}
				if did {
					sub.dirty.Store(true) // maybe more: come back in the next pass
				}
				if r.full() {
					if err = r.flush(false); err != nil {
						break
					}
				}
			}
			if err == nil {
				err = r.flush(false)
			}
			if err != nil {
				c.s.log.Info("replication: writing to a follower failed; closing", "follower", c.follower.Load(), "err", err)
				c.conn.Close()
				return
			}
			flushHW = false
		}
	}
}

// hwInterval is how stale a follower's copy of the high watermark may get while no data goes
// to it. A follower needs it only to start from should it lead, so it is not worth a frame
// (and a system call on each side) per acknowledged append; data frames carry it anyway.
const hwInterval = 100 * time.Millisecond

// send adds sub's next frame to the round, or sends its next span, if it has one; it reports
// whether it did. Fresh batches the leader still holds in memory join the round (one writev
// for all the round's partitions); older ones go straight from the segment file with
// sendfile. A frame with only the high watermark goes out on a new subscription (the follower
// acknowledges it, so the leader learns where a follower that needs nothing stands), when the
// log start moved, or with flushHW.
func (c *leaderConn) send(sub *subscription, flushHW bool, r *writeRound, copyBuf *[]byte) (bool, error) {
	c.mu.Lock()
	if c.subs[sub.id] != sub {
		c.mu.Unlock()
		return false, nil
	}
	if sub.answer != nil {
		r.add(sub.answer)
		delete(c.subs, sub.id)
		c.mu.Unlock()
		return true, nil
	}
	next, prev, sentHW, sentLS := sub.next, sub.prev, sub.sentHW, sub.sentLS
	c.mu.Unlock()

	part := sub.part
	hw, logStart := part.HighWatermark(), part.LogStartOffset()
	if next < part.LogEndOffset() {
		// From memory: a header slot, then the batches behind it.
		slot := len(r.iov)
		r.iov = append(r.iov, nil)
		var end, n int64
		var ok bool
		r.iov, end, n, ok = part.ReplicaTail(next, maxSpanBytes, r.iov)
		if ok && n <= maxSpanBytes {
			hdr := len(r.hdrs)
			r.hdrs = appendDataHeader(r.hdrs, dataHeader{Key: sub.id, Sub: sub.sub, HighWatermark: hw,
				LogStartOffset: logStart, BaseOffset: next, Len: uint32(n)})
			r.iov[slot] = r.hdrs[hdr:len(r.hdrs):len(r.hdrs)]
			r.bytes += len(r.iov[slot]) + int(n)
			c.s.sentBytes.Add(uint64(n))
			c.s.memoryBytes.Add(uint64(n))
			c.mu.Lock()
			sub.next, sub.prev, sub.sentHW, sub.sentLS = end, engine.Span{}, hw, logStart
			c.mu.Unlock()
			return true, nil
		}
		clear(r.iov[slot:])
		r.iov = r.iov[:slot]

		sp, err := part.ReplicaSpan(next, maxSpanBytes, &prev)
		if err != nil {
			// The log changed under the stream (a retention pass, a truncation after losing
			// the leadership): the follower fetches again and is checked again.
			c.s.log.Info("replication: reading for a follower failed; it must fetch again", "follower", c.follower.Load(),
				"topic", part.TopicPartition().Topic, "partition", part.TopicPartition().Partition, "offset", next, "err", err)
			code := CodeNotLeaderOrFollower
			if errors.Is(err, engine.ErrStorage) {
				code = CodeKafkaStorageError
			}
			c.mu.Lock()
			if c.subs[sub.id] == sub {
				c.dropLocked(sub)
			}
			c.mu.Unlock()
			r.frame(func(b []byte) []byte {
				return appendRefused(b, refused{Key: sub.id, Sub: sub.sub, Code: code, LogStartOffset: -1})
			})
			return true, nil
		}
		if sp.Len > 0 {
			r.frame(func(b []byte) []byte {
				return appendDataHeader(b, dataHeader{Key: sub.id, Sub: sub.sub, HighWatermark: hw,
					LogStartOffset: logStart, BaseOffset: sp.Offset, Len: uint32(sp.Len)})
			})
			if err := r.flush(true); err != nil {
				return false, err
			}
			copied, err := sendSpan(c.conn, sp, copyBuf)
			if err != nil {
				return false, err
			}
			c.s.sentBytes.Add(uint64(sp.Len))
			if copied {
				c.s.copiedBytes.Add(uint64(sp.Len))
			}
			c.mu.Lock()
			sub.next, sub.prev, sub.sentHW, sub.sentLS = sp.EndOffset, sp, hw, logStart
			c.mu.Unlock()
			return true, nil
		}
	}
	if sentHW < 0 || logStart != sentLS || (flushHW && hw != sentHW) {
		r.frame(func(b []byte) []byte {
			return appendHW(b, hwUpdate{Key: sub.id, Sub: sub.sub, HighWatermark: hw, LogStartOffset: logStart})
		})
		c.mu.Lock()
		sub.sentHW, sub.sentLS = hw, logStart
		c.mu.Unlock()
		return true, nil
	}
	return false, nil
}
