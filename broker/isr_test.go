package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/controller"
)

// fakeController answers the sender's attempts: per partition, the errors of its successive
// attempts (nil: committed), the last one repeating.
type fakeController struct {
	mu      sync.Mutex
	answers map[int32][]error
	batches [][]int32 // the partitions of each attempt
	down    int       // the first attempts fail whole: no controller
}

func (f *fakeController) send(reqs []ISRRequest) ([]ISRResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ps []int32
	for _, r := range reqs {
		ps = append(ps, r.Partition)
	}
	f.batches = append(f.batches, ps)
	if f.down > 0 {
		f.down--
		return nil, fmt.Errorf("%w: connection refused", errControllerUnreachable)
	}
	out := make([]ISRResult, len(reqs))
	for i, r := range reqs {
		errs := f.answers[r.Partition]
		if len(errs) > 0 {
			out[i].Err = errs[0]
			if len(errs) > 1 {
				f.answers[r.Partition] = errs[1:]
			}
		}
		if out[i].Err == nil {
			out[i].PartitionEpoch = r.PartitionEpoch + 1
		}
	}
	return out, nil
}

func (f *fakeController) attempts() [][]int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

func isrReq(p int32) ISRRequest {
	return ISRRequest{Topic: "t", TopicID: [16]byte{1}, Partition: p, NewISR: []ISRMember{{ID: 1, BrokerEpoch: -1}}}
}

// TestISRSenderBatches: the calls waiting when the sender takes them go in one request, a
// partition at most once; a refusal is answered at once, NOT_CONTROLLER and an unreachable
// controller are retried until answered.
func TestISRSenderBatches(t *testing.T) {
	f := &fakeController{answers: map[int32][]error{
		1: {ErrInvalidUpdateVersion},
		2: {ErrNotController, ErrRequestTimedOut, nil},
	}, down: 1}
	stop := make(chan struct{})
	defer close(stop)
	s := &isrSender{calls: make(chan *isrCall, 8), stop: stop, send: f.send}
	// Queued before the sender runs, so the first attempt takes them all.
	var calls []*isrCall
	for _, p := range []int32{0, 1, 2, 0} {
		c := &isrCall{ctx: context.Background(), req: isrReq(p), done: make(chan error, 1)}
		calls = append(calls, c)
		s.calls <- c
	}
	go s.run()
	want := []error{nil, ErrInvalidUpdateVersion, nil, nil}
	for i, c := range calls {
		select {
		case err := <-c.done:
			if want[i] == nil && err != nil || want[i] != nil && !errors.Is(err, want[i]) {
				t.Errorf("call %d (partition %d): %v, want %v", i, c.req.Partition, err, want[i])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("call %d (partition %d) not answered; attempts %v", i, c.req.Partition, f.attempts())
		}
	}
	got := f.attempts()
	// The first attempt finds no controller; the second answers 0 and 1 and asks 2 to retry;
	// partition 0's second call waits for its first to be answered.
	if fmt.Sprint(got) != "[[0 1 2] [0 1 2] [2 0] [2]]" {
		t.Errorf("attempts %v, want [[0 1 2] [0 1 2] [2 0] [2]]", got)
	}
}

// TestISRSenderContext: a call whose context ends while no controller answers returns the
// context's error with the last answer, and is dropped from later attempts.
func TestISRSenderContext(t *testing.T) {
	f := &fakeController{answers: map[int32][]error{0: {ErrNotController}}}
	stop := make(chan struct{})
	defer close(stop)
	s := &isrSender{calls: make(chan *isrCall), stop: stop, send: f.send}
	go s.run()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.do(ctx, isrReq(0)) }()
	for len(f.attempts()) < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("AlterISR after cancel: %v", err)
	}
	// A call after it is sent on its own: the cancelled one is gone.
	f.mu.Lock()
	f.answers[1] = []error{nil}
	f.mu.Unlock()
	if err := s.do(context.Background(), isrReq(1)); err != nil {
		t.Fatalf("AlterISR of partition 1: %v", err)
	}
	got := f.attempts()
	if last := got[len(got)-1]; !slices.Equal(last, []int32{1}) {
		t.Errorf("last attempt %v, want [1]", last)
	}
}

