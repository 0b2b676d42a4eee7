package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/group"
	"github.com/ringtail/ringtail/internal/kclient"
	"github.com/ringtail/ringtail/txn"
)

// Transaction markers: a coordinator that prepared a commit or an abort has the COMMIT or
// ABORT marker written to every partition of the transaction, by each partition's leader,
// committed (on every in-sync replica, as acks=all) before it completes the transaction. A
// partition led here is written directly (writeMarkerHere); the others get WriteTxnMarkers
// from this broker to their leader, who does the same. A marker in a __consumer_offsets
// partition also settles the transaction's offsets in the group coordinator.

// markerTimeout bounds one marker write (Kafka's request.timeout.ms for its marker sender).
const markerTimeout = 10 * time.Second

// markerClients are the connections to other brokers for WriteTxnMarkers, one per broker.
type markerClients struct {
	mu sync.Mutex // leaf
	m  map[int32]*kclient.Client
}

func (mc *markerClients) get(id int32, addr, clientID string) *kclient.Client {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.m == nil {
		mc.m = make(map[int32]*kclient.Client)
	}
	c := mc.m[id]
	if c == nil {
		c = kclient.New(addr, clientID)
		mc.m[id] = c
	}
	c.SetAddr(addr)
	return c
}

func (mc *markerClients) close() {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	for _, c := range mc.m {
		c.Close()
	}
	mc.m = nil
}

// writeMarkers writes m's markers to all its partitions and calls done once with nil when
// every one is committed, or with an error (the coordinator tries again).
func (b *Broker) writeMarkers(log *slog.Logger, m txn.Markers, done func(error)) {
	var mu sync.Mutex
	var first error
	left := 1
	finish := func(err error) {
		mu.Lock()
		if err != nil && first == nil {
			first = err
		}
		left--
		last := left == 0
		mu.Unlock()
		if last {
			done(first)
		}
	}
	remote := map[int32][]TopicPartition{}
	for _, tp := range m.Partitions {
		tp := TopicPartition{Topic: tp.Topic, Partition: tp.Partition}
		leader := b.NodeID()
		if t, ok := b.meta.Topic(tp.Topic); ok {
			leader = b.offsetsLeader(t, tp.Partition)
		}
		if leader != b.NodeID() {
			remote[leader] = append(remote[leader], tp)
			continue
		}
		mu.Lock()
		left++
		mu.Unlock()
		b.writeMarkerHere(tp, m.ProducerID, m.ProducerEpoch, m.Commit, m.CoordinatorEpoch, func(err error) {
			if errors.Is(err, ErrUnknownTopic) {
				err = nil // deleted since it joined the transaction: nothing to mark (as Kafka)
			}
			finish(err)
		})
	}
	for leader, tps := range remote {
		mu.Lock()
		left++
		mu.Unlock()
		go func() { finish(b.sendMarkers(leader, m, tps)) }()
	}
	finish(nil)
}

// sendMarkers sends WriteTxnMarkers for tps to broker leader.
func (b *Broker) sendMarkers(leader int32, m txn.Markers, tps []TopicPartition) error {
	if leader < 0 {
		return fmt.Errorf("%w: a partition of the transaction has no leader", ErrCoordinatorNotAvailable)
	}
	_, host, port, err := b.brokerAddress(leader)
	if err != nil {
		return err
	}
	cl := b.markerClients.get(leader, net.JoinHostPort(host, strconv.Itoa(int(port))), "ringtail-broker-"+strconv.Itoa(int(b.NodeID())))
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	req.Version = 1
	rm := kmsg.NewWriteTxnMarkersRequestMarker()
	rm.ProducerID, rm.ProducerEpoch, rm.Committed, rm.CoordinatorEpoch = m.ProducerID, m.ProducerEpoch, m.Commit, m.CoordinatorEpoch
	for _, tp := range tps {
		if n := len(rm.Topics); n == 0 || rm.Topics[n-1].Topic != tp.Topic {
			t := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
			t.Topic = tp.Topic
			rm.Topics = append(rm.Topics, t)
		}
		t := &rm.Topics[len(rm.Topics)-1]
		t.Partitions = append(t.Partitions, tp.Partition)
	}
	req.Markers = append(req.Markers, rm)
	ctx, cancel := context.WithTimeout(context.Background(), markerTimeout)
	defer cancel()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		return err
	}
	for _, mr := range resp.(*kmsg.WriteTxnMarkersResponse).Markers {
		for _, t := range mr.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
					return fmt.Errorf("marker for %s-%d at broker %d: %w", t.Topic, p.Partition, leader, err)
				}
			}
		}
	}
	return nil
}

