package engine

import (
	"fmt"
	"time"
)

// Retention: old segments are deleted whole, as Kafka does with cleanup.policy=delete, on a
// timer (Config.RetentionCheckInterval, Kafka's log.retention.check.interval.ms):
//
//   - by time: a segment whose newest record timestamp is older than retention.ms;
//   - by size: the oldest segments while the partition would still hold at least
//     retention.bytes without them.
//
//   - superseded: segments wholly below the floor TrimBefore set (DeleteRecords, the
//     __consumer_offsets compaction), whatever the policy.
//
// The same pass forgets idle producers (Config.ProducerIDExpiration, Kafka's
// producer.id.expiration.ms, which Kafka checks on its own ten-minute timer).
//
// Only a sealed segment that a checkpoint has made durable (indexed) and that lies wholly
// below the high watermark is ever deleted, oldest first, and never the active one (an active
// segment wholly past retention.ms is rolled, and goes on a later pass). A pass that finds a
// due segment not yet durable requests a checkpoint. The log start offset becomes the base of
// the first segment kept (or the DeleteRecords start, if later), which is also what recovery
// reads back at the next start. WAL records of a deleted segment are below the partition's log
// end, which replay skips. A deleted segment's name is removed at once; its descriptor stays
// open for reads already under way and is closed on a later pass.

// Retention is the deletion policy of one partition. The zero value keeps everything.
type Retention struct {
	Delete bool  // cleanup.policy includes delete
	Ms     int64 // retention.ms; -1: no limit by time
	Bytes  int64 // retention.bytes; -1: no limit by size
}

// DefaultRetentionCheckInterval is Kafka's log.retention.check.interval.ms default.
const DefaultRetentionCheckInterval = 5 * time.Minute

// graveDelay is how long a deleted segment's descriptor stays open for reads that found it
// before it was deleted (Kafka's file.delete.delay.ms is a minute).
const graveDelay = time.Minute

// grave is a deleted segment whose descriptor is still open.
type grave struct {
	seg     *segment
	deleted time.Time
}

// retentionLoop runs enforceRetention on every partition each interval until stop is closed.
func (e *Engine) retentionLoop(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			e.EnforceRetention()
		}
	}
}

// TrimBefore lets retention passes delete this partition's segments that lie wholly below
// offset, whatever its policy: their records are superseded (the group coordinator rewrites the
// live state of __consumer_offsets after them). It rolls the active segment when offset is the
// log end, so that all of it can go, and asks for the checkpoint that makes the sealed segment
// deletable. The floor is not persisted: after a restart the owner trims again.
func (p *Partition) TrimBefore(offset int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || offset <= p.trimBelow {
		return
	}
	p.trimBelow = offset
	p.eng.ckpt.request()
}

// Roll seals the active segment when it holds anything, so that everything written so far
// lies in sealed segments (TrimBefore can then drop all of it); its records stay readable.
func (p *Partition) Roll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.closing {
		return ErrClosed
	}
	if p.active().size == 0 {
		return nil
	}
	if err := p.sealActiveLocked(); err != nil {
		p.logStorageError("roll", err)
		return fmt.Errorf("%w: %s: %v", ErrStorage, p.name, err)
	}
	return nil
}

// sealActiveLocked rolls to a new active segment. When everything is durable (and below the high
// watermark), the durable end (and the high watermark) now lie at the start of the new, empty
// segment: durableMark (and hwMark) move there, so the sealed one can be deleted (a rollback
// restores to durableMark's segment, and reads stop at hwMark's: both must stay). p.mu held.
func (p *Partition) sealActiveLocked() error {
	if err := p.rollLocked(); err != nil {
		return err
	}
	if p.durableEnd == p.logEnd {
		p.durableMark = p.active().mark()
	}
	if p.hw.Load() == p.logEnd {
		p.hwMark = p.active().mark()
	}
	return nil
}

