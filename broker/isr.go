package broker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ringtail/ringtail/internal/kclient"
	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/controller"
	"github.com/ringtail/ringtail/meta/raftlog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ISR changes (Kafka's AlterPartition, KIP-497). A partition's leader asks the controller for
// a new ISR, naming the leader epoch it leads at and the partition epoch of the ISR it
// changes; the controller checks the request against the committed metadata
// (controller.AlterPartition) and proposes it as a meta.ChangePartitions, compare-and-set on
// the partition epoch, with the leader unchanged. The leader learns the outcome from the
// metadata it follows, as every other node does.
//
// The leader side (AlterISR) hands its request to one sender goroutine per node, which sends
// every request waiting at that moment in one AlterPartition (as Kafka's
// AlterPartitionManager does): when a follower dies, each partition it followed shrinks its
// ISR at about the same time, and one Raft commit covers them all. The sender goes to this
// node's own controller directly, or to the controller's Kafka listener with its own
// internal/kclient connection (not the heartbeats': a request that waits for a commit must
// not hold up a heartbeat), and retries NOT_CONTROLLER, REQUEST_TIMED_OUT and connection
// errors while the caller's context allows; the controller's refusals are answered at once.
// A retry is safe: the controller answers a change that committed already as done.

// ISRMember is a broker of a requested ISR with the broker epoch the leader knows it at (-1:
// not checked).
type ISRMember = controller.ISRMember

// ISRRequest is one partition of an AlterPartition request.
type ISRRequest = controller.AlterPartitionRequest

// ISRResult is the controller's answer for one partition of an AlterPartition request: Err,
// or the partition as it is with the new ISR committed.
type ISRResult struct {
	Err            error
	Leader         int32
	LeaderEpoch    int32
	PartitionEpoch int32
	ISR            []int32
}

const (
	// alterPartitionAttempts bounds how often the controller decides an AlterPartition again
	// on a newer state after its ChangePartitions lost a race with another proposer (its own
	// pass, another leader's request) and was refused as stale.
	alterPartitionAttempts = 5
	// alterPartitionCommitTimeout bounds the controller's wait for its ChangePartitions to
	// commit, as proposeAll's.
	alterPartitionCommitTimeout = 5 * time.Second
	// isrAttemptTimeout bounds one AlterPartition exchange with the controller: its commit
	// wait and a round trip.
	isrAttemptTimeout = alterPartitionCommitTimeout + 3*time.Second
	// maxISRBatch bounds the partitions of one AlterPartition the sender sends, well under
	// meta.MaxPartitionChanges.
	maxISRBatch = 1000
	// isrBackoffMin and isrBackoffMax bound the wait before a retry (doubling) while no
	// controller takes the requests.
	isrBackoffMin = 50 * time.Millisecond
	isrBackoffMax = time.Second
)

// errControllerUnreachable: the request did not reach the controller or its answer did not
// come back (retried).
var errControllerUnreachable = errors.New("broker: the controller did not answer")

// AlterISR asks the controller to set tp's ISR (Kafka's AlterPartition, key 56, sent with
// internal/kclient to the controller the way heartbeats are, or applied directly when this
// node is the controller). It returns once the controller answered: nil when the change was
// committed (the caller learns the new state from the metadata it follows), else the error:
// ErrFencedLeaderEpoch (this node does not lead tp at leaderEpoch), ErrInvalidUpdateVersion
// (tp is past partitionEpoch), ErrStaleBrokerEpoch, ErrIneligibleReplica, ErrUnknownTopic,
// ErrInvalidRequest (isr is empty, repeats a broker or leaves out this node), or ctx's error
// when no controller answered in time (the change may still commit); ErrNotController on a
// single node. Safe for concurrent use: requests for one partition go to the controller one
// at a time, in the order made.
func (b *Broker) AlterISR(ctx context.Context, tp TopicPartition, topicID [16]byte, leaderEpoch, partitionEpoch int32, isr []int32) error {
	members := make([]ISRMember, len(isr))
	for i, id := range isr {
		members[i] = ISRMember{ID: id, BrokerEpoch: -1}
	}
	return b.AlterISRWithEpochs(ctx, tp, topicID, leaderEpoch, partitionEpoch, members)
}

