package kafkanet

import (
	"errors"

	"github.com/ringtail/ringtail/broker"
	"github.com/ringtail/ringtail/net/fetchsession"
	"github.com/twmb/franz-go/pkg/kerr"
)

// errorCode maps an error to the Kafka error code a client sees: a wrapped *kerr.Error is taken
// as it is; the node's sentinels (package broker) are looked up.
func errorCode(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	for _, m := range errorCodes {
		if errors.Is(err, m.err) {
			return m.code.Code
		}
	}
	return kerr.UnknownServerError.Code
}

var errorCodes = []struct {
	err  error
	code *kerr.Error
}{
	{fetchsession.ErrSessionIDNotFound, kerr.FetchSessionIDNotFound},
	{fetchsession.ErrInvalidEpoch, kerr.InvalidFetchSessionEpoch},
	{fetchsession.ErrTopicIDMismatch, kerr.FetchSessionTopicIDError},
	{broker.ErrCorruptMessage, kerr.CorruptMessage},
	{broker.ErrMessageTooLarge, kerr.MessageTooLarge},
	{broker.ErrOutOfOrderSequence, kerr.OutOfOrderSequenceNumber},
	{broker.ErrInvalidProducerEpoch, kerr.InvalidProducerEpoch},
	{broker.ErrInvalidTxnState, kerr.InvalidTxnState},
	{broker.ErrUnsupportedMagic, kerr.UnsupportedForMessageFormat},
	{broker.ErrInvalidRecord, kerr.InvalidRecord},
	{broker.ErrInvalidTimestamp, kerr.InvalidTimestamp},
	{broker.ErrOffsetOutOfRange, kerr.OffsetOutOfRange},
	{broker.ErrStorage, kerr.KafkaStorageError},
	{broker.ErrPartitionClosed, kerr.NotLeaderForPartition},
	{broker.ErrTopicExists, kerr.TopicAlreadyExists},
	{broker.ErrUnknownTopic, kerr.UnknownTopicOrPartition},
	{broker.ErrInvalidTopic, kerr.InvalidTopicException},
	{broker.ErrInvalidPartitions, kerr.InvalidPartitions},
	{broker.ErrInvalidConfig, kerr.InvalidConfig},
	{broker.ErrInvalidRF, kerr.InvalidReplicationFactor},
	{broker.ErrInvalidRequest, kerr.InvalidRequest},
	{broker.ErrInvalidReplicaAssignment, kerr.InvalidReplicaAssignment},
	{broker.ErrRequestTimedOut, kerr.RequestTimedOut},
	{broker.ErrNotLeaderOrFollower, kerr.NotLeaderForPartition},
	{broker.ErrNotController, kerr.NotController},
	// Retriable, as a client must retry elsewhere or later (UNKNOWN_SERVER_ERROR is not).
	{broker.ErrMetadataClosed, kerr.NotController},
	{broker.ErrMetadataNotInitialized, kerr.NotController},
	{broker.ErrFencedLeaderEpoch, kerr.FencedLeaderEpoch},
	{broker.ErrUnknownLeaderEpoch, kerr.UnknownLeaderEpoch},
	{broker.ErrStaleBrokerEpoch, kerr.StaleBrokerEpoch},
	{broker.ErrInvalidUpdateVersion, kerr.InvalidUpdateVersion},
	{broker.ErrIneligibleReplica, kerr.IneligibleReplica},
	{broker.ErrUnknownBroker, kerr.BrokerIDNotRegistered},
	{broker.ErrCoordinatorNotAvailable, kerr.CoordinatorNotAvailable},
	{broker.ErrNotEnoughReplicas, kerr.NotEnoughReplicas},
	{broker.ErrNotEnoughReplicasAfterAppend, kerr.NotEnoughReplicasAfterAppend},
}

// errorMessage is the text sent beside an error code where the protocol has room for one.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
