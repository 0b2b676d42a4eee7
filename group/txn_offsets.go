package group

import (
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transactional offsets (TxnOffsetCommit, KIP-98/KIP-447): a transactional producer commits a
// group's offsets inside its transaction. They are written to the group's partition as a
// transactional batch of the producer (Ready.Txn: ordinary offset-commit records, Kafka's
// schemas) and held aside per producer, invisible to OffsetFetch; the transaction's marker in
// the same partition settles them: COMMIT makes them the group's committed offsets, ABORT drops
// them (TxnCompleted, and Replay when it meets the marker). While some are held, an OffsetFetch
// with require_stable gets UNSTABLE_OFFSET_COMMIT for those partitions.

// TxnBatch says that a Ready's records form a transactional batch of a producer.
type TxnBatch struct {
	ProducerID    int64
	ProducerEpoch int16
}

// TxnInfo says what a replayed record is in a transaction: a record of a transactional batch
// of ProducerID, or (Control) its marker, COMMIT or not.
type TxnInfo struct {
	ProducerID int64
	Control    bool
	Commit     bool
}

// txnOffsets are one producer's transactional offsets, by group.
type txnOffsets map[string]map[topicPartition]committed

// TxnOffsetCommit handles a TxnOffsetCommitRequest: the offsets are persisted in a
// transactional batch of the producer, and answered once durable; they count when the
// transaction commits.
func (c *Coordinator) TxnOffsetCommit(now time.Time, reply ReplyID, req *kmsg.TxnOffsetCommitRequest) Ready {
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	codes := func(code func(t kmsg.TxnOffsetCommitRequestTopic, p kmsg.TxnOffsetCommitRequestTopicPartition) int16) {
		resp.Topics = resp.Topics[:0]
		for _, t := range req.Topics {
			rt := kmsg.NewTxnOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code(t, p)
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}
	all := func(code int16) Ready {
		codes(func(kmsg.TxnOffsetCommitRequestTopic, kmsg.TxnOffsetCommitRequestTopicPartition) int16 { return code })
		c.send(reply, resp)
		return c.flush()
	}
	if req.Group == "" {
		return all(kerr.InvalidGroupID.Code)
	}
	if req.Version >= 6 {
		return all(kerr.UnknownTopicID.Code) // topics by id: advertise up to v5
	}
	if g := c.groups[req.Group]; g != nil && req.Version >= 3 && (req.Generation >= 0 || req.MemberID != "") {
		if _, code := g.validateMember(req.MemberID, req.InstanceID, req.Generation); code != 0 {
			return all(code)
		}
	}
	type write struct {
		tp  topicPartition
		off committed
	}
	var writes []write
	bad := map[topicPartition]int16{}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			tp := topicPartition{t.Topic, p.Partition}
			switch {
			case c.cfg.Topics != nil && !c.cfg.Topics.PartitionExists(t.Topic, p.Partition):
				bad[tp] = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && len(*p.Metadata) > c.cfg.MaxMetadataBytes:
				bad[tp] = kerr.OffsetMetadataTooLarge.Code
			default:
				var md string
				if p.Metadata != nil {
					md = *p.Metadata
				}
				w := write{tp, committed{p.Offset, p.LeaderEpoch, md, now}}
				writes = append(writes, w)
				c.persist(Record{offsetKey(req.Group, tp), offsetValue(w.off)})
			}
		}
	}
	answer := func(code int16) {
		codes(func(t kmsg.TxnOffsetCommitRequestTopic, p kmsg.TxnOffsetCommitRequestTopicPartition) int16 {
			if b, ok := bad[topicPartition{t.Topic, p.Partition}]; ok {
				return b
			}
			return code
		})
		c.send(reply, resp)
	}
	if len(writes) == 0 {
		answer(0)
		return c.flush()
	}
	c.out.Txn = &TxnBatch{ProducerID: req.ProducerID, ProducerEpoch: req.ProducerEpoch}
	pid, name := req.ProducerID, req.Group
	// Held now, in the order of the records in the log, so that a plain commit queued before
	// this batch is durable still supersedes it (persistOffset); undone if the write fails.
	for _, w := range writes {
		c.holdTxnOffset(pid, name, w.tp, w.off)
	}
	c.afterPersist(func(_ time.Time, code int16) {
		if code != 0 {
			for _, w := range writes {
				if to := c.txnOffsets[pid]; to != nil && to[name][w.tp] == w.off {
					delete(to[name], w.tp)
				}
			}
		}
		answer(code)
	})
	return c.flush()
}

