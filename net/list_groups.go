package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.ListGroups, 0, 5, func(h *Handlers) HandleFunc { return h.handleListGroups })
}

// handleListGroups answers ListGroups (key 16, v0–v5, state filter from v4).
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleListGroups(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
