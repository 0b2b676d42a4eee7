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

// TestTxnOffsetSupersededByPlainRecord: a plain record of an offset written after a
// transactional one (a commit, also one queued while the transactional batch was still being
// written, or a deletion) wins over it at the transaction's commit marker, as in Kafka, whose
// coordinator compares the records' log offsets: the log cleaner keeps the latest record of a
// key by offset, so a replay of the log before and after a cleaning (which removes the
// superseded transactional record) agrees with the live coordinator.
func TestTxnOffsetSupersededByPlainRecord(t *testing.T) {
	h := newHarness(t, Config{})
	h.manual = true
	_, txnReady := h.txnCommit("g", 77, 10)
	h.take(txnReady)
	h.take(h.c.OffsetCommit(h.now, h.reply(), commitReq("g", 20))) // queued before the txn batch is durable
	h.manual = false
	h.persistAll()
	h.take(h.c.TxnCompleted(h.now, 77, true))
	if off, code := h.fetch("g", "t", 0, true); off != 20 || code != 0 {
		t.Fatalf("after the commit marker: offset %d code %d, want the later plain commit's 20", off, code)
	}
	// A transactional commit followed by an offset deletion: the marker brings nothing back.
	_, ready := h.txnCommit("g", 78, 30)
	h.take(ready)
	del := kmsg.NewPtrOffsetDeleteRequest()
	del.Group = "g"
	dt := kmsg.NewOffsetDeleteRequestTopic()
	dt.Topic = "t"
	dp := kmsg.NewOffsetDeleteRequestTopicPartition()
	dt.Partitions = append(dt.Partitions, dp)
	del.Topics = append(del.Topics, dt)
	h.take(h.c.OffsetDelete(h.now, h.reply(), del))
	h.take(h.c.TxnCompleted(h.now, 78, true))
	if off, _ := h.fetch("g", "t", 0, true); off != -1 {
		t.Fatalf("after a deletion and the commit marker: offset %d, want none", off)
	}

	// The log: txn 77 (10), plain 20, txn 78 (30), deletion; then the markers. Replayed whole,
	// and as the cleaner leaves it (each key's latest record: the deletion; the markers).
	txns := []*TxnInfo{{ProducerID: 77}, nil, {ProducerID: 78}, nil}
	if len(h.log) != len(txns) {
		t.Fatalf("%d records in the log, want %d", len(h.log), len(txns))
	}
	markers := []Record{{Key: []byte{0, 0, 0, 1}}, {Key: []byte{0, 0, 0, 1}}}
	markerTxns := []*TxnInfo{{ProducerID: 77, Control: true, Commit: true}, {ProducerID: 78, Control: true, Commit: true}}
	// Markers after the records they settle: 77's after the plain commit, 78's at the end.
	whole := []Record{h.log[0], h.log[1], markers[0], h.log[2], h.log[3], markers[1]}
	wholeTxns := []*TxnInfo{txns[0], txns[1], markerTxns[0], txns[2], txns[3], markerTxns[1]}
	cleaned := []Record{markers[0], h.log[3], markers[1]}
	cleanedTxns := []*TxnInfo{markerTxns[0], txns[3], markerTxns[1]}
	for _, tc := range []struct {
		name string
		log  []Record
		txns []*TxnInfo
	}{{"whole", whole, wholeTxns}, {"cleaned", cleaned, cleanedTxns}} {
		r := newHarness(t, Config{})
		if err := r.c.ReplayTxn(r.now, tc.log, tc.txns); err != nil {
			t.Fatal(err)
		}
		if off, _ := r.fetch("g", "t", 0, true); off != -1 {
			t.Fatalf("%s log replayed: offset %d, want none", tc.name, off)
		}
	}
	// Without the deletion: the plain commit stands, whole or cleaned.
	for _, tc := range []struct {
		name string
		log  []Record
		txns []*TxnInfo
	}{{"whole", whole[:3], wholeTxns[:3]}, {"cleaned", []Record{h.log[1], markers[0]}, []*TxnInfo{nil, markerTxns[0]}}} {
		r := newHarness(t, Config{})
		if err := r.c.ReplayTxn(r.now, tc.log, tc.txns); err != nil {
			t.Fatal(err)
		}
		if off, _ := r.fetch("g", "t", 0, true); off != 20 {
			t.Fatalf("%s log replayed: offset %d, want 20", tc.name, off)
		}
	}
}
