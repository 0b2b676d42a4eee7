package broker

import (
	"errors"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/controller"
)

// The errors a Kafka handler may see from the node, named here so that net/ maps them to error
// codes without importing the storage or metadata packages. Each is the same value as the
// package's own sentinel (errors.Is matches either).
var (
	ErrCorruptMessage       = engine.ErrCorruptMessage
	ErrMessageTooLarge      = engine.ErrMessageTooLarge
	ErrOutOfOrderSequence   = engine.ErrOutOfOrderSequence
	ErrInvalidProducerEpoch = engine.ErrInvalidProducerEpoch
	ErrCoordinatorFenced    = engine.ErrCoordinatorFenced
	ErrUnsupportedMagic     = engine.ErrUnsupportedMagic
	ErrInvalidRecord        = engine.ErrInvalidRecord
	ErrInvalidTimestamp     = engine.ErrInvalidTimestamp
	ErrOffsetOutOfRange     = engine.ErrOffsetOutOfRange
	ErrStorage              = engine.ErrStorage
	ErrPartitionClosed      = engine.ErrClosed

	ErrTopicExists       = meta.ErrTopicExists
	ErrUnknownTopic      = meta.ErrUnknownTopic
	ErrInvalidTopic      = meta.ErrInvalidTopic
	ErrInvalidPartitions = meta.ErrInvalidPartitions
	ErrInvalidConfig     = meta.ErrInvalidConfig
	ErrInvalidRF         = meta.ErrInvalidRF
	ErrUnknownBroker     = meta.ErrUnknownBroker
	// ErrMetadataClosed, ErrMetadataNotInitialized: the node's metadata store is closing (a shutdown) or the cluster is
	// not initialized yet; nothing was changed, and another broker or a retry may do it.
	ErrMetadataClosed         = meta.ErrClosed
	ErrMetadataNotInitialized = meta.ErrNotInitialized

	ErrStaleBrokerEpoch     = controller.ErrStaleBrokerEpoch
	ErrInvalidUpdateVersion = controller.ErrInvalidUpdateVersion // INVALID_UPDATE_VERSION
	ErrIneligibleReplica    = controller.ErrIneligibleReplica    // INELIGIBLE_REPLICA
)

// Errors of the node's own checks of a request.
var (
	ErrInvalidRequest           = errors.New("broker: invalid request")            // INVALID_REQUEST
	ErrInvalidReplicaAssignment = errors.New("broker: invalid replica assignment") // INVALID_REPLICA_ASSIGNMENT
	ErrRequestTimedOut          = errors.New("broker: request timed out")          // REQUEST_TIMED_OUT
	ErrCoordinatorNotAvailable  = errors.New("broker: coordinator not available")  // COORDINATOR_NOT_AVAILABLE
)
