package replication

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/engine"
)

// Fetchers is the follower side: for every partition this node follows, it keeps a
// subscription on one connection per leader, appends what the leader streams through the
// node's own WAL (so one group commit covers every partition received in that cycle), and
// acknowledges what is durable. Before copying it checks its log against the leader's
// (KIP-320's divergence rule) and cuts it back where they part, durably, first.
type Fetchers struct {
	self        int32
	brokerEpoch func() int64
	log         *slog.Logger

	mu      sync.Mutex
	closed  bool
	leaders map[int32]*fetcher
	parts   map[PartitionID]*followed
	wg      sync.WaitGroup

	subSeq atomic.Uint32 // subscription numbers, unique per process
}

// NewFetchers returns the follower side of broker self; brokerEpoch is its current broker
// epoch, sent in every hello.
func NewFetchers(self int32, brokerEpoch func() int64, log *slog.Logger) *Fetchers {
	return &Fetchers{self: self, brokerEpoch: brokerEpoch, log: log,
		leaders: map[int32]*fetcher{}, parts: map[PartitionID]*followed{}}
}

// followed is one partition this node copies.
type followed struct {
	id       PartitionID
	part     *engine.Partition
	f        *fetcher
	leaderHW atomic.Int64 // the leader's high watermark as last heard

	// mu serialises the appends and truncations of the partition with Unfollow and with the
	// fetches built for it, so that a fetch names the log end after the last append and no
	// append lands once Unfollow returned.
	mu          sync.Mutex
	active      bool
	leaderEpoch int32
	sub         uint32 // the current subscription; 0: none
	acked       bool   // an acknowledgement went out on sub
	retryAt     time.Time
	lastRefusal int16
}

// Follow makes this node copy part, identified on the wire by id, from leader at addr (its
// replication listener) in leaderEpoch. It is called on every metadata change; calling it
// again with the same arguments changes nothing, with a new leader epoch it fetches again
// (checked against the leader's history once more).
func (fs *Fetchers) Follow(part *engine.Partition, id PartitionID, leader int32, addr string, leaderEpoch int32) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return
	}
	fp := fs.parts[id]
	if fp != nil && (fp.part != part || fp.f.leader != leader) {
		fs.unfollowLocked(fp)
		fp = nil
	}
	f := fs.leaders[leader]
	if f == nil {
		f = &fetcher{fs: fs, leader: leader, addr: addr, parts: map[PartitionID]*followed{},
			fetches: map[PartitionID]*followed{}, acks: map[PartitionID]*followed{},
			stops: map[PartitionID]uint32{}, wakeCh: make(chan struct{}, 1), done: make(chan struct{})}
		fs.leaders[leader] = f
		fs.wg.Add(1)
		go f.run()
	} else {
		f.setAddr(addr)
	}
	if fp == nil {
		fp = &followed{id: id, part: part, f: f, active: true, leaderEpoch: leaderEpoch}
		fp.leaderHW.Store(-1)
		fs.parts[id] = fp
		f.add(fp)
		return
	}
	fp.mu.Lock()
	changed := fp.leaderEpoch != leaderEpoch
	fp.leaderEpoch = leaderEpoch
	fp.mu.Unlock()
	if changed {
		f.needFetch(fp)
	}
}

// Unfollow stops copying id: once it returns, nothing more is appended to the partition by
// this side (its leader took over, or it was deleted).
func (fs *Fetchers) Unfollow(id PartitionID) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fp := fs.parts[id]; fp != nil {
		fs.unfollowLocked(fp)
	}
}

func (fs *Fetchers) unfollowLocked(fp *followed) {
	fp.mu.Lock()
	fp.active = false
	sub := fp.sub
	fp.mu.Unlock()
	delete(fs.parts, fp.id)
	f := fp.f
	if f.remove(fp, sub) {
		delete(fs.leaders, f.leader)
		f.stop()
	}
}

// Close stops every fetcher and waits for them.
func (fs *Fetchers) Close() {
	fs.mu.Lock()
	fs.closed = true
	for id, fp := range fs.parts {
		fp.mu.Lock()
		fp.active = false
		fp.mu.Unlock()
		delete(fs.parts, id)
	}
	for id, f := range fs.leaders {
		f.stop()
		delete(fs.leaders, id)
	}
	fs.mu.Unlock()
	fs.wg.Wait()
}

