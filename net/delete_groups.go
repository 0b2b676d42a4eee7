package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.DeleteGroups, 0, 3, func(h *Handlers) HandleFunc { return h.handleDeleteGroups })
}

// handleDeleteGroups answers DeleteGroups (key 42, v0–v3): only empty groups; their offsets are tombstoned.
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleDeleteGroups(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
