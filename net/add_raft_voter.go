package kafkanet

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.AddRaftVoter, 0, 1, func(h *Handlers) HandleFunc { return h.handleAddRaftVoter })
}

// Listener names of AddRaftVoter: the address of the new member's Raft traffic, and whether it
// votes. `ringtail cluster add-node` sends them.
const (
	raftListener          = "RAFT"
	raftNonVotingListener = "RAFT_NON_VOTING"
)

// handleAddRaftVoter answers AddRaftVoter (key 80, v0–1, KIP-853) as `ringtail cluster
// add-node` sends it: node VoterID joins the metadata cluster at the Raft address of its
// listener, named RAFT (a voter) or RAFT_NON_VOTING (a member that follows the metadata
// without voting). The node then starts with --join.
func (h *Handlers) handleAddRaftVoter(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.AddRaftVoterRequest)
	resp := req.ResponseKind().(*kmsg.AddRaftVoterResponse)
	err := h.addMember(req)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err), errorMessage(err)
		c.Log.Warn("add raft voter: refused", "node_id", req.VoterID, "err", err)
	}
	respond(resp)
}

func (h *Handlers) addMember(req *kmsg.AddRaftVoterRequest) error {
	if len(req.Listeners) != 1 {
		return fmt.Errorf("%w: one listener (%s or %s) expected, got %d", kerr.InvalidRequest, raftListener, raftNonVotingListener, len(req.Listeners))
	}
	l := req.Listeners[0]
	voter := l.Name == raftListener
	if !voter && l.Name != raftNonVotingListener {
		return fmt.Errorf("%w: listener %q: want %s or %s", kerr.InvalidRequest, l.Name, raftListener, raftNonVotingListener)
	}
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return h.node.AddMember(ctx, req.VoterID, net.JoinHostPort(l.Host, strconv.Itoa(int(l.Port))), voter)
}