// TestAlterPartitionWire: the leader's request and the controller's answer, through kmsg, map
// to the node's errors.
func TestAlterPartitionWire(t *testing.T) {
	reqs := []ISRRequest{
		{Topic: "a", TopicID: [16]byte{1}, Partition: 0, LeaderEpoch: 3, PartitionEpoch: 7, NewISR: []ISRMember{{ID: 1, BrokerEpoch: 10}, {ID: 2, BrokerEpoch: -1}}},
		{Topic: "b", TopicID: [16]byte{2}, Partition: 4, LeaderEpoch: 1, PartitionEpoch: 2, NewISR: []ISRMember{{ID: 1, BrokerEpoch: 10}}},
		{Topic: "a", TopicID: [16]byte{1}, Partition: 1, LeaderEpoch: 3, PartitionEpoch: 5, NewISR: []ISRMember{{ID: 1, BrokerEpoch: 10}}},
		{Topic: "b", TopicID: [16]byte{2}, Partition: 5},
	}
	req := alterPartitionRequest(1, 10, reqs)
	// Encoded and decoded as the controller reads it.
	dec := kmsg.NewPtrAlterPartitionRequest()
	dec.Version = req.Version
	if err := dec.ReadFrom(req.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	if dec.Version != 3 || dec.BrokerID != 1 || dec.BrokerEpoch != 10 || len(dec.Topics) != 2 ||
		len(dec.Topics[0].Partitions) != 2 || len(dec.Topics[1].Partitions) != 2 {
		t.Fatalf("request %+v", dec)
	}
	p := dec.Topics[0].Partitions[0]
	if p.LeaderEpoch != 3 || p.PartitionEpoch != 7 || len(p.NewEpochISR) != 2 || p.NewEpochISR[0].BrokerEpoch != 10 || p.NewEpochISR[1].BrokerEpoch != -1 {
		t.Fatalf("partition a-0 %+v", p)
	}

	resp := kmsg.NewPtrAlterPartitionResponse()
	resp.Version = 3
	for _, tt := range []struct {
		id    byte
		parts []kmsg.AlterPartitionResponseTopicPartition
	}{
		{1, []kmsg.AlterPartitionResponseTopicPartition{
			{Partition: 1, ErrorCode: kerr.InvalidUpdateVersion.Code},
			{Partition: 0, LeaderID: 1, LeaderEpoch: 3, PartitionEpoch: 8, ISR: []int32{1, 2}},
		}},
		{2, []kmsg.AlterPartitionResponseTopicPartition{{Partition: 4, ErrorCode: kerr.UnknownTopicID.Code}}},
	} {
		rt := kmsg.NewAlterPartitionResponseTopic()
		rt.TopidID = [16]byte{tt.id}
		rt.Partitions = tt.parts
		resp.Topics = append(resp.Topics, rt)
	}
	results, err := alterPartitionResults(resp, reqs, "ctrl:9092")
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Err != nil || r.PartitionEpoch != 8 || !slices.Equal(r.ISR, []int32{1, 2}) {
		t.Errorf("a-0: %+v", r)
	}
	for i, want := range []error{1: ErrUnknownTopic, 2: ErrInvalidUpdateVersion, 3: errControllerUnreachable} {
		if i > 0 && !errors.Is(results[i].Err, want) {
			t.Errorf("%s-%d: %v, want %v", reqs[i].Topic, reqs[i].Partition, results[i].Err, want)
		}
	}
	resp.ErrorCode = kerr.StaleBrokerEpoch.Code
	if _, err := alterPartitionResults(resp, reqs, "ctrl:9092"); !errors.Is(err, ErrStaleBrokerEpoch) || retriableISR(err) {
		t.Errorf("a top-level STALE_BROKER_EPOCH: %v", err)
	}
	resp.ErrorCode = kerr.NotController.Code
	if _, err := alterPartitionResults(resp, reqs, "ctrl:9092"); !retriableISR(err) {
		t.Errorf("a top-level NOT_CONTROLLER is not retried: %v", err)
	}
}

// TestISRError: the controller's refusals match the node's sentinels (which net maps to
// Kafka codes) and keep the controller's message.
func TestISRError(t *testing.T) {
	for _, tc := range []struct {
		in, want error
	}{
		{fmt.Errorf("%w: broker 2 does not lead t-0", controller.ErrFencedLeaderEpoch), ErrFencedLeaderEpoch},
		{fmt.Errorf("%w: an empty ISR", controller.ErrInvalidISR), ErrInvalidRequest},
		{fmt.Errorf("%w: leader epoch 4 here", controller.ErrStateBehind), ErrNotController},
		{fmt.Errorf("%w: epoch 1", controller.ErrStaleBrokerEpoch), ErrStaleBrokerEpoch},
		{fmt.Errorf("%w: t", meta.ErrUnknownTopic), ErrUnknownTopic},
		{fmt.Errorf("%w: t-0", controller.ErrInvalidUpdateVersion), ErrInvalidUpdateVersion},
		{fmt.Errorf("%w: t-0", controller.ErrIneligibleReplica), ErrIneligibleReplica},
	} {
		got := isrError(tc.in)
		if !errors.Is(got, tc.want) || !errors.Is(got, tc.in) || got.Error() != tc.in.Error() {
			t.Errorf("isrError(%v) = %v, want it to match %v", tc.in, got, tc.want)
		}
	}
}
