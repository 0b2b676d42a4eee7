package meta

import "errors"

// Errors of the metadata; the network layer maps the first nine to Kafka error codes.
var (
	ErrTopicExists       = errors.New("meta: topic already exists")         // TOPIC_ALREADY_EXISTS
	ErrUnknownTopic      = errors.New("meta: unknown topic")                // UNKNOWN_TOPIC_OR_PARTITION
	ErrInvalidTopic      = errors.New("meta: invalid topic name")           // INVALID_TOPIC_EXCEPTION
	ErrInvalidPartitions = errors.New("meta: invalid number of partitions") // INVALID_PARTITIONS
	ErrInvalidConfig     = errors.New("meta: invalid config")               // INVALID_CONFIG
	ErrInvalidRF         = errors.New("meta: invalid replication factor")   // INVALID_REPLICATION_FACTOR
	// ErrInvalidReplicaAssignment: a new partition placed on a broker that is not registered,
	// fenced or shutting down (placement is checked against the brokers once any registered).
	ErrInvalidReplicaAssignment = errors.New("meta: invalid replica assignment") // INVALID_REPLICA_ASSIGNMENT
	// ErrUnknownBroker: a command or heartbeat names a broker id that is not registered.
	ErrUnknownBroker = errors.New("meta: broker not registered") // BROKER_ID_NOT_REGISTERED
	// ErrDuplicateBroker: a new incarnation of a broker registers while the current one is
	// unfenced (alive, as far as the state knows). It is retried: the controller fences the old
	// one when its session runs out.
	ErrDuplicateBroker = errors.New("meta: broker id registered by another live process") // DUPLICATE_BROKER_REGISTRATION

	// ErrStaleCommand: the command names an id or epoch the state has moved past. It is what a
	// repeated command (a proposal that timed out, committed, and was proposed again) or a
	// command overtaken by another proposer's gets. It is joined with the sentinel a client
	// should see, where there is one (a stale DeleteTopic is also ErrUnknownTopic). Its
	// proposer rebuilds the command from the current state, if it is still needed.
	ErrStaleCommand = errors.New("meta: stale command")
	// ErrNotInitialized: a command other than InitCluster before InitCluster.
	ErrNotInitialized = errors.New("meta: cluster not initialized")
	// ErrInvalidCommand: a command no proposer should build (a zero topic id, an empty
	// cluster id, a bad producer-id count), or bytes that do not decode to a command.
	ErrInvalidCommand = errors.New("meta: invalid command")
	// ErrCorrupt: a metadata file or snapshot fails its checks.
	ErrCorrupt = errors.New("meta: corrupt metadata")
	// ErrClosed: the Log or Store was closed.
	ErrClosed = errors.New("meta: closed")
)

// staleError is a rejection for ErrStaleCommand, optionally also matching the sentinel a
// client should see (kind), with a message that reads as one sentence.
type staleError struct {
	kind error // nil, or a sentinel such as ErrUnknownTopic
	msg  string
}

func (e *staleError) Error() string { return ErrStaleCommand.Error() + ": " + e.msg }

func (e *staleError) Unwrap() []error {
	if e.kind == nil {
		return []error{ErrStaleCommand}
	}
	return []error{ErrStaleCommand, e.kind}
}
