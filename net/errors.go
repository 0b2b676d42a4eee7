package kafkanet

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/meta"
)

// errorCode maps an error to the Kafka error code a client sees: a wrapped *kerr.Error is taken
// as it is; engine and metadata sentinels are looked up.
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
	{engine.ErrCorruptMessage, kerr.CorruptMessage},
	{engine.ErrMessageTooLarge, kerr.MessageTooLarge},
	{engine.ErrOutOfOrderSequence, kerr.OutOfOrderSequenceNumber},
	{engine.ErrInvalidProducerEpoch, kerr.InvalidProducerEpoch},
	{engine.ErrUnsupportedMagic, kerr.UnsupportedForMessageFormat},
	{engine.ErrInvalidRecord, kerr.InvalidRecord},
	{engine.ErrInvalidTimestamp, kerr.InvalidTimestamp},
	{engine.ErrOffsetOutOfRange, kerr.OffsetOutOfRange},
	{engine.ErrStorage, kerr.KafkaStorageError},
	{engine.ErrClosed, kerr.NotLeaderForPartition},
	{engine.ErrTransactionalUnsupported, kerr.InvalidRecord},
	{meta.ErrTopicExists, kerr.TopicAlreadyExists},
	{meta.ErrUnknownTopic, kerr.UnknownTopicOrPartition},
	{meta.ErrInvalidTopic, kerr.InvalidTopicException},
	{meta.ErrInvalidPartitions, kerr.InvalidPartitions},
	{meta.ErrInvalidConfig, kerr.InvalidConfig},
	{meta.ErrInvalidRF, kerr.InvalidReplicationFactor},
}

// errorMessage is the text sent beside an error code where the protocol has room for one.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
