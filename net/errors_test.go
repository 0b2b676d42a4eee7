package kafkanet

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ringtail/ringtail/broker"
)

// TestErrorCodes: wrapped sentinels map to their Kafka codes; a metadata store closing under a
// request (a shutdown) is a retriable NOT_CONTROLLER, not UNKNOWN_SERVER_ERROR.
func TestErrorCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want *kerr.Error
	}{
		{fmt.Errorf("create: %w", broker.ErrMetadataClosed), kerr.NotController},
		{fmt.Errorf("create: %w", broker.ErrMetadataNotInitialized), kerr.NotController},
		{fmt.Errorf("x: %w", broker.ErrNotEnoughReplicas), kerr.NotEnoughReplicas},
		{fmt.Errorf("x: %w", kerr.InvalidTxnState), kerr.InvalidTxnState},
		{fmt.Errorf("something else"), kerr.UnknownServerError},
	} {
		if got := errorCode(c.err); got != c.want.Code {
			t.Errorf("%v: code %d, want %d (%s)", c.err, got, c.want.Code, c.want.Message)
		}
	}
}
