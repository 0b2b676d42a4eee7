package broker

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/raftlog"
)

// TestMetadataError: a client's metadata change that failed in the Raft log reaches the client
// as REQUEST_TIMED_OUT when it may still commit, NOT_CONTROLLER when no leader took it, and
// as the state's own refusal otherwise.
func TestMetadataError(t *testing.T) {
	b := &Broker{cl: &cluster{}}
	b.cfg.NodeID = 2
	unknown := fmt.Errorf("%w: proposing meta.CreateTopic: %w", raftlog.ErrOutcomeUnknown, context.DeadlineExceeded)
	// A stale repeat of an attempt that may have applied unseen: the meta sentinel inside must
	// not decide the code.
	unknownStale := fmt.Errorf("%w: %w", raftlog.ErrOutcomeUnknown, meta.ErrStaleCommand)
	noLeader := fmt.Errorf("raftlog: proposing meta.CreateTopic: %w (last attempt: shard not ready)", context.DeadlineExceeded)
	exists := fmt.Errorf("%w: t", meta.ErrTopicExists)
	for _, tc := range []struct {
		in, want error
	}{
		{unknown, ErrRequestTimedOut},
		{unknownStale, ErrRequestTimedOut},
		{noLeader, ErrNotController},
		{exists, ErrTopicExists},
	} {
		got := b.metadataError(tc.in)
		if !errors.Is(got, tc.want) {
			t.Errorf("metadataError(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if tc.want != ErrTopicExists && (errors.Is(got, meta.ErrStaleCommand) || errors.Is(got, ErrTopicExists)) {
			t.Errorf("metadataError(%v) = %v still wraps a state refusal", tc.in, got)
		}
	}
	if got := (&Broker{}).metadataError(noLeader); got != noLeader {
		t.Errorf("a single node's error changed: %v", got)
	}
}