// AlterISRWithEpochs is AlterISR naming the broker epoch of each member as the leader knows it
// from the member's fetches (-1: unknown): a broker joining the ISR is refused
// (ErrIneligibleReplica) unless it is at that epoch, so a restarted broker does not rejoin on
// the strength of what its previous process fetched (KIP-903).
func (b *Broker) AlterISRWithEpochs(ctx context.Context, tp TopicPartition, topicID [16]byte, leaderEpoch, partitionEpoch int32, isr []ISRMember) error {
	if b.cl == nil {
		return fmt.Errorf("%w: a single node has no controller to ask for an ISR change", ErrNotController)
	}
	if topicID == ([16]byte{}) {
		return fmt.Errorf("%w: AlterISR %s-%d without a topic id", ErrInvalidRequest, tp.Topic, tp.Partition)
	}
	return b.cl.isr.do(ctx, ISRRequest{Topic: tp.Topic, TopicID: topicID, Partition: tp.Partition,
		LeaderEpoch: leaderEpoch, PartitionEpoch: partitionEpoch, NewISR: isr})
}

// do hands req to the sender and waits for its answer.
func (s *isrSender) do(ctx context.Context, req ISRRequest) error {
	call := &isrCall{ctx: ctx, req: req, done: make(chan error, 1)}
	select {
	case s.calls <- call:
	case <-ctx.Done():
		return fmt.Errorf("broker: AlterISR %s-%d: %w", req.Topic, req.Partition, ctx.Err())
	case <-s.stop:
		return fmt.Errorf("%w: this node is stopping", ErrNotController)
	}
	select {
	case err := <-call.done:
		return err
	case <-ctx.Done():
		if last := call.lastErr(); last != nil {
			return fmt.Errorf("broker: AlterISR %s-%d: %w (last attempt: %v)", req.Topic, req.Partition, ctx.Err(), last)
		}
		return fmt.Errorf("broker: AlterISR %s-%d: %w", req.Topic, req.Partition, ctx.Err())
	case <-s.stop:
		return fmt.Errorf("%w: this node is stopping", ErrNotController)
	}
}

// isrCall is one AlterISR waiting for its answer.
type isrCall struct {
	ctx  context.Context
	req  ISRRequest
	done chan error // buffered: the sender never waits for the caller
	last atomic.Pointer[error]
}

func (c *isrCall) lastErr() error {
	if p := c.last.Load(); p != nil {
		return *p
	}
	return nil
}

// isrSender sends the AlterISR calls in batches, one attempt at a time, from one goroutine.
type isrSender struct {
	calls chan *isrCall // unbuffered: a call waits in AlterISR until the sender takes it
	stop  <-chan struct{}
	// send makes one attempt: the results in the order of reqs, or an error for them all.
	send func(reqs []ISRRequest) ([]ISRResult, error)
}

// runISRSender runs the node's ISR sender until the node stops.
func (b *Broker) runISRSender() {
	defer b.cl.wg.Done()
	b.cl.isr.run()
}

// run sends until stop closes.
func (s *isrSender) run() {
	var pending []*isrCall
	backoff := time.Duration(0)
	for {
		if len(pending) == 0 {
			select {
			case call := <-s.calls:
				pending = append(pending, call)
			case <-s.stop:
				return
			}
		}
	drain:
		for len(pending) < maxISRBatch {
			select {
			case call := <-s.calls:
				pending = append(pending, call)
			default:
				break drain
			}
		}
		batch, later := batchISRCalls(pending)
		retry := s.attempt(batch)
		pending = append(retry, later...) // the earlier calls first: a partition's retry before its next call
		if len(retry) == 0 {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, isrBackoffMin), isrBackoffMax)
		select {
		case <-time.After(backoff):
		case <-s.stop:
			return
		}
	}
}

