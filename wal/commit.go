package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/ringtail/ringtail/uring"
)

// walLane is one I/O lane of the writer: a device and its staging buffer,
// driven by its own goroutine.
type walLane struct {
	dev     walDevice
	staging *uring.AlignedBuffers
	busy    bool // a cycle is being written or synced (w.mu)
	ch      chan *walCycle
}

// walCycle is one group of records on its way to the disk.
type walCycle struct {
	reqs   []walReq
	lane   *walLane
	buf    []byte
	oneOff *uring.AlignedBuffers
	file   uint64
	start  int64
	length int64
	first  uint64 // seq of reqs[0]
	epoch  uint64 // w.epoch when reserved: a failure before it fails it too
	done   bool   // its I/O finished (w.mu)
	err    error
}

// openLanes opens opts.InFlight lanes of the mode openDevice picks; a
// lane beyond the first that cannot open is logged and left out.
func (w *Log) openLanes() error {
	for i := 0; i < w.opts.InFlight; i++ {
		var dev walDevice
		var err error
		if i == 0 {
			dev, err = w.openDevice()
		} else if _, ok := w.dev.(*uringDevice); ok {
			dev, err = newUringDevice(w.opts.Dir, w.log)
		} else {
			dev = &portableDevice{}
		}
		if err != nil {
			if i == 0 {
				return err
			}
			w.log.Warn("wal: fewer cycles in flight than asked", "in_flight", i, "err", err)
			break
		}
		staging, err := uring.NewAlignedBuffers(1, w.opts.CycleBytes)
		if err != nil {
			dev.close()
			if i == 0 {
				return err
			}
			w.log.Warn("wal: fewer cycles in flight than asked", "in_flight", i, "err", err)
			break
		}
		if ud, ok := dev.(*uringDevice); ok {
			ud.register(staging)
		}
		l := &walLane{dev: dev, staging: staging, ch: make(chan *walCycle, 1)}
		w.lanes = append(w.lanes, l)
		if i == 0 {
			w.dev, w.staging = dev, staging
		}
	}
	return nil
}

