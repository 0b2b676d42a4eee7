package group

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnCommit sends a TxnOffsetCommit of producer pid for group g, t/0 at offset, and returns
// the Ready it made (persisted by the harness).
func (h *harness) txnCommit(g string, pid int64, offset int64) (ReplyID, Ready) {
	h.t.Helper()
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version = 3
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = "tx", g, pid, 2
	req.Generation = -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	r := h.reply()
	ready := h.c.TxnOffsetCommit(h.now, r, req)
	return r, ready
}

// TestTxnOffsets: transactional offsets are written as a transactional batch of the producer,
// invisible (UNSTABLE_OFFSET_COMMIT with require_stable) until the commit marker, dropped by an
// abort; a replay of the log with its transaction markers ends in the same state.
func TestTxnOffsets(t *testing.T) {
	h := newHarness(t, Config{})
	h.take(h.c.OffsetCommit(h.now, h.reply(), commitReq("g", 5)))
	r, ready := h.txnCommit("g", 77, 10)
	if ready.Txn == nil || ready.Txn.ProducerID != 77 || ready.Txn.ProducerEpoch != 2 || len(ready.Records) != 1 {
		t.Fatalf("TxnOffsetCommit's batch: %+v", ready)
	}
	h.take(ready)
	if code := h.resps[r].(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("TxnOffsetCommit: %v", kerr.ErrorForCode(code))
	}
	if off, code := h.fetch("g", "t", 0, true); code != kerr.UnstableOffsetCommit.Code {
		t.Fatalf("require_stable fetch with a pending transaction: offset %d code %d", off, code)
	}
	if off, _ := h.fetch("g", "t", 0, false); off != 5 {
		t.Fatalf("fetch before the marker: %d, want the committed 5", off)
	}
	h.take(h.c.TxnCompleted(h.now, 77, true))
	if off, code := h.fetch("g", "t", 0, true); off != 10 || code != 0 {
		t.Fatalf("after the commit marker: offset %d code %d, want 10", off, code)
	}
	_, ready = h.txnCommit("g", 78, 20)
	h.take(ready)
	h.take(h.c.TxnCompleted(h.now, 78, false))
	if off, code := h.fetch("g", "t", 0, true); off != 10 || code != 0 || h.c.PendingTxnOffsets() {
		t.Fatalf("after the abort marker: offset %d code %d pending %v, want 10", off, code, h.c.PendingTxnOffsets())
	}

	// Replay: the log as the host reads it back, with each record's transaction.
	log := h.log // plain commit, txn 77, txn 78
	txns := []*TxnInfo{nil, {ProducerID: 77}, {ProducerID: 78}}
	log = append(log, Record{Key: []byte{0, 0, 0, 1}}, Record{Key: []byte{0, 0, 0, 0}})
	txns = append(txns, &TxnInfo{ProducerID: 77, Control: true, Commit: true}, &TxnInfo{ProducerID: 78, Control: true})
	// And one transaction left open: its offset stays pending.
	_, open := h.txnCommit("g", 79, 30)
	log = append(log, open.Records...)
	txns = append(txns, &TxnInfo{ProducerID: 79})
	r2 := newHarness(t, Config{})
	if err := r2.c.ReplayTxn(r2.now, log, txns); err != nil {
		t.Fatal(err)
	}
	if off, code := r2.fetch("g", "t", 0, false); off != 10 || code != 0 {
		t.Fatalf("replayed: offset %d code %d, want 10", off, code)
	}
	if _, code := r2.fetch("g", "t", 0, true); code != kerr.UnstableOffsetCommit.Code || !r2.c.PendingTxnOffsets() {
		t.Fatalf("replayed open transaction: code %d, want UNSTABLE_OFFSET_COMMIT", code)
	}
	r2.take(r2.c.TxnCompleted(r2.now, 79, true))
	if off, _ := r2.fetch("g", "t", 0, true); off != 30 {
		t.Fatalf("replayed open transaction committed: offset %d, want 30", off)
	}
}

func commitReq(g string, offset int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group, req.Generation = g, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}
