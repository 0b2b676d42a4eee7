package kafkanet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/broker"
)

// isrNode is the part of a node AlterPartition uses; any other call panics (nil Node).
type isrNode struct {
	Node
	id      int32
	epoch   int64
	got     []broker.ISRRequest
	results []broker.ISRResult
	err     error
	topics  map[[16]byte]bool
}

func (n *isrNode) AlterPartition(_ context.Context, id int32, epoch int64, reqs []broker.ISRRequest) ([]broker.ISRResult, error) {
	n.id, n.epoch, n.got = id, epoch, reqs
	if n.err != nil {
		return nil, n.err
	}
	return n.results[:len(reqs)], nil
}

func (n *isrNode) TopicByID(id [16]byte) (broker.Topic, bool) {
	return broker.Topic{ID: id}, n.topics[id]
}

func alterPartition(t *testing.T, n *isrNode, req *kmsg.AlterPartitionRequest) *kmsg.AlterPartitionResponse {
	t.Helper()
	// Through the wire format both ways, as the controller and the leader read them.
	in := kmsg.NewPtrAlterPartitionRequest()
	in.Version = req.Version
	if err := in.ReadFrom(req.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	var resp kmsg.Response
	c := &Context{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	NewHandlers(n).handleAlterPartition(c, in, func(r kmsg.Response) { resp = r })
	out := kmsg.NewPtrAlterPartitionResponse()
	out.Version = req.Version
	if err := out.ReadFrom(resp.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	return out
}

func codes(resp *kmsg.AlterPartitionResponse) string {
	var s string
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			s += fmt.Sprintf("[%s%x-%d %d", t.Topic, t.TopidID[:1], p.Partition, p.ErrorCode)
			if p.ErrorCode == 0 {
				s += fmt.Sprintf(" leader=%d epochs=%d/%d isr=%v", p.LeaderID, p.LeaderEpoch, p.PartitionEpoch, p.ISR)
			}
			s += "]"
		}
	}
	return s
}

// TestAlterPartitionHandler: every version's request reaches the node as ISR requests (by
// name before v2, by id after, with broker epochs from v3), and each answer goes back with
// its Kafka code.
func TestAlterPartitionHandler(t *testing.T) {
	results := []broker.ISRResult{
		{Leader: 1, LeaderEpoch: 2, PartitionEpoch: 6, ISR: []int32{1, 2}},
		{Err: fmt.Errorf("%w: t-1", broker.ErrInvalidUpdateVersion)},
		{Err: fmt.Errorf("%w: t-2", broker.ErrUnknownTopic)},
	}
	for v := int16(0); v <= 3; v++ {
		n := &isrNode{results: results, topics: map[[16]byte]bool{{7}: true}}
		req := kmsg.NewPtrAlterPartitionRequest()
		req.Version, req.BrokerID, req.BrokerEpoch = v, 1, 9
		topic := kmsg.NewAlterPartitionRequestTopic()
		topic.Topic, topic.TopicID = "t", [16]byte{7}
		for p := int32(0); p < 4; p++ {
			rp := kmsg.NewAlterPartitionRequestTopicPartition()
			rp.Partition, rp.LeaderEpoch, rp.PartitionEpoch = p, 2, 5
			rp.NewISR = []int32{1, 2}
			rp.NewEpochISR = []kmsg.AlterPartitionRequestTopicPartitionNewEpochISR{{BrokerID: 1, BrokerEpoch: 9}, {BrokerID: 2, BrokerEpoch: -1}}
			if p == 3 && v >= 1 {
				rp.LeaderRecoveryState = 1
			}
			topic.Partitions = append(topic.Partitions, rp)
		}
		req.Topics = append(req.Topics, topic)
		if v == 0 {
			n.results = append(n.results, results[0]) // v0 has no recovery state: partition 3 is decided
		}
		resp := alterPartition(t, n, req)

		if n.id != 1 || n.epoch != 9 {
			t.Errorf("v%d: the node got broker %d at epoch %d", v, n.id, n.epoch)
		}
		wantDecided := 3
		if v == 0 {
			wantDecided = 4
		}
		if len(n.got) != wantDecided {
			t.Fatalf("v%d: the node decided %d partitions, want %d", v, len(n.got), wantDecided)
		}
		r := n.got[0]
		wantName, wantID, wantEpoch := "t", [16]byte{}, int64(-1)
		if v >= 2 {
			wantName, wantID = "", [16]byte{7}
		}
		if v >= 3 {
			wantEpoch = 9
		}
		if r.Topic != wantName || r.TopicID != wantID || r.LeaderEpoch != 2 || r.PartitionEpoch != 5 ||
			len(r.NewISR) != 2 || r.NewISR[0] != (broker.ISRMember{ID: 1, BrokerEpoch: wantEpoch}) || r.NewISR[1].BrokerEpoch != -1 {
			t.Errorf("v%d: the node got %+v", v, r)
		}

		tp := fmt.Sprintf("%s%x", wantName, wantID[:1])
		last := fmt.Sprint(kerr.InvalidRequest.Code) // recovering from an unclean election
		if v == 0 {
			last = "0 leader=1 epochs=2/6 isr=[1 2]"
		}
		// Partition 2's topic is known (by id too): UNKNOWN_TOPIC_OR_PARTITION.
		want := fmt.Sprintf("[%[1]s-0 0 leader=1 epochs=2/6 isr=[1 2]][%[1]s-1 %[2]d][%[1]s-2 %[3]d][%[1]s-3 %[4]s]",
			tp, kerr.InvalidUpdateVersion.Code, kerr.UnknownTopicOrPartition.Code, last)
		if got := codes(resp); got != want {
			t.Errorf("v%d: answered %s\nwant        %s", v, got, want)
		}
	}
}

// TestAlterPartitionHandlerErrors: an unknown topic id is UNKNOWN_TOPIC_ID (v2+), and the
// node's refusal of the whole request is the top-level code.
func TestAlterPartitionHandlerErrors(t *testing.T) {
	n := &isrNode{results: []broker.ISRResult{{Err: broker.ErrUnknownTopic}}}
	req := kmsg.NewPtrAlterPartitionRequest()
	req.Version = 2
	topic := kmsg.NewAlterPartitionRequestTopic()
	topic.TopicID = [16]byte{9}
	topic.Partitions = []kmsg.AlterPartitionRequestTopicPartition{{Partition: 0, NewISR: []int32{1}}}
	req.Topics = append(req.Topics, topic)
	if got := codes(alterPartition(t, n, req)); got != fmt.Sprintf("[09-0 %d]", kerr.UnknownTopicID.Code) {
		t.Errorf("an unknown topic id: %s", got)
	}
	for _, tc := range []struct {
		err  error
		code int16
	}{
		{fmt.Errorf("%w: node 2", broker.ErrNotController), kerr.NotController.Code},
		{fmt.Errorf("%w: epoch 3", broker.ErrStaleBrokerEpoch), kerr.StaleBrokerEpoch.Code},
	} {
		n := &isrNode{err: tc.err}
		resp := alterPartition(t, n, req)
		if resp.ErrorCode != tc.code || len(resp.Topics) != 0 {
			t.Errorf("%v: answered %d %s, want %d", tc.err, resp.ErrorCode, codes(resp), tc.code)
		}
	}
	if errorCode(broker.ErrIneligibleReplica) != kerr.IneligibleReplica.Code || errorCode(errors.New("x")) != kerr.UnknownServerError.Code {
		t.Errorf("error codes")
	}
}
