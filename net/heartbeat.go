package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.Heartbeat, 0, 4, func(h *Handlers) HandleFunc { return h.handleHeartbeat })
}

// handleHeartbeat answers Heartbeat (key 12, v0–v4): keeps a member's session alive and tells it when to rejoin.
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleHeartbeat(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