// batchISRCalls splits pending into one request's worth, each partition once, and the calls
// left for later (a partition's second request waits for the first's answer). Calls whose
// context ended are dropped: their callers have returned.
func batchISRCalls(pending []*isrCall) (batch, later []*isrCall) {
	type key struct {
		id        [16]byte
		partition int32
	}
	seen := make(map[key]bool, len(pending))
	for _, call := range pending {
		if call.ctx.Err() != nil {
			continue
		}
		k := key{call.req.TopicID, call.req.Partition}
		if seen[k] || len(batch) == maxISRBatch {
			later = append(later, call)
			continue
		}
		seen[k] = true
		batch = append(batch, call)
	}
	return batch, later
}

// attempt sends batch once, answers the calls that got an answer and returns those to retry.
func (s *isrSender) attempt(batch []*isrCall) (retry []*isrCall) {
	if len(batch) == 0 {
		return nil
	}
	reqs := make([]ISRRequest, len(batch))
	for i, call := range batch {
		reqs[i] = call.req
	}
	results, err := s.send(reqs)
	if err == nil && len(results) != len(reqs) {
		err = fmt.Errorf("%w: %d answers to %d partitions", errControllerUnreachable, len(results), len(reqs))
	}
	for i, call := range batch {
		cerr := err
		if cerr == nil {
			cerr = results[i].Err
		}
		if retriableISR(cerr) && call.ctx.Err() == nil {
			call.last.Store(&cerr)
			retry = append(retry, call)
			continue
		}
		call.done <- cerr
	}
	return retry
}

// retriableISR: the answer says to ask again, perhaps elsewhere.
func retriableISR(err error) bool {
	return errors.Is(err, ErrNotController) || errors.Is(err, ErrRequestTimedOut) || errors.Is(err, errControllerUnreachable)
}

// sendISR makes one attempt at reqs: to this node's controller, or over the ISR client to the
// controller's listener. The attempt ends early when the Raft leader changes: the answer
// would come from a node that is no longer the controller, if at all.
func (b *Broker) sendISR(reqs []ISRRequest) ([]ISRResult, error) {
	c := b.cl
	_, leaderChanged := c.raft.WatchLeader() // before finding the controller, so no change goes unseen
	self, addr, err := b.controllerListener()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), isrAttemptTimeout)
	defer cancel()
	go func() {
		select {
		case <-leaderChanged:
			cancel()
		case <-ctx.Done():
		}
	}()
	if self {
		return b.AlterPartition(ctx, b.cfg.NodeID, c.epoch.Load(), reqs)
	}
	c.isrClient.SetAddr(addr)
	return sendAlterPartition(ctx, c.isrClient, b.cfg.NodeID, c.epoch.Load(), reqs)
}

// sendAlterPartition sends reqs (each with a topic id) as one AlterPartition v3 over cl.
func sendAlterPartition(ctx context.Context, cl *kclient.Client, id int32, epoch int64, reqs []ISRRequest) ([]ISRResult, error) {
	resp, err := cl.Request(ctx, alterPartitionRequest(id, epoch, reqs))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errControllerUnreachable, err)
	}
	return alterPartitionResults(resp.(*kmsg.AlterPartitionResponse), reqs, cl.Addr())
}

// alterPartitionRequest is reqs as an AlterPartition v3 request, by topic id.
func alterPartitionRequest(id int32, epoch int64, reqs []ISRRequest) *kmsg.AlterPartitionRequest {
	req := kmsg.NewPtrAlterPartitionRequest()
	req.Version = 3
	req.BrokerID, req.BrokerEpoch = id, epoch
	topics := map[[16]byte]int{}
	for _, r := range reqs {
		i, ok := topics[r.TopicID]
		if !ok {
			i = len(req.Topics)
			topics[r.TopicID] = i
			t := kmsg.NewAlterPartitionRequestTopic()
			t.TopicID = r.TopicID
			req.Topics = append(req.Topics, t)
		}
		p := kmsg.NewAlterPartitionRequestTopicPartition()
		p.Partition, p.LeaderEpoch, p.PartitionEpoch = r.Partition, r.LeaderEpoch, r.PartitionEpoch
		for _, m := range r.NewISR {
			e := kmsg.NewAlterPartitionRequestTopicPartitionNewEpochISR()
			e.BrokerID, e.BrokerEpoch = m.ID, m.BrokerEpoch
			p.NewEpochISR = append(p.NewEpochISR, e)
		}
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, p)
	}
	return req
}

