package perf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrorName names an error for the error table: Kafka errors by name and code
// (NOT_LEADER_OR_FOLLOWER(6)), client-side failures by a short class.
func ErrorName(err error) string {
	if err == nil {
		return ""
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return fmt.Sprintf("%s(%d)", ke.Message, ke.Code)
	}
	var ne net.Error
	switch {
	case errors.Is(err, kgo.ErrRecordTimeout):
		return "CLIENT_RECORD_TIMEOUT"
	case errors.Is(err, kgo.ErrRecordRetries):
		return "CLIENT_RETRIES_EXHAUSTED"
	case errors.Is(err, kgo.ErrClientClosed):
		return "CLIENT_CLOSED"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "CLIENT_CANCELED"
	case errors.As(err, &ne):
		return "NETWORK"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return "CLIENT: " + strings.ReplaceAll(s, "\n", " ")
}