// writeMarkerHere appends a marker to partition tp, which this node must lead, and calls done
// once it is committed. A marker in a __consumer_offsets partition then settles the producer's
// transactional offsets in its group coordinator.
func (b *Broker) writeMarkerHere(tp TopicPartition, pid int64, epoch int16, commit bool, coordinatorEpoch int32, done func(error)) {
	part, err := b.Partition(tp.Topic, tp.Partition, -1)
	if err != nil {
		done(err)
		return
	}
	b.verified.forget(verifiedKey{pid, tp}) // the producer's next transaction is verified anew
	finish := done
	if tp.Topic == OffsetsTopic {
		finish = func(err error) {
			if err == nil {
				b.groupTxnCompleted(tp.Partition, pid, commit)
			}
			done(err)
		}
	}
	_, err = b.appendCommittedWith(part.p, markerTimeout, func(durable func(error)) (AppendResult, error) {
		return part.p.AppendMarker(pid, epoch, commit, coordinatorEpoch, durable)
	}, finish)
	if err != nil {
		done(err)
	}
}

// WriteTxnMarkers writes the markers another broker's transaction coordinator sends, to the
// partitions this node leads, and answers per partition once each is committed.
func (b *Broker) WriteTxnMarkers(req *kmsg.WriteTxnMarkersRequest, respond func(kmsg.Response)) {
	resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	g := &gather{left: 1, send: func() { respond(resp) }}
	resp.Markers = make([]kmsg.WriteTxnMarkersResponseMarker, len(req.Markers))
	for i, m := range req.Markers {
		rm := &resp.Markers[i]
		*rm = kmsg.NewWriteTxnMarkersResponseMarker()
		rm.ProducerID = m.ProducerID
		rm.Topics = make([]kmsg.WriteTxnMarkersResponseMarkerTopic, len(m.Topics))
		for j, t := range m.Topics {
			rt := &rm.Topics[j]
			*rt = kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			rt.Topic = t.Topic
			rt.Partitions = make([]kmsg.WriteTxnMarkersResponseMarkerTopicPartition, len(t.Partitions))
			for k, p := range t.Partitions {
				rp := &rt.Partitions[k]
				*rp = kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				rp.Partition = p
				g.add()
				b.writeMarkerHere(TopicPartition{Topic: t.Topic, Partition: p}, m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch, func(err error) {
					g.mu.Lock()
					rp.ErrorCode = markerErrorCode(err)
					g.mu.Unlock()
					if err != nil {
						b.log.Warn("transactions: writing a marker failed", "topic", t.Topic, "partition", p, "producer_id", m.ProducerID, "err", err)
					}
					g.done()
				})
			}
		}
	}
	g.done()
}

// markerErrorCode is what a failed marker write answers.
func markerErrorCode(err error) int16 {
	var nl *NotLeaderError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &nl):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, ErrNotEnoughReplicas):
		return kerr.NotEnoughReplicas.Code
	case errors.Is(err, ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, ErrCoordinatorFenced):
		return kerr.TransactionCoordinatorFenced.Code
	}
	return kerr.KafkaStorageError.Code
}

// groupTxnCompleted tells the group coordinator of offsets partition p that producer pid's
// transaction ended (its marker is committed there): its transactional offsets become the
// group's committed offsets (commit) or are dropped (abort).
func (b *Broker) groupTxnCompleted(p int32, pid int64, commit bool) {
	g := b.groups.Load()
	if g == nil {
		return
	}
	if s := g.shards[p].Load(); s != nil {
		s.later(func(now time.Time) { s.process(now, s.coord.TxnCompleted(now, pid, commit)) })
	}
}

// txnInfoOf says what record r of the batch with header h is in a transaction: nil for an
// ordinary batch; a marker's type comes from its control key (version i16, type i16).
func txnInfoOf(h batch.Header, r batch.Record) *group.TxnInfo {
	if !h.IsTransactional() {
		return nil
	}
	ti := &group.TxnInfo{ProducerID: h.ProducerID, Control: h.IsControl()}
	if ti.Control && len(r.Key) >= 4 {
		ti.Commit = r.Key[3] == 1
	}
	return ti
}

// settleTxns resolves the transactions of an offsets partition for the rewrite of legacy
// records (groups_migrate.go): the records of a committed transaction count at its marker,
// those of an aborted one (and markers) not at all, those of an open one not yet.
func settleTxns(records []group.Record, txns []*group.TxnInfo) []group.Record {
	if txns == nil {
		return records
	}
	held := map[int64][]group.Record{}
	out := make([]group.Record, 0, len(records))
	for i, r := range records {
		switch ti := txns[i]; {
		case ti == nil:
			out = append(out, r)
		case !ti.Control:
			held[ti.ProducerID] = append(held[ti.ProducerID], r)
		default:
			if ti.Commit {
				out = append(out, held[ti.ProducerID]...)
			}
			delete(held, ti.ProducerID)
		}
	}
	return out
}