// alterPartitionResults reads the controller's answer (from the listener at addr) for each of
// reqs, in their order, or the error for them all.
func alterPartitionResults(resp *kmsg.AlterPartitionResponse, reqs []ISRRequest, addr string) ([]ISRResult, error) {
	if err := isrCodeError(resp.ErrorCode, addr); err != nil {
		return nil, err
	}
	type key struct {
		id        [16]byte
		partition int32
	}
	got := map[key]kmsg.AlterPartitionResponseTopicPartition{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			got[key{t.TopidID, p.Partition}] = p
		}
	}
	results := make([]ISRResult, len(reqs))
	for i, r := range reqs {
		p, ok := got[key{r.TopicID, r.Partition}]
		if !ok {
			results[i].Err = fmt.Errorf("%w: the controller at %s did not answer for %s-%d", errControllerUnreachable, addr, r.Topic, r.Partition)
			continue
		}
		if err := isrCodeError(p.ErrorCode, addr); err != nil {
			results[i].Err = fmt.Errorf("%s-%d: %w", r.Topic, r.Partition, err)
			continue
		}
		results[i] = ISRResult{Leader: p.LeaderID, LeaderEpoch: p.LeaderEpoch, PartitionEpoch: p.PartitionEpoch, ISR: p.ISR}
	}
	return results, nil
}

// isrCodes are the node's errors for the codes an AlterPartition answers with.
var isrCodes = map[int16]error{
	kerr.NotController.Code:           ErrNotController,
	kerr.RequestTimedOut.Code:         ErrRequestTimedOut,
	kerr.FencedLeaderEpoch.Code:       ErrFencedLeaderEpoch,
	kerr.InvalidUpdateVersion.Code:    ErrInvalidUpdateVersion,
	kerr.StaleBrokerEpoch.Code:        ErrStaleBrokerEpoch,
	kerr.IneligibleReplica.Code:       ErrIneligibleReplica,
	kerr.UnknownTopicOrPartition.Code: ErrUnknownTopic,
	kerr.UnknownTopicID.Code:          ErrUnknownTopic,
	kerr.InvalidRequest.Code:          ErrInvalidRequest,
}

// isrCodeError is code, answered by the controller at addr, as an error (nil for none).
func isrCodeError(code int16, addr string) error {
	if code == 0 {
		return nil
	}
	name := kerr.ErrorForCode(code)
	if err, ok := isrCodes[code]; ok {
		return fmt.Errorf("%w (the controller at %s answered %v)", err, addr, name)
	}
	return fmt.Errorf("broker: the controller at %s answered AlterPartition with %w", addr, name)
}

