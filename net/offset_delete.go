package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.OffsetDelete, 0, 0, func(h *Handlers) HandleFunc { return h.handleOffsetDelete })
}

// handleOffsetDelete answers OffsetDelete (key 47, v0): drops committed offsets of partitions the group does not consume.
// The group coordinator (package group) decides; broker/groups.go hosts it.
func (h *Handlers) handleOffsetDelete(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