// fetcher is the connection to one leader.
//
// Lock order: Fetchers.mu, then followed.mu, then fetcher.mu.
type fetcher struct {
	fs     *Fetchers
	leader int32
	wakeCh chan struct{}
	done   chan struct{} // closed by stop

	mu      sync.Mutex
	addr    string
	conn    net.Conn // nil while not connected
	parts   map[PartitionID]*followed
	fetches map[PartitionID]*followed // due a fetch on the current connection
	acks    map[PartitionID]*followed // due an acknowledgement
	stops   map[PartitionID]uint32    // subscriptions to end
	stopped bool
}

func (f *fetcher) wake() {
	select {
	case f.wakeCh <- struct{}{}:
	default:
	}
}

func (f *fetcher) add(fp *followed) {
	f.mu.Lock()
	f.parts[fp.id] = fp
	f.fetches[fp.id] = fp
	f.mu.Unlock()
	f.wake()
}

// remove forgets fp; it reports whether the fetcher follows nothing more.
func (f *fetcher) remove(fp *followed, sub uint32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.parts, fp.id)
	delete(f.fetches, fp.id)
	delete(f.acks, fp.id)
	if sub != 0 && f.conn != nil {
		f.stops[fp.id] = sub
		f.wake()
	}
	return len(f.parts) == 0
}

func (f *fetcher) needFetch(fp *followed) {
	f.mu.Lock()
	if f.parts[fp.id] == fp {
		f.fetches[fp.id] = fp
	}
	f.mu.Unlock()
	f.wake()
}

func (f *fetcher) queueAck(fp *followed) {
	f.mu.Lock()
	if f.parts[fp.id] == fp {
		f.acks[fp.id] = fp
	}
	f.mu.Unlock()
	f.wake()
}

// setAddr moves the fetcher to a leader's new replication address (it registered again
// with another one): the connection is dropped and made again.
func (f *fetcher) setAddr(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addr == addr {
		return
	}
	f.addr = addr
	if f.conn != nil {
		f.conn.Close()
	}
}

func (f *fetcher) stop() {
	f.mu.Lock()
	if !f.stopped {
		f.stopped = true
		close(f.done)
		if f.conn != nil {
			f.conn.Close()
		}
	}
	f.mu.Unlock()
}

// Reconnection backoff bounds.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
	// retryRefused is how long a refused fetch waits before it is sent again (the metadata
	// usually catches up sooner, and a new leader epoch fetches at once).
	retryRefused = 200 * time.Millisecond
	dialTimeout  = 2 * time.Second
)

