package controller

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ringtail/ringtail/meta"
)

// The controller's answers to a partition leader asking for a new ISR (Kafka's AlterPartition,
// KIP-497), each naming the Kafka error code the request's sender gets. A refusal changes
// nothing; the leader learns the partition's state from the metadata it follows and asks again
// from there if it still needs to.
var (
	// ErrFencedLeaderEpoch: the request names an older leader epoch than the partition's, or
	// its sender does not lead the partition (Kafka answers INVALID_REQUEST for the latter,
	// which a leader cannot send at the current leader epoch; either way the sender is not
	// the leader any more as far as it is concerned).
	ErrFencedLeaderEpoch = errors.New("controller: fenced leader epoch") // FENCED_LEADER_EPOCH
	// ErrInvalidUpdateVersion: the request names an older partition epoch than the
	// partition's (the ISR changed since the leader read it).
	ErrInvalidUpdateVersion = errors.New("controller: stale partition epoch") // INVALID_UPDATE_VERSION
	// ErrIneligibleReplica: a broker joining the ISR is not registered, fenced, shutting down,
	// at another broker epoch than the request says, or not a replica of the partition (Kafka
	// answers INVALID_REQUEST for the last).
	ErrIneligibleReplica = errors.New("controller: ineligible replica") // INELIGIBLE_REPLICA
	// ErrInvalidISR: the new ISR is empty, names a broker twice or leaves out the leader.
	ErrInvalidISR = errors.New("controller: invalid ISR") // INVALID_REQUEST
	// ErrStateBehind: the request names a broker epoch, leader epoch or partition epoch newer
	// than this controller's state: the state it answers from has not applied the latest
	// commands yet, or another node is the controller now. Kafka answers NOT_CONTROLLER, so
	// the leader retries, by then with the controller that knows.
	ErrStateBehind = errors.New("controller: this controller's metadata is behind the request") // NOT_CONTROLLER
)

// ISRMember is a broker of a requested ISR with the broker epoch its leader knows it at, or
// -1 when the leader does not say (AlterPartition before v3): a broker joining the ISR must be
// at that epoch, so a restarted broker does not join on the strength of what its previous
// process fetched (KIP-903).
type ISRMember struct {
	ID          int32
	BrokerEpoch int64
}

// AlterPartitionRequest is one partition of an AlterPartition request.
type AlterPartitionRequest struct {
	Topic          string   // the topic's name; used when TopicID is zero (AlterPartition v0–1)
	TopicID        [16]byte // the topic's id (v2+)
	Partition      int32
	LeaderEpoch    int32 // the leader epoch the leader leads at
	PartitionEpoch int32 // the partition epoch of the ISR the leader changes
	NewISR         []ISRMember
}

// AlterPartitionResult is the partition as it is once Change, if any, is committed: what the
// controller answers the leader.
type AlterPartitionResult struct {
	// Change is the command to propose (in a meta.ChangePartitions), or nil when the state
	// already has the requested ISR: it asks for the ISR it has (no epoch is bumped, as in
	// Kafka), or this very change committed already (a retried request whose first answer was
	// lost).
	Change         *meta.PartitionChange
	Topic          string
	TopicID        [16]byte
	Leader         int32
	LeaderEpoch    int32
	PartitionEpoch int32
	ISR            []int32
}

// CheckRequester checks the broker epoch of the broker sending an AlterPartition request,
// which must be that of its registration: ErrStaleBrokerEpoch if it is older or the broker is
// not registered (Kafka's STALE_BROKER_EPOCH for both), ErrStateBehind if it is newer (this
// state has not applied the registration yet).
func CheckRequester(st *meta.State, id int32, epoch int64) error {
	b, ok := st.Broker(id)
	switch {
	case !ok:
		return fmt.Errorf("%w: broker %d is not registered", ErrStaleBrokerEpoch, id)
	case epoch < b.Epoch:
		return fmt.Errorf("%w: broker %d is at broker epoch %d, the request names %d", ErrStaleBrokerEpoch, id, b.Epoch, epoch)
	case epoch > b.Epoch:
		return fmt.Errorf("%w: broker %d is at broker epoch %d here, the request names %d", ErrStateBehind, id, b.Epoch, epoch)
	}
	return nil
}

