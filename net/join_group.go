package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.JoinGroup, 0, 9, func(h *Handlers) HandleFunc { return h.handleJoinGroup })
}

// handleJoinGroup answers JoinGroup (key 11, v0–v9): a member joins or rejoins; the response is parked until the
// rebalance completes (or MEMBER_ID_REQUIRED on v4+ first joins).
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleJoinGroup(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
