package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.LeaveGroup, 0, 5, func(h *Handlers) HandleFunc { return h.handleLeaveGroup })
}

// handleLeaveGroup answers LeaveGroup (key 13, v0–v5, batched members from v3).
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleLeaveGroup(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