// persistOffset queues a plain record of group name's offset for tp: a commit, or (value nil)
// its deletion. A later plain record of an offset supersedes a transactional one held for it:
// the transaction's commit marker no longer makes that the committed offset. Kafka's
// coordinator decides so by the records' log offsets (completePendingTxnOffsetCommit), and its
// log cleaner, which keeps the latest record of each key by offset, removes the transactional
// record: were it applied at the marker, a replay after a cleaning would disagree with one
// before. Records are queued in the order the log holds them.
func (c *Coordinator) persistOffset(name string, tp topicPartition, value []byte) BatchID {
	c.supersedeTxnOffsets(name, tp)
	return c.persist(Record{offsetKey(name, tp), value})
}

// supersedeTxnOffsets drops the transactional offsets held for group name's tp: a plain record
// of it follows theirs in the log.
func (c *Coordinator) supersedeTxnOffsets(name string, tp topicPartition) {
	for _, to := range c.txnOffsets {
		delete(to[name], tp)
	}
}

func (c *Coordinator) holdTxnOffset(pid int64, name string, tp topicPartition, off committed) {
	if c.txnOffsets == nil {
		c.txnOffsets = make(map[int64]txnOffsets)
	}
	to := c.txnOffsets[pid]
	if to == nil {
		to = make(txnOffsets)
		c.txnOffsets[pid] = to
	}
	if to[name] == nil {
		to[name] = make(map[topicPartition]committed)
	}
	to[name][tp] = off
}

// TxnCompleted settles producer pid's transactional offsets: its marker (COMMIT when commit)
// is committed in this coordinator's partition.
func (c *Coordinator) TxnCompleted(now time.Time, pid int64, commit bool) Ready {
	to := c.txnOffsets[pid]
	delete(c.txnOffsets, pid)
	if !commit {
		return c.flush()
	}
	names := make([]string, 0, len(to))
	for name := range to {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		g := c.groups[name]
		if g == nil {
			g = c.newGroup(name, now)
		}
		for tp, off := range to[name] {
			g.offsets[tp] = off
		}
		c.offsetsChanged(now, g)
	}
	return c.flush()
}

// txnPending reports whether a transaction holds an offset of group name for tp.
func (c *Coordinator) txnPending(name string, tp topicPartition) bool {
	for _, to := range c.txnOffsets {
		if _, ok := to[name][tp]; ok {
			return true
		}
	}
	return false
}

// PendingTxnOffsets reports whether transactional offsets wait for their markers.
func (c *Coordinator) PendingTxnOffsets() bool { return len(c.txnOffsets) > 0 }

// replayTxn applies a record of a transaction (ti) during Replay: an offset of a
// transactional batch is held for its producer (its group's name is returned), a marker
// settles the producer's offsets into offs.
func (c *Coordinator) replayTxn(rec Record, ti *TxnInfo, offs map[string]map[topicPartition]committed) (string, error) {
	pid := ti.ProducerID
	if ti.Control {
		to := c.txnOffsets[pid]
		delete(c.txnOffsets, pid)
		if ti.Commit {
			for name, tps := range to {
				if offs[name] == nil {
					offs[name] = make(map[topicPartition]committed)
				}
				for tp, off := range tps {
					offs[name][tp] = off
				}
			}
		}
		return "", nil
	}
	d, err := decodeRecord(rec)
	if err != nil {
		return "", err
	}
	if d.kind != kindOffset || rec.Value == nil {
		return "", nil
	}
	c.holdTxnOffset(pid, d.group, d.tp, d.off)
	return d.group, nil
}