func (w *Log) closeLanes() error {
	var err error
	for _, l := range w.lanes {
		if cerr := l.dev.close(); cerr != nil && err == nil {
			err = cerr
		}
		if cerr := l.staging.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// runLane writes and syncs the cycles handed to lane l.
func (w *Log) runLane(l *walLane) {
	defer w.lanesWG.Done()
	for c := range l.ch {
		if w.laneHook != nil {
			w.laneHook(c.first)
		}
		t0 := time.Now()
		c.err = l.dev.writeSync(c.buf, c.start)
		d := time.Since(t0)
		if w.opts.OnCycle != nil {
			w.opts.OnCycle(len(c.reqs), c.length, d, c.err)
		}
		if d > 5*time.Millisecond {
			w.log.Debug("wal: slow cycle", "file", c.file, "offset", c.start, "bytes", c.length, "records", len(c.reqs), "took", d)
		}
		w.finish(c)
	}
}

// run is the writer loop: it builds a cycle whenever records are queued
// and a lane is free, unless a failure or a file switch needs every cycle
// in flight completed first.
func (w *Log) run() {
	defer close(w.exited)
	for {
		w.mu.Lock()
		var lane *walLane
		for {
			if len(w.queue) == 0 && w.closing && w.unacked == 0 {
				w.mu.Unlock()
				return
			}
			if len(w.queue) > 0 && (w.unacked == 0 || !w.dirty && !w.drain) {
				if lane = w.freeLaneLocked(); lane != nil {
					break
				}
			}
			w.cond.Wait()
		}
		w.drain = false
		zero := w.dirty // stable: nothing is in flight when it is set
		w.mu.Unlock()
		if w.hook != nil {
			w.hook()
		}
		if ch := w.wedge.Load(); ch != nil {
			w.held.Store(true) // Wedge: fault injection
			<-*ch
			w.held.Store(false)
		}
		w.cycle(lane, zero)
	}
}

// take removes from the queue the requests of the next cycle: as many as
// fit the staging buffer (at least one), and at most max when max >= 0.
func (w *Log) take(max int) []walReq {
	w.mu.Lock()
	defer w.mu.Unlock()
	limit := int64(w.opts.CycleBytes)
	used := int64(0)
	n := 0
	for n < len(w.queue) && (max < 0 || n < max) {
		sz := int64(walRecordSize(len(w.queue[n].meta) + len(w.queue[n].data)))
		if n > 0 && used+sz > limit {
			break
		}
		used += sz
		n++
	}
	reqs := make([]walReq, n)
	copy(reqs, w.queue)
	rest := copy(w.queue, w.queue[n:])
	clear(w.queue[rest:])
	w.queue = w.queue[:rest]
	return reqs
}

func (w *Log) freeLaneLocked() *walLane {
	for _, l := range w.lanes {
		if !l.busy {
			return l
		}
	}
	return nil
}

// requeue puts records back at the head of the queue and makes the writer
// wait for every cycle in flight to complete before it takes them again
// (their validity is checked again then).
func (w *Log) requeueLocked(reqs []walReq) {
	w.queue = append(reqs, w.queue...)
	w.drain = true
}

// failOrdered fails reqs once every earlier cycle has completed (so
// completions stay in append order): now when none is in flight, else
// they are requeued behind a drain and fail on the next attempt.
func (w *Log) failOrdered(reqs []walReq, err error) {
	w.mu.Lock()
	if w.unacked > 0 {
		w.requeueLocked(reqs)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	w.complete(reqs, 0, err)
}

// cycle builds one group of records and hands it to lane l. zero: a failed
// extent must be cleared first (nothing is in flight then).
func (w *Log) cycle(l *walLane, zero bool) {
	if zero {
		w.mu.Lock()
		queued := len(w.queue)
		w.mu.Unlock()
		if err := w.zeroDirty(); err != nil {
			// The records queued before the attempt fail with it; later
			// ones get an attempt of their own.
			w.log.Error("wal: cannot clear a failed cycle's extent", "err", err)
			w.complete(w.take(queued), 0, err)
			return
		}
	}
	reqs := w.take(-1)
	// Drop records their owner no longer wants (rolled back meanwhile).
	kept := reqs[:0:0]
	for _, r := range reqs {
		if r.valid != nil && !r.valid() {
			w.settled.Add(1)
			if r.done != nil {
				r.done(0, ErrCanceled)
			}
			continue
		}
		kept = append(kept, r)
	}
	reqs = kept
	total := 0
	for _, r := range reqs {
		total += walRecordSize(len(r.meta) + len(r.data))
	}
	if len(reqs) == 0 {
		return
	}
	length := int64(total+uring.BlockSize-1) &^ (uring.BlockSize - 1)
	if length > w.opts.FileBytes {
		w.failOrdered(reqs, fmt.Errorf("%w: %d bytes, file %d", ErrRecordTooLarge, total, w.opts.FileBytes))
		return
	}
	buf := l.staging.Slot(0)
	var oneOff *uring.AlignedBuffers
	if length > int64(len(buf)) {
		b, err := uring.NewAlignedBuffers(1, int(length))
		if err != nil {
			w.failOrdered(reqs, err)
			return
		}
		oneOff, buf = b, b.Slot(0)
	}
	buf = buf[:length]
	// Reserve the extent.
	w.mu.Lock()
	if w.dirty || w.pos+length > w.opts.FileBytes && w.unacked > 0 {
		// A cycle failed since the loop looked (its records' owners may
		// be rolling back), or a file switch must wait for the cycles in
		// flight.
		w.requeueLocked(reqs)
		w.mu.Unlock()
		if oneOff != nil {
			oneOff.Close()
		}
		return
	}
	if w.pos+length > w.opts.FileBytes {
		next := w.file + 1
		w.mu.Unlock()
		t0 := time.Now()
		err := w.switchTo(next)
		w.log.Debug("wal: switched file", "file", next, "took", time.Since(t0))
		if err != nil {
			w.log.Error("wal: cannot start a new file", "file", next, "err", err)
			if oneOff != nil {
				oneOff.Close()
			}
			w.complete(reqs, 0, err)
			return
		}
		w.mu.Lock()
	}
	c := &walCycle{reqs: reqs, lane: l, buf: buf, oneOff: oneOff, file: w.file, start: w.pos, length: length,
		first: w.seq, epoch: w.epoch}
	w.pos += length
	w.seq += uint64(len(reqs))
	w.flight = append(w.flight, c)
	w.unacked++
	l.busy = true
	w.mu.Unlock()

	off := 0
	seq := c.first
	for _, r := range reqs {
		b := buf[off:]
		n := copy(b[walHeaderSize:], r.meta)
		n += copy(b[walHeaderSize+n:], r.data)
		putHeader(b, walKindData, seq, [][]byte{b[walHeaderSize : walHeaderSize+n]})
		sz := walRecordSize(n)
		clear(b[walHeaderSize+n : sz])
		off += sz
		seq++
	}
	if rem := int(length) - off; rem >= walHeaderSize {
		putHeader(buf[off:], walKindPad, seq, nil)
		binary.LittleEndian.PutUint32(buf[off+16:], uint32(rem-walHeaderSize))
		// The pad's CRC covers its header only, length included.
		binary.LittleEndian.PutUint32(buf[off+4:], crc32.Checksum(buf[off+8:off+walHeaderSize], castagnoli))
		clear(buf[off+walHeaderSize:])
	} else {
		clear(buf[off:])
	}
	l.ch <- c
}

// finish records that cycle c's I/O is over and completes, in order, every
// cycle at the head of the flight that is over. A failed cycle fails the
// cycles reserved after it too, rewinds the writer to its start and marks
// the whole extent they used for clearing.
func (w *Log) finish(c *walCycle) {
	w.mu.Lock()
	c.done = true
	c.lane.busy = false
	w.cond.Signal()
	w.mu.Unlock()

	w.compMu.Lock()
	defer w.compMu.Unlock()
	w.mu.Lock()
	var ready []*walCycle
	notify := false
	for len(w.flight) > 0 && w.flight[0].done {
		d := w.flight[0]
		w.flight[0] = nil
		w.flight = w.flight[1:]
		switch {
		case d.epoch != w.epoch:
			d.err = w.failErr
		case d.err != nil:
			w.log.Error("wal: cycle failed; its records (and those of the cycles in flight after it) fail and the extent will be cleared",
				"file", d.file, "offset", d.start, "bytes", d.length, "in_flight_after", len(w.flight), "err", d.err)
			w.epoch++
			w.failErr = d.err
			w.dirty, w.dirtyF, w.dirtyLo, w.dirtyHi = true, d.file, d.start, w.pos
			w.pos, w.seq = d.start, d.first
		default:
			w.cycles.Add(1)
			w.records.Add(uint64(len(d.reqs)))
			w.written.Add(d.length)
			w.committed = Position{File: d.file, Offset: d.start + d.length, Seq: d.first + uint64(len(d.reqs))}
			if d.start+d.length >= w.opts.FileBytes/2 {
				w.wantPreparedLocked()
			}
			if w.opts.Notify != nil && !w.notified && w.sinceReleasedLocked() >= w.opts.NotifyBytes {
				w.notified, notify = true, true
			}
		}
		ready = append(ready, d)
	}
	if len(w.flight) == 0 {
		w.flight = w.flight[:0:0]
	}
	w.mu.Unlock()
	for _, d := range ready {
		w.complete(d.reqs, d.first, d.err)
		if d.oneOff != nil {
			d.oneOff.Close()
		}
	}
	if notify {
		w.opts.Notify()
	}
	if len(ready) > 0 {
		w.mu.Lock()
		w.unacked -= len(ready)
		w.cond.Signal()
		w.mu.Unlock()
	}
}

// sinceReleasedLocked estimates the bytes between the released position and
// the committed one. w.mu held.
func (w *Log) sinceReleasedLocked() int64 {
	c, r := w.committed, w.released
	if c.File < r.File {
		return 0
	}
	return int64(c.File-r.File)*w.opts.FileBytes + c.Offset - r.Offset
}

// complete runs the done callbacks of one cycle in order.
func (w *Log) complete(reqs []walReq, first uint64, err error) {
	// Counted before the callbacks run, so whoever a done wakes sees the record settled.
	w.settled.Add(uint64(len(reqs)))
	for i, r := range reqs {
		if r.done != nil {
			if err != nil {
				r.done(0, err)
			} else {
				r.done(first+uint64(i), nil)
			}
		}
	}
}

// zeroDirty overwrites a failed cycle's extent with zeros and syncs, then
// rewinds the writer to its start.
func (w *Log) zeroDirty() error {
	// Nothing is in flight: only the writer touches these now.
	w.mu.Lock()
	dirtyF, lo, hi, file := w.dirtyF, w.dirtyLo, w.dirtyHi, w.file
	w.mu.Unlock()
	if dirtyF != file {
		// The failed extent is in a file we no longer write: only possible
		// if the switch failed, and then nothing was written there.
		w.mu.Lock()
		w.dirty = false
		w.mu.Unlock()
		return nil
	}
	n := hi - lo
	buf := w.staging.Slot(0)
	var oneOff *uring.AlignedBuffers
	if n > int64(len(buf)) {
		b, err := uring.NewAlignedBuffers(1, int(n))
		if err != nil {
			return err
		}
		oneOff, buf = b, b.Slot(0)
		defer oneOff.Close()
	}
	buf = buf[:n]
	clear(buf)
	if err := w.dev.writeSync(buf, lo); err != nil {
		return err
	}
	w.mu.Lock()
	w.pos = lo
	w.dirty = false
	w.mu.Unlock()
	return nil
}