// EnforceRetention deletes the segments every partition's retention policy no longer keeps.
// It runs on the engine's timer; tests and tools may call it directly.
func (e *Engine) EnforceRetention() {
	for _, p := range e.Partitions() {
		p.enforceRetention(e.now(), time.Now())
	}
}

// enforceRetention deletes what the policy drops as of nowMs (record time) and closes the
// descriptors of segments deleted more than graveDelay before wall.
func (p *Partition) enforceRetention(nowMs int64, wall time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	kept := p.graves[:0]
	for _, g := range p.graves {
		if wall.Sub(g.deleted) >= graveDelay {
			g.seg.file.Close()
		} else {
			kept = append(kept, g)
		}
	}
	p.graves = kept
	p.expireProducersLocked(nowMs)

	r := p.Config().Retention
	if !r.Delete {
		r.Ms, r.Bytes = -1, -1
	}
	if r.Ms < 0 && r.Bytes < 0 && p.trimBelow <= p.logStart {
		return
	}
	hw := p.hw.Load()
	var total int64
	for _, s := range p.segments {
		total += s.size
	}
	deleted := 0
	for len(p.segments) > 1 {
		s := p.segments[0]
		byTime := r.Ms >= 0 && s.maxTs >= 0 && s.maxTs < nowMs-r.Ms
		bySize := r.Bytes >= 0 && total-s.size >= r.Bytes
		byTrim := s.end <= p.trimBelow
		if !byTime && !bySize && !byTrim || s.end > hw || s == p.hwMark.seg || s == p.durableMark.seg || s == p.cleaning {
			break
		}
		if !s.indexed {
			// Due, but no checkpoint has made it durable yet: ask for one now rather than
			// wait for the WAL to grow by a checkpoint interval; a later pass deletes it.
			p.eng.ckpt.request()
			break
		}
		p.segments[0] = nil
		p.segments = p.segments[1:]
		total -= s.size
		p.logStart = p.segments[0].base
		p.unlinkSegment(s)
		p.graves = append(p.graves, grave{seg: s, deleted: wall})
		p.dirDirty = true
		deleted++
		reason := "size"
		switch {
		case byTime:
			reason = "time"
		case byTrim:
			reason = "superseded"
		}
		p.eng.log.Info("engine: retention deleted a segment", "partition", p.name, "base", s.base, "end", s.end,
			"bytes", s.size, "by", reason, "log_start", p.logStart)
	}
	if deleted > 0 {
		p.epochs.truncateFromStart(p.logStart)
	}
	// An idle partition's active segment would keep expired records forever: roll it (as Kafka
	// does) so the next checkpoint seals it and a later pass deletes it.
	if a := p.active(); r.Delete && r.Ms >= 0 && !p.closing && a.size > 0 && a.maxTs >= 0 && a.maxTs < nowMs-r.Ms && a.end <= hw {
		if err := p.sealActiveLocked(); err != nil {
			p.logStorageError("roll an expired segment", err)
			return
		}
		p.eng.ckpt.request()
		p.eng.log.Info("engine: retention rolled an expired active segment", "partition", p.name, "base", a.base, "end", a.end)
	}
}

// expireProducersLocked forgets the producers idle for Config.ProducerIDExpiration at nowMs
// (producers.expire), in the state at the log end and in the one at the durable end, each by
// its own last batch: a rollback to the durable end must not bring back a producer that had
// expired there. p.mu held.
func (p *Partition) expireProducersLocked(nowMs int64) {
	exp := p.eng.cfg.ProducerIDExpiration
	if exp < 0 {
		return
	}
	if exp == 0 {
		exp = DefaultProducerIDExpiration
	}
	if n := p.prod.expire(nowMs, exp.Milliseconds()); n > 0 {
		p.eng.log.Info("engine: forgot idle producers", "partition", p.name, "producers", n, "left", len(p.prod), "idle_for", exp)
	}
	p.durableProd.expire(nowMs, exp.Milliseconds())
}
