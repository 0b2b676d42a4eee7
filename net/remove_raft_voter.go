package kafkanet

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.RemoveRaftVoter, 0, 0, func(h *Handlers) HandleFunc { return h.handleRemoveRaftVoter })
}

// handleRemoveRaftVoter answers RemoveRaftVoter (key 81, v0, KIP-853) as `ringtail cluster
// remove-node` sends it: node VoterID leaves the metadata cluster's membership.
func (h *Handlers) handleRemoveRaftVoter(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.RemoveRaftVoterRequest)
	resp := req.ResponseKind().(*kmsg.RemoveRaftVoterResponse)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.node.RemoveMember(ctx, req.VoterID); err != nil {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err), errorMessage(err)
		c.Log.Warn("remove raft voter: refused", "node_id", req.VoterID, "err", err)
	}
	respond(resp)
}