// AlterPartition decides one partition of an AlterPartition request from broker id at broker
// epoch epoch, against the committed state: the ISR change to propose, with the leader and its
// epoch unchanged, or why not. Like Kafka's controller it checks, in order:
//
//   - the requester's broker epoch (CheckRequester);
//   - the topic (by id, or by name when the id is zero) and partition exist
//     (meta.ErrUnknownTopic: UNKNOWN_TOPIC_OR_PARTITION);
//   - a leader epoch or partition epoch newer than the state's: ErrStateBehind;
//   - an older leader epoch, or a requester that is not the leader: ErrFencedLeaderEpoch;
//   - an older partition epoch: ErrInvalidUpdateVersion, unless the state is exactly what
//     the request asks for one partition epoch later (this change committed already);
//   - the ISR: not empty, no repeats, the leader in it (ErrInvalidISR); every broker joining
//     it a replica, registered, unfenced, not shutting down and at the broker epoch the
//     request names, if any (ErrIneligibleReplica).
//
// Brokers staying in the ISR are not checked (Kafka checks them too): meta keeps a fenced
// member in an ISR only where it is the last one, and the controller's own pass takes the
// others out, so a leader shrinking its ISR is never held up by a member on its way out.
func AlterPartition(st *meta.State, id int32, epoch int64, req AlterPartitionRequest) (AlterPartitionResult, error) {
	if err := CheckRequester(st, id, epoch); err != nil {
		return AlterPartitionResult{}, err
	}
	var t meta.Topic
	var ok bool
	if req.TopicID != ([16]byte{}) {
		if t, ok = st.TopicByID(req.TopicID); !ok {
			return AlterPartitionResult{}, fmt.Errorf("%w: no topic has id %x", meta.ErrUnknownTopic, req.TopicID)
		}
	} else if t, ok = st.Topic(req.Topic); !ok {
		return AlterPartitionResult{}, fmt.Errorf("%w: %q", meta.ErrUnknownTopic, req.Topic)
	}
	name := fmt.Sprintf("%s-%d", t.Name, req.Partition)
	if req.Partition < 0 || req.Partition >= t.Partitions {
		return AlterPartitionResult{}, fmt.Errorf("%w: %q has no partition %d", meta.ErrUnknownTopic, t.Name, req.Partition)
	}
	a := t.Assignments[req.Partition]
	current := AlterPartitionResult{Topic: t.Name, TopicID: t.ID, Leader: a.Leader, LeaderEpoch: a.LeaderEpoch,
		PartitionEpoch: a.PartitionEpoch, ISR: slices.Clone(a.ISR)}
	switch {
	case req.LeaderEpoch > a.LeaderEpoch:
		return AlterPartitionResult{}, fmt.Errorf("%w: %s is at leader epoch %d here, the request names %d", ErrStateBehind, name, a.LeaderEpoch, req.LeaderEpoch)
	case req.PartitionEpoch > a.PartitionEpoch:
		return AlterPartitionResult{}, fmt.Errorf("%w: %s is at partition epoch %d here, the request names %d", ErrStateBehind, name, a.PartitionEpoch, req.PartitionEpoch)
	case req.LeaderEpoch < a.LeaderEpoch:
		return AlterPartitionResult{}, fmt.Errorf("%w: %s is at leader epoch %d (led by broker %d), the request names %d", ErrFencedLeaderEpoch, name, a.LeaderEpoch, a.Leader, req.LeaderEpoch)
	case a.Leader != id:
		return AlterPartitionResult{}, fmt.Errorf("%w: broker %d does not lead %s (broker %d does, at leader epoch %d)", ErrFencedLeaderEpoch, id, name, a.Leader, a.LeaderEpoch)
	}
	isr := make([]int32, len(req.NewISR))
	for i, m := range req.NewISR {
		isr[i] = m.ID
	}
	if req.PartitionEpoch < a.PartitionEpoch {
		if req.PartitionEpoch == a.PartitionEpoch-1 && sameMembers(isr, a.ISR) {
			return current, nil
		}
		return AlterPartitionResult{}, fmt.Errorf("%w: %s is at partition epoch %d (ISR %v), the request names %d", ErrInvalidUpdateVersion, name, a.PartitionEpoch, a.ISR, req.PartitionEpoch)
	}
	if len(isr) == 0 {
		return AlterPartitionResult{}, fmt.Errorf("%w: %s: an empty ISR", ErrInvalidISR, name)
	}
	for i, b := range isr {
		if slices.Contains(isr[:i], b) {
			return AlterPartitionResult{}, fmt.Errorf("%w: %s: broker %d appears twice in %v", ErrInvalidISR, name, b, isr)
		}
	}
	if !slices.Contains(isr, a.Leader) {
		return AlterPartitionResult{}, fmt.Errorf("%w: %s: the ISR %v leaves out the leader %d", ErrInvalidISR, name, isr, a.Leader)
	}
	for _, m := range req.NewISR {
		if slices.Contains(a.ISR, m.ID) {
			continue
		}
		if why := ineligible(st, a, m); why != "" {
			return AlterPartitionResult{}, fmt.Errorf("%w: %s cannot take broker %d into its ISR: %s", ErrIneligibleReplica, name, m.ID, why)
		}
	}
	if sameMembers(isr, a.ISR) {
		return current, nil
	}
	current.PartitionEpoch++
	current.ISR = isr
	current.Change = &meta.PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: req.Partition,
		ExpectedPartitionEpoch: a.PartitionEpoch, Leader: a.Leader, ISR: slices.Clone(isr)}
	return current, nil
}

// ineligible says why broker m may not join partition a's ISR, or "".
func ineligible(st *meta.State, a meta.PartitionAssignment, m ISRMember) string {
	if !slices.Contains(a.Replicas, m.ID) {
		return fmt.Sprintf("it is not a replica %v", a.Replicas)
	}
	b, ok := st.Broker(m.ID)
	switch {
	case !ok:
		return "it is not registered"
	case b.Fenced:
		return "it is fenced"
	case b.InControlledShutdown:
		return "it is shutting down"
	case m.BrokerEpoch != -1 && m.BrokerEpoch != b.Epoch:
		return fmt.Sprintf("it is at broker epoch %d, the request names %d", b.Epoch, m.BrokerEpoch)
	}
	return ""
}

// sameMembers: a and b hold the same brokers, each as often, in any order.
func sameMembers(a, b []int32) bool {
	return len(a) == len(b) && slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