// run keeps a connection to the leader while the fetcher follows anything.
func (f *fetcher) run() {
	defer f.fs.wg.Done()
	backoff := minBackoff
	for {
		f.mu.Lock()
		addr, stopped := f.addr, f.stopped
		f.mu.Unlock()
		if stopped {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			backoff = minBackoff
			f.serve(conn)
		} else {
			f.fs.log.Debug("replication: connecting to a leader", "leader", f.leader, "addr", addr, "err", err)
		}
		select {
		case <-f.done:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// serve runs one connection: a writer goroutine sends hello, fetches, acknowledgements and
// stops; this goroutine reads the leader's frames until the connection ends.
func (f *fetcher) serve(conn net.Conn) {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		conn.Close()
		return
	}
	f.conn = conn
	clear(f.acks)
	clear(f.stops)
	parts := make([]*followed, 0, len(f.parts))
	for id, fp := range f.parts {
		f.fetches[id] = fp
		parts = append(parts, fp)
	}
	f.mu.Unlock()
	for _, fp := range parts {
		fp.mu.Lock()
		fp.sub, fp.acked = 0, false
		fp.mu.Unlock()
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		f.write(conn)
	}()
	err := f.read(conn)
	conn.Close()
	f.wake()
	<-writerDone
	f.mu.Lock()
	f.conn = nil
	f.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		f.fs.log.Info("replication: the connection to a leader ended", "leader", f.leader, "err", err)
	}
}

// write sends what is due whenever woken, and retries refused fetches when their time comes.
func (f *fetcher) write(conn net.Conn) {
	buf := appendHello(nil, hello{Follower: f.fs.self, BrokerEpoch: f.fs.brokerEpoch()})
	if _, err := conn.Write(buf); err != nil {
		conn.Close()
		return
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-f.wakeCh:
		case <-timer.C:
		case <-f.done:
			return
		}
		now := time.Now()
		buf = buf[:0]
		var next time.Time
		// Take what is due under f.mu, then build the frames under each partition's own lock
		// (the lock order is followed.mu before fetcher.mu: the reader appends under the former
		// and queues under the latter).
		f.mu.Lock()
		if f.conn != conn {
			f.mu.Unlock()
			return
		}
		for id, sub := range f.stops {
			buf = appendStop(buf, stop{Key: id, Sub: sub})
		}
		clear(f.stops)
		fetches, acks := f.fetches, f.acks
		f.fetches, f.acks = map[PartitionID]*followed{}, map[PartitionID]*followed{}
		f.mu.Unlock()
		var later []*followed
		for id, fp := range fetches {
			fp.mu.Lock()
			switch {
			case !fp.active:
			case now.Before(fp.retryAt):
				if next.IsZero() || fp.retryAt.Before(next) {
					next = fp.retryAt
				}
				later = append(later, fp)
			default:
				fp.sub = f.fs.subSeq.Add(1)
				fp.acked = false
				buf = appendFetch(buf, fetch{Key: id, Sub: fp.sub, LeaderEpoch: fp.leaderEpoch,
					FetchOffset: fp.part.LogEndOffset(), LastFetchedEpoch: fp.part.LastLogEpoch()})
			}
			fp.mu.Unlock()
		}
		for id, fp := range acks {
			fp.mu.Lock()
			if fp.active && fp.sub != 0 {
				buf = appendAck(buf, ack{Key: id, Sub: fp.sub, LogEnd: fp.part.LogEndOffset(), DurableEnd: fp.part.DurableEnd()})
				fp.acked = true
			}
			fp.mu.Unlock()
		}
		if len(later) > 0 {
			f.mu.Lock()
			for _, fp := range later {
				if f.parts[fp.id] == fp {
					if _, ok := f.fetches[fp.id]; !ok {
						f.fetches[fp.id] = fp
					}
				}
			}
			f.mu.Unlock()
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		if len(buf) > 0 {
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := conn.Write(buf); err != nil {
				conn.Close()
				return
			}
		}
	}
}

// read handles the leader's frames.
func (f *fetcher) read(conn net.Conn) error {
	fr := newFrameReader(bufio.NewReaderSize(conn, 256<<10))
	for {
		kind, size, err := fr.next()
		if err != nil {
			return err
		}
		switch kind {
		case kindData:
			m, records, err := fr.data(size)
			if err != nil {
				return err
			}
			f.data(m, records)
		case kindHW:
			d, err := fr.body(size, hwSize)
			if err != nil {
				return err
			}
			m := d.hw()
			if fp := f.current(m.Key, m.Sub); fp != nil {
				f.highWatermark(fp, m.HighWatermark)
				f.logStart(fp, m.LogStartOffset)
				fp.mu.Unlock()
			}
		case kindDiverging:
			d, err := fr.body(size, divergingSize)
			if err != nil {
				return err
			}
			m := d.diverging()
			if fp := f.current(m.Key, m.Sub); fp != nil {
				f.truncate(fp, m)
				fp.mu.Unlock()
				f.needFetch(fp)
			}
		case kindRefused:
			d, err := fr.body(size, refusedSize)
			if err != nil {
				return err
			}
			m := d.refused()
			if fp := f.current(m.Key, m.Sub); fp != nil {
				if m.Code == CodeOffsetOutOfRange && m.LogStartOffset > fp.part.LogEndOffset() {
					f.reset(fp, m.LogStartOffset)
					fp.mu.Unlock()
					f.needFetch(fp)
					continue
				}
				if m.Code != fp.lastRefusal {
					tp := fp.part.TopicPartition()
					f.fs.log.Info("replication: the leader refused a fetch; trying again", "leader", f.leader,
						"topic", tp.Topic, "partition", tp.Partition, "leader_epoch", fp.leaderEpoch, "code", m.Code)
				}
				fp.lastRefusal = m.Code
				fp.sub = 0
				fp.retryAt = time.Now().Add(retryRefused)
				fp.mu.Unlock()
				f.needFetch(fp)
			}
		default:
			if err := fr.skip(size); err != nil {
				return err
			}
		}
	}
}

// current returns the followed partition a frame of subscription sub is about, locked, or
// nil when the frame is stale (an earlier subscription, a partition no longer followed).
func (f *fetcher) current(id PartitionID, sub uint32) *followed {
	f.mu.Lock()
	fp := f.parts[id]
	f.mu.Unlock()
	if fp == nil {
		return nil
	}
	fp.mu.Lock()
	if !fp.active || fp.sub != sub || sub == 0 {
		fp.mu.Unlock()
		return nil
	}
	return fp
}

// data appends a leader's batches. A span that does not start at the log end (a frame sent
// before the leader saw a newer fetch) makes the follower fetch again.
func (f *fetcher) data(m dataHeader, records []byte) {
	fp := f.current(m.Key, m.Sub)
	if fp == nil {
		return
	}
	defer fp.mu.Unlock()
	part := fp.part
	if end := part.LogEndOffset(); m.BaseOffset != end {
		fp.sub = 0
		f.needFetch(fp)
		return
	}
	_, err := part.AppendReplicated(records, func(err error) {
		if err != nil {
			return
		}
		part.SetHighWatermark(fp.leaderHW.Load())
		f.queueAck(fp)
	})
	if err != nil {
		tp := part.TopicPartition()
		f.fs.log.Warn("replication: appending a leader's batches failed; fetching again", "leader", f.leader,
			"topic", tp.Topic, "partition", tp.Partition, "offset", m.BaseOffset, "err", err)
		fp.sub = 0
		fp.retryAt = time.Now().Add(retryRefused)
		f.needFetch(fp)
		return
	}
	f.highWatermark(fp, m.HighWatermark)
	f.logStart(fp, m.LogStartOffset)
}

// logStart moves this replica's log start up to the leader's (DeleteRecords, retention), as
// far as this replica's high watermark allows, so that records deleted on the leader do not
// come back if this replica leads. fp.mu held.
func (f *fetcher) logStart(fp *followed, leaderStart int64) {
	part := fp.part
	to := min(leaderStart, part.HighWatermark())
	if to <= part.LogStartOffset() {
		return
	}
	if _, err := part.DeleteRecordsBefore(to); err != nil {
		tp := part.TopicPartition()
		f.fs.log.Warn("replication: moving the log start to the leader's failed", "topic", tp.Topic, "partition", tp.Partition, "to", to, "err", err)
	}
}

// highWatermark takes the leader's high watermark (as far as this replica holds it durably:
// the engine clamps it), and acknowledges the first time on a subscription, so that the
// leader learns where a follower that needs nothing stands. fp.mu held.
func (f *fetcher) highWatermark(fp *followed, hw int64) {
	if hw > fp.leaderHW.Load() {
		fp.leaderHW.Store(hw)
	}
	fp.part.SetHighWatermark(hw)
	if !fp.acked {
		fp.acked = true
		f.queueAck(fp)
	}
}

// reset empties the log to restart it at the leader's log start: this replica's log ends below
// it (it was away while the leader's retention or DeleteRecords went past its end), so nothing
// it holds can be continued. Durable before it returns. fp.mu held.
func (f *fetcher) reset(fp *followed, leaderStart int64) {
	part := fp.part
	tp := part.TopicPartition()
	fp.sub = 0
	f.fs.log.Warn("replication: the log ends below the leader's log start; emptying it to copy from there", "leader", f.leader,
		"topic", tp.Topic, "partition", tp.Partition, "log_end", part.LogEndOffset(), "leader_log_start", leaderStart)
	if err := part.ResetTo(leaderStart); err != nil {
		f.fs.log.Error("replication: emptying the log failed; trying again", "topic", tp.Topic, "partition", tp.Partition, "to", leaderStart, "err", err)
		fp.retryAt = time.Now().Add(retryRefused)
	}
}

// truncate cuts the log where the leader says it parts from it (truncationTarget). The cut
// is durable before it returns. fp.mu held.
func (f *fetcher) truncate(fp *followed, m diverging) {
	part := fp.part
	target := truncationTarget(part, m.Epoch, m.EndOffset)
	fp.sub = 0
	if target == part.LogEndOffset() {
		return
	}
	tp := part.TopicPartition()
	f.fs.log.Info("replication: truncating to the leader's history", "leader", f.leader, "topic", tp.Topic, "partition", tp.Partition,
		"log_end", part.LogEndOffset(), "to", target, "diverging_epoch", m.Epoch, "leader_end", m.EndOffset)
	if err := part.TruncateTo(target); err != nil {
		f.fs.log.Error("replication: truncating failed; trying again", "topic", tp.Topic, "partition", tp.Partition, "to", target, "err", err)
		fp.retryAt = time.Now().Add(retryRefused)
	}
}