// AlterPartition is the controller's side of an AlterPartition request from broker id at
// broker epoch epoch: it decides each partition on the committed state
// (controller.AlterPartition), proposes the changes as one meta.ChangePartitions and waits for
// it to commit. It answers with an error for the whole request (ErrNotController when this
// node is not the controller, ErrStaleBrokerEpoch), or a result per request, in order. A
// partition whose change could not be committed gets REQUEST_TIMED_OUT (it may still commit)
// or NOT_CONTROLLER; either is retried, and a retry of a change that committed is answered as
// done. Every refusal is logged.
func (b *Broker) AlterPartition(ctx context.Context, id int32, epoch int64, reqs []ISRRequest) ([]ISRResult, error) {
	if b.cl == nil {
		return nil, fmt.Errorf("%w: this broker is not in a cluster", ErrNotController)
	}
	c := b.cl
	c.ctrlMu.Lock()
	leading := c.ctrl != nil
	c.ctrlMu.Unlock()
	if !leading {
		err := fmt.Errorf("%w: node %d", ErrNotController, b.cfg.NodeID)
		b.log.Info("cluster: AlterPartition refused", "broker", id, "broker_epoch", epoch, "err", err)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		st := b.meta.State()
		if err := controller.CheckRequester(st, id, epoch); err != nil {
			err = isrError(err)
			b.log.Info("cluster: AlterPartition refused", "broker", id, "broker_epoch", epoch, "err", err)
			return nil, err
		}
		results := make([]ISRResult, len(reqs))
		var changes []meta.PartitionChange
		var changed []int // the results that wait for changes to commit
		seen := map[meta.PartitionRef]bool{}
		for i, r := range reqs {
			res, err := controller.AlterPartition(st, id, epoch, r)
			if err == nil && res.Change != nil {
				ref := meta.PartitionRef{Topic: res.Topic, TopicID: res.TopicID, Partition: r.Partition}
				if seen[ref] {
					err = fmt.Errorf("%w: %s-%d is named twice in one AlterPartition", ErrInvalidRequest, res.Topic, r.Partition)
				} else {
					seen[ref] = true
					changes = append(changes, *res.Change)
					changed = append(changed, i)
				}
			}
			if err != nil {
				results[i].Err = isrError(err)
				continue
			}
			results[i] = ISRResult{Leader: res.Leader, LeaderEpoch: res.LeaderEpoch, PartitionEpoch: res.PartitionEpoch, ISR: res.ISR}
		}
		if len(changes) > 0 {
			pctx, cancel := context.WithTimeout(ctx, alterPartitionCommitTimeout)
			_, err := b.meta.Propose(pctx, meta.ChangePartitions{Changes: changes})
			cancel()
			if err != nil && errors.Is(err, meta.ErrStaleCommand) && !errors.Is(err, raftlog.ErrOutcomeUnknown) &&
				attempt < alterPartitionAttempts && ctx.Err() == nil {
				// Another proposer changed one of these partitions since st: decide again on
				// the state as it is now.
				continue
			}
			if err != nil {
				err = b.metadataError(err)
				for _, i := range changed {
					results[i] = ISRResult{Err: err}
				}
			}
		}
		b.logAlterPartition(st, id, epoch, reqs, results, changed)
		return results, nil
	}
}

// logAlterPartition logs each ISR change committed and each refusal.
func (b *Broker) logAlterPartition(st *meta.State, id int32, epoch int64, reqs []ISRRequest, results []ISRResult, changed []int) {
	isChange := make(map[int]bool, len(changed))
	for _, i := range changed {
		isChange[i] = true
	}
	for i, r := range results {
		tp := isrPartitionName(st, reqs[i])
		switch {
		case r.Err != nil:
			b.log.Info("cluster: AlterPartition refused", "broker", id, "broker_epoch", epoch, "partition", tp,
				"leader_epoch", reqs[i].LeaderEpoch, "partition_epoch", reqs[i].PartitionEpoch, "err", r.Err)
		case isChange[i]:
			b.log.Info("cluster: ISR changed", "leader", id, "partition", tp, "isr", fmt.Sprint(r.ISR),
				"leader_epoch", r.LeaderEpoch, "partition_epoch", r.PartitionEpoch)
		}
	}
}

// isrPartitionName names r's partition for the log: AlterPartition v2+ gives only the topic id.
func isrPartitionName(st *meta.State, r ISRRequest) string {
	name := r.Topic
	if r.TopicID != ([16]byte{}) {
		if t, ok := st.TopicByID(r.TopicID); ok {
			name = t.Name
		} else {
			name = fmt.Sprintf("%x", r.TopicID)
		}
	}
	return fmt.Sprintf("%s-%d", name, r.Partition)
}

// isrError is a controller refusal as the node's error for it, keeping the controller's
// message: the refusals that have a node sentinel of their own match it too.
func isrError(err error) error {
	var kind error
	switch {
	case errors.Is(err, controller.ErrFencedLeaderEpoch):
		kind = ErrFencedLeaderEpoch
	case errors.Is(err, controller.ErrInvalidISR):
		kind = ErrInvalidRequest
	case errors.Is(err, controller.ErrStateBehind):
		kind = ErrNotController
	default:
		return err // the node's sentinels already (ErrStaleBrokerEpoch, ErrUnknownTopic, …)
	}
	return &kindError{kind: kind, err: err}
}

// kindError is err, matching kind as well.
type kindError struct {
	kind, err error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }
